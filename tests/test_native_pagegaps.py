"""engine._pagegaps / engine.pagegaps: zeroing the stale free space of a compacted copy.

The property that matters: clearing changes no byte LMDB reads. Checked on random
environments (small and overflow values, deletes, two named databases): junk written
into every branch and leaf page's free space (found by an independent Python walk of the
page headers) changes no item; clearing then restores exactly those regions to zero and
touches nothing else; every item reads back the same; and the copy still takes writes
afterwards, as the backup's catch-up does.
"""

from __future__ import annotations

import logging
import random
import struct

import lmdb
import pytest
from engine._pagegaps import PageLayoutError, clear_page_gaps
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.pagegaps import clear_copy_page_gaps
from engine.partition import copy_environment, open_environment

PAGE = 4096


def build_source(path, puts, deletes):
    env = lmdb.open(str(path), subdir=True, max_dbs=4, map_size=1 << 28)
    items = env.open_db(b"items")
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        for key, value in puts:
            txn.put(key, value, db=items)
        txn.put(b"applied_lsn", len(puts).to_bytes(8, "big"), db=meta)
    with env.begin(write=True) as txn:
        for key in deletes:
            txn.delete(key, db=items)
    return env


def compacted_copy(source_env, dest):
    dest.mkdir()
    copy_environment(source_env, dest, None)
    return dest / "data.mdb"


def read_all(env_dir):
    env = lmdb.open(str(env_dir), subdir=True, max_dbs=4, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return {name: list(txn.cursor(db=env.open_db(name, txn=txn, create=False)))
                    for name in (b"items", b"meta")}
    finally:
        env.close()


def free_space_regions(data: bytes):
    """Reference walk in Python: [start, end) of each branch/leaf page's aligned free space."""
    regions, pgno, pages = [], 2, len(data) // PAGE
    while pgno < pages:
        base = pgno * PAGE
        number, _pad, flags, lower, upper = struct.unpack_from("<QHHHH", data, base)
        assert number == pgno
        if flags == 0x04:  # overflow: the run's page count replaces lower/upper
            pgno += struct.unpack_from("<I", data, base + 12)[0]
            continue
        if flags in (0x01, 0x02):
            start, end = base + ((lower + 7) & ~7), base + (upper & ~7)
            if end > start:
                regions.append((start, end))
        pgno += 1
    return regions


# Large values (overflow pages) are built from a length and a seed, not drawn byte by byte:
# their content does not matter to the page layout, and drawing up to 300 x 9 KB of random
# bytes made hypothesis's data_too_large health check fail the test by chance.
large_values = st.builds(lambda size, seed: random.Random(seed).randbytes(size),
                         st.integers(2000, 9000), st.integers(0, 2**32))
entries = st.tuples(st.binary(min_size=1, max_size=60),
                    st.one_of(st.binary(max_size=300), large_values))


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.data_too_large])
@given(st.lists(entries, max_size=300), st.data())
def test_clearing_changes_only_free_space_and_no_item(tmp_path_factory, puts, data):
    root = tmp_path_factory.mktemp("gaps")
    keys = sorted({key for key, _ in puts})
    deletes = data.draw(st.lists(st.sampled_from(keys), unique=True) if keys else st.just([]))
    source = build_source(root / "src", puts, deletes)
    try:
        path = compacted_copy(source, root / "copy")
    finally:
        source.close()
    before_items = read_all(root / "copy")
    before = bytearray(path.read_bytes())
    regions = free_space_regions(before)
    # Fill the gaps with junk first (small copies have mostly zero gaps already), which
    # also shows LMDB never reads them; then expect exactly those regions back as zeros
    # and every other byte as it was (the copy's gaps may hold stale bytes to begin with).
    expected = bytearray(before)
    for start, end in regions:
        before[start:end] = b"\xa5" * (end - start)
        expected[start:end] = bytes(end - start)
    path.write_bytes(before)
    assert read_all(root / "copy") == before_items

    cleared = clear_copy_page_gaps(path, PAGE)

    assert cleared == sum(end - start for start, end in regions)
    assert path.read_bytes() == expected
    assert read_all(root / "copy") == before_items

    # The catch-up writes to the cleared copy next: it must behave as any environment.
    env, items_db, _meta = open_environment(root / "copy", map_size=1 << 28)
    try:
        with env.begin(write=True, db=items_db) as txn:
            for number in range(200):
                txn.put(b"late-%03d" % number, b"v" * (number * 37 % 3000))
    finally:
        env.close()
    expected = dict(before_items[b"items"])
    expected.update({b"late-%03d" % n: b"v" * (n * 37 % 3000) for n in range(200)})
    assert dict(read_all(root / "copy")[b"items"]) == expected


