"""Live repartitioning: split, merge and move partitions while they keep serving (SPEC §10).

Every operation is the shared mechanism of SPEC §5 — a physical copy of the source
partition(s) plus WAL catch-up — followed by a short final phase:

1. *intent*: one catalog write allocates the new partition ids (``next_partition_seq``)
   and lists the new directories under ``pending_dirs`` (garbage if we crash from here on);
2. *copy*: ``Partition.export_copy`` into the new directory while writes continue (split:
   one copy, duplicated with a file copy, then each half deletes the keys it does not
   own; merge: a copy of the left partition plus a bulk insert of the right one's items
   from a snapshot; move: one copy in the target volume);
3. *catch-up* rounds without any lock until the new partitions lag by a few records;
4. *final phase* under the old partitions' write locks (taken in key order): apply the
   last records, reset the new environments to their own LSN space (``applied_lsn = 0``,
   empty WAL), sync them, then write the new partition map to the catalog — **the commit
   point, one catalog write** — swap the table's routing and mark the old partitions
   retired. Writers that were waiting on an old lock get ``PartitionRetired`` and the
   table routes them again;
5. *cleanup*: the old directories go, ``pending_dirs`` is cleared.

Crash safety: before the commit the catalog still has the old map, after it the new one;
:func:`engine.table_dirs.cleanup_stray_dirs` (run when a table is opened) deletes whatever
directory the map in force does not use. Old partition objects are not closed: readers
that routed to them before the switch finish on their open LMDB environment, which the
garbage collector closes later (the files are already unlinked).

Test hook: ``TESSERA_REPARTITION_CRASH_AT=<point>`` SIGKILLs the process at ``point``
(``after_intent``, ``after_copy``, ``locked``, ``before_commit``, ``after_commit``,
``after_swap``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ValidationException
from .indexes.maintain import clear_outbox, load_index_state, rebuild_local_indexes
from .partition import APPLIED_LSN_KEY, Partition, apply_records, open_environment
from .partition_map import PartitionInterval, PartitionMap
from .volumes import fsync_dir, writable_volume
from .wal_tail import WalTail

if TYPE_CHECKING:
    from .services import OpenTables, PartitionedTables, PartitionLocks

CRASH_POINT_ENV = "TESSERA_REPARTITION_CRASH_AT"
FINAL_LAG_RECORDS = 512  # catch up without locks until the new partitions lag this little
MAX_CATCH_UP_ROUNDS = 10
DELETE_BATCH = 2_000  # keys deleted per LMDB transaction when trimming a split half
BULK_BATCH = 5_000  # items per transaction when merging in the right partition
CATCH_UP_BATCH = 1_000  # WAL records applied per step of a catch-up round
#: Background work sleeps this fraction of the time each step took, so the writers it
#: runs beside (same process, same GIL) keep most of their throughput (target ≥ 0.5×).
PACE_RATIO = 1.0


def _pace(step_started: float) -> None:
    time.sleep((time.perf_counter() - step_started) * PACE_RATIO)


def _crash_point(point: str) -> None:
    if os.environ.get(CRASH_POINT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------------- building blocks
@dataclass
class _Source:
    """An old partition feeding a new one, and how far its WAL has been applied."""

    partition: Partition
    reached_lsn: int
    key_range: tuple[bytes, bytes | None] | None = None
    tail: WalTail | None = None


@dataclass
class _NewPartition:
    interval: PartitionInterval
    directory: Path
    sources: list[_Source] = field(default_factory=list)
    env: Any = None
    items_db: Any = None
    meta_db: Any = None

    @property
    def partition_id(self) -> str:
        return self.interval.partition_id

    def open(self, map_size: int) -> None:
        self.env, self.items_db, self.meta_db = open_environment(
            self.directory / "lmdb", map_size=map_size
        )

    def catch_up(self, *, locked: bool) -> int:
        """Apply the sources' new WAL records; returns how many there were.

        Without the lock only committed records (``applied_lsn``) are read; under it the
        WAL and the data agree.
        """
        applied = 0
        for source in self.sources:
            partition = source.partition
            target = partition.wal.last_lsn if locked else partition.applied_lsn
            if target <= source.reached_lsn:
                continue
            if source.tail is None:
                source.tail = WalTail(partition, source.reached_lsn)
            records = source.tail.read(target)
            for start in range(0, len(records), CATCH_UP_BATCH):
                step_started = time.perf_counter()
                apply_records(
                    self.env, self.items_db, self.meta_db,
                    records[start:start + CATCH_UP_BATCH],
                    source=partition.name, key_range=source.key_range,
                )
                if not locked:
                    _pace(step_started)
            applied += target - source.reached_lsn
            source.reached_lsn = target
        return applied

    def finish(self) -> None:
        """Start the new partition's own LSN space, make it durable, close the env.

        The GSI outbox is emptied: its deltas were copied from the old partitions, which
        were drained into the GSIs, and its keys are LSNs of the old LSN space."""
        clear_outbox(self.env)
        with self.env.begin(write=True, db=self.meta_db) as txn:
            txn.put(APPLIED_LSN_KEY, (0).to_bytes(8, "big"))
        self.env.sync(True)
        self.close_env()
        lock_file = self.directory / "lmdb" / "lock.mdb"
        if lock_file.exists():
            lock_file.unlink()

    def close_env(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


def _delete_range(env, items_db, lo: bytes, hi: bytes | None) -> int:
    """Delete the keys in ``[lo, hi)`` in batches; returns how many were deleted."""
    deleted = 0
    while True:
        batch = 0
        step_started = time.perf_counter()
        with env.begin(write=True, db=items_db) as txn:
            cursor = txn.cursor()
            if cursor.set_range(lo):
                while batch < DELETE_BATCH:
                    key = cursor.key()
                    if not key or (hi is not None and key >= hi):
                        break
                    cursor.delete()
                    batch += 1
        deleted += batch
        if batch < DELETE_BATCH:
            return deleted
        _pace(step_started)


def median_key(partition: Partition) -> bytes | None:
    """The storage key at the middle of the partition (None with fewer than 2 items)."""
    with partition.reader() as txn:
        count = txn.stat(partition.items_db)["entries"]
        if count < 2:
            return None
        cursor = txn.cursor(db=partition.items_db)
        cursor.first()
        for _ in range(count // 2):
            cursor.next()
        return cursor.key()


# ---------------------------------------------------------------------- the coordinator
class TableLocks:
    """One repartitioning or replica change per table at a time: the lock of each table,
    shared by the :class:`Repartitioner` and the replica service
    (:class:`~engine.services.PartitionLocks`)."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def table_lock(self, name: str) -> threading.Lock:
        """The lock that serialises repartitioning and replica changes of one table."""
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def busy(self, table_name: str) -> bool:
        """True while a split, merge, move or replica change of the table runs."""
        with self._guard:
            lock = self._locks.get(table_name)
        return lock is not None and lock.locked()


