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

Where the durable end is (issue 12: a segment truncated at a record boundary, or deleted,
looked like a torn tail, and acknowledged writes were lost without a word). Each segment
(format 2) starts with a 64-byte header::

    offset 0   4  magic b"TWAL"   (a u32 over 1 GiB: never the start of a format-1 record)
    offset 4   u32 format = 2
    offset 8   u64 first_lsn       (as in the file name)
    offset 16  u64 prev_record_lsn (the newest record in the WAL when it was created)
    offset 24  u32 CRC32C of bytes [0, 24), then 4 zero bytes
    offset 32  the seal: all zero while the segment is written to, then, once, when it
               is finished: u64 end (its length in bytes) | u64 last_lsn (its last
               record, 0 if none) | u32 reason (1 rolled over, 2 closed) | u32 CRC32C of
               the 20 bytes before | 8 zero bytes
    offset 64  records

A segment is created whole (written to ``NAME.tmp``, fsynced, renamed, directory fsynced),
and sealed after its records are fsynced: by a rollover (once its successor exists, so a
crash in between leaves it unsealed with the successor's ``prev_record_lsn`` pinning its
end) or by :meth:`close`. A sealed segment is never written again: every open starts a new
one. So on open:

* a sealed segment must be exactly ``end`` bytes with ``last_lsn`` its last record;
* each segment's ``prev_record_lsn`` must be the newest record of the segments before it
  (else one was truncated at a record boundary, or one between was deleted);
* the newest segment may be unsealed only after a crash, and only its torn tail is cut;
  sealed "rolled over" with no successor, its successor was deleted;
* records between ``applied_lsn`` (data.mdb) and the WAL are never missing: the oldest
  segment's ``prev_record_lsn`` must be ``<= applied_lsn``.

Each failure is a :class:`CorruptionError` naming the damaged (or the missing) file. What
is left undetectable: a truncation, at a record boundary, of the newest segment of a WAL
that was not closed (after a crash, before the next open), and the deletion of every
segment. Files of format 1 (no header, written before) are still read, with the old rules;
the ``FORMAT`` file (``tessera-wal 2 FIRST_LSN``, written before the first format-2
segment) says from which LSN on a segment without a header is a damaged one.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

from . import _walframe
from .errors import CorruptionError, ValidationException
from .volumes import fsync_dir

SYNC_POLICIES = ("always", "batch", "none")
SEGMENT_SUFFIX = ".wal"
DEFAULT_SEGMENT_BYTES = 64 << 20  # 64 MiB
SEGMENT_MAGIC = b"TWAL"
SEGMENT_FORMAT = 2
SEGMENT_HEADER_BYTES = 64
FORMAT_FILE = "FORMAT"
SEAL_ROLLED = 1
SEAL_CLOSED = 2
_HEAD = struct.Struct("<4sIQQ")  # magic, format, first_lsn, prev_record_lsn
_SEAL = struct.Struct("<QQI")  # end, last_lsn, reason
_SEAL_OFFSET = 32
_SEAL_REASONS = {SEAL_ROLLED: "rolled over", SEAL_CLOSED: "closed"}


def segment_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}{SEGMENT_SUFFIX}"


def records_offset(head: bytes) -> int:
    """Where the records of a segment starting with ``head`` begin (format 1: at 0)."""
    return SEGMENT_HEADER_BYTES if head[:4] == SEGMENT_MAGIC else 0


def segment_header(first_lsn: int, prev_record_lsn: int) -> bytes:
    """The 64 bytes a format-2 segment starts with, unsealed."""
    head = _HEAD.pack(SEGMENT_MAGIC, SEGMENT_FORMAT, first_lsn, prev_record_lsn)
    return (head + struct.pack("<I", _walframe.crc32c(head))).ljust(SEGMENT_HEADER_BYTES, b"\0")


def seal_bytes(end: int, last_lsn: int, reason: int) -> bytes:
    """The seal written at offset 32 of a finished segment."""
    seal = _SEAL.pack(end, last_lsn, reason)
    return (seal + struct.pack("<I", _walframe.crc32c(seal))).ljust(32, b"\0")


