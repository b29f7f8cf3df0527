"""Split and merge of a GSI's own partitions (SPEC §10's mechanism, for an index).

Simpler than a base table's repartitioning: the only writers of a GSI are the follower
(under the table's follower lock) and a backfill (under the table's repartitioning
lock), and the caller holds both, so the old partitions are quiet: a physical copy
(:meth:`~engine.partition.Partition.export_copy`) is exact, with no catch-up phase.
The new partitions start their own LSN space (``applied_lsn`` 0, an empty WAL).

The commit point is the catalog: the GSI entry's ``partition_map``. A crash before it
leaves new directories the map does not name, after it old ones; either way
:class:`~engine.indexes.gsi_store.GsiStore` removes them when it opens. Readers on the old
partitions keep them until the store closes.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

from ..errors import ValidationException
from ..partition import APPLIED_LSN_KEY, Partition, open_environment
from ..partition_map import PartitionInterval, PartitionMap
from .gsi_store import GsiStore

COPY_BATCH = 4096  # entries per write transaction when merging


def _find(store: GsiStore, partition_id: str) -> tuple[int, PartitionInterval, Partition]:
    pmap, partitions = store.routing
    for index, interval in enumerate(pmap):
        if interval.partition_id == partition_id:
            return index, interval, partitions[index]
    raise ValidationException(
        f"index {store.name} has no partition {partition_id!r} (its partitions: "
        f"{', '.join(pmap.partition_ids())})")


def _median_key(partition: Partition) -> bytes | None:
    with partition.reader() as txn:
        count = txn.stat(partition.items_db)["entries"]
        if count < 2:
            return None
        cursor = txn.cursor(db=partition.items_db)
        cursor.first()
        for _ in range(count // 2):
            cursor.next()
        return cursor.key()


def _finish(directory: Path, map_size: int, keep: tuple[bytes, bytes | None] | None) -> None:
    """Keep only ``[lo, hi)`` (None: everything), start a new LSN space, sync, close."""
    env, items_db, meta_db = open_environment(directory / "lmdb", map_size=map_size)
    try:
        if keep is not None:
            lo, hi = keep
            with env.begin(write=True, db=items_db) as txn:
                cursor = txn.cursor()
                if cursor.first():
                    while cursor.key() and cursor.key() < lo:
                        cursor.delete()
                if hi is not None and cursor.set_range(hi):
                    while cursor.key():
                        if not cursor.delete():
                            break
        with env.begin(write=True, db=meta_db) as txn:
            txn.put(APPLIED_LSN_KEY, (0).to_bytes(8, "big"))
        env.sync(True)
    finally:
        env.close()
    (directory / "lmdb" / "lock.mdb").unlink(missing_ok=True)


def split(store: GsiStore, partition_id: str, new_ids: list[str],
          at: bytes | None) -> tuple[PartitionMap, list[Partition], Partition]:
    """Split one partition in two at ``at`` (a GSI storage key; None: the median)."""
    index, interval, old = _find(store, partition_id)
    split_key = _median_key(old) if at is None else at
    if split_key is None:
        raise ValidationException(
            f"partition {partition_id} of index {store.name} has fewer than 2 entries: give "
            "the split key explicitly")
    if not (interval.start < split_key and (interval.end is None or split_key < interval.end)):
        raise ValidationException(
            f"split key {split_key.hex()} is not inside partition {partition_id} of index "
            f"{store.name}: pick a key strictly after its start and before its end")
    dirs = [store.directory / new_id for new_id in new_ids]
    try:
        old.export_copy(dirs[0] / "lmdb")
        (dirs[1] / "lmdb").mkdir(parents=True)
        shutil.copyfile(dirs[0] / "lmdb" / "data.mdb", dirs[1] / "lmdb" / "data.mdb")
        _finish(dirs[0], store.map_size, (interval.start, split_key))
        _finish(dirs[1], store.map_size, (split_key, interval.end))
        opened = [store.open_partition(new_id) for new_id in new_ids]
    except BaseException:
        for directory in dirs:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    intervals = list(store.partition_map)
    intervals[index:index + 1] = [PartitionInterval(new_ids[0], interval.start, split_key),
                                  PartitionInterval(new_ids[1], split_key, interval.end)]
    partitions = store.partitions
    partitions[index:index + 1] = opened
    return PartitionMap(intervals), partitions, old


def merge(store: GsiStore, left_id: str, right_id: str,
          new_id: str) -> tuple[PartitionMap, list[Partition], list[Partition]]:
    """Merge two neighbouring partitions (``left_id`` ends where ``right_id`` starts)."""
    index, left_interval, left = _find(store, left_id)
    _, right_interval, right = _find(store, right_id)
    if left_interval.end != right_interval.start:
        raise ValidationException(
            f"partitions {left_id} and {right_id} of index {store.name} are not neighbours "
            f"({left_id} must end where {right_id} starts)")
    directory = store.directory / new_id
    try:
        left.export_copy(directory / "lmdb")
        env, items_db, _ = open_environment(directory / "lmdb", map_size=store.map_size)
        try:
            with right.reader() as source:
                entries = source.cursor(db=right.items_db).iternext()
                while chunk := list(itertools.islice(entries, COPY_BATCH)):
                    with env.begin(write=True, db=items_db) as txn:
                        txn.cursor().putmulti(chunk, append=True)  # right sorts after left
        finally:
            env.close()
        _finish(directory, store.map_size, None)
        merged = store.open_partition(new_id)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    intervals = list(store.partition_map)
    intervals[index:index + 2] = [PartitionInterval(new_id, left_interval.start,
                                                    right_interval.end)]
    partitions = store.partitions
    partitions[index:index + 2] = [merged]
    return PartitionMap(intervals), partitions, [left, right]


def move(store: GsiStore, partition_id: str, new_id: str,
         directory: Path) -> tuple[PartitionMap, list[Partition], Partition]:
    """Copy one partition into ``directory`` (on another volume) as ``new_id``."""
    index, interval, old = _find(store, partition_id)
    try:
        old.export_copy(directory / "lmdb")
        _finish(directory, store.map_size, None)
        store.partition_dirs[new_id] = str(directory)
        moved = store.open_partition(new_id)
    except BaseException:
        store.partition_dirs.pop(new_id, None)
        shutil.rmtree(directory, ignore_errors=True)
        raise
    intervals = list(store.partition_map)
    intervals[index] = PartitionInterval(new_id, interval.start, interval.end)
    partitions = store.partitions
    partitions[index] = moved
    return PartitionMap(intervals), partitions, old
