"""One partition: an LMDB environment plus its write-ahead log (SPEC §4–5).

Directory layout::

    <partition dir>/lmdb/data.mdb     the items, and the applied LSN
    <partition dir>/wal/*.wal         the write-ahead log (engine.wal)

The LMDB environment holds two named databases: ``items`` (storage key → encoded item,
in key order) and ``meta`` (``applied_lsn`` → 8-byte big-endian LSN). A write is one WAL
record (a batch of PUT/DELETE operations, applied atomically): under the partition's
write lock it is staged in an LMDB write transaction, appended to the WAL, then the
transaction (data and ``applied_lsn`` together) commits. LMDB itself runs without fsync:
the WAL is what makes a write durable, and opening the partition replays every record
above ``applied_lsn``. Segments are deleted only after the environment has been synced
past them and no backup or replica still needs them.

Readers use LMDB snapshots and never wait for writers.

Threads and processes: one :class:`Partition` per environment per process. Do not use an
open partition (or engine) across ``fork()``: open it again in the child.

The physical copy + catch-up mechanism of SPEC §5 lives here (:meth:`Partition.export_copy`)
so that backups, replicas, moves and splits all use the same code.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb

from . import _reads, _walframe
from .errors import CorruptionError, EngineClosedError, lmdb_error
from .indexes.maintain import (
    IndexState,
    apply_indexed_ops,
    iter_outbox,
    load_index_state,
    outbox_lsn,
    rebuild_local_indexes,
    store_index_meta,
)
from .pagegaps import clear_copy_page_gaps
from .wal import DEFAULT_SEGMENT_BYTES, WriteAheadLog

OP_PUT = 1
OP_DELETE = 2

ITEMS_DB = b"items"
META_DB = b"meta"
APPLIED_LSN_KEY = b"applied_lsn"
DEFAULT_MAP_SIZE = 16 << 30  # 16 GiB of address space; the file grows only as needed
REPLAY_RECORDS_PER_TXN = 4096
WRITEMAP = False  # writemap: sparse map-sized files and no faster commits with the WAL fsyncs

#: An operation in a WAL record: (OP_PUT, key, value) or (OP_DELETE, key, None).
Op = tuple[int, bytes, "bytes | None"]


def open_environment(path: Path, *, map_size: int = DEFAULT_MAP_SIZE, readonly: bool = False):
    """Open a partition environment (or a copy of one) with the flags every user needs.

    ``sync=False``: LMDB does not fsync on commit — durability comes from the WAL, and
    the environment is synced explicitly at checkpoints before WAL segments are deleted.
    """
    if not readonly:
        path.mkdir(parents=True, exist_ok=True)
    try:
        env = lmdb.open(
            str(path),
            subdir=True,
            map_size=map_size,
            max_dbs=16,  # items, meta, the GSI outbox and one database per LSI
            max_readers=1024,
            sync=False,
            metasync=False,
            readonly=readonly,
            lock=not readonly,
            writemap=WRITEMAP and not readonly,
        )
    except lmdb.Error as err:
        raise lmdb_error(err, what="opening the LMDB environment", path=path) from err
    try:
        items = env.open_db(ITEMS_DB, create=not readonly)
        meta = env.open_db(META_DB, create=not readonly)
    except BaseException as err:
        env.close()
        if isinstance(err, lmdb.Error):
            raise lmdb_error(err, what="opening the items and meta databases",
                             path=path) from err
        raise
    return env, items, meta


def read_applied_lsn(env, meta_db) -> int:
    with env.begin(db=meta_db) as txn:
        raw = txn.get(APPLIED_LSN_KEY)
    return int.from_bytes(raw, "big") if raw else 0


def apply_records(
    env, items_db, meta_db, records: Iterable[tuple[int, bytes]], *, source: str,
    key_range: tuple[bytes, bytes | None] | None = None,
    gsi_outbox: bool = True,
) -> int:
    """Apply WAL records to an environment in batched transactions; returns the last LSN.

    Each transaction stores the LSN of its last record as ``applied_lsn`` together with
    the data, so a crash mid-way leaves a consistent prefix (SPEC §4). ``key_range``
    ``(lo, hi)`` (``hi=None``: +inf) applies only the operations on keys inside it — the
    catch-up of one half of a split (SPEC §10).

    Secondary indexes are maintained from the environment's own definitions
    (engine.indexes.maintain). ``gsi_outbox=False`` keeps the LSIs but appends no GSI
    deltas: for a copy nobody drains (a replica).
    """
    last_lsn = None
    index_state = load_index_state(env, meta_db)  # the copy's own definitions (meta)
    if index_state is not None and not gsi_outbox:
        index_state = index_state.without_global()
    iterator = iter(records)
    while True:
        chunk = list(itertools.islice(iterator, REPLAY_RECORDS_PER_TXN))
        if not chunk:
            return last_lsn if last_lsn is not None else read_applied_lsn(env, meta_db)
        with env.begin(write=True) as txn:
            for lsn, payload in chunk:
                try:
                    ops = _walframe.decode_ops(payload)
                except ValueError as err:
                    raise CorruptionError(
                        f"WAL record {lsn} does not decode: {err}", partition=source
                    ) from err
                if key_range is not None:
                    lo, hi = key_range
                    ops = [op for op in ops if lo <= op[1] and (hi is None or op[1] < hi)]
                _apply_ops(txn, items_db, ops, index_state, lsn)
                last_lsn = lsn
            txn.put(APPLIED_LSN_KEY, last_lsn.to_bytes(8, "big"), db=meta_db)


def _apply_ops(txn, items_db, ops: Sequence[Op], index_state: IndexState | None = None,
               lsn: int = 0, *, strict: bool = False) -> None:
    """Apply operations in order. Runs of puts go through ``putmulti`` (a loop in C).

    With secondary indexes (``index_state``), each operation also updates the LSIs and
    appends the GSI deltas of record ``lsn`` to the outbox, in the same transaction
    (:mod:`engine.indexes.maintain`); ``strict`` refuses items whose index keys have the
    wrong type (live writes only).
    """
    if index_state is not None:
        apply_indexed_ops(txn, items_db, index_state, ops, lsn, strict=strict)
        return
    if all(op[0] == OP_PUT for op in ops):
        txn.cursor(db=items_db).putmulti([(key, value) for _, key, value in ops])
        return
    for opcode, key, value in ops:
        if opcode == OP_PUT:
            txn.put(key, value, db=items_db)
        else:
            txn.delete(key, db=items_db)


def copy_environment(env: lmdb.Environment, dest: Path, txn: Any) -> None:
    """``mdb_env_copyfd2`` with compaction into ``dest/data.mdb``, through the page cache.

    Not ``env.copy``: LMDB's ``mdb_env_copy2`` opens its output with ``O_DIRECT``, so every
    page goes to the disk synchronously (competing with the WAL's fsyncs) and the
    packaging step right after reads it all back from the disk. Whoever needs the copy
    durable syncs it (a split or move syncs its new environments before the commit).
    """
    fd = os.open(dest / "data.mdb", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        env.copyfd(fd, compact=True, txn=txn)
    finally:
        os.close(fd)


def copy_and_catch_up(
    source: lmdb.Environment,
    txn: Any,
    dest: Path,
    *,
    wal: WriteAheadLog,
    target_lsn: int | None,
    map_size: int,
    name: str,
    clear_page_gaps: bool = False,
) -> int:
    """The shared mechanism of SPEC §5: copy ``source`` (as of ``txn``, or now) into the new
    directory ``dest``, then apply ``wal``'s records above the copy's ``applied_lsn`` up to
    ``target_lsn`` (``None``: the newest). Returns the LSN the copy reflects.

    ``clear_page_gaps``: zero the stale free space inside the copy's pages before the
    catch-up writes to it (:mod:`engine.pagegaps`) — for copies about to be compressed.

    The caller keeps those WAL records on disk (a hold) until this returns. ``source`` may
    be the partition itself or a replica of it (whose ``applied_lsn`` is in the same LSN
    space). On failure ``dest`` is removed.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=False)
    try:
        copy_environment(source, dest, txn)
        if clear_page_gaps:
            clear_copy_page_gaps(dest / "data.mdb", source.stat()["psize"])
        env, items_db, meta_db = open_environment(dest, map_size=map_size)
        try:
            copied_lsn = read_applied_lsn(env, meta_db)
            target = wal.last_lsn if target_lsn is None else target_lsn
            if copied_lsn > target:
                raise CorruptionError(
                    f"copy is at LSN {copied_lsn}, past the target LSN {target}: "
                    "take the copy from a snapshot at or before the target",
                    partition=name, path=str(dest),
                )
            reached = apply_records(
                env, items_db, meta_db, wal.read_records(copied_lsn, target), source=name,
            )
            # Not synced here: a backup export is scratch (packaged from the page cache,
            # redone after a crash), and splits, moves and replicas sync their copy
            # before relying on it. Syncing every export cost a backup ~1 s of idle
            # cores per GiB waiting on the disk.
        finally:
            env.close()
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    (dest / "lock.mdb").unlink(missing_ok=True)  # nothing holds the copy open
    return max(reached, copied_lsn)