class _Segment:
    """What recovery learned about one segment file (payloads are not kept)."""

    __slots__ = ("first_lsn", "path", "formatted", "prev_record_lsn", "seal", "size",
                 "record_count", "first_record", "last_record", "good_end", "problem")

    def __init__(self, first_lsn: int, path: Path) -> None:
        self.first_lsn = first_lsn
        self.path = path
        self.formatted = False  # format 2 (with a header)
        self.prev_record_lsn = first_lsn - 1
        self.seal: tuple[int, int, int] | None = None  # (end, last_lsn, reason)
        self.size = 0
        self.record_count = 0
        self.first_record = 0
        self.last_record = 0
        self.good_end = 0
        self.problem: str | None = None



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
        self._segment_offset = 0  # bytes in the active segment (its header included)
        self._segment_last_record = 0  # LSN of its last record (0: none yet)
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
        """Check every segment, cut a torn tail, yield the records above ``applied_lsn``.

        Must be consumed fully before appending. Raises :class:`CorruptionError` (naming
        the file) for anything but a torn tail of an unsealed newest segment (see the
        module docstring). Leaves the log appending to a new segment at
        ``max(last record, applied_lsn) + 1``.
        """
        for path in self.directory.glob(f"*{SEGMENT_SUFFIX}.tmp"):
            path.unlink()  # a segment whose creation a crash interrupted
        marker_lsn = self._format_marker()
        segments = self.segments()
        previous: _Segment | None = None
        newest_record = 0  # the newest record LSN seen so far (0: none)
        for index, (first_lsn, path) in enumerate(segments):
            is_last = index == len(segments) - 1
            data = path.read_bytes()
            segment, records = self._inspect(first_lsn, path, data, marker_lsn)
            del data
            if previous is None:
                newest_record = segment.prev_record_lsn
                if segment.prev_record_lsn > applied_lsn:
                    raise CorruptionError(
                        f"WAL starts after LSN {segment.prev_record_lsn} but the data is only "
                        f"at LSN {applied_lsn}: records {applied_lsn + 1}.."
                        f"{segment.prev_record_lsn} are missing: the segments holding them, "
                        f"before {path.name}, were deleted",
                        partition=self.partition_name, path=str(path),
                    )
            else:
                self._check_chain(previous, segment, newest_record, applied_lsn)
            self._check_tail(segment, is_last)
            if segment.problem == "torn":  # the newest, unsealed: a crash mid-append
                with open(path, "r+b") as handle:
                    handle.truncate(segment.good_end)
                    os.fsync(handle.fileno())
            if segment.record_count:
                if self.first_lsn == 0:
                    self.first_lsn = segment.first_record
                newest_record = segment.last_record
            for lsn, payload in records:
                if lsn > applied_lsn:
                    yield lsn, payload
            del records
            previous = segment
        self.last_lsn = max(newest_record, applied_lsn)
        self._durable_lsn = self.last_lsn
        if previous is not None and previous.record_count == 0 and (
                previous.first_lsn == self.last_lsn + 1):
            previous.path.unlink()  # an empty newest segment: its successor takes its name
            fsync_dir(self.directory)
            previous = None
        if marker_lsn is None:
            self._write_format_marker(self.last_lsn + 1)
        self._open_new_segment(self.last_lsn + 1, newest_record)
        if previous is not None and previous.formatted and previous.seal is None:
            # Left unsealed by a crash: finished now that its successor exists.
            self._seal(previous.path, previous.good_end, previous.last_record, SEAL_ROLLED)

    def _format_marker(self) -> int | None:
        """The first LSN of format 2 in this directory (``FORMAT``), or None."""
        path = self.directory / FORMAT_FILE
        try:
            text = path.read_text("ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            raise CorruptionError(f"unreadable WAL format file: {err}",
                                  partition=self.partition_name, path=str(path)) from err
        parts = text.split()
        if len(parts) != 3 or parts[:2] != ["tessera-wal", "2"] or not parts[2].isdigit():
            raise CorruptionError(f"WAL format file holds {text[:60]!r}, expected "
                                  "'tessera-wal 2 FIRST_LSN'",
                                  partition=self.partition_name, path=str(path))
        return int(parts[2])

    def _write_format_marker(self, first_lsn: int) -> None:
        path = self.directory / FORMAT_FILE
        temporary = path.with_name(FORMAT_FILE + ".tmp")
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(f"tessera-wal 2 {first_lsn}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_dir(self.directory)

    def _inspect(self, first_lsn: int, path: Path, data: bytes,
                 marker_lsn: int | None) -> tuple[_Segment, list[tuple[int, bytes]]]:
        """Parse a segment's header, seal and records, checking what needs no neighbour;
        returns it with its good records."""
        segment = _Segment(first_lsn, path)
        segment.size = len(data)
        where = {"partition": self.partition_name, "path": str(path)}
        has_magic = data[:4] == SEGMENT_MAGIC
        if has_magic or (marker_lsn is not None and first_lsn >= marker_lsn):
            if not has_magic and len(data) >= 4:
                raise CorruptionError(
                    "WAL segment lost its header (segments from LSN "
                    f"{marker_lsn} on have one): it was overwritten", offset=0, **where)
            if len(data) < SEGMENT_HEADER_BYTES:
                raise CorruptionError(
                    f"WAL segment is {len(data)} bytes, shorter than its "
                    f"{SEGMENT_HEADER_BYTES}-byte header: it was truncated", offset=0, **where)
            magic, version, named, prev = _HEAD.unpack_from(data)
            (header_crc,) = struct.unpack_from("<I", data, _HEAD.size)
            if header_crc != _walframe.crc32c(data[:_HEAD.size]) or version != SEGMENT_FORMAT:
                raise CorruptionError("WAL segment header is damaged", offset=0, **where)
            if named != first_lsn:
                raise CorruptionError(
                    f"WAL segment header says first LSN {named}, its name {first_lsn}",
                    offset=0, **where)
            segment.formatted = True
            segment.prev_record_lsn = prev
            slot = data[_SEAL_OFFSET:SEGMENT_HEADER_BYTES]
            if any(slot):
                (seal_crc,) = struct.unpack_from("<I", slot, _SEAL.size)
                if seal_crc != _walframe.crc32c(slot[:_SEAL.size]) or any(slot[24:]):
                    raise CorruptionError("WAL segment seal is damaged",
                                          offset=_SEAL_OFFSET, **where)
                segment.seal = _SEAL.unpack_from(slot)
                if segment.seal[2] not in _SEAL_REASONS:
                    raise CorruptionError("WAL segment seal is damaged",
                                          offset=_SEAL_OFFSET, **where)
        start = records_offset(data)
        records, good_end, problem = _walframe.scan_records(data, start)
        segment.good_end = good_end
        segment.problem = problem
        if records:
            segment.record_count = len(records)
            segment.first_record = records[0][0]
            segment.last_record = records[-1][0]
            if segment.first_record != first_lsn:
                raise CorruptionError(
                    f"WAL segment starts at LSN {segment.first_record} but is named for "
                    f"{first_lsn}", offset=start, **where)
        if problem == "corrupt":
            raise CorruptionError("WAL record failed its checksum", offset=good_end, **where)
        if segment.seal is not None:
            end, last_lsn, reason = segment.seal
            if len(data) != end or problem is not None or last_lsn != segment.last_record:
                raise CorruptionError(
                    f"WAL segment was sealed ({_SEAL_REASONS[reason]}) at {end} bytes ending "
                    f"with LSN {last_lsn}, but is {len(data)} bytes ending with LSN "
                    f"{segment.last_record or 'none'}: it was "
                    f"{'truncated' if len(data) < end else 'changed'}",
                    offset=min(len(data), end), **where)
        return segment, records

    def _check_chain(self, previous: _Segment, segment: _Segment, newest_record: int,
                     applied_lsn: int) -> None:
        """``segment`` follows ``previous``: nothing may be missing between them."""
        where = {"partition": self.partition_name}
        if segment.formatted:
            if segment.prev_record_lsn > newest_record:
                if previous.seal is not None:  # intact: a segment between was deleted
                    missing = self.directory / segment_name(newest_record + 1)
                    raise CorruptionError(
                        f"WAL segment {segment.path.name} follows LSN "
                        f"{segment.prev_record_lsn}, but the segments before it end at LSN "
                        f"{newest_record}: the segment holding LSN {newest_record + 1}.."
                        f"{segment.prev_record_lsn} is missing", path=str(missing), **where)
                raise CorruptionError(
                    f"WAL segment ends at LSN {newest_record or 'none'} but the next segment "
                    f"({segment.path.name}) says records up to {segment.prev_record_lsn} came "
                    "before it: it was truncated", path=str(previous.path),
                    offset=previous.good_end, **where)
            if segment.prev_record_lsn < newest_record:
                raise CorruptionError(
                    f"WAL segment says the newest record before it is LSN "
                    f"{segment.prev_record_lsn}, but the segments before it reach LSN "
                    f"{newest_record}", path=str(segment.path), offset=0, **where)
        elif previous.formatted:
            raise CorruptionError(
                "WAL segment has no header but follows one that has (segments written "
                "since format 2 all have one): it was truncated or overwritten",
                path=str(segment.path), offset=0, **where)
        gap_end = segment.first_lsn - 1
        if gap_end > newest_record and gap_end > applied_lsn:
            raise CorruptionError(
                f"WAL LSNs jump from {newest_record} to {segment.first_lsn} and the data is "
                f"only at LSN {applied_lsn}: records in between are missing",
                path=str(segment.path), offset=0, **where)
        if gap_end < newest_record:
            raise CorruptionError(
                f"WAL segment starts at LSN {segment.first_lsn}, but the segment before it "
                f"already reaches LSN {newest_record}", path=str(segment.path), offset=0,
                **where)

    def _check_tail(self, segment: _Segment, is_last: bool) -> None:
        """Rules for the newest segment (and a torn tail anywhere else)."""
        where = {"partition": self.partition_name, "path": str(segment.path)}
        if segment.problem == "torn" and not is_last:
            raise CorruptionError(
                "WAL segment ends in an incomplete record but is not the newest segment",
                offset=segment.good_end, **where)
        if is_last and segment.seal is not None and segment.seal[2] == SEAL_ROLLED:
            missing = self.directory / segment_name(segment.seal[1] + 1
                                                    if segment.seal[1] else segment.first_lsn)
            raise CorruptionError(
                f"WAL segment {segment.path.name} was sealed by a rollover, but the segment "
                f"after it ({missing.name}) is missing",
                partition=self.partition_name, path=str(missing))

    def _open_new_segment(self, first_lsn: int, prev_record_lsn: int) -> None:
        """Create the next segment whole (header written, fsynced, renamed into place)."""
        path = self.directory / segment_name(first_lsn)
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, segment_header(first_lsn, prev_record_lsn))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        fsync_dir(self.directory)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._segment_first_lsn = first_lsn
        self._segment_offset = SEGMENT_HEADER_BYTES
        self._segment_last_record = 0

    def _seal(self, path: Path, end: int, last_lsn: int, reason: int) -> None:
        """Write a finished segment's seal (its records are durable already)."""
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, seal_bytes(end, last_lsn, reason), _SEAL_OFFSET)
            os.fdatasync(fd)
        finally:
            os.close(fd)

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
        if self._segment_last_record and (
                self._segment_offset + len(frame) > self.segment_bytes):
            self._roll_over(lsn)
        written = os.write(self._fd, frame)
        if written != len(frame):  # a short write to a regular file: disk full
            raise OSError(f"short write to WAL of partition {self.partition_name}")
        self._segment_offset += written
        self._segment_last_record = lsn
        self.last_lsn = lsn
        if self.first_lsn == 0:
            self.first_lsn = lsn
        if self.sync_policy == "always":
            os.fdatasync(self._fd)
            self._durable_lsn = lsn
        return lsn

    def _roll_over(self, next_lsn: int) -> None:
        """Finish the active segment and start the next: its records are fsynced (under
        every policy: a seal must not claim more than is durable), the successor is
        created, then the segment is sealed (module docstring: a crash between leaves it
        unsealed, its end pinned by the successor's header)."""
        with self._sync_cond:
            while self._syncing:
                self._sync_cond.wait()
            os.fdatasync(self._fd)
            self._durable_lsn = self.last_lsn
            old_fd = self._fd
            finished = (self.directory / segment_name(self._segment_first_lsn),
                        self._segment_offset, self._segment_last_record)
            try:
                self._open_new_segment(next_lsn, self.last_lsn)
            finally:
                os.close(old_fd)
            self._seal(*finished, SEAL_ROLLED)
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
            records, good_end, problem = _walframe.scan_records(data, records_offset(data))
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
        """Fsync (whatever the policy) and seal the active segment: from now on a
        truncation of any segment is detected (module docstring). Idempotent."""
        if self._closed:
            return
        if self._fd is not None:
            self.flush()
            os.close(self._fd)
            self._fd = None
            self._seal(self.directory / segment_name(self._segment_first_lsn),
                       self._segment_offset, self._segment_last_record, SEAL_CLOSED)
        self._closed = True
