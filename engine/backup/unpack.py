"""Safely re-inflate a partition object into a directory (restore and verify share this).

An object may come from a damaged disk, a bad upload or an attacker with write access to
the bucket, so nothing in it is trusted. Accepted: one zstd frame, nothing after it,
holding a tar of exactly ``partition.json`` then ``data.mdb``, both regular files, and
an end-of-archive marker. Refused, with a :class:`~engine.errors.CorruptionError` naming
the object, the partition and the problem: any other member name (absolute, ``..``,
unknown, duplicate), links, devices, directories, a ``data.mdb`` whose size differs from
the manifest's (refused from its header, before a byte is written — a hostile object
cannot fill the disk), a CRC32C mismatch, a truncated or over-long stream.

Only two file names are ever created, both chosen here and both inside ``dest_dir``:
``data.mdb`` (written as ``data.mdb.partial`` and renamed once verified) and
``partition.json``. On failure neither is left behind.

:func:`compare_partition` runs the same checks but writes nothing: it proves the
re-inflated ``data.mdb`` byte-identical to a reference file (the export it was packaged
from), which is how a backup verifies its objects before upload.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import BinaryIO

import google_crc32c
import zstandard

from ..errors import CorruptionError, ValidationException
from ..volumes import fsync_dir
from . import tar_stream
from .manifest import PartitionManifest, crc32c_hex
from .package import DATA_MEMBER, MANIFEST_MEMBER
from .zstd_frame import ZstdFrameTracker

READ_SIZE_BYTES = 1 << 20  # compressed bytes per read of the source
CHUNK_BYTES = 4 << 20  # decompressed bytes per write to data.mdb
MAX_MANIFEST_BYTES = 1 << 20  # partition.json is ~1 KiB; refuse anything absurd
MAX_TRAILING_ZERO_BYTES = 1 << 20  # tar pads its end to a 10 KiB record

#: Fields of the in-archive manifest that must equal the expected (backup manifest) ones.
EXPECTED_FIELDS = (
    "backup_id", "table_id", "partition_id", "interval_start", "interval_end",
    "backup_lsn", "item_count", "logical_checksum", "data_size_bytes", "data_crc32c",
)
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)  # AREGTYPE: pre-POSIX regular file


def unpack_partition(
    source: BinaryIO,
    dest_dir: Path,
    expected: PartitionManifest | None = None,
    *,
    source_name: str,
    fsync: bool = True,
) -> PartitionManifest:
    """Extract ``data.mdb`` and ``partition.json`` from ``source`` into ``dest_dir``.

    ``source`` is read to its end (so trailing bytes are seen). When ``expected`` is
    given, every non-null field in :data:`EXPECTED_FIELDS` must match the in-archive
    manifest. ``fsync=False`` skips syncing (verify's scratch copies need no
    durability; restores do). Returns the in-archive manifest.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    for name in (DATA_MEMBER, MANIFEST_MEMBER):
        if os.path.lexists(dest_dir / name):
            raise ValidationException(f"{dest_dir / name} already exists: unpack into an "
                                      "empty directory")
    extraction = _Extraction(source, dest_dir, expected, source_name, fsync)
    try:
        return extraction.run()
    except BaseException:
        extraction.remove_outputs()
        raise


def compare_partition(
    source: BinaryIO,
    reference: Path,
    expected: PartitionManifest | None = None,
    *,
    source_name: str,
) -> PartitionManifest:
    """Re-inflate ``source`` in memory and check its ``data.mdb`` equals ``reference``.

    Every check of :func:`unpack_partition` applies (frame, tar structure, in-archive
    manifest against ``expected``, size, CRC32C, nothing trailing); in addition each
    re-inflated chunk is compared byte for byte with the same range of ``reference``,
    and a difference raises :class:`~engine.errors.CorruptionError` naming its offset.
    Nothing is written. Returns the in-archive manifest.
    """
    return _Extraction(source, None, expected, source_name, fsync=False,
                       reference=Path(reference)).run()


