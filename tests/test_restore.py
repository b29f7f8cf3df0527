"""RestoreTableFromBackup (SPEC §8): round trips, repartitioning, bad backups, refusals,
in-use marks, interruption (close and kill -9) and resume, and a restore from a real S3
server."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import google_crc32c
import lmdb
import pytest
from restore_helpers import (
    backup_of,
    craft_object,
    fill_table,
    load_manifest,
    object_members,
    replace_partition_object,
)

from engine import (
    BackupInUseException,
    BackupNotFoundException,
    CorruptionError,
    Engine,
    TableAlreadyExistsException,
    ValidationException,
)
from engine.backup import package, restore
from engine.backup.manifest import PartitionManifest, crc32c_hex, manifest_key
from engine.backup.restore import table_logical_checksum
from engine.table import decode_item


@pytest.fixture
def eng(tmp_path):
    engine = Engine.open(tmp_path / "data", wal_segment_bytes=1 << 16, map_size_bytes=1 << 28)
    yield engine
    engine.close()


def restored(engine, backup_id, target, **overrides) -> dict:
    started = engine.restore_table(backup_id, target, **overrides)
    assert started["status"] == "CREATING" and started["name"] == target
    return engine.wait_for_table(target, timeout=60)


def file_size_and_crc32c(path: Path) -> tuple[int, str]:
    """A file's size and CRC32C as a manifest records them (``data_size_bytes``,
    ``data_crc32c``)."""
    data = path.read_bytes()
    return len(data), crc32c_hex(google_crc32c.value(data))


def assert_same_table(engine, source: str, target: str) -> None:
    assert list(engine.table(target).iter_items()) == list(engine.table(source).iter_items())
    assert table_logical_checksum(engine.table(target)) == table_logical_checksum(
        engine.table(source))


# ---------------------------------------------------------------------- round trips


@pytest.mark.parametrize("partitioning, source_parts, target_parts", [
    ("hash", 1, None), ("hash", 1, 5), ("hash", 4, None), ("hash", 4, 4), ("hash", 16, 3),
    ("hash", 3, 16), ("range", 1, None), ("range", 4, None), ("range", 16, 1), ("range", 3, 7),
])
def test_round_trip_every_type(eng, partitioning, source_parts, target_parts):
    fill_table(eng, "Source", partitions=source_parts, partitioning=partitioning)
    backup_id = backup_of(eng, "Source")
    eng.table("Source").put_item({"pk": "user-001", "sk": 10_000})  # after the backup
    eng.table("Source").delete_item({"pk": "user-001", "sk": 10_000})
    done = restored(eng, backup_id, "Target", partitions=target_parts)
    assert done["status"] == "ACTIVE", done.get("failure_reason")
    assert done["partitions"] == (target_parts or source_parts)
    assert done["partitioning"] == partitioning and done["item_count"] == 240
    assert_same_table(eng, "Source", "Target")
    # The restored table takes writes and survives a reopen.
    eng.table("Target").put_item({"pk": "user-999", "sk": 1, "v": "new"})
    assert eng.table("Target").get_item({"pk": "user-999", "sk": 1})["v"] == "new"


def test_range_restore_with_explicit_split_points(eng):
    fill_table(eng, "Source", partitions=2, partitioning="range")
    backup_id = backup_of(eng, "Source")
    done = restored(eng, backup_id, "Target", split_points=["user-005", "user-020", "user-030"])
    assert done["status"] == "ACTIVE" and done["partitions"] == 4
    assert [i["start"] for i in done["partition_map"]][0] == ""
    assert_same_table(eng, "Source", "Target")
    counts = [p.stats()[0] for p in eng.table("Target").partitions]
    assert all(counts) and sum(counts) == 240  # every item exactly once, all used
    with pytest.raises(ValidationException, match="split_points apply to range"):
        fill_table(eng, "Hashed", partitions=2)
        eng.restore_table(backup_of(eng, "Hashed"), "Other", split_points=["a"])


def test_same_layout_is_a_direct_import_and_survives_reopen(tmp_path):
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as eng:
        fill_table(eng, "Source", partitions=4)
        backup_id = backup_of(eng, "Source")
        assert restored(eng, backup_id, "Target", sync="always")["status"] == "ACTIVE"
        description = eng.describe_table("Target")
        assert description["sync"] == "always" and description["restore"]["backup_id"] == backup_id
        table_dir = tmp_path / "data" / "tables" / description["table_id"]
        assert (table_dir / "p0002" / "restored-from.json").exists()
        expected = list(eng.table("Source").iter_items())
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as eng:
        assert list(eng.table("Target").iter_items()) == expected
        eng.table("Target").put_item({"pk": "after", "sk": 1})
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as eng:
        assert eng.table("Target").get_item({"pk": "after", "sk": 1}) == {"pk": "after", "sk": 1}


# ---------------------------------------------------------------------- refusals, in use


@pytest.fixture
def slow_restore(monkeypatch):
    """Hold every restore after its first download until the test lets it go."""
    release = threading.Event()
    original = restore.RestoreJob._check_logical

    def held(self, entry, env_dir):
        release.wait(30)
        return original(self, entry, env_dir)

    monkeypatch.setattr(restore.RestoreJob, "_check_logical", held)
    yield release
    release.set()


def test_refusals(eng):
    fill_table(eng, "Source", partitions=2)
    backup_id = backup_of(eng, "Source")
    with pytest.raises(TableAlreadyExistsException, match="Source"):
        eng.restore_table(backup_id, "Source")
    with pytest.raises(BackupNotFoundException):
        eng.restore_table("01234567890123-deadbeef-local", "Target")
    release = threading.Event()
    package.corrupt_packaged_object_hook = lambda path: release.wait(30)
    try:
        creating = eng.create_backup("Source", "second")["backup_id"]
        with pytest.raises(BackupInUseException, match="CREATING, not AVAILABLE"):
            eng.restore_table(creating, "Target")
    finally:
        release.set()
        package.corrupt_packaged_object_hook = None
    eng.wait_for_backup(creating)
    assert eng.list_tables() == ["Source"]


def test_backup_in_use_while_restoring(eng, slow_restore):
    fill_table(eng, "Source", partitions=2)
    backup_id = backup_of(eng, "Source")
    eng.restore_table(backup_id, "Target")
    described = eng.describe_backup(backup_id)
    assert described["restores_in_progress"] == ["Target"]
    assert described["restore_progress"]["Target"]["partitions_total"] == 2
    assert eng.describe_table("Target")["status"] == "CREATING"
    with pytest.raises(BackupInUseException, match="restore to table Target"):
        eng.delete_backup(backup_id)
    with pytest.raises(TableAlreadyExistsException):
        eng.restore_table(backup_id, "Target")
    slow_restore.set()
    assert eng.wait_for_table("Target")["status"] == "ACTIVE"
    assert eng.describe_backup(backup_id)["restores_in_progress"] == []
    eng.delete_backup(backup_id)  # allowed again


def test_interrupted_restore_resumes_on_reopen(tmp_path, slow_restore):
    eng = Engine.open(tmp_path / "data", map_size_bytes=1 << 28)
    fill_table(eng, "Source", partitions=3)
    backup_id = backup_of(eng, "Source")
    expected = list(eng.table("Source").iter_items())
    eng.restore_table(backup_id, "Target", partitions=2)
    closer = threading.Thread(target=eng.close)
    closer.start()
    slow_restore.set()
    closer.join(30)
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as again:
        done = again.wait_for_table("Target", timeout=60)
        assert done["status"] == "ACTIVE" and done["restore"]["resumed"] >= 1
        assert list(again.table("Target").iter_items()) == expected
        assert again.describe_backup(backup_id)["restores_in_progress"] == []


def test_a_shutdown_keeps_the_finished_partitions_of_a_restore(tmp_path, monkeypatch):
    """Engine.close() stops a same-layout restore midway; the next open keeps what was
    finished (p0000, p0002) and redoes only p0001, which the shutdown interrupted."""
    eng = Engine.open(tmp_path / "data", map_size_bytes=1 << 28)
    fill_table(eng, "Source", partitions=3)
    backup_id = backup_of(eng, "Source")
    expected = list(eng.table("Source").iter_items())
    ready, release, cancel_asked = threading.Event(), threading.Event(), threading.Event()
    original = restore.RestoreJob._check_logical
    original_cancel = restore.RestoreJob.cancel

    def cancel(self):
        original_cancel(self)
        cancel_asked.set()

    def held(self, entry, env_dir):
        if entry.partition_id == "p0001":
            others = [self.table_dir / pid / "restored-from.json" for pid in ("p0000", "p0002")]
            while not all(marker.exists() for marker in others):
                time.sleep(0.01)
            ready.set()
            release.wait(30)
            self._check_cancel()  # the shutdown reaches it here
        return original(self, entry, env_dir)

    monkeypatch.setattr(restore.RestoreJob, "_check_logical", held)
    monkeypatch.setattr(restore.RestoreJob, "cancel", cancel)
    eng.restore_table(backup_id, "Target")
    assert ready.wait(30)
    closer = threading.Thread(target=eng.close)
    closer.start()
    assert cancel_asked.wait(30), "close() did not ask the restore to stop"
    release.set()
    closer.join(30)
    monkeypatch.setattr(restore.RestoreJob, "_check_logical", original)
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as again:
        done = again.wait_for_table("Target", timeout=60)
        assert done["status"] == "ACTIVE" and done["restore"]["partitions_kept"] == 2
        assert list(again.table("Target").iter_items()) == expected


def test_interrupted_restore_of_a_deleted_backup_fails(tmp_path, slow_restore):
    eng = Engine.open(tmp_path / "data", map_size_bytes=1 << 28)
    fill_table(eng, "Source", partitions=2)
    backup_id = backup_of(eng, "Source")
    eng.restore_table(backup_id, "Target")
    closer = threading.Thread(target=eng.close)
    closer.start()
    slow_restore.set()
    closer.join(30)
    # As if the backup went while the engine was down (e.g. deleted by the offline tool).
    shutil.rmtree(tmp_path / "backups" / backup_id)
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as again:
        done = again.describe_table("Target")
        assert done["status"] == "FAILED" and "no manifest" in done["failure_reason"]
        again.delete_table("Target")
        assert again.list_tables() == ["Source"]


# ---------------------------------------------------------------------- bad backups


def _flip(store, key):
    path = store._path(key)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x40
    open(path, "wb").write(bytes(data))


def _truncate(store, key):
    path = store._path(key)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


@pytest.mark.parametrize("damage, message", [
    ("flip", "does not match its checksum"),
    ("truncate", "truncated|does not match its checksum"),
    ("missing", "partition object is missing"),
    ("edited_manifest", "logical_checksum"),
    ("absolute", "absolute path"),
    ("dotdot", r"'\.\.'"),
    ("oversize", "larger than the .* bytes the manifest says"),
    ("flip_resealed", "object is truncated|malformed zstd|zstd decompression failed|CRC32C"),
])
def test_bad_backup_fails_the_restore_naming_the_partition(eng, tmp_path, damage, message):
    fill_table(eng, "Source", partitions=3)
    backup_id = backup_of(eng, "Source")
    store = eng.backup_store
    manifest = load_manifest(store, backup_id)
    entry = manifest.partitions[1]
    key = entry.object_key
    if damage == "flip":
        _flip(store, key)
    elif damage == "truncate":
        _truncate(store, key)
    elif damage == "missing":
        store.delete(key)
    elif damage == "edited_manifest":
        parts = list(manifest.partitions)
        parts[1] = dataclasses.replace(entry, logical_checksum="0" * 64)
        store.put(manifest_key("", backup_id),
                  dataclasses.replace(manifest, partitions=parts).to_json())
    else:
        partition_json, data = object_members(store, key)
        members = {
            "absolute": [("partition.json", partition_json), (str(tmp_path / "evil.mdb"), data)],
            "dotdot": [("partition.json", partition_json), ("../../../evil.mdb", data)],
            "oversize": [("partition.json", partition_json), ("data.mdb", data + b"\0" * 8192)],
        }.get(damage)
        if members is not None:
            replace_partition_object(store, backup_id, 1, craft_object(members))
        else:  # a flipped byte with the manifest re-sealed to match: zstd/tar must catch it
            blob = bytearray(store.get(key))
            blob[len(blob) // 2] ^= 0x40
            replace_partition_object(store, backup_id, 1, bytes(blob))
    before = sorted(p.name for p in tmp_path.iterdir())
    done = restored(eng, backup_id, "Target")
    assert done["status"] == "FAILED"
    assert entry.partition_id in done["failure_reason"]
    assert re.search(message, done["failure_reason"]), done["failure_reason"]
    table_dir = tmp_path / "data" / "tables" / done["table_id"]
    assert not table_dir.exists()  # everything it wrote is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing outside it
    assert not (tmp_path / "evil.mdb").exists()
    assert eng.describe_backup(backup_id)["restores_in_progress"] == []
    eng.delete_table("Target")
    assert eng.list_tables() == ["Source"]


def test_missing_manifest_is_refused_at_once(eng):
    fill_table(eng, "Source", partitions=2)
    backup_id = backup_of(eng, "Source")
    eng.backup_store.delete(manifest_key("", backup_id))
    with pytest.raises(CorruptionError, match="has no manifest"):
        eng.restore_table(backup_id, "Target")
    assert eng.list_tables() == ["Source"]


def test_a_restore_that_cannot_fit_the_volume_is_refused_before_writing(eng, monkeypatch):
    from engine import volumes

    fill_table(eng, "Source", partitions=2)
    backup_id = backup_of(eng, "Source")
    monkeypatch.setattr(volumes, "free_bytes", lambda directory: 1 << 20)  # 1 MiB free
    with pytest.raises(ValidationException, match="nothing was written"):
        eng.restore_table(backup_id, "Target")
    assert eng.list_tables() == ["Source"]


def test_a_manifest_declaring_more_than_its_objects_inflate_to_is_refused(eng):
    fill_table(eng, "Source", partitions=2)
    backup_id = backup_of(eng, "Source")
    manifest = load_manifest(eng.backup_store, backup_id)
    first = manifest.partitions[0]
    bomb = dataclasses.replace(first, data_size_bytes=first.object_size_bytes * 40_000)
    lying = dataclasses.replace(manifest, partitions=(bomb, *manifest.partitions[1:]))
    eng.backup_store.put(manifest_key("", backup_id), lying.to_json())
    with pytest.raises(CorruptionError, match="could inflate to"):
        eng.restore_table(backup_id, "Target")
    assert eng.list_tables() == ["Source"]


# ---------------------------------------------------------------------- standard tools


def test_partition_object_opens_with_zstd_tar_and_plain_lmdb(eng, tmp_path):
    """RESTORE_BY_HAND.md on a real backup: the zstd CLI, tarfile and py-lmdb only."""
    zstd = shutil.which("zstd")
    if zstd is None:
        pytest.skip("the zstd command is not installed (apt-get install zstd): this test is the "
                    "README's restore-by-hand procedure, which needs the real CLI")
    fill_table(eng, "Source", partitions=2)
    backup_id = backup_of(eng, "Source")
    entry = load_manifest(eng.backup_store, backup_id).partitions[0]
    object_path = tmp_path / "p.tar.zst"
    eng.backup_store.download(entry.object_key, str(object_path))
    subprocess.run([zstd, "-d", "-q", str(object_path), "-o", str(tmp_path / "p.tar")], check=True)
    with tarfile.open(tmp_path / "p.tar") as tar:
        tar.extractall(tmp_path / "by-hand", filter="data")
    env = lmdb.open(str(tmp_path / "by-hand"), readonly=True, lock=False, max_dbs=4)
    with env.begin(db=env.open_db(b"items", create=False)) as txn:
        values = [value for _, value in txn.cursor()]
    env.close()
    assert len(values) == entry.item_count > 0
    on_disk = {(i["pk"], i["sk"]) for i in map(decode_item, values)}
    in_table = {(i["pk"], i["sk"]) for i in eng.table("Source").iter_items()}
    assert on_disk <= in_table


# ---------------------------------------------------------------------- S3


def test_restore_from_rclone_s3(tmp_path, rclone_store):
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28, backup_store=rclone_store) as eng:
        fill_table(eng, "Source", partitions=3)
        backup_id = backup_of(eng, "Source")
        for target, parts in (("Same", None), ("Split", 5)):
            done = restored(eng, backup_id, target, partitions=parts)
            assert done["status"] == "ACTIVE", done.get("failure_reason")
            assert_same_table(eng, "Source", target)


_CRASH_CHILD = """
import sys, threading, time
sys.path.insert(0, sys.argv[2])
from restore_helpers import backup_of, fill_table
from engine import Engine
from engine.backup import restore

