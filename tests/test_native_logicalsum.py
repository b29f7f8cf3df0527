"""engine._logicalsum (the C walk of a closed environment) against the py-lmdb walk."""

from __future__ import annotations

import random

import lmdb
import pytest

from engine.backup.logical import logical_checksum, open_readonly
from engine.errors import CorruptionError


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
    with pytest.raises(CorruptionError, match="cannot read the environment"):
        logical_checksum(tmp_path / "junk")
