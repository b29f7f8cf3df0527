"""On-demand backups (SPEC §6–7) against a real engine and a LocalStore."""

import os
import threading
import time

import pytest
from backup_helpers import backup_under_load, read_backup_items

from engine import (
    BackupInUseException,
    BackupNotFoundException,
    Engine,
    LimitExceededException,
    TableInUseException,
    TableNotFoundException,
    ValidationException,
)
from engine.backup import package
from engine.backup.manifest import manifest_key


@pytest.fixture
def eng(tmp_path):
    engine = Engine.open(tmp_path / "data", wal_segment_bytes=1 << 16, map_size_bytes=1 << 30,
                         max_backups_in_flight=2)
    yield engine
    engine.close()


@pytest.fixture
def paused_packaging():
    """Hold every partition at the packaging step until the test lets it go."""
    release = threading.Event()
    package.corrupt_packaged_object_hook = lambda path: release.wait(30)
    yield release
    release.set()
    package.corrupt_packaged_object_hook = None


def fill(engine, name, count, partitions=4):
    engine.create_table(name, partition_key=("pk", "S"), sort_key=("sk", "N"), partitions=partitions)
    engine.table(name).batch_write(puts=[{"pk": f"u{n % 50}", "sk": n, "v": "x" * (n % 40)}
                                         for n in range(count)])


def test_backup_of_missing_table_creates_no_record(eng):
    with pytest.raises(TableNotFoundException, match="Table not found: Music"):
        eng.create_backup("Music", "MusicBackup1")
    assert eng.list_backups() == ([], None)


def test_backup_becomes_available_with_every_item(eng):
    fill(eng, "Music", 2000)
    started = eng.create_backup("Music", "MusicBackup1")
    assert started["status"] == "CREATING" and started["backup_id"].endswith("-local")
    done = eng.wait_for_backup(started["backup_id"])
    assert done["status"] == "AVAILABLE", done["failure_reason"]
    assert done["item_count"] == 2000 and done["size_bytes"] > 0
    keys = sorted(info.key for info in eng.backup_store.list(started["backup_id"] + "/"))
    assert manifest_key("", started["backup_id"]) in keys and len(keys) == 5
    items = read_backup_items(eng.backup_store, started["backup_id"])
    assert sorted((i["pk"], i["sk"]) for i in items) == sorted(
        (i["pk"], i["sk"]) for i in eng.table("Music").iter_items())


def test_writes_during_backup_keep_acknowledged_prefix(eng):
    fill(eng, "Music", 500)
    backup_under_load(eng, "Music")


def test_limits_and_table_in_use(eng, paused_packaging):
    fill(eng, "Music", 100, partitions=2)
    fill(eng, "Songs", 100, partitions=2)
    fill(eng, "Other", 100, partitions=2)
    first = eng.create_backup("Music", "backup-1")
    with pytest.raises(BackupInUseException, match="one backup per table"):
        eng.create_backup("Music", "backup-2")
    with pytest.raises(TableInUseException, match="being backed up"):
        eng.delete_table("Music")
    with pytest.raises(BackupInUseException):
        eng.delete_backup(first["backup_id"])
    eng.create_backup("Songs", "songs-1")
    with pytest.raises(LimitExceededException, match="limit is 2"):
        eng.create_backup("Other", "other-1")
    progress = eng.describe_backup(first["backup_id"])
    assert progress["status"] == "CREATING" and len(progress["partitions"]) == 2
    paused_packaging.set()
    assert eng.wait_for_backup(first["backup_id"])["status"] == "AVAILABLE"
    eng.delete_table("Music")  # allowed once the backup is done


def test_corrupted_package_is_caught_and_re_exported(eng):
    fill(eng, "Music", 300, partitions=2)
    corrupted = []

    def flip_first(path):
        if not corrupted:
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0x40
            path.write_bytes(bytes(data))
            corrupted.append(path)

    package.corrupt_packaged_object_hook = flip_first
    try:
        backup = eng.create_backup("Music", "Flip")
        done = eng.wait_for_backup(backup["backup_id"])
    finally:
        package.corrupt_packaged_object_hook = None
    assert corrupted and done["status"] == "AVAILABLE"
    assert len(read_backup_items(eng.backup_store, backup["backup_id"])) == 300


