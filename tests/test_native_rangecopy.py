"""engine._rangecopy: key ranges of closed environments copied into a new one, in C.

Checked against the plain-Python meaning: the target holds exactly the source items with
``start <= key < end`` (bytes order, which is LMDB's default key order), whatever the
step size, for several sources in a row; and it opens as a partition environment.
"""

from __future__ import annotations

import lmdb
import pytest
from engine._rangecopy import RangeCopy
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import CorruptionError, StorageError, StorageFullError
from engine.partition import open_environment


def make_source(path, items, *, with_items_db=True):
    env = lmdb.open(str(path), subdir=True, max_dbs=4, map_size=1 << 26)
    db = env.open_db(b"items" if with_items_db else b"other")
    with env.begin(write=True, db=db) as txn:
        for key, value in items.items():
            txn.put(key, value)
    env.close()
    return path


def target_items(path):
    env, items_db, meta_db = open_environment(path, map_size=1 << 26)
    try:
        with env.begin() as txn:
            assert list(txn.cursor(db=meta_db)) == []  # created, empty
            return list(txn.cursor(db=items_db))
    finally:
        env.close()


def copy_all(target, sources, step):
    target.mkdir()
    copier = RangeCopy(target, 1 << 26)
    total = 0
    try:
        for path, start, end in sources:
            copier.open_source(path, start, end)
            while True:
                copied = copier.step(step)
                assert copied <= step
                total += copied
                if copied < step:
                    break
        copier.finish()
    finally:
        copier.close()
    return total


keys = st.binary(min_size=1, max_size=12)


@settings(max_examples=60)
@given(st.dictionaries(keys, st.binary(max_size=3000), max_size=200),
       st.lists(keys, min_size=2, max_size=4, unique=True),
       st.integers(min_value=1, max_value=64), st.booleans())
def test_ranges_copy_exactly_the_keys_between_the_bounds(tmp_path_factory, items, cuts, step,
                                                         open_end):
    root = tmp_path_factory.mktemp("range")
    cuts = sorted(cuts)
    # Sources: the items split at the cut points (as backup partitions are), then a
    # target range from the first cut to the last one (or to the end).
    bounds = [b"", *cuts, None]
    sources = []
    for number, (low, high) in enumerate(zip(bounds, bounds[1:], strict=False)):
        part = {k: v for k, v in items.items() if k >= low and (high is None or k < high)}
        sources.append((make_source(root / f"s{number}", part), low, high))
    start, end = cuts[0], None if open_end else cuts[-1]
    wanted = sorted((k, v) for k, v in items.items() if k >= start and (end is None or k < end))
    # Every source that overlaps [start, end), each read from the target's start and
    # bounded at the target's end (as the restore does where the source reaches past).
    overlapping = [(path, start, end) for path, low, high in sources
                   if (high is None or high > start) and (end is None or low < end)]

    assert copy_all(root / "target", overlapping, step) == len(wanted)
    assert target_items(root / "target") == wanted


def test_an_end_bound_is_exclusive_and_compares_as_bytes(tmp_path):
    items = {b"a": b"1", b"ab": b"2", b"ab\x00": b"3", b"abc": b"4", b"b": b"5"}
    source = make_source(tmp_path / "src", items)
    copy_all(tmp_path / "t", [(source, b"a", b"ab\x00")], 100)
    assert target_items(tmp_path / "t") == [(b"a", b"1"), (b"ab", b"2")]


def test_a_source_without_items_is_refused_by_name(tmp_path):
    source = make_source(tmp_path / "src", {b"k": b"v"}, with_items_db=False)
    (tmp_path / "t").mkdir()
    copier = RangeCopy(tmp_path / "t", 1 << 26)
    with pytest.raises(CorruptionError, match=r"no 'items' database \(file .*/src\)"):
        copier.open_source(source, b"")
    with pytest.raises(ValueError, match="the copy is closed"):
        copier.open_source(source, b"")


def test_a_source_that_is_not_an_environment_names_lmdbs_reason_and_the_file(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "t").mkdir()
    copier = RangeCopy(tmp_path / "t", 1 << 26)
    # No data.mdb: ENOENT from mdb_env_open, a storage error (not corruption).
    with pytest.raises(StorageError, match=r"opening the items database failed: No such file "
                                           r"or directory.*\(file .*/src\)"):
        copier.open_source(tmp_path / "src", b"")
    # Not an LMDB file: MDB_INVALID, which the one mapping calls corruption.
    (tmp_path / "src" / "data.mdb").write_bytes(b"\x07" * 8192)
    (tmp_path / "t2").mkdir()
    copier = RangeCopy(tmp_path / "t2", 1 << 26)  # the failure above closed the first one
    with pytest.raises(CorruptionError, match=r"MDB_INVALID.*file .*/src"):
        copier.open_source(tmp_path / "src", b"")


def test_overlapping_sources_fail_instead_of_reordering(tmp_path):
    first = make_source(tmp_path / "a", {b"k1": b"x", b"k3": b"x"})
    second = make_source(tmp_path / "b", {b"k2": b"y"})
    (tmp_path / "t").mkdir()
    copier = RangeCopy(tmp_path / "t", 1 << 26)
    copier.open_source(first, b"")
    assert copier.step(10) == 2
    copier.open_source(second, b"")
    with pytest.raises(StorageError, match=r"copying items from .*/b failed: MDB_KEYEXIST"):
        copier.step(10)


def test_a_full_map_says_to_use_a_larger_one(tmp_path):
    source = make_source(tmp_path / "src", {b"%06d" % n: b"v" * 500 for n in range(2000)})
    (tmp_path / "t").mkdir()
    copier = RangeCopy(tmp_path / "t", 256 << 10)
    copier.open_source(source, b"")
    with pytest.raises(StorageFullError, match=r"MDB_MAP_FULL.*raise map_size_bytes"):
        copier.step(5000)


def test_step_without_a_source(tmp_path):
    (tmp_path / "t").mkdir()
    copier = RangeCopy(tmp_path / "t", 1 << 26)
    with pytest.raises(ValueError, match="no source is open"):
        copier.step(1)
    copier.close()
    copier.close()  # idempotent
