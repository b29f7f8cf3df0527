"""Physical copy + WAL catch-up (SPEC §5): the copy holds exactly the writes up to the target."""

import threading

import lmdb
import pytest

from engine.errors import CorruptionError
from engine.partition import ITEMS_DB, OP_PUT, Partition, open_environment, read_applied_lsn


def put(partition, key, value):
    return partition.write(lambda get: ([(OP_PUT, key, value)], None))


def copy_items(path):
    env, items, meta = open_environment(path)
    with env.begin(db=items) as txn:
        result = dict(txn.cursor())
    lsn = read_applied_lsn(env, meta)
    env.close()
    return result, lsn


@pytest.fixture
def partition(tmp_path):
    p = Partition(tmp_path / "p", partition_id="p0000", table_name="T", segment_bytes=4096,
                  map_size=1 << 28)
    yield p
    p.close()


def test_snapshot_copy_is_exact_at_its_lsn(partition, tmp_path):
    for n in range(100):
        put(partition, b"k%03d" % n, b"v%d" % n)
    with partition.snapshot() as snapshot:
        lsn = snapshot.lsn
        for n in range(100, 200):
            put(partition, b"k%03d" % n, b"late")
        reached = partition.export_copy(tmp_path / "copy", target_lsn=lsn, snapshot=snapshot)
    items, copied_lsn = copy_items(tmp_path / "copy")
    assert reached == lsn == copied_lsn == 100
    assert len(items) == 100 and items[b"k099"] == b"v99"


def test_catch_up_applies_wal_records_written_after_the_copy(partition, tmp_path):
    for n in range(50):
        put(partition, b"a%03d" % n, b"x")
    snapshot = partition.snapshot()
    for n in range(50, 300):  # spans several WAL segments (4 KiB each)
        put(partition, b"a%03d" % n, b"y" * 40)
    target = partition.applied_lsn - 10
    assert partition.checkpoint() == 0  # the snapshot holds the segments it needs
    reached = partition.export_copy(tmp_path / "copy", target_lsn=target, snapshot=snapshot)
    snapshot.release()
    for n in range(300, 400):
        put(partition, b"a%03d" % n, b"y" * 40)
    partition.checkpoint()
    assert partition.wal.first_lsn > 300  # released: the old segments went
    items, copied_lsn = copy_items(tmp_path / "copy")
    assert reached == copied_lsn == target == 290
    assert len(items) == 290 and b"a289" in items and b"a290" not in items


def test_copy_while_writers_run(partition, tmp_path):
    stop = threading.Event()
    written = []

    def writer():
        n = 0
        while not stop.is_set():
            put(partition, b"w%06d" % n, b"z" * 100)
            written.append(n)
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 200:
            pass
        reached = partition.export_copy(tmp_path / "copy")
    finally:
        stop.set()
        thread.join()
    items, copied_lsn = copy_items(tmp_path / "copy")
    assert copied_lsn == reached == len(items)
    assert sorted(items) == [b"w%06d" % n for n in range(reached)]  # a prefix, nothing torn


def test_copy_past_target_is_refused(partition, tmp_path):
    put(partition, b"a", b"1")
    put(partition, b"b", b"2")
    with pytest.raises(CorruptionError, match="past the target"):
        partition.export_copy(tmp_path / "copy", target_lsn=1)
    assert not (tmp_path / "copy").exists()


def test_replay_after_unsynced_lmdb(tmp_path):
    """LMDB commits without fsync; the WAL alone restores what a lost LMDB commit held."""
    p = Partition(tmp_path / "p", partition_id="p0000", table_name="T", map_size=1 << 28)
    for n in range(20):
        put(p, b"r%02d" % n, b"v")
    p.wal.close()
    p.env.close()  # no sync, no checkpoint: as if the process died
    # Roll the environment back: drop applied_lsn so replay must redo everything.
    env = lmdb.open(str(tmp_path / "p" / "lmdb"), max_dbs=4)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(ITEMS_DB, txn=txn), delete=False)
        txn.put(b"applied_lsn", (0).to_bytes(8, "big"), db=env.open_db(b"meta", txn=txn))
    env.close()
    p = Partition(tmp_path / "p", partition_id="p0000", table_name="T", map_size=1 << 28)
    assert p.applied_lsn == 20 and p.stats()[0] == 20
    p.close()