said = threading.Lock()
def park():
    if said.acquire(blocking=False):  # partitions park in parallel: one line, not interleaved
        sys.stdout.write("restoring\\n")
        sys.stdout.flush()
    time.sleep(3600)

if sys.argv[3] == "same-layout":  # p0001 parked before its check once the others are in
    original = restore.RestoreJob._check_logical
    def parked(self, entry, env_dir):
        if entry.partition_id != "p0001":
            return original(self, entry, env_dir)
        others = [self.table_dir / pid / "restored-from.json" for pid in ("p0000", "p0002")]
        while not all(marker.exists() for marker in others):
            time.sleep(0.01)
        park()
    restore.RestoreJob._check_logical = parked
else:  # into other partitions: parked after the first committed transaction of a target
    restore.ITEMS_PER_TXN = 10
    RealRangeCopy = restore.RangeCopy
    class ParkedRangeCopy(RealRangeCopy):
        def step(self, max_items):
            copied = super().step(max_items)
            park()
            return copied
    restore.RangeCopy = ParkedRangeCopy
engine = Engine.open(sys.argv[1], map_size_bytes=1 << 28)
fill_table(engine, "Source", partitions=3)
backup_of(engine, "Source")
engine.restore_table(engine.list_backups()[0][0]["backup_id"], "Target",
                     partitions=None if sys.argv[3] == "same-layout" else 5)
