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

from ..partition import OP_DELETE, OP_PUT, Partition, PartitionRetired
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
                 map_size: int, segment_bytes: int) -> None:
        self.directory = Path(directory)
        self.name = name
        self.partition_map = PartitionMap.from_json(map_json)
        self.partitions: list[Partition] = []
        try:
            for interval in self.partition_map:
                self.partitions.append(Partition(
                    self.directory / interval.partition_id, partition_id=interval.partition_id,
                    table_name=name, sync=sync, map_size=map_size,
                    segment_bytes=segment_bytes))
        except BaseException:
            self.close()
            raise

    def write(self, ops: Sequence[tuple[int, bytes, bytes | None]]) -> None:
        """Apply deltas in order: the last one per key wins; one WAL record per partition,
        returned once durable. Puts and deletes are idempotent, so applying the same
        deltas twice (after a crash) leaves the same state."""
        last: dict[bytes, tuple[int, bytes, bytes | None]] = {}
        for op in ops:
            last[op[1]] = op
        groups: dict[int, list] = {}
        for op in last.values():
            groups.setdefault(self.partition_map.index_for(op[1]), []).append(op)
        for index, group in groups.items():
            try:
                self.partitions[index].write(lambda get, group=group: (list(group), None))
            except PartitionRetired:  # GSI partitions are not repartitioned (yet)
                raise

    def iter_range(self, lo: bytes, hi: bytes | None, *,
                   reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every entry in ``[lo, hi)``, in key order (or reversed)."""
        pmap = self.partition_map
        first = pmap.index_for(lo)
        indexes = [first]
        while indexes[-1] + 1 < len(pmap) and (
                hi is None or pmap.intervals[indexes[-1] + 1].start < hi):
            indexes.append(indexes[-1] + 1)
        if reverse:
            indexes.reverse()
        for index in indexes:
            yield from self.partitions[index].iter_range(lo, hi, reverse=reverse)

    def stats(self) -> tuple[int, int]:
        count = size = 0
        for partition in self.partitions:
            items, used = partition.stats()
            count += items
            size += used
        return count, size

    def close(self) -> None:
        for partition in self.partitions:
            partition.close()

    def drop(self) -> None:
        """Close and delete the files."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def merged_range(parts: Sequence[Iterator[tuple[bytes, bytes]]], *,
                 reverse: bool) -> Iterator[tuple[bytes, bytes]]:
    """Merge several key-ordered iterators (an LSI spread over two base partitions)."""
    if len(parts) == 1:
        return parts[0]
    return heapq.merge(*parts, key=lambda entry: entry[0], reverse=reverse)


__all__ = ["GsiStore", "OP_DELETE", "OP_PUT", "gsi_root", "merged_range", "new_gsi_map"]