class PartitionRetired(Exception):
    """Internal signal: this partition was replaced by a split, merge or move (SPEC §10).

    Raised by :meth:`Partition.write` to a writer that waited on the write lock of a
    partition retired meanwhile; :class:`~engine.table.Table` re-routes and retries.
    """


class Partition:
    """An open partition. Thread-safe: writes serialise on a lock, reads use snapshots."""

    def __init__(
        self,
        directory: Path,
        *,
        partition_id: str,
        table_name: str,
        sync: str = "batch",
        map_size: int = DEFAULT_MAP_SIZE,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.partition_id = partition_id
        self.table_name = table_name
        self.name = f"{table_name}/{partition_id}"
        self.map_size = map_size
        self._write_lock = threading.Lock()
        self._holds: dict[int, int] = {}  # hold id -> oldest LSN it still needs
        self._hold_ids = itertools.count(1)
        self._closed = False
        self._retired = False  # see retire()
        self.env, self.items_db, self.meta_db = open_environment(
            self.directory / "lmdb", map_size=map_size
        )
        self.wal: WriteAheadLog | None = None
        try:
            self.wal = WriteAheadLog(
                self.directory / "wal", partition_name=self.name, sync=sync,
                segment_bytes=segment_bytes,
            )
            applied = read_applied_lsn(self.env, self.meta_db)
            replayed = apply_records(
                self.env, self.items_db, self.meta_db, self.wal.recover(applied),
                source=self.name,
            )
        except BaseException:
            # A failed open (a corrupt WAL record, say) closes what it opened: LMDB allows
            # one handle per environment per process, so a leaked one would make every
            # later open of this partition in the process fail.
            if self.wal is not None:
                self.wal.close()
            self.env.close()
            raise
        self.applied_lsn = max(applied, replayed)
        self.index_state: IndexState | None = load_index_state(self.env, self.meta_db)
        #: Called (no arguments) when records that may hold GSI deltas became durable:
        #: the follower's wake-up (engine.indexes.follower sets it).
        self.outbox_listener: Callable[[], None] | None = None
        #: Every record up to this LSN is durable (acknowledged writes): the GSI follower
        #: applies no delta above it, so a write a crash rolls back never reaches a GSI.
        self.durable_lsn = self.applied_lsn
        self._durable_lock = threading.Lock()
        # Point reads reuse a read transaction per thread until the next commit.
        self.read_cache = _reads.ReadCache(self.env, self.items_db, self.name)

    # ------------------------------------------------------------------ writes
    def write(self, plan: Callable[[Callable[[bytes], bytes | None]], tuple[list[Op], Any]]) -> Any:
        """Run ``plan`` under the write lock, commit its operations, return once durable."""
        result, lsn, rolled = self.write_nowait(plan)
        if lsn is not None:
            self.finish_write(lsn, rolled)
        return result

    def finish_write(self, lsn: int, rolled: bool) -> None:
        """Wait until record ``lsn`` is durable (sync policy), then checkpoint if the WAL
        rolled over. The second half of :meth:`write_nowait`."""
        self.wal.wait_durable(lsn)
        self._advance_durable(lsn)
        if rolled:
            self.checkpoint()

    def _advance_durable(self, lsn: int) -> None:
        with self._durable_lock:
            if lsn <= self.durable_lsn:
                return
            self.durable_lsn = lsn
        state = self.index_state
        if self.outbox_listener is not None and state is not None and state.global_:
            self.outbox_listener()

    def make_durable(self) -> int:
        """Flush the WAL (whatever the policy) so every committed record is durable;
        returns :attr:`durable_lsn`. Does not take the write lock (a split's final phase
        holds it)."""
        lsn = self.applied_lsn
        self.wal.flush()
        self._advance_durable(lsn)
        return self.durable_lsn

    def write_nowait(
        self, plan: Callable[[Callable[[bytes], bytes | None]], tuple[list[Op], Any]]
    ) -> tuple[Any, int | None, bool]:
        """Run ``plan`` under the write lock and commit the operations it returns.

        ``plan(get)`` reads current values with ``get(storage_key)`` (seeing this
        partition's latest committed state) and returns ``(ops, result)``; it may raise
        to refuse the write (a failed condition), in which case nothing is written. The
        operations form one WAL record: all of them or none survive a crash.
        """
        with self._write_lock:
            if self._retired:
                raise PartitionRetired(self.name)
            self._check_open()
            txn = self.env.begin(write=True, db=self.items_db)
            try:
                ops, result = plan(txn.get)
                if not ops:
                    txn.abort()
                    return result, None, False
                ops.sort(key=_op_key)  # sorted puts touch LMDB pages in order
                lsn = self.wal.last_lsn + 1
                _apply_ops(txn, self.items_db, ops, self.index_state, lsn, strict=True)
                txn.put(APPLIED_LSN_KEY, lsn.to_bytes(8, "big"), db=self.meta_db)
                rollovers = self.wal.rollovers
                self.wal.append(_walframe.encode_ops(ops))
                txn.commit()
                self.read_cache.committed()  # cached read snapshots are stale now
            except lmdb.Error as err:
                txn.abort()
                raise lmdb_error(err, what=f"writing (map size {self.map_size >> 20} MiB)",
                                 partition=self.name, path=self.directory) from err
            except BaseException:
                txn.abort()
                raise
            self.applied_lsn = lsn
        # Not yet durable under "batch": the caller must call finish_write (write does).
        return result, lsn, self.wal.rollovers != rollovers

    def checkpoint(self) -> int:
        """Sync LMDB to disk, then drop WAL segments nobody needs. Returns segments removed."""
        with self._write_lock:
            if self._closed or self._retired:
                return 0
            self.env.sync(True)
            floor = min([self.applied_lsn, *self._holds.values()])
            return self.wal.remove_segments_through(floor)

    # ------------------------------------------------------------------ indexes
    def set_index_meta(self, meta: dict) -> None:
        """Store new secondary index definitions in this environment (engine.indexes).

        Under the write lock, so every write after this maintains exactly the new set;
        synced, so the definitions never fall behind the WAL records written under them.
        """
        with self._write_lock:
            self._check_open()
            self.index_state = store_index_meta(self.env, self.meta_db, meta)
            self.env.sync(True)

    def reset_indexes(self) -> None:
        """Empty the GSI outbox and recompute every LSI from the items (a restored
        partition: engine.indexes.restore)."""
        with self._write_lock:
            self._check_open()
            state = self.index_state
            if state is None:
                return
            with self.env.begin(write=True) as txn:
                txn.drop(state.outbox_db, delete=False)
            rebuild_local_indexes(self.env, self.items_db, state)
            self.env.sync(True)

    def outbox_batch(self, id_bytes: bytes, limit: int,
                     upto_lsn: int | None = None) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` pending GSI deltas of one index (outbox key, value), oldest
        first, of records up to ``upto_lsn`` (None: all)."""
        state = self.index_state
        if state is None:
            return []
        with self.env.begin(db=state.outbox_db) as txn:
            entries = list(iter_outbox(txn, state.outbox_db, id_bytes, limit))
        if upto_lsn is not None:
            entries = [entry for entry in entries if outbox_lsn(entry[0]) <= upto_lsn]
        return entries

    def delete_outbox(self, keys: Sequence[bytes]) -> None:
        """Delete applied GSI deltas (one LMDB transaction). Not under the write lock: the
        index follower's lock orders it, and LMDB serialises it with writers. Not in the
        WAL: a crash that loses it only makes the follower apply the same deltas again."""
        state = self.index_state
        if state is None or not keys:
            return
        with self.env.begin(write=True, db=state.outbox_db) as txn:
            for key in keys:
                txn.delete(key)

    def purge_outbox(self, id_bytes: bytes, upto_lsn: int | None = None) -> int:
        """Delete one index's pending deltas of LSN ≤ ``upto_lsn`` (None: all) — those a
        backfill snapshot already holds. Returns how many were deleted."""
        state = self.index_state
        if state is None:
            return 0
        deleted = 0
        with self.env.begin(write=True, db=state.outbox_db) as txn:
            cursor = txn.cursor()
            if cursor.set_range(id_bytes):
                while True:
                    key = cursor.key()
                    if not key.startswith(id_bytes) or (
                            upto_lsn is not None and outbox_lsn(key) > upto_lsn):
                        break
                    if not cursor.delete():
                        break
                    deleted += 1
        return deleted

    def outbox_pending(self, id_bytes: bytes) -> tuple[int, int | None]:
        """(pending GSI deltas of one index, write time in ns of the oldest or None)."""
        state = self.index_state
        if state is None:
            return 0, None
        count, oldest = 0, None
        with self.env.begin(db=state.outbox_db) as txn:
            cursor = txn.cursor()
            if cursor.set_range(id_bytes):
                for key in cursor.iternext(keys=True, values=False):
                    if not key.startswith(id_bytes):
                        break
                    if oldest is None:
                        oldest = int.from_bytes(bytes(cursor.value()[1:9]), "big")
                    count += 1
        return count, oldest

    def db_stats(self, db) -> tuple[int, int]:
        """(entries, bytes of LMDB pages in use) of one database of this environment."""
        self._check_open()
        with self.env.begin() as txn:
            stat = txn.stat(db)
        pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        return stat["entries"], pages * stat["psize"]

    # ------------------------------------------------------------------ WAL holds
    def hold_wal(self, from_lsn: int) -> int:
        """Keep WAL records above ``from_lsn`` until :meth:`release_wal`; returns a hold id."""
        with self._write_lock:
            hold_id = next(self._hold_ids)
            self._holds[hold_id] = from_lsn
            return hold_id

    def release_wal(self, hold_id: int) -> None:
        with self._write_lock:
            self._holds.pop(hold_id, None)

    # ------------------------------------------------------------------ reads
    def get(self, key: bytes) -> bytes | None:
        """The latest committed value under ``key`` (see ``engine._reads.ReadCache``)."""
        return self.read_cache.get(key)

    def get_many(self, keys: Iterable[bytes]) -> list[bytes | None]:
        self._check_open()
        with self.env.begin(db=self.items_db) as txn:
            return [txn.get(key) for key in keys]

    @contextmanager
    def reader(self):
        """A read snapshot (LMDB read transaction) on the items database."""
        self._check_open()
        txn = self.env.begin(db=self.items_db, buffers=False)
        try:
            yield txn
        finally:
            txn.abort()

    def snapshot(self, *, durable: bool = False) -> Snapshot:
        """Pin the partition's state now: a read transaction plus a hold on the WAL above it.

        The snapshot reflects exactly LSN ``snapshot.lsn`` (taken under the write lock), and
        the WAL records after it stay on disk, so :meth:`export_copy` can later produce a
        copy at any target LSN from ``snapshot.lsn`` on. Call ``release()`` when done:
        LMDB cannot reuse pages while the transaction is open.

        ``durable``: flush the WAL first, so the snapshot holds only durable writes (a
        GSI backfill must not index a write a crash could still roll back).
        """
        with self._write_lock:
            self._check_open()
            if durable:
                self.wal.flush()
                self._advance_durable(self.applied_lsn)
            hold_id = next(self._hold_ids)
            self._holds[hold_id] = self.applied_lsn
            return Snapshot(self, self.env.begin(), self.applied_lsn, hold_id)

    def iter_range(
        self,
        lo: bytes,
        hi: bytes | None,
        *,
        reverse: bool = False,
        txn=None,
        db=None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield (key, value) with ``lo <= key < hi`` in key order (or reversed); ``db``:
        another database of the environment (an LSI's) instead of the items."""
        own = txn is None
        db = self.items_db if db is None else db
        if own:
            self._check_open()
            txn = self.env.begin(db=db)
        try:
            cursor = txn.cursor(db=db)
            if not reverse:
                if not cursor.set_range(lo):
                    return
                if hi is None:
                    yield from cursor.iternext()
                else:
                    for key, value in cursor.iternext():
                        if key >= hi:
                            return
                        yield key, value
            else:
                if hi is None:
                    positioned = cursor.last()
                elif cursor.set_range(hi):
                    positioned = cursor.prev()
                else:
                    positioned = cursor.last()
                if not positioned:
                    return
                for key, value in cursor.iterprev():
                    if key < lo:
                        return
                    yield key, value
        finally:
            if own:
                txn.abort()

    def stats(self) -> tuple[int, int]:
        """(item count, bytes of LMDB pages in use)."""
        self._check_open()
        with self.env.begin() as txn:
            stat = txn.stat(self.items_db)
        pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        return stat["entries"], pages * stat["psize"]

    # ------------------------------------------------------------------ physical copy
    def export_copy(
        self,
        dest: Path,
        *,
        target_lsn: int | None = None,
        snapshot: Snapshot | None = None,
        clear_page_gaps: bool = False,
    ) -> int:
        """Physical copy + WAL catch-up (SPEC §5). Returns the LSN the copy reflects.

        1. a compacting copy (:func:`copy_environment`) into ``dest`` (a new directory) while writes
           continue — from ``snapshot`` (a transaction from :meth:`snapshot`) if given,
           else from the current state; the copy is exactly at its ``applied_lsn = L0``;
        2. open the copy and apply WAL records ``(L0, target_lsn]``;
        3. the copy now holds every write with LSN ≤ target and nothing after it.
        ``target_lsn=None`` catches up to the newest record written when the copy ends.
        ``clear_page_gaps`` zeroes the copy's stale page free space (for a backup export,
        which compresses ~1/3 smaller for it; see :mod:`engine.pagegaps`).
        """
        hold = self.hold_wal(0)  # keep every segment until the catch-up has read it
        try:
            return copy_and_catch_up(self.env, snapshot.txn if snapshot else None, dest,
                                     wal=self.wal, target_lsn=target_lsn,
                                     map_size=self.map_size, name=self.name,
                                     clear_page_gaps=clear_page_gaps)
        finally:
            self.release_wal(hold)

    # ------------------------------------------------------------------ lifecycle
    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError(
                f"partition {self.name} is closed (its engine was closed): open the engine "
                "again with Engine.open")

    # ------------------------------------------------------------------ repartitioning
    def block_writes(self) -> None:
        """Take the write lock until :meth:`unblock_writes` (a split's final phase)."""
        self._write_lock.acquire()

    def unblock_writes(self) -> None:
        self._write_lock.release()

    def retire(self) -> None:
        """Mark the partition replaced (call while :meth:`block_writes` holds the lock):
        writers that waited on it get :class:`PartitionRetired` and route again."""
        self._retired = True

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self.env.sync(True)
            floor = min([self.applied_lsn, *self._holds.values()])
            self.wal.close()
            self.wal.remove_segments_through(floor)
            self.read_cache.close()
            self.env.close()


class Snapshot:
    """A pinned read transaction of a partition and the LSN it reflects (see
    :meth:`Partition.snapshot`). Usable from any one thread at a time."""

    def __init__(self, partition: Partition, txn, lsn: int, hold_id: int) -> None:
        self.partition = partition
        self.txn = txn
        self.lsn = lsn
        self._hold_id = hold_id

    def release(self) -> None:
        """Idempotent: abort the transaction and drop the WAL hold."""
        if self.txn is not None:
            self.txn.abort()
            self.txn = None
            self.partition.release_wal(self._hold_id)

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _op_key(op: Op) -> bytes:
    return op[1]