class Repartitioner:
    """Split, merge and move for one engine; one operation per table at a time.

    ``forget_replicas(table, partition_id)`` drops the replicas of a partition that a
    split, merge or move replaced (the replica service's ``forget_partition``).
    """

    def __init__(self, tables: PartitionedTables, locks: PartitionLocks,
                 forget_replicas: Callable[[str, str], None],
                 drain_indexes: Callable[[str, list[Partition]], Any] | None = None) -> None:
        self.tables = tables
        self.locks = locks
        self.forget_replicas = forget_replicas
        self.drain_indexes = drain_indexes

    def busy(self, table_name: str) -> bool:
        """True while a split, merge or move of the table runs."""
        return self.locks.busy(table_name)

    # ------------------------------------------------------------------ public ops
    def split(self, table_name: str, partition_id: str, at: Any = None) -> list[str]:
        with self.locks.table_lock(table_name):
            table = self.tables.table(table_name)
            interval, partition = self._find(table_name, partition_id)
            if at is None:
                split_key = median_key(partition)
                if split_key is None:
                    raise ValidationException(
                        f"partition {partition_id} of table {table_name} has fewer than 2 "
                        "items: give the split key explicitly"
                    )
            elif isinstance(at, (bytes, bytearray)):
                split_key = bytes(at)
            elif isinstance(at, dict):
                split_key = table.schema.key_of(at)
            else:
                raise ValidationException(
                    f"split key must be a storage key (bytes) or a key dict, got {type(at).__name__}"
                )
            if not (interval.start < split_key and (interval.end is None or split_key < interval.end)):
                raise ValidationException(
                    f"split key {split_key.hex()} is not inside partition {partition_id} of table "
                    f"{table_name} [{interval.start.hex()}, "
                    f"{'+inf' if interval.end is None else interval.end.hex()}): "
                    "pick a key strictly after its start and before its end"
                )

            def build(new_ids, dirs):
                left = _NewPartition(PartitionInterval(new_ids[0], interval.start, split_key), dirs[0])
                right = _NewPartition(PartitionInterval(new_ids[1], split_key, interval.end), dirs[1])
                reached = partition.export_copy(left.directory / "lmdb")
                (right.directory / "lmdb").mkdir(parents=True)
                shutil.copyfile(left.directory / "lmdb" / "data.mdb",
                                right.directory / "lmdb" / "data.mdb")
                for new, lo, hi in ((left, split_key, None), (right, b"", split_key)):
                    new.open(self.tables.map_size_bytes)
                    _delete_range(new.env, new.items_db, lo, hi)
                left.sources.append(_Source(partition, reached, (interval.start, split_key)))
                right.sources.append(_Source(partition, reached, (split_key, interval.end)))
                return [left, right]

            return self._repartition(table_name, [partition_id], 2, None, build)

    def merge(self, table_name: str, left_id: str, right_id: str) -> str:
        with self.locks.table_lock(table_name):
            left_interval, left = self._find(table_name, left_id)
            right_interval, right = self._find(table_name, right_id)
            if left_interval.end != right_interval.start:
                raise ValidationException(
                    f"partitions {left_id} and {right_id} of table {table_name} are not "
                    f"neighbours ({left_id} must end where {right_id} starts): only adjacent "
                    "partitions can be merged, left first"
                )

            def build(new_ids, dirs):
                merged = _NewPartition(
                    PartitionInterval(new_ids[0], left_interval.start, right_interval.end), dirs[0]
                )
                left_lsn = left.export_copy(merged.directory / "lmdb")
                merged.open(self.tables.map_size_bytes)
                with right.snapshot() as snapshot:
                    cursor = snapshot.txn.cursor(db=right.items_db)
                    items = cursor.iternext() if cursor.first() else iter(())
                    while True:
                        step_started = time.perf_counter()
                        chunk = list(itertools.islice(items, BULK_BATCH))
                        if not chunk:
                            break
                        with merged.env.begin(write=True, db=merged.items_db) as txn:
                            # Every key of the right partition sorts after the left's.
                            txn.cursor().putmulti(chunk, append=True)
                        _pace(step_started)
                    right_lsn = snapshot.lsn
                merged.sources += [_Source(left, left_lsn), _Source(right, right_lsn)]
                return [merged]

            return self._repartition(table_name, [left_id, right_id], 1, None, build)[0]

    def move(self, table_name: str, partition_id: str, volume_dir: str | Path) -> str:
        with self.locks.table_lock(table_name):
            interval, partition = self._find(table_name, partition_id)
            volume = writable_volume(
                volume_dir, f"move partition {partition_id} of table {table_name}")

            def build(new_ids, dirs):
                moved = _NewPartition(PartitionInterval(new_ids[0], interval.start, interval.end),
                                      dirs[0])
                reached = partition.export_copy(moved.directory / "lmdb")
                moved.open(self.tables.map_size_bytes)
                moved.sources.append(_Source(partition, reached))
                return [moved]

            return self._repartition(table_name, [partition_id], 1, volume.resolve(), build)[0]

    # ------------------------------------------------------------------ shared steps
    def _find(self, table_name: str, partition_id: str) -> tuple[PartitionInterval, Partition]:
        table = self.tables.table(table_name)
        pmap, partitions = table.routing
        for index, interval in enumerate(pmap):
            if interval.partition_id == partition_id:
                return interval, partitions[index]
        raise ValidationException(
            f"table {table_name} has no partition {partition_id!r} "
            f"(its partitions: {', '.join(pmap.partition_ids())})"
        )

    def _repartition(self, table_name, old_ids, new_count, volume, build) -> list[str]:
        tables = self.tables
        table = tables.table(table_name)
        record = tables.record(table_name)
        table_dir = tables.table_dir(record)
        seq = record["next_partition_seq"]
        new_ids = [f"p{seq + offset:04d}" for offset in range(new_count)]
        if volume is None:
            dirs = [table_dir / pid for pid in new_ids]
        else:
            dirs = [volume / record["table_id"] / pid for pid in new_ids]

        def intent(current):
            current["next_partition_seq"] = seq + new_count
            current["pending_dirs"] = current.get("pending_dirs", []) + [str(d) for d in dirs]
            return current

        tables.update_record(table_name, intent)
        _crash_point("after_intent")

        old_partitions = [self._find(table_name, pid)[1] for pid in old_ids]
        holds = [(p, p.hold_wal(0)) for p in old_partitions]
        builds: list[_NewPartition] = []
        opened: list[Partition] = []
        committed = False
        locked: list[Partition] = []
        try:
            builds = build(new_ids, dirs)
            for new in builds:  # a split half keeps only its own items' LSI entries
                rebuild_local_indexes(new.env, new.items_db,
                                      load_index_state(new.env, new.meta_db))
            _crash_point("after_copy")
            for _ in range(MAX_CATCH_UP_ROUNDS):
                if sum(new.catch_up(locked=False) for new in builds) <= FINAL_LAG_RECORDS:
                    break
            for new in builds:
                new.env.sync(True)  # most of the data, before the locks: the final sync is short
            for partition in old_partitions:  # old_ids are in key order: no lock cycles
                partition.block_writes()
                locked.append(partition)
            _crash_point("locked")
            for new in builds:
                new.catch_up(locked=True)
            if self.drain_indexes is not None:
                # The old partitions' pending GSI deltas go to the GSIs now; the new
                # partitions' outboxes (copies of them) are cleared in finish().
                self.drain_indexes(table_name, old_partitions)
            for new in builds:
                new.finish()
            for new in builds:
                opened.append(tables.new_partition(new.directory, new.partition_id, record))
                fsync_dir(new.directory)
                fsync_dir(new.directory.parent)
            new_map = self._new_map(table.partition_map, old_ids, [n.interval for n in builds])
            _crash_point("before_commit")
            old_dirs = [str(p.directory) for p in old_partitions]
            self._commit(table_name, table_dir, old_ids, builds, new_map, old_dirs)
            committed = True
            _crash_point("after_commit")
            partitions = tables.partitions(table_name)
            for pid in old_ids:
                partitions.pop(pid)
            partitions.update({p.partition_id: p for p in opened})
            tables.install_partitions(table_name, partitions)
            table.swap_routing(new_map, partitions)
            for partition in old_partitions:
                partition.retire()
        except BaseException:
            if not committed:
                for partition in opened:
                    partition.close()
                for new in builds:
                    new.close_env()
                for directory in dirs:
                    shutil.rmtree(directory, ignore_errors=True)
            raise
        finally:
            for partition in locked:
                partition.unblock_writes()
            for partition, hold in holds:
                partition.release_wal(hold)
            if not committed:
                self._clear_pending(table_name)
        _crash_point("after_swap")
        for partition in old_partitions:
            self.forget_replicas(table_name, partition.partition_id)
            partition.wal.close()
            shutil.rmtree(partition.directory, ignore_errors=True)
        self._clear_pending(table_name)
        return new_ids

    @staticmethod
    def _new_map(pmap: PartitionMap, old_ids: list[str], new_intervals) -> PartitionMap:
        intervals = []
        for interval in pmap:
            if interval.partition_id == old_ids[0]:
                intervals.extend(new_intervals)
            elif interval.partition_id not in old_ids:
                intervals.append(interval)
        return PartitionMap(intervals)  # validated: no gap, no overlap

    def _commit(self, table_name, table_dir, old_ids, builds, new_map, old_dirs) -> None:
        """The commit point: one catalog write with the new map (SPEC §10)."""

        def switch(current):
            current["partition_map"] = new_map.to_json()
            dirs = {pid: d for pid, d in current.get("partition_dirs", {}).items()
                    if pid not in old_ids}
            for new in builds:
                if new.directory.parent != table_dir:
                    dirs[new.partition_id] = str(new.directory)
            current["partition_dirs"] = dirs
            # Garbage from now on: the old partitions and their replicas.
            current["pending_dirs"] = old_dirs + [
                r["dir"] for r in current.get("replicas", []) if r["partition_id"] in old_ids
            ]
            current["replicas"] = [r for r in current.get("replicas", [])
                                   if r["partition_id"] not in old_ids]
            return current

        self.tables.update_record(table_name, switch)

    def _clear_pending(self, table_name: str) -> None:
        def clear(current):
            if current is None:
                return None
            current["pending_dirs"] = []
            return current

        self.tables.update_record(table_name, clear)


class AutoSplitter:
    """Splits partitions that grew past ``threshold_bytes`` (LMDB pages in use), at their
    median key, checking every ``interval_seconds`` (the seed: repartition on crossing a
    size threshold). Off unless the engine is opened with ``auto_split_bytes``."""

    def __init__(self, tables: OpenTables, split: Callable[[str, str], Any],
                 threshold_bytes: int, interval_seconds: float = 1.0) -> None:
        if not isinstance(threshold_bytes, int) or threshold_bytes < 1:
            raise ValidationException(
                f"auto_split_bytes must be a positive integer, got {threshold_bytes!r}"
            )
        self.tables = tables
        self.split = split
        self.threshold_bytes = threshold_bytes
        self.interval_seconds = interval_seconds
        self.splits = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auto-split", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            for name, table in self.tables.open_tables():
                for interval, partition in zip(*table.routing, strict=True):
                    if self._stop.is_set():
                        return
                    if partition.stats()[1] <= self.threshold_bytes:
                        continue
                    try:
                        self.split(name, interval.partition_id)
                        self.splits += 1
                    except Exception as err:  # noqa: BLE001 - retried next round, reported
                        self.last_error = f"{name}/{interval.partition_id}: {err}"
                    break  # the routing changed: look again next round

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
