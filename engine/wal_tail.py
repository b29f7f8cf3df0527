"""Follow a partition's WAL as it grows: read only the bytes appended since the last look.

Used by replicas (engine.replica) and by the catch-up rounds of split, merge and move
(engine.repartition), which would otherwise re-read whole segments (64 MiB by default)
on every round (``WriteAheadLog.read_records``). Safe while the partition appends: only
complete records up to a given LSN are returned, the rest are read again later.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import _walframe
from .errors import CorruptionError
from .wal import SEGMENT_HEADER_BYTES, records_offset

if TYPE_CHECKING:
    from .partition import Partition


class WalTail:
    """Reads the records a partition appends to its WAL, incrementally, in LSN order."""

    def __init__(self, partition: Partition, after_lsn: int) -> None:
        self.partition = partition
        self.next_lsn = after_lsn + 1
        self.segment: tuple[int, Path] | None = None
        self.offset = 0
        self._locate()

    def _locate(self) -> None:
        """Position on the segment holding ``next_lsn`` (CorruptionError if it is gone)."""
        segments = self.partition.wal.segments()
        candidates = [s for s in segments if s[0] <= self.next_lsn]
        if not candidates:
            raise CorruptionError(
                f"WAL record {self.next_lsn} needed by a follower is gone",
                partition=self.partition.name, path=str(self.partition.wal.directory),
            )
        self.segment = candidates[-1]
        self.offset = _records_start(self.segment[1])

    def read(self, upto_lsn: int) -> list[tuple[int, bytes]]:
        """Complete records with ``next_lsn <= lsn``; those past ``upto_lsn`` are kept for
        later (written to the WAL but maybe not yet committed by the partition)."""
        out: list[tuple[int, bytes]] = []
        while self.next_lsn <= upto_lsn:
            first_lsn, path = self.segment
            with open(path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
            records, good_end, problem = _walframe.scan_records(data, 0)
            if problem == "corrupt":
                raise CorruptionError(
                    "WAL record failed its checksum while following it",
                    partition=self.partition.name, path=str(path), offset=self.offset + good_end,
                )
            stopped_early = False
            for lsn, payload in records:
                if lsn > upto_lsn:
                    # Appended but maybe not committed yet: read it again next time.
                    stopped_early = True
                    break
                self.offset += _walframe.HEADER_SIZE + len(payload)
                if lsn >= self.next_lsn:
                    out.append((lsn, payload))
                    self.next_lsn = lsn + 1
            if stopped_early:
                return out
            if self.next_lsn > upto_lsn:
                return out
            # This segment is exhausted: the next record is in a newer segment.
            newer = [s for s in self.partition.wal.segments() if s[0] > first_lsn]
            if not newer:
                return out
            if newer[0][0] != self.next_lsn:
                raise CorruptionError(
                    f"WAL segment after LSN {self.next_lsn - 1} starts at {newer[0][0]}",
                    partition=self.partition.name, path=str(newer[0][1]),
                )
            self.segment, self.offset = newer[0], _records_start(newer[0][1])
        return out


def _records_start(path: Path) -> int:
    """Where a segment's records begin (after its header, engine.wal). Segments are
    created whole (header in place before the name appears), so the header is there."""
    with open(path, "rb") as handle:
        return records_offset(handle.read(SEGMENT_HEADER_BYTES))