time.sleep(3600)
"""


def _kill_restore_midway(tmp_path, layout: str) -> None:
    tests_dir = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=str(tests_dir.parent))
    child = subprocess.Popen([sys.executable, "-c", _CRASH_CHILD, str(tmp_path / "data"),
                              str(tests_dir), layout], stdout=subprocess.PIPE, text=True,
                             env=env)
    try:
        assert child.stdout.readline().strip() == "restoring"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_finished_partition_damaged_while_down_is_redone(tmp_path, damage):
    _kill_restore_midway(tmp_path, "same-layout")
    [kept] = [path for path in (tmp_path / "data" / "tables").glob("*/p0002/lmdb/data.mdb")
              if (path.parent.parent / "restored-from.json").exists()]
    marker = kept.parent.parent / "restored-from.json"
    recorded = PartitionManifest.from_json(marker.read_bytes(), str(marker), mode="in_archive")
    assert file_size_and_crc32c(kept) == (recorded.data_size_bytes, recorded.data_crc32c)
    with open(kept, "r+b") as file:
        if damage == "flip":
            file.seek(5000)
            byte = file.read(1)
            file.seek(5000)
            file.write(bytes([byte[0] ^ 0x01]))
        else:
            file.truncate(kept.stat().st_size - 4096)
    assert file_size_and_crc32c(kept) != (recorded.data_size_bytes, recorded.data_crc32c)
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as eng:
        done = eng.wait_for_table("Target", timeout=60)
        # p0000 kept, p0002 (damaged) redone with p0001 (unfinished at the kill).
        assert done["status"] == "ACTIVE" and done["restore"]["partitions_kept"] == 1
        assert_same_table(eng, "Source", "Target")
        # The damage is gone: data.mdb holds the backup's bytes again (an inode number
        # would prove nothing, the file system may hand the old one out again).
        redone = kept.parent.parent.parent / "p0002"
        assert file_size_and_crc32c(redone / "lmdb" / "data.mdb") == (
            recorded.data_size_bytes, recorded.data_crc32c)


@pytest.mark.parametrize("layout", ["same-layout", "into-5-partitions"])
def test_kill_9_during_restore_resumes_on_reopen(tmp_path, layout):
    _kill_restore_midway(tmp_path, layout)
    tables = tmp_path / "data" / "tables"
    finished = {path.parent.parent.name: file_size_and_crc32c(path)
                for path in tables.glob("*/*/lmdb/data.mdb")
                if (path.parent.parent / "restored-from.json").exists()}
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as eng:
        done = eng.wait_for_table("Target", timeout=60)
        assert done["status"] == "ACTIVE" and done["restore"]["resumed"] == 1
        assert done["partitions"] == (3 if layout == "same-layout" else 5)
        assert_same_table(eng, "Source", "Target")
        if layout == "same-layout":  # the two partitions finished before the kill stay
            assert sorted(finished) == ["p0000", "p0002"]
            assert done["restore"]["partitions_kept"] == 2
            target_dir = eng.table_directory("Target")
            for pid, size_and_crc in finished.items():  # kept as they were, not rewritten
                assert file_size_and_crc32c(target_dir / pid / "lmdb" / "data.mdb") == size_and_crc
        else:  # a repartition's targets depend on every source: all redone
            assert "partitions_kept" not in done["restore"]
        assert eng.describe_backup(eng.list_backups()[0][0]["backup_id"])[
            "restores_in_progress"] == []
