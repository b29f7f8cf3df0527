"""Child process for the kill -9 backup tests.

Usage: python backup_crash_child.py DATA_DIR STORE_DIR POINT
Fills a table (first run only), starts a backup and stops dead at POINT, printing
"at POINT" so the parent can SIGKILL it there:
  export   — inside the physical copy step of a partition
  package  — after a partition object is packaged, before verify/upload
  upload   — while a partition object is being uploaded
  manifest — just before the manifest is written
  committed — just after the manifest is written, before the catalog says AVAILABLE
"""

import sys
import threading
import time

from engine import Engine
from engine.backup import create, package
from engine.partition import Partition
from engine.store import LocalStore

print_lock = threading.Lock()


def say(line: str) -> None:
    # Several partitions' threads may print at once: one whole line each, never interleaved
    # ("at packageat package\n\n" would never match the parent's line).
    with print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def park(point: str) -> None:
    say(f"at {point}")
    time.sleep(3600)


class StallingStore(LocalStore):
    """A real LocalStore that parks the process at a chosen step of an upload."""

    point = ""

    def put(self, key, source, **options):
        if self.point == "upload" and key.endswith(".tar.zst"):
            chunk = source.read(100)
            say(f"uploading {len(chunk)}")
            park("upload")
        if self.point == "manifest" and key.endswith("manifest.json"):
            park("manifest")
        result = super().put(key, source, **options)
        if self.point == "committed" and key.endswith("manifest.json"):
            park("committed")
        return result

    def put_file(self, key, path, **options):
        # Through put (not LocalStore's hard link), so the parking points above apply.
        with open(path, "rb") as source:
            return self.put(key, source, **options)


def main() -> None:
    data_dir, store_dir, point = sys.argv[1:4]
    store = StallingStore(store_dir)
    store.point = point
    if point == "package":
        package.corrupt_packaged_object_hook = lambda path: park("package")
    if point == "export":
        original = Partition.export_copy

        def slow_export(self, dest, **kw):
            result = original(self, dest, **kw)
            park("export")
            return result

        Partition.export_copy = slow_export
    assert create  # imported so hooks above apply to the module the engine uses
    engine = Engine.open(data_dir, backup_store=store)
    if "Music" not in engine.list_tables():
        engine.create_table("Music", partition_key=("pk", "S"), sort_key=("sk", "N"), partitions=3)
        engine.table("Music").batch_write(puts=[{"pk": f"a{n % 20}", "sk": n} for n in range(3000)])
    backup = engine.create_backup("Music", "CrashBackup")
    say(f"started {backup['backup_id']}")
    time.sleep(3600)


if __name__ == "__main__":
    main()
