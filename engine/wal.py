"""A partition's write-ahead log: segment files, LSNs and sync policies (SPEC §4).

Layout: ``<partition>/wal/<first-lsn, 20 digits>.wal``. A segment is a run of framed
records (``engine._walframe``: length, LSN, CRC32C) with LSNs increasing by exactly one.
Only the newest segment is appended to; a segment is rolled over once it passes
``segment_bytes``.

Appends happen under the owning partition's write lock (so LSN order is commit order);
durability waits happen outside it, which is what lets ``batch`` group-commit:

* ``always`` — every append is fsynced before the partition lock is released;
* ``batch``  — a writer waits until some fsync covers its LSN; whichever waiter finds no
  fsync running becomes the leader and syncs everything written so far (group commit);
* ``none``   — no fsync; the OS writes the pages back (a process crash loses nothing, a
  power loss may lose the newest records).

On open the segments are scanned: a torn tail (an incomplete last record, from a crash
mid-append) is cut off at the last good record; a record that is complete but fails its
CRC is corruption and raises :class:`CorruptionError` with the file and offset — never
skipped, since under ``always`` such a record may have been acknowledged.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

from . import _walframe
from .errors import CorruptionError, ValidationException
from .volumes import fsync_dir

SYNC_POLICIES = ("always", "batch", "none")
SEGMENT_SUFFIX = ".wal"
DEFAULT_SEGMENT_BYTES = 64 << 20  # 64 MiB


def segment_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}{SEGMENT_SUFFIX}"



class WriteAheadLog:
    """The WAL of one partition. Not safe for concurrent appends: the caller serialises them."""

    def __init__(
        self,
        directory: Path,
        *,
        partition_name: str,
        sync: str = "batch",
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if sync not in SYNC_POLICIES:
            raise ValidationException(
                f"sync policy must be one of {', '.join(SYNC_POLICIES)}, got {sync!r}"
            )
        self.directory = Path(directory)
        self.partition_name = partition_name
        self.sync_policy = sync
        self.segment_bytes = segment_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._segment_first_lsn = 0
        self._segment_offset = 0  # bytes written to the active segment
        self.last_lsn = 0  # newest LSN written (not necessarily durable)
        self.first_lsn = 0  # oldest LSN still on disk (0: none)
        self._durable_lsn = 0
        self._sync_cond = threading.Condition()
        self._syncing = False
        self._closed = False
        self.rollovers = 0  # segments started since open; partitions checkpoint on change

    # ------------------------------------------------------------------ open / recover
    def segments(self) -> list[tuple[int, Path]]:
        """(first LSN, path) of every segment, oldest first."""
        result = []
        for path in self.directory.iterdir():
            if path.suffix != SEGMENT_SUFFIX:
                continue
            stem = path.stem
            if not stem.isdigit():
                raise CorruptionError(
                    "unexpected file in WAL directory", partition=self.partition_name, path=str(path)
                )
            result.append((int(stem), path))
        result.sort()
        return result

    def recover(self, applied_lsn: int) -> Iterator[tuple[int, bytes]]:
        """Scan every segment, cut a torn tail, yield the records above ``applied_lsn``.

        Must be consumed fully before appending. Leaves the log ready to append at
        ``max(last record, applied_lsn) + 1``.
        """
        segments = self.segments()
        expect_lsn: int | None = None
        tail_lsn = 0  # last record of the newest segment
        for index, (first_lsn, path) in enumerate(segments):
            is_last = index == len(segments) - 1
            data = path.read_bytes()
            records, good_end, problem = _walframe.scan_records(data, 0)
            if records and records[0][0] != first_lsn:
                raise CorruptionError(
                    f"WAL segment starts at LSN {records[0][0]} but is named for {first_lsn}",
                    partition=self.partition_name, path=str(path), offset=0,
                )
            if expect_lsn is not None and records and first_lsn != expect_lsn:
                # A gap between segments: records a reader might need are gone.
                if first_lsn > applied_lsn + 1 or expect_lsn > first_lsn:
                    raise CorruptionError(
                        f"WAL LSNs jump from {expect_lsn - 1} to {first_lsn}",
                        partition=self.partition_name, path=str(path), offset=0,
                    )
            if problem == "corrupt":
                raise CorruptionError(
                    "WAL record failed its checksum", partition=self.partition_name,
                    path=str(path), offset=good_end,
                )
            if problem == "torn":
                if not is_last:
                    raise CorruptionError(
                        "WAL segment ends in an incomplete record but is not the newest segment",
                        partition=self.partition_name, path=str(path), offset=good_end,
                    )
                with open(path, "r+b") as handle:
                    handle.truncate(good_end)
                    os.fsync(handle.fileno())
            if records:
                if self.first_lsn == 0:
                    self.first_lsn = records[0][0]
                self.last_lsn = records[-1][0]
                expect_lsn = self.last_lsn + 1
            for lsn, payload in records:
                if lsn > applied_lsn:
                    yield lsn, payload
            if is_last:
                self._segment_first_lsn = first_lsn
                self._segment_offset = good_end
                tail_lsn = records[-1][0] if records else 0
        if segments and self.first_lsn > applied_lsn + 1:
            raise CorruptionError(
                f"WAL starts at LSN {self.first_lsn} but the data is only at LSN {applied_lsn}: "
                "records in between are missing",
                partition=self.partition_name, path=str(self.directory),
            )
        self.last_lsn = max(self.last_lsn, applied_lsn)
        self._durable_lsn = self.last_lsn
        if segments and self._segment_offset > 0 and tail_lsn == self.last_lsn:
            path = self.directory / segment_name(self._segment_first_lsn)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        else:
            # Empty newest segment (or none): start a fresh one at the next LSN.
            for _, path in segments:
                if path.stat().st_size == 0:
                    path.unlink()
            self._open_new_segment(self.last_lsn + 1)

    def _open_new_segment(self, first_lsn: int) -> None:
        path = self.directory / segment_name(first_lsn)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segment_first_lsn = first_lsn
        self._segment_offset = 0
        fsync_dir(self.directory)

    # ------------------------------------------------------------------ append / sync
    def append(self, payload: bytes) -> int:
        """Append one record with the next LSN; returns the LSN. Caller holds the write lock.

        Under ``always`` the record is durable when this returns; otherwise call
        :meth:`wait_durable` after releasing the lock.
        """
        if self._closed:
            raise ValidationException(f"WAL of partition {self.partition_name} is closed")
        lsn = self.last_lsn + 1
        frame = _walframe.frame_record(lsn, payload)
        if self._segment_offset and self._segment_offset + len(frame) > self.segment_bytes:
            self._roll_over(lsn)
        written = os.write(self._fd, frame)
        if written != len(frame):  # a short write to a regular file: disk full
            raise OSError(f"short write to WAL of partition {self.partition_name}")
        self._segment_offset += written
        self.last_lsn = lsn
        if self.first_lsn == 0:
            self.first_lsn = lsn
        if self.sync_policy == "always":
            os.fdatasync(self._fd)
            self._durable_lsn = lsn
        return lsn

    def _roll_over(self, next_lsn: int) -> None:
        with self._sync_cond:
            while self._syncing:
                self._sync_cond.wait()
            if self.sync_policy != "none":
                os.fdatasync(self._fd)
                self._durable_lsn = self.last_lsn
            os.close(self._fd)
            self._open_new_segment(next_lsn)
            self.rollovers += 1
            self._sync_cond.notify_all()

    def wait_durable(self, lsn: int) -> None:
        """Return once record ``lsn`` is durable under the sync policy (group commit)."""
        if self.sync_policy != "batch":
            return
        cond = self._sync_cond
        with cond:
            while self._durable_lsn < lsn:
                if self._syncing:
                    cond.wait()
                    continue
                self._syncing = True
                target = self.last_lsn
                fd = self._fd
                cond.release()
                try:
                    os.fdatasync(fd)
                finally:
                    cond.acquire()
                    self._syncing = False
                    cond.notify_all()
                self._durable_lsn = max(self._durable_lsn, target)

    def flush(self) -> None:
        """Make everything written durable, whatever the policy (used at close and checkpoints)."""
        with self._sync_cond:
            while self._syncing:
                self._sync_cond.wait()
            if self._fd is not None:
                os.fdatasync(self._fd)
            self._durable_lsn = self.last_lsn

    # ------------------------------------------------------------------ read / retention
    def read_records(self, after_lsn: int, upto_lsn: int) -> Iterator[tuple[int, bytes]]:
        """Yield records with ``after_lsn < lsn <= upto_lsn`` (the catch-up source, SPEC §5).

        Safe while appends continue: only records up to ``upto_lsn``, which must already be
        written, are read. Raises CorruptionError if a needed record is missing or bad.
        """
        if upto_lsn <= after_lsn:
            return
        segments = self.segments()
        next_needed = after_lsn + 1
        for index, (first_lsn, path) in enumerate(segments):
            next_first = segments[index + 1][0] if index + 1 < len(segments) else None
            if next_first is not None and next_first <= next_needed:
                continue  # every record of this segment is at or below after_lsn
            if first_lsn > next_needed:
                break
            with open(path, "rb") as handle:
                data = handle.read()
            records, good_end, problem = _walframe.scan_records(data, 0)
            if problem == "corrupt":
                raise CorruptionError(
                    "WAL record failed its checksum during catch-up",
                    partition=self.partition_name, path=str(path), offset=good_end,
                )
            for lsn, payload in records:
                if lsn < next_needed:
                    continue
                if lsn != next_needed:
                    break
                yield lsn, payload
                next_needed = lsn + 1
                if lsn >= upto_lsn:
                    return
        if next_needed <= upto_lsn:
            raise CorruptionError(
                f"WAL records {next_needed}..{upto_lsn} needed for catch-up are missing",
                partition=self.partition_name, path=str(self.directory),
            )

    def remove_segments_through(self, lsn: int) -> int:
        """Delete whole segments whose records are all ``<= lsn``; never the active one.

        The caller makes sure the data those records describe is durable elsewhere (an
        fsynced LMDB environment) and no reader still needs them (backups, replicas).
        Returns the number of segments removed.
        """
        segments = self.segments()
        removed = 0
        for (first_lsn, path), (next_first, _) in zip(segments, segments[1:], strict=False):
            if next_first - 1 > lsn or first_lsn == self._segment_first_lsn:
                break
            path.unlink()
            removed += 1
        if removed:
            remaining = self.segments()
            self.first_lsn = remaining[0][0] if remaining else 0
            fsync_dir(self.directory)
        return removed

    def close(self) -> None:
        if self._closed:
            return
        if self._fd is not None:
            if self.sync_policy != "none":
                self.flush()
            os.close(self._fd)
            self._fd = None
        self._closed = True