def test_a_random_order_tree_has_a_third_stale_and_loses_it(tmp_path):
    import random

    rnd = random.Random(5)
    puts = [(rnd.randbytes(16), rnd.randbytes(rnd.randint(20, 200))) for _ in range(20000)]
    source = build_source(tmp_path / "src", puts, [])
    try:
        path = compacted_copy(source, tmp_path / "copy")
    finally:
        source.close()
    size = path.stat().st_size
    cleared = clear_copy_page_gaps(path, PAGE)
    assert 0.15 * size < cleared < 0.5 * size  # random inserts leave pages ~2/3 full
    assert clear_copy_page_gaps(path, PAGE) == cleared  # same regions, now already zero


def corrupt_copy(tmp_path):
    source = build_source(tmp_path / "src", [(b"k%05d" % n, b"x" * 100) for n in range(3000)],
                          [])
    try:
        return compacted_copy(source, tmp_path / "copy")
    finally:
        source.close()


@pytest.mark.parametrize("damage, message", [
    (lambda b: b.__setitem__(slice(5 * PAGE, 5 * PAGE + 8), (99).to_bytes(8, "little")),
     "page 5 of"),
    (lambda b: b.__setitem__(slice(7 * PAGE + 10, 7 * PAGE + 12), b"\x10\x00"), "page 7 of"),
    (lambda b: b.__setitem__(slice(3 * PAGE + 12, 3 * PAGE + 16), b"\xff\x0f\x10\x00"),
     "page 3 of"),
    (lambda b: b.__setitem__(slice(PAGE + 16, PAGE + 20), b"\0\0\0\0"), "page 1 is not"),
])
def test_a_page_that_disagrees_stops_everything_before_a_byte_changes(tmp_path, damage,
                                                                      message):
    data = bytearray(corrupt_copy(tmp_path).read_bytes())
    damage(data)
    original = bytes(data)
    with pytest.raises(PageLayoutError, match=message):
        clear_page_gaps(data, PAGE)
    assert bytes(data) == original


@pytest.mark.parametrize("size, page_size, message", [
    (PAGE * 3 + 1, PAGE, "whole 4096-byte pages"),
    (PAGE, PAGE, "two or more"),
    (PAGE * 4, 3000, "not a power of two"),
])
def test_sizes_that_cannot_be_a_copy(size, page_size, message):
    with pytest.raises(PageLayoutError, match=message):
        clear_page_gaps(bytearray(size), page_size)


def test_wrong_page_size_is_refused_by_the_meta_pages(tmp_path):
    data = bytearray(corrupt_copy(tmp_path).read_bytes())
    with pytest.raises(PageLayoutError, match="page 0 is not an LMDB meta page for 8192"):
        clear_page_gaps(data[: len(data) // 8192 * 8192], 8192)


def test_the_file_wrapper_leaves_a_strange_file_alone_and_says_so(tmp_path, caplog):
    path = corrupt_copy(tmp_path)
    with open(path, "r+b") as file:
        file.seek(6 * PAGE)
        file.write((1234).to_bytes(8, "little"))
    original = path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="engine.pagegaps"):
        assert clear_copy_page_gaps(path, PAGE) == 0
    assert path.read_bytes() == original
    assert "page 6 of" in caplog.text and str(path) in caplog.text
