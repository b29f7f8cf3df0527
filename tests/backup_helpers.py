"""Read a backup straight from its store (a direct import of the partition objects), for
tests that check what a backup holds without going through a restore; and the
consistency-under-load check that local and S3 backups share."""

from __future__ import annotations

import tempfile
import threading
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


def backup_under_load(eng, table_name: str, *, writers: int = 3, timeout: float = 120,
                      batches_before: int = 30) -> dict:
    """Back ``table_name`` up while ``writers`` threads keep batch-writing, then check the
    backup is the point in time of ``create_backup``: every batch acknowledged before it
    was called is present, no batch is partly present, and every batch begun after it
    returned is missing.

    Each batch is 5 items of one partition key — one WAL record, all or nothing. The
    backup starts only once ``batches_before`` batches were acknowledged, and the writers
    stop only once each of them has begun a batch after ``create_backup`` returned, so
    every check has something to check. A writer's exception is re-raised here. Returns
    the finished backup's description.
    """
    table = eng.table(table_name)
    lock = threading.Lock()
    acked: list[tuple[int, int]] = []
    begun_after: set[tuple[int, int]] = set()  # begun once create_backup had returned
    writers_after: set[int] = set()
    backup_returned = threading.Event()
    enough_before, enough_after, stop = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        n = 0
        try:
            while not stop.is_set():
                after = backup_returned.is_set()
                table.batch_write(puts=[{"pk": f"w{worker}-{n}", "sk": i} for i in range(5)])
                with lock:
                    acked.append((worker, n))
                    if after:
                        begun_after.add((worker, n))
                        writers_after.add(worker)
                    if len(acked) >= batches_before:
                        enough_before.set()
                    if len(writers_after) == writers:
                        enough_after.set()
                n += 1
        except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(err)
            enough_before.set()
            enough_after.set()

    def check_writers() -> None:
        if errors:
            raise AssertionError(f"a writer thread failed: {errors[0]!r}") from errors[0]

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    try:
        assert enough_before.wait(timeout), "the writers acknowledged too few batches"
        check_writers()
        with lock:
            before = set(acked)
        backup_id = eng.create_backup(table_name, "UnderLoad")["backup_id"]
        backup_returned.set()
        assert enough_after.wait(timeout), "the writers wrote nothing after create_backup"
        check_writers()
        done = eng.wait_for_backup(backup_id, timeout=timeout)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    check_writers()
    assert done["status"] == "AVAILABLE", done["failure_reason"]
    batches: dict[str, set] = {}
    for item in read_backup_items(eng.backup_store, backup_id):
        if item["pk"].startswith("w"):
            batches.setdefault(item["pk"], set()).add(item["sk"])
    assert len(before) >= batches_before and len(begun_after) >= writers
    for worker, n in before:
        assert batches.get(f"w{worker}-{n}") == set(range(5)), "acknowledged write missing"
    assert all(sks == set(range(5)) for sks in batches.values()), "a batch is partly present"
    for worker, n in begun_after:  # a point in time: later writes are not in it
        assert f"w{worker}-{n}" not in batches, "a write begun after create_backup is in it"
    return done
