"""A GSI's own storage: hash partitions, each a full :class:`~engine.partition.Partition`
(LMDB environment + WAL), so a GSI write is durable and replayed exactly as a table's.

Layout: ``<data>/tables/<table_id>.gsi/<index_id>/<pid>/`` (beside the table's directory,
not inside it: the table directory's stray-directory cleanup keeps only partitions of
its map). The partition map is in the index's catalog entry (``partition_map``).

Entry keys are built by :class:`engine.indexes.maintain.IndexSpec` (hash prefix of the
GSI partition key first), so the map routes them like a hash-partitioned table's keys.
"""

from __future__ import annotations

import heapq
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..partition import OP_DELETE, OP_PUT, Partition
from ..partition_map import PartitionMap, build_map, hash_boundaries

DEFAULT_GSI_PARTITIONS = 2


def new_gsi_map(partitions: int = DEFAULT_GSI_PARTITIONS) -> list[dict]:
    """The catalog form of a new GSI's partition map (even hash ranges)."""
    ids = [f"p{index:04d}" for index in range(partitions)]
    return build_map(ids, hash_boundaries(partitions)).to_json()


def gsi_root(table_dir: Path) -> Path:
    """Where every GSI of the table at ``table_dir`` lives."""
    return table_dir.with_name(table_dir.name + ".gsi")


class GsiStore:
    """The open partitions of one GSI. Thread-safe as partitions are."""

    def __init__(self, directory: Path, map_json: list[dict], *, name: str, sync: str,
                 map_size: int, segment_bytes: int,
                 partition_dirs: dict[str, str] | None = None) -> None:
        self.directory = Path(directory)
        self.partition_dirs = dict(partition_dirs or {})  # moved to other volumes
        self.name = name
        self.sync = sync
        self.map_size = map_size
        self.segment_bytes = segment_bytes
        self.retired: list[Partition] = []  # replaced by a split/merge; closed with the store
        pmap = PartitionMap.from_json(map_json)
        partitions: list[Partition] = []
        self.routing: tuple[PartitionMap, list[Partition]] = (pmap, partitions)
        try:
            for interval in pmap:
                partitions.append(self.open_partition(interval.partition_id))
        except BaseException:
            self.close()
            raise
        self._remove_stray_dirs()

    def partition_dir(self, partition_id: str) -> Path:
        recorded = self.partition_dirs.get(partition_id)
        return Path(recorded) if recorded else self.directory / partition_id

    def open_partition(self, partition_id: str) -> Partition:
        return Partition(self.partition_dir(partition_id), partition_id=partition_id,
                         table_name=self.name, sync=self.sync, map_size=self.map_size,
                         segment_bytes=self.segment_bytes)

    def _remove_stray_dirs(self) -> None:
        """Directories of partitions not in the map: the losing side of an interrupted
        split or merge (the catalog's map is the commit point)."""
        live = {interval.partition_id for interval in self.partition_map}
        for child in self.directory.iterdir():
            if child.is_dir() and child.name not in live:
                shutil.rmtree(child, ignore_errors=True)

    @property
    def partition_map(self) -> PartitionMap:
        return self.routing[0]

    @property
    def partitions(self) -> list[Partition]:
        return list(self.routing[1])

    def swap(self, pmap: PartitionMap, partitions: list[Partition],
             replaced: list[Partition]) -> None:
        """Switch to a new map in one assignment (readers see the old or the new one);
        the replaced partitions stay open for readers still on them until :meth:`close`."""
        self.routing = (pmap, list(partitions))
        self.retired.extend(replaced)

    def write(self, ops: Sequence[tuple[int, bytes, bytes | None]]) -> None:
        """Apply deltas in order: the last one per key wins; one WAL record per partition,
        returned once durable. Puts and deletes are idempotent, so applying the same
        deltas twice (after a crash) leaves the same state."""
        last: dict[bytes, tuple[int, bytes, bytes | None]] = {}
        for op in ops:
            last[op[1]] = op
        pmap, partitions = self.routing
        groups: dict[int, list] = {}
        for op in last.values():
            groups.setdefault(pmap.index_for(op[1]), []).append(op)
        for index, group in groups.items():
            # Only the follower (under its lock) and a backfill (under the repartitioning
            # lock) write here, and a split or merge takes both: never a retired partition.
            partitions[index].write(lambda get, group=group: (list(group), None))

    def iter_range(self, lo: bytes, hi: bytes | None, *,
                   reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every entry in ``[lo, hi)``, in key order (or reversed)."""
        pmap, partitions = self.routing
        first = pmap.index_for(lo)
        indexes = [first]
        while indexes[-1] + 1 < len(pmap) and (
                hi is None or pmap.intervals[indexes[-1] + 1].start < hi):
            indexes.append(indexes[-1] + 1)
        if reverse:
            indexes.reverse()
        for index in indexes:
            yield from partitions[index].iter_range(lo, hi, reverse=reverse)

    def stats(self) -> tuple[int, int]:
        count = size = 0
        for partition in self.partitions:
            items, used = partition.stats()
            count += items
            size += used
        return count, size

    def close(self) -> None:
        for partition in [*self.routing[1], *self.retired]:
            partition.close()
        for partition in self.retired:  # their files outlive readers only until now
            shutil.rmtree(partition.directory, ignore_errors=True)
        self.retired = []

    def drop(self) -> None:
        """Close and delete the files."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        for directory in self.partition_dirs.values():
            shutil.rmtree(directory, ignore_errors=True)


def merged_range(parts: Sequence[Iterator[tuple[bytes, bytes]]], *,
                 reverse: bool) -> Iterator[tuple[bytes, bytes]]:
    """Merge several key-ordered iterators (an LSI spread over two base partitions)."""
    if len(parts) == 1:
        return parts[0]
    return heapq.merge(*parts, key=lambda entry: entry[0], reverse=reverse)


__all__ = ["GsiStore", "OP_DELETE", "OP_PUT", "gsi_root", "merged_range", "new_gsi_map"]
