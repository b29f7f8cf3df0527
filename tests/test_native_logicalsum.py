"""engine._logicalsum (the C walk of a closed environment) against the py-lmdb walk."""

from __future__ import annotations

import itertools
import random

import lmdb
import pytest
from engine._logicalsum import ItemFramer

from engine.backup.logical import logical_checksum, open_readonly
from engine.errors import CorruptionError, StorageError


def make_env(path, items):
    env = lmdb.open(str(path), subdir=True, max_dbs=4, map_size=1 << 28)
    db = env.open_db(b"items")
    with env.begin(write=True, db=db) as txn:
        for key, value in items:
            txn.put(key, value)
    env.close()
    return path


def py_lmdb_walk(path):
    env = open_readonly(path)
    try:
        return logical_checksum(env)
    finally:
        env.close()


@pytest.mark.parametrize("count", [0, 1, 5000])
def test_c_walk_equals_py_lmdb_walk(tmp_path, count):
    rnd = random.Random(count)
    items = [(rnd.randbytes(rnd.randint(1, 100)), rnd.randbytes(rnd.randint(0, 3000)))
             for _ in range(count)]
    path = make_env(tmp_path / "env", items)
    assert logical_checksum(path) == py_lmdb_walk(path)
    assert logical_checksum(path)[0] == len(dict(items))


def test_items_larger_than_the_frame_buffer(tmp_path):
    items = [(b"a", b"x" * 10), (b"b", b"y" * (9 << 20)), (b"c", b"")]  # 9 MiB > 4 MiB buffer
    path = make_env(tmp_path / "env", items)
    assert logical_checksum(path) == py_lmdb_walk(path)
    assert logical_checksum(path)[0] == 3


def test_missing_items_database_and_garbage(tmp_path):
    env = lmdb.open(str(tmp_path / "empty"), subdir=True, max_dbs=4)
    env.open_db(b"meta")
    env.close()
    with pytest.raises(CorruptionError, match="no 'items' database"):
        logical_checksum(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "data.mdb").write_bytes(b"\x07" * 8192)
    # Not an LMDB file: MDB_INVALID, corruption in the one mapping (engine.errors.lmdb_error).
    with pytest.raises(CorruptionError, match=r"opening the environment failed: MDB_INVALID.*"
                                              r"\(file .*/junk\)"):
        logical_checksum(tmp_path / "junk")


def test_an_unreadable_environment_is_reported_as_corruption_naming_the_reason(tmp_path):
    # No data.mdb at all: ENOENT, a StorageError from the framer, which the checksum (used
    # by verify and restore to vouch for a copy) reports as corruption, keeping the reason.
    (tmp_path / "nothing").mkdir()
    with pytest.raises(CorruptionError, match=r"cannot read the environment: opening the "
                                              r"environment failed: No such file or directory"
                                              r".*\(file .*/nothing\)") as caught:
        logical_checksum(tmp_path / "nothing")
    assert isinstance(caught.value.__cause__, StorageError)


def test_the_native_framer_raises_this_packages_errors(tmp_path):
    env = lmdb.open(str(tmp_path / "empty"), subdir=True, max_dbs=4)
    env.open_db(b"meta")
    env.close()
    with pytest.raises(CorruptionError, match=r"no 'items' database \(file .*/empty\)"):
        ItemFramer(tmp_path / "empty")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(StorageError, match=r"No such file or directory"):
        ItemFramer(tmp_path / "nothing")
    framer = ItemFramer(make_env(tmp_path / "env", [(b"k", b"v")]))
    framer.close()
    with pytest.raises(ValueError, match="the framer is closed"):
        framer.fill(bytearray(64))


def test_several_dirs_equal_the_py_lmdb_ordered_digest_for_any_layout(tmp_path):
    from engine.backup.logical import logical_checksum_of_dirs
    from engine.backup.restore import ordered_digest

    rnd = random.Random(7)
    items = sorted({rnd.randbytes(rnd.randint(1, 40)): rnd.randbytes(rnd.randint(0, 500))
                    for _ in range(3000)}.items())
    whole = make_env(tmp_path / "whole", items)
    cuts = [0, 700, 701, 2500, len(items)]  # one single-item part
    parts = [make_env(tmp_path / f"part{n}", items[lo:hi])
             for n, (lo, hi) in enumerate(itertools.pairwise(cuts))]
    each: list = []
    combined = logical_checksum_of_dirs(parts, each)
    assert combined == logical_checksum(whole) == logical_checksum_of_dirs([whole])
    assert each == [logical_checksum(part) for part in parts]
    assert [count for count, _ in each] == [700, 1, 1799, len(items) - 2500]
    envs = [open_readonly(part) for part in parts]
    try:
        assert ordered_digest((env, env.open_db(b"items", create=False)) for env in envs) == combined
    finally:
        for env in envs:
            env.close()
    # A different split of different items must not collide.
    assert logical_checksum_of_dirs(parts[:-1]) != combined
