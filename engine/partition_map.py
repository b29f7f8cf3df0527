"""Partition maps: which partition owns which interval of storage-key space (SPEC §3).

A storage key is ``hash64(pk) ‖ enc(pk) ‖ enc(sk)`` (hash partitioning) or
``enc(pk) ‖ enc(sk)`` (range partitioning). Each partition owns one half-open interval
``[start, end)`` of that byte-string space; ``end is None`` means "to the end of the
space". The intervals of a table, sorted, cover the space exactly: the first starts at
``b""``, each next one starts where the previous ends, the last ends at ``None``. That is
checked on every change, so routing can never lose or duplicate an item.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from .errors import ValidationException

HASH_SPACE = 1 << 64


@dataclass(frozen=True)
class PartitionInterval:
    """One partition's share of the key space: ``start <= key < end`` (``end=None``: +inf)."""

    partition_id: str
    start: bytes
    end: bytes | None

    def contains(self, key: bytes) -> bool:
        return self.start <= key and (self.end is None or key < self.end)

    def intersects(self, lo: bytes, hi: bytes | None) -> bool:
        """Does ``[lo, hi)`` (``hi=None``: +inf) share a key with this interval?"""
        below_end = self.end is None or lo < self.end
        above_start = hi is None or self.start < hi
        return below_end and above_start

    def to_json(self) -> dict:
        return {
            "partition_id": self.partition_id,
            "start": self.start.hex(),
            "end": None if self.end is None else self.end.hex(),
        }

    @classmethod
    def from_json(cls, data: dict) -> PartitionInterval:
        end = data["end"]
        return cls(data["partition_id"], bytes.fromhex(data["start"]),
                   None if end is None else bytes.fromhex(end))


class PartitionMap:
    """An immutable, validated, sorted list of :class:`PartitionInterval`.

    Changes (split, merge) build a new map; a table swaps its map atomically.
    """

    __slots__ = ("intervals", "starts")

    def __init__(self, intervals: Iterable[PartitionInterval]) -> None:
        self.intervals: tuple[PartitionInterval, ...] = tuple(intervals)
        validate_intervals(self.intervals)
        #: The intervals' start keys, for bisection (routing is on every operation's path).
        self.starts = [interval.start for interval in self.intervals]

    def __len__(self) -> int:
        return len(self.intervals)

    def __iter__(self) -> Iterator[PartitionInterval]:
        return iter(self.intervals)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PartitionMap) and other.intervals == self.intervals

    def __hash__(self) -> int:
        return hash(self.intervals)

    def partition_ids(self) -> list[str]:
        return [interval.partition_id for interval in self.intervals]

    def index_for(self, key: bytes) -> int:
        """Index of the interval owning ``key`` (binary search over the starts)."""
        return bisect.bisect_right(self.starts, key) - 1

    def lookup(self, key: bytes) -> PartitionInterval:
        return self.intervals[self.index_for(key)]

    def intersecting(self, lo: bytes, hi: bytes | None) -> list[PartitionInterval]:
        """Intervals sharing a key with ``[lo, hi)``, in key order."""
        first = self.index_for(lo)
        result = []
        for interval in self.intervals[first:]:
            if hi is not None and interval.start >= hi:
                break
            result.append(interval)
        return result

    def to_json(self) -> list[dict]:
        return [interval.to_json() for interval in self.intervals]

    @classmethod
    def from_json(cls, data: Sequence[dict]) -> PartitionMap:
        return cls(PartitionInterval.from_json(entry) for entry in data)


def validate_intervals(intervals: Sequence[PartitionInterval]) -> None:
    """Raise ValidationException unless ``intervals`` cover key space with no gap or overlap."""
    if not intervals:
        raise ValidationException("a partition map needs at least one partition")
    if intervals[0].start != b"":
        raise ValidationException(
            f"partition map has a gap: the first partition {intervals[0].partition_id} "
            f"starts at {intervals[0].start.hex()}, not at the beginning of the key space"
        )
    seen_ids: set[str] = set()
    for previous, current in zip(intervals, intervals[1:], strict=False):
        if previous.end is None or previous.end != current.start:
            kind = "overlap" if previous.end is None or previous.end > current.start else "gap"
            raise ValidationException(
                f"partition map has an {kind} between partitions {previous.partition_id} "
                f"(ends {None if previous.end is None else previous.end.hex()}) and "
                f"{current.partition_id} (starts {current.start.hex()})"
            )
    for interval in intervals:
        if interval.end is not None and interval.end <= interval.start:
            raise ValidationException(
                f"partition {interval.partition_id} has an empty interval "
                f"[{interval.start.hex()}, {interval.end.hex()})"
            )
        if interval.partition_id in seen_ids:
            raise ValidationException(f"partition id {interval.partition_id} appears twice")
        seen_ids.add(interval.partition_id)
    if intervals[-1].end is not None:
        raise ValidationException(
            f"partition map has a gap: the last partition {intervals[-1].partition_id} "
            f"ends at {intervals[-1].end.hex()}, not at the end of the key space"
        )


def hash_boundaries(count: int) -> list[bytes]:
    """Start keys splitting the 64-bit hash prefix into ``count`` equal ranges."""
    if not 1 <= count <= 4096:
        raise ValidationException(f"partition count must be 1..4096, got {count}")
    return [b""] + [(i * HASH_SPACE // count).to_bytes(8, "big") for i in range(1, count)]


def build_map(partition_ids: Sequence[str], boundaries: Sequence[bytes]) -> PartitionMap:
    """A map from sorted start keys (the first must be ``b""``)."""
    if len(partition_ids) != len(boundaries):
        raise ValidationException("one start key per partition is needed")
    ends: list[bytes | None] = list(boundaries[1:]) + [None]
    return PartitionMap(
        PartitionInterval(pid, start, end)
        for pid, start, end in zip(partition_ids, boundaries, ends, strict=False)
    )


def key_successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``.

    ``None`` when there is none (the prefix is all 0xFF): the range runs to +inf.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])