class _Extraction:
    """One unpack: the streams, what has been learnt so far, and the files written."""

    def __init__(self, source: BinaryIO, dest_dir: Path | None,
                 expected: PartitionManifest | None, source_name: str, fsync: bool,
                 reference: Path | None = None) -> None:
        self.tracker = ZstdFrameTracker(source)
        self.dest_dir = dest_dir
        self.expected = expected
        self.source_name = source_name
        self.fsync = fsync
        self.reference = reference  # compare with this file instead of writing dest_dir
        self.partition = expected.partition_id if expected is not None else None
        self.outputs: list[Path] = []

    def fail(self, message: str) -> CorruptionError:
        return CorruptionError(message, partition=self.partition, path=self.source_name)

    def remove_outputs(self) -> None:
        for path in self.outputs:
            path.unlink(missing_ok=True)

    # -- the steps --------------------------------------------------------------------

    def run(self) -> PartitionManifest:
        decompressor = zstandard.ZstdDecompressor()
        stream = decompressor.stream_reader(self.tracker, read_size=READ_SIZE_BYTES,
                                            read_across_frames=False, closefd=False)
        tar = tar_stream.TarReader(stream)
        try:
            manifest_json = self._read_manifest_member(tar)
            manifest = self._parse_manifest(manifest_json)
            self._check_expected(manifest)
            self._extract_data(tar, manifest)
            self._read_end(tar, stream)
        except tar_stream.TarFormatError as err:
            raise self._stream_problem(str(err)) from err
        except zstandard.ZstdError as err:
            raise self._stream_problem(f"zstd decompression failed: {err}") from err
        self._check_frame_end()
        if self.reference is None:
            self._commit(manifest_json)
        return manifest

    def _stream_problem(self, message: str) -> CorruptionError:
        # The frame walker often knows the real cause behind a tar or zstd complaint.
        tracker = self.tracker
        if tracker.problem is not None:
            return self.fail(f"malformed zstd stream: {tracker.problem}")
        if tracker.trailing_bytes:
            return self.fail(f"{message}; {tracker.trailing_bytes}+ bytes of trailing "
                             f"garbage after the zstd frame ending at offset "
                             f"{tracker.frame_end}")
        if tracker.eof and not tracker.complete:
            return self.fail(f"{message}; the object is truncated: it ends after "
                             f"{tracker.offset} bytes, {tracker.describe_state()}")
        return self.fail(message)

    def _member(self, tar: tar_stream.TarReader, wanted: str) -> tar_stream.MemberHeader:
        header = tar.next_header()
        if header is None:
            raise self.fail(f"the archive ends before its {wanted} member")
        where = f"tar member {header.name!r} at offset {header.offset}"
        name = header.name
        if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
            raise self.fail(f"{where} has an absolute path; refused")
        if ".." in name.replace("\\", "/").split("/"):
            raise self.fail(f"{where} climbs out of the directory with '..'; refused")
        if header.type in (tarfile.LNKTYPE, tarfile.SYMTYPE):
            raise self.fail(f"{where} is a {'hard' if header.type == tarfile.LNKTYPE else 'symbolic'} "
                            f"link to {header.linkname!r}; only regular files are accepted")
        if header.type not in _REGULAR:
            raise self.fail(f"{where} has tar type {header.type!r}, not a regular file "
                            "(devices, directories, FIFOs, sparse and GNU long-name "
                            "entries are refused)")
        if name != wanted:
            if name in (MANIFEST_MEMBER, DATA_MEMBER):
                raise self.fail(f"{where} is duplicated or out of order: expected "
                                f"{wanted!r} (the object holds {MANIFEST_MEMBER} then "
                                f"{DATA_MEMBER})")
            raise self.fail(f"{where} is unexpected: expected {wanted!r}")
        return header

    def _read_manifest_member(self, tar: tar_stream.TarReader) -> bytes:
        header = self._member(tar, MANIFEST_MEMBER)
        if header.size > MAX_MANIFEST_BYTES:
            raise self.fail(f"{MANIFEST_MEMBER} is {header.size} bytes, over the "
                            f"{MAX_MANIFEST_BYTES}-byte limit")
        data = tar.read_exact(header.size)
        tar.skip_padding(header.size)
        return data

    def _parse_manifest(self, data: bytes) -> PartitionManifest:
        try:
            manifest = PartitionManifest.from_json(
                data, f"{self.source_name}:{MANIFEST_MEMBER}", mode="in_archive")
        except CorruptionError as err:
            # zstd checks its frame checksum only at the end of the frame, so damage in
            # the first block shows up here first; say which partition it was.
            raise self.fail(f"the in-archive {MANIFEST_MEMBER} is bad: {err.message}") from err
        if self.partition is None:
            self.partition = manifest.partition_id
        return manifest

    def _check_expected(self, manifest: PartitionManifest) -> None:
        if self.expected is None:
            return
        for field in EXPECTED_FIELDS:
            want = getattr(self.expected, field)
            got = getattr(manifest, field)
            if want is not None and got != want:
                raise self.fail(f"the in-archive {MANIFEST_MEMBER} says {field}={got!r} "
                                f"but the backup manifest expects {want!r}")

    def _extract_data(self, tar: tar_stream.TarReader, manifest: PartitionManifest) -> None:
        header = self._member(tar, DATA_MEMBER)
        limit = manifest.data_size_bytes
        assert limit is not None  # in_archive validation requires it
        if header.size > limit:
            raise self.fail(f"{DATA_MEMBER} is {header.size} bytes in its tar header, "
                            f"larger than the {limit} bytes the manifest says; refused "
                            "before writing anything")
        if header.size != limit:
            raise self.fail(f"{DATA_MEMBER} is {header.size} bytes in its tar header but "
                            f"the manifest says {limit}")
        if self.reference is not None:
            crc = self._compare_data(tar, header.size)
        else:
            crc = self._write_data(tar, header.size)
        if crc32c_hex(crc) != manifest.data_crc32c:
            raise self.fail(f"{DATA_MEMBER} CRC32C is {crc32c_hex(crc)} but the manifest "
                            f"says {manifest.data_crc32c}")

    def _partial_path(self) -> Path:
        """Where ``data.mdb`` is written until it has been checked and renamed."""
        assert self.dest_dir is not None
        return self.dest_dir / (DATA_MEMBER + ".partial")

    def _write_data(self, tar: tar_stream.TarReader, size: int) -> int:
        """Stream the member into ``data.mdb.partial``; returns its CRC32C."""
        partial_path = self._partial_path()
        partial_path.unlink(missing_ok=True)  # a leftover from a crashed unpack
        # O_EXCL | O_NOFOLLOW: never write through a planted symlink.
        fd = os.open(partial_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        self.outputs.append(partial_path)
        written, crc = 0, 0
        with os.fdopen(fd, "wb", buffering=0) as out:
            for chunk in tar.iter_data(size, CHUNK_BYTES):
                written += len(chunk)
                if written > size:  # cannot happen past the header check; never trust
                    raise self.fail(f"{DATA_MEMBER} exceeds {size} bytes; stopped")
                crc = google_crc32c.extend(crc, chunk)
                out.write(chunk)
            if self.fsync:
                os.fsync(out.fileno())
        return crc

    def _compare_data(self, tar: tar_stream.TarReader, size: int) -> int:
        """Compare the member with ``self.reference`` chunk by chunk; returns its CRC32C."""
        assert self.reference is not None
        with open(self.reference, "rb", buffering=0) as ref:
            reference_size = os.fstat(ref.fileno()).st_size
            if reference_size != size:
                raise self.fail(f"re-inflated {DATA_MEMBER} is {size} bytes but "
                                f"{self.reference} is {reference_size}")
            offset, crc = 0, 0
            for chunk in tar.iter_data(size, CHUNK_BYTES):
                expected = os.pread(ref.fileno(), len(chunk), offset)
                if chunk != expected:
                    first = next((i for i, (a, b) in
                                  enumerate(zip(chunk, expected, strict=False)) if a != b),
                                 len(expected))
                    raise self.fail(f"re-inflated {DATA_MEMBER} differs from "
                                    f"{self.reference} at byte {offset + first}")
                crc = google_crc32c.extend(crc, chunk)
                offset += len(chunk)
        return crc

    def _read_end(self, tar: tar_stream.TarReader, stream: BinaryIO) -> None:
        header = tar.next_header()
        if header is not None:
            raise self.fail(f"unexpected extra tar member {header.name!r} at offset "
                            f"{header.offset} (the object holds only {MANIFEST_MEMBER} "
                            f"and {DATA_MEMBER})")
        trailing = tar.offset
        tar.read_exact(tar_stream.BLOCK)  # the second zero block of the end marker
        while chunk := stream.read(64 << 10):
            if chunk.count(0) != len(chunk):
                raise tar_stream.TarFormatError(
                    f"non-zero bytes after the tar end-of-archive marker at offset {trailing}")
            tar.offset += len(chunk)
            if tar.offset - trailing > MAX_TRAILING_ZERO_BYTES:
                raise tar_stream.TarFormatError(
                    f"over {MAX_TRAILING_ZERO_BYTES} bytes of padding after the tar "
                    "end-of-archive marker")

    def _check_frame_end(self) -> None:
        tracker = self.tracker
        # Read on past what the decompressor needed: the source must end with the frame.
        while not tracker.eof and not tracker.trailing_bytes and tracker.problem is None:
            tracker.read(READ_SIZE_BYTES)
        if tracker.problem is not None:
            raise self.fail(f"malformed zstd stream: {tracker.problem}")
        if not tracker.complete:
            raise self.fail(f"the object is truncated: it ends after {tracker.offset} "
                            f"bytes, {tracker.describe_state()}")
        if tracker.trailing_bytes:
            raise self.fail(f"{tracker.trailing_bytes}+ bytes of trailing garbage after "
                            f"the zstd frame ending at offset {tracker.frame_end}")

    def _commit(self, manifest_json: bytes) -> None:
        manifest_path = self.dest_dir / MANIFEST_MEMBER
        fd = os.open(manifest_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o644)
        self.outputs.append(manifest_path)
        with os.fdopen(fd, "wb") as out:
            out.write(manifest_json)
            if self.fsync:
                out.flush()
                os.fsync(out.fileno())
        data_path = self.dest_dir / DATA_MEMBER
        partial_path = self._partial_path()
        os.rename(partial_path, data_path)
        self.outputs[self.outputs.index(partial_path)] = data_path
        if self.fsync:
            fsync_dir(self.dest_dir)
