"""Read a backup straight from its store (a direct import of the partition objects), for
tests that check what a backup holds without going through a restore; and the
consistency-under-load check that local and S3 backups share."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from engine.backup.manifest import BackupManifest, manifest_key
from engine.backup.unpack import unpack_partition
from engine.partition import open_environment
from engine.table import decode_item


def read_backup_items(store, backup_id: str) -> list[dict]:
    """Every item of the backup, partition by partition in key order."""
    key = manifest_key("", backup_id)
    manifest = BackupManifest.from_json(store.get(key), key)
    items = []
    with tempfile.TemporaryDirectory(prefix="tessera-import-") as scratch:
        for entry in manifest.partitions:
            dest = Path(scratch) / entry.partition_id
            with store.open_reader(entry.object_key) as reader:
                unpack_partition(reader, dest, entry, source_name=entry.object_key, fsync=False)
            env, items_db, _ = open_environment(dest, map_size=1 << 30)
            with env.begin(db=items_db) as txn:
                items.extend(decode_item(value) for _, value in txn.cursor())
            env.close()
    return items


def backup_under_load(eng, table_name: str, *, writers: int = 3, timeout: float = 120) -> dict:
    """Back ``table_name`` up while ``writers`` threads keep batch-writing, then check the
    backup is the point in time of ``create_backup``: every batch acknowledged before it
    returned is present, no batch is partly present, and later writes are missing.

    Each batch is 5 items of one partition key — one WAL record, all or nothing. Returns
    the finished backup's description.
    """
    table = eng.table(table_name)
    acked: list[tuple[int, int]] = []
    stop = threading.Event()

    def writer(worker: int) -> None:
        n = 0
        while not stop.is_set():
            table.batch_write(puts=[{"pk": f"w{worker}-{n}", "sk": i} for i in range(5)])
            acked.append((worker, n))
            n += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.2)
        before = set(acked)
        backup_id = eng.create_backup(table_name, "UnderLoad")["backup_id"]
        done = eng.wait_for_backup(backup_id, timeout=timeout)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert done["status"] == "AVAILABLE", done["failure_reason"]
    batches: dict[str, set] = {}
    for item in read_backup_items(eng.backup_store, backup_id):
        if item["pk"].startswith("w"):
            batches.setdefault(item["pk"], set()).add(item["sk"])
    for worker, n in before:
        assert batches.get(f"w{worker}-{n}") == set(range(5)), "acknowledged write missing"
    assert all(sks == set(range(5)) for sks in batches.values()), "a batch is partly present"
    assert len(batches) < len(acked)  # a point in time: later writes are not in it
    return done