def test_persistent_corruption_fails_with_reason(eng):
    fill(eng, "Music", 50, partitions=1)

    def always_flip(path):
        data = bytearray(path.read_bytes())
        data[-20] ^= 0x01
        path.write_bytes(bytes(data))

    package.corrupt_packaged_object_hook = always_flip
    try:
        backup = eng.create_backup("Music", "Broken")
        done = eng.wait_for_backup(backup["backup_id"])
    finally:
        package.corrupt_packaged_object_hook = None
    assert done["status"] == "FAILED"
    assert "failed verification 3 times" in done["failure_reason"]
    assert list(eng.backup_store.list(backup["backup_id"] + "/")) == []
    assert eng.table("Music").stats()[0] == 50  # the table is unaffected


def test_list_describe_delete(eng):
    fill(eng, "Music", 10, partitions=1)
    fill(eng, "Songs", 10, partitions=1)
    ids = []
    for table in ("Music", "Songs", "Music"):
        backup = eng.create_backup(table, f"{table}-backup")
        eng.wait_for_backup(backup["backup_id"])
        ids.append(backup["backup_id"])
    listed, last = eng.list_backups()
    assert [b["backup_id"] for b in listed] == ids and last is None
    music, _ = eng.list_backups(table="Music")
    assert [b["backup_id"] for b in music] == [ids[0], ids[2]]
    page, last = eng.list_backups(limit=2)
    assert [b["backup_id"] for b in page] == ids[:2] and last == ids[1]
    page, last = eng.list_backups(limit=2, exclusive_start=last)
    assert [b["backup_id"] for b in page] == ids[2:] and last is None
    assert eng.list_backups(start=time.time() + 10) == ([], None)
    assert eng.delete_backup(ids[0])["status"] == "DELETING"
    with pytest.raises(BackupNotFoundException):
        eng.describe_backup(ids[0])
    assert list(eng.backup_store.list(ids[0] + "/")) == []
    with pytest.raises(ValidationException, match="backup name"):
        eng.create_backup("Music", "x")


def test_catalog_survives_restart(tmp_path):
    with Engine.open(tmp_path / "d") as engine:
        fill(engine, "Music", 20, partitions=2)
        backup_id = engine.create_backup("Music", "Keep")["backup_id"]
        engine.wait_for_backup(backup_id)
    with Engine.open(tmp_path / "d") as engine:
        assert engine.describe_backup(backup_id)["status"] == "AVAILABLE"


def test_default_zstd_threads_fill_the_cores_without_oversubscribing():
    from engine.backup.manager import default_zstd_threads

    cores = len(os.sched_getaffinity(0))
    assert default_zstd_threads(1) == cores
    for parallelism in range(1, 2 * cores + 2):
        threads = default_zstd_threads(parallelism)
        assert threads >= 1
        assert threads * parallelism <= max(cores, parallelism)


def test_backup_objects_carry_no_stale_page_bytes(eng, tmp_path):
    """The export's page free space is zeroed before packaging (engine.pagegaps).

    LMDB's copy leaves stale bytes there only once its 2 MiB of write buffers wrap, so
    each partition needs a few MiB, written in shuffled key order.
    """
    from engine._pagegaps import clear_page_gaps

    from engine.backup.manifest import BackupManifest
    from engine.backup.unpack import unpack_partition

    eng.create_table("Shuffled", partition_key=("pk", "S"), partitions=2)
    eng.table("Shuffled").batch_write(puts=[{"pk": f"{n * 7919 % 40009:05d}", "v": "x" * 150}
                                            for n in range(40009)])
    done = eng.wait_for_backup(eng.create_backup("Shuffled", "shuffled")["backup_id"])
    assert done["status"] == "AVAILABLE", done["failure_reason"]
    key = manifest_key("", done["backup_id"])
    for entry in BackupManifest.from_json(eng.backup_store.get(key), key).partitions:
        with eng.backup_store.open_reader(entry.object_key) as reader:
            unpack_partition(reader, tmp_path / entry.partition_id, entry,
                             source_name=entry.object_key, fsync=False)
        data = bytearray((tmp_path / entry.partition_id / "data.mdb").read_bytes())
        original = bytes(data)
        assert clear_page_gaps(data, 4096) > 0  # there is free space, and it is all zero
        assert bytes(data) == original
