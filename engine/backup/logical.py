"""The logical checksum of a partition: what its items are, independent of LMDB's layout.

SHA-256 over, for each item of the ``items`` database in key order::

    u32be(len(key)) ‖ key ‖ u32be(len(value)) ‖ value

``value`` is the item's stored bytes, whatever their format version (engine._itemcodec:
1, written before items carried checksums, or 2, with them). So a checksum means what it
always meant: a backup taken before the change verifies and restores as before, because
every copy (physical, range copy, WAL replay) moves stored bytes unchanged and only a write
re-encodes an item. Both walks check every item's checksums against its key as they go: a
damaged item is a ``CorruptionError`` naming the file and the key, never part of a
checksum that vouches for it.

The physical checksums (CRC32C of ``data.mdb`` and of the object) prove the bytes made it
through storage; this one proves the *items* did, so it survives a compacting copy, a
restore into a different page layout, or a split into new partitions (the concatenation
over adjacent partitions is a prefix-free stream, so a restore can re-hash per partition
and compare). SPEC §6: recomputed after every restore.

Speed: a closed environment (a path) is framed in C by ``engine._logicalsum`` and hashed
in 4 MiB updates, both without the GIL — SHA-256-bound (~850 MB/s per core). An open
``lmdb.Environment`` goes through py-lmdb (1M items of 100-200 bytes, 2-core AMD EPYC:
~2.5M items/s before the checks): ``engine._logicalsum.frame_pairs`` checks and frames
4096-item chunks in C, hashed on a helper thread.
"""

from __future__ import annotations

import hashlib
import os
import queue
import struct
import threading
from collections.abc import Iterable
from pathlib import Path

import lmdb

from .._logicalsum import ItemFramer, frame_pairs
from ..errors import CorruptionError, StorageError, StorageFullError

ITEMS_DB = b"items"
META_DB = b"meta"
APPLIED_LSN_KEY = b"applied_lsn"
MAX_DBS = 4

_BATCH_ITEMS = 4096
_pack_u32 = struct.Struct(">I").pack
# Length prefixes for every key (LMDB keys are ≤ 511 bytes) and most values.
LENGTH_PREFIXES = [_pack_u32(n) for n in range(1 << 16)]


def open_readonly(env_dir: str | os.PathLike[str]) -> lmdb.Environment:
    """Open a partition environment (or a re-inflated copy) for reading only.

    ``lock=False``: nothing writes an exported or re-inflated copy, and not touching
    ``lock.mdb`` means opening it cannot disturb another handle's locks in this process.
    """
    return lmdb.open(str(env_dir), readonly=True, lock=False, subdir=True, max_dbs=MAX_DBS)


def read_applied_lsn(env: lmdb.Environment) -> int:
    """The ``meta`` database's ``applied_lsn`` (0 if the partition never applied a write)."""
    try:
        meta = env.open_db(META_DB, create=False)
    except lmdb.NotFoundError:
        return 0
    with env.begin(db=meta) as txn:
        raw = txn.get(APPLIED_LSN_KEY)
    if raw is None:
        return 0
    if len(raw) != 8:
        raise CorruptionError(f"meta applied_lsn is {len(raw)} bytes, expected 8",
                              path=env.path())
    return int.from_bytes(raw, "big")


def logical_checksum(env: str | os.PathLike[str] | lmdb.Environment) -> tuple[int, str]:
    """Return ``(item_count, sha256 hex)`` over the ``items`` database in key order.

    ``env`` is the directory of a *closed* environment that nothing writes (an export or
    a re-inflated copy: walked in C without the GIL, see ``_native/logicalsum.pyx``), or
    an open ``lmdb.Environment`` (walked through py-lmdb in one read transaction, the
    only safe way for an environment that may be written meanwhile).
    """
    if isinstance(env, lmdb.Environment):
        return _checksum_env(env)
    return _checksum_closed(Path(env))


_FRAME_BUFFER_BYTES = 4 << 20  # 4 MiB: hashlib releases the GIL on updates this large


def _checksum_closed(env_dir: Path) -> tuple[int, str]:
    # ~10x the py-lmdb walk on one core, and both halves (framing in C, hashing in
    # hashlib) run without the GIL, so partitions checksum in parallel and writers
    # keep the interpreter while a backup runs.
    return logical_checksum_of_dirs([env_dir])


def logical_checksum_of_dirs(
    env_dirs: Iterable[str | os.PathLike[str]],
    each: list[tuple[int, str]] | None = None,
) -> tuple[int, str]:
    """``(item_count, sha256 hex)`` over several *closed* environments, one after the other.

    For a table's partitions in map order this is the table's logical content, equal for
    any partition layout of the same items (and to :func:`logical_checksum` for one
    environment). ``each``, if given, receives every environment's own
    ``(item_count, sha256 hex)`` from the same pass. Walked in C, hashed without the GIL.
    """
    digest = hashlib.sha256()
    buffer = bytearray(_FRAME_BUFFER_BYTES)
    view = memoryview(buffer)
    total = 0
    for env_dir in env_dirs:
        env_dir = Path(env_dir)
        own = hashlib.sha256() if each is not None else None
        # The framer raises CorruptionError itself for damage (no items database, not an
        # LMDB file); a copy it cannot read for another reason cannot be vouched for
        # either, so verify and restore see that as corruption too. ``err`` names the file.
        try:
            framer = ItemFramer(env_dir)
        except (StorageError, StorageFullError) as err:
            raise CorruptionError(f"cannot read the environment: {err}") from err
        try:
            while True:
                try:
                    written = framer.fill(buffer)
                except (StorageError, StorageFullError) as err:
                    raise CorruptionError(f"walking the items failed: {err}") from err
                if written == 0:
                    break
                if written < 0:  # one item larger than the buffer
                    buffer = bytearray(-written)
                    view = memoryview(buffer)
                    continue
                digest.update(view[:written])
                if own is not None:
                    own.update(view[:written])
        finally:
            framer.close()
        total += framer.item_count
        if each is not None:
            each.append((framer.item_count, own.hexdigest()))
    return total, digest.hexdigest()


def _checksum_env(env: lmdb.Environment) -> tuple[int, str]:
    try:
        items = env.open_db(ITEMS_DB, create=False)
    except lmdb.NotFoundError as err:
        raise CorruptionError("environment has no 'items' database",
                              path=env.path()) from err
    digest = hashlib.sha256()
    chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def hash_chunks() -> None:
        while (chunk := chunks.get()) is not None:
            digest.update(chunk)

    hasher = threading.Thread(target=hash_chunks, name="logical-checksum", daemon=True)
    hasher.start()
    count = 0
    path = os.path.join(env.path(), "data.mdb")
    try:
        with env.begin(db=items, buffers=False) as txn:
            pairs = txn.cursor().iternext(keys=True, values=True)
            while True:
                framed, taken = frame_pairs(pairs, _BATCH_ITEMS, path)
                if not taken:
                    break
                count += taken
                chunks.put(framed)
    finally:
        chunks.put(None)
        hasher.join()
    return count, digest.hexdigest()
