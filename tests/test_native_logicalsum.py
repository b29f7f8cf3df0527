"""engine._logicalsum (the C walk of a closed environment) against the py-lmdb walk."""

from __future__ import annotations

import hashlib
import itertools
import random
import struct

import lmdb
import pytest
import reference_codecs as ref
from engine._itemcodec import encode_item
from engine._logicalsum import ItemFramer

from engine.backup.logical import logical_checksum, open_readonly
from engine.errors import CorruptionError, StorageError


def stored(key: bytes, payload: bytes) -> tuple[bytes, bytes]:
    """An item as the engine stores it under ``key`` (the walk checks its checksums)."""
    return key, encode_item({"p": payload}, key)


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
    items = [stored(rnd.randbytes(rnd.randint(1, 100)), rnd.randbytes(rnd.randint(0, 3000)))
             for _ in range(count)]
    path = make_env(tmp_path / "env", items)
    assert logical_checksum(path) == py_lmdb_walk(path)
    assert logical_checksum(path)[0] == len(dict(items))


def test_items_larger_than_the_frame_buffer(tmp_path):
    items = [stored(b"a", b"x" * 10), stored(b"b", b"y" * (9 << 20)), stored(b"c", b"")]
    # (9 MiB > the 4 MiB buffer)
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
    framer = ItemFramer(make_env(tmp_path / "env", [stored(b"k", b"v")]))
    framer.close()
    with pytest.raises(ValueError, match="the framer is closed"):
        framer.fill(bytearray(64))


def test_several_dirs_equal_the_py_lmdb_ordered_digest_for_any_layout(tmp_path):
    from engine.backup.logical import logical_checksum_of_dirs
    from engine.backup.restore import ordered_digest

    rnd = random.Random(7)
    items = sorted(stored(key, value) for key, value in
                   {rnd.randbytes(rnd.randint(1, 40)): rnd.randbytes(rnd.randint(0, 500))
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


# ---------------------------------------------------------------------------- item checksums
# Both walks check every item against its key (engine._itemcodec): a damaged value or key
# is a CorruptionError naming the file and the key, never a checksum that vouches for it.
# The bytes hashed stay the stored bytes, so a checksum taken before items carried
# checksums (version 1) still holds for the same data.


def sha256_of_frames(items) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(items):
        digest.update(struct.pack(">I", len(key)) + key + struct.pack(">I", len(value)) + value)
    return digest.hexdigest()


@pytest.mark.parametrize("damage", ["value", "key", "version"])
def test_a_damaged_item_stops_both_walks_naming_file_and_key(tmp_path, damage):
    items = [stored(b"key%04d" % n, b"payload %d" % n) for n in range(200)]
    key, value = items[77]
    if damage == "value":
        items[77] = (key, value[:5] + bytes([value[5] ^ 0x40]) + value[6:])
    elif damage == "key":
        items[77] = (b"kez0077", value)  # sorts where key0077 was
        key = b"kez0077"
    else:
        items[77] = (key, b"\x01" + value[1:])  # version 2 damaged into 1
    path = make_env(tmp_path / "env", items)
    for walk in (logical_checksum, py_lmdb_walk):
        with pytest.raises(CorruptionError) as caught:
            walk(path)
        message = str(caught.value)
        assert f"under key 0x{key.hex()}" in message
        assert str(path / "data.mdb") in message


def test_items_written_before_checksums_hash_as_stored(tmp_path):
    # A backup's logical checksum from before item checksums: SHA-256 over the stored
    # version-1 bytes. The same data still gives it, and a mix of formats hashes each
    # item as stored.
    legacy = [(b"old%03d" % n, ref.encode_legacy_item({"n": n, "s": "x" * n})) for n in range(50)]
    mixed = legacy + [stored(b"new%03d" % n, b"p" * n) for n in range(50)]
    for name, items in (("legacy", legacy), ("mixed", mixed)):
        path = make_env(tmp_path / name, items)
        expected = (len(items), sha256_of_frames(items))
        assert logical_checksum(path) == py_lmdb_walk(path) == expected


def test_a_malformed_legacy_item_is_corruption(tmp_path):
    items = [(b"a", ref.encode_legacy_item({"n": 1})), (b"b", b"\x01\x05garbage")]
    path = make_env(tmp_path / "env", items)
    for walk in (logical_checksum, py_lmdb_walk):
        with pytest.raises(CorruptionError, match="under key 0x62 does not decode"):
            walk(path)
