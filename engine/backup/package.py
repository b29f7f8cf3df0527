"""Package one exported partition into one object: ``partition.json`` + ``data.mdb``, tar, zstd.

Object format (format_version 1), readable with nothing but ``zstd -d`` and ``tar -x``
(see RESTORE_BY_HAND.md)::

    one zstd frame (content size and XXH64 checksum in the frame), holding
      a PAX/ustar tar with exactly two regular files, in this order:
        partition.json   the PartitionManifest with item_count, logical_checksum,
                         data_size_bytes and data_crc32c filled in; object_key,
                         object_size_bytes and object_crc32c are null, because an object
                         cannot contain its own size and checksum — those live in the
                         backup manifest (manifest.json) next to the objects
        data.mdb         the compacted LMDB data file, byte for byte

``partition.json`` comes first so an extractor knows the expected size and checksum of
``data.mdb`` before writing a byte of it. That costs one extra read of ``data.mdb`` to
take its CRC32C before streaming (page-cache hot, ~10 GB/s); the streaming pass takes it
again and must agree, so a file that changes under us is caught rather than shipped.

Input: the directory ``Partition.export_copy`` produced (physical copy + catch-up, SPEC
§5), no longer written to. Its ``applied_lsn`` must equal the manifest's ``backup_lsn``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import google_crc32c
import zstandard

from ..errors import CorruptionError, ValidationException
from ..volumes import fsync_dir
from . import tar_stream
from .checksums import CrcCountingWriter
from .logical import logical_checksum, open_readonly, read_applied_lsn
from .manifest import COMPRESSION, LMDB_FORMAT, PartitionManifest, crc32c_hex

MANIFEST_MEMBER = "partition.json"
DATA_MEMBER = "data.mdb"
READ_CHUNK_BYTES = 4 << 20  # 4 MiB: large enough that per-call overhead vanishes
ZSTD_WRITE_SIZE = 1 << 20  # 1 MiB compressed chunks handed to the output

#: Test hook: called with the packaged file's path by :func:`package_partition_to_file`
#: after it is written and synced, so a test can damage it before verify/upload.
corrupt_packaged_object_hook: Callable[[Path], None] | None = None

#: ``progress(n)`` is told each time another ``n`` raw bytes of data.mdb were packaged
#: (the signature of ``tqdm.update``).
Progress = Callable[[int], None]


@dataclass(frozen=True)
class PackageResult:
    """What was written: the complete manifest (object_* filled in) and the numbers."""

    manifest: PartitionManifest
    data_size_bytes: int
    data_crc32c: str
    object_size_bytes: int
    object_crc32c: str
    item_count: int
    logical_checksum: str
    elapsed_seconds: float


def package_partition(
    env_dir: Path,
    manifest: PartitionManifest,
    out: BinaryIO,
    *,
    level: int = 3,
    threads: int = 2,
    progress: Progress | None = None,
) -> PackageResult:
    """Write the partition object for ``env_dir`` to ``out``, streaming; return its checksums.

    ``manifest`` supplies identity, interval, schema, LSN and ``object_key``; the computed
    fields are (re)computed here from the environment. ``out`` receives exactly the object
    bytes and is neither flushed to disk nor closed.
    """
    started = time.perf_counter()
    env_dir = Path(env_dir)
    manifest.validate(f"package input for {env_dir}", mode="input")
    data_path = env_dir / DATA_MEMBER
    name = f"{manifest.table_name}/{manifest.partition_id}"

    env = open_readonly(env_dir) if data_path.is_file() else None
    if env is None:
        raise ValidationException(f"{env_dir} holds no {DATA_MEMBER}: package an export "
                                  "made by Partition.export_copy")
    try:
        applied_lsn = read_applied_lsn(env)
        if applied_lsn != manifest.backup_lsn:
            raise ValidationException(
                f"partition {name}: the export at {env_dir} is at applied_lsn "
                f"{applied_lsn} but the manifest says backup_lsn {manifest.backup_lsn}; "
                "catch the copy up to backup_lsn before packaging")
    finally:
        env.close()
    item_count, digest = logical_checksum(env_dir)  # closed: walked in C, without the GIL

    with open(data_path, "rb", buffering=0) as data_file:
        data_size, data_crc = crc_file(data_file)
        archived = dataclasses.replace(
            manifest,
            item_count=item_count,
            logical_checksum=digest,
            data_size_bytes=data_size,
            data_crc32c=crc32c_hex(data_crc),
            compression=COMPRESSION,
            compression_level=level,
            lmdb_format=LMDB_FORMAT,
            object_key=None,
            object_size_bytes=None,
            object_crc32c=None,
        )
        manifest_json = archived.to_json()
        mtime = int(manifest.created_at)
        head = (tar_stream.regular_file_header(MANIFEST_MEMBER, len(manifest_json), mtime)
                + manifest_json + tar_stream.padding(len(manifest_json))
                + tar_stream.regular_file_header(DATA_MEMBER, data_size, mtime))
        tail_offset = len(head) + data_size + len(tar_stream.padding(data_size))
        tail = tar_stream.padding(data_size) + tar_stream.end_of_archive(tail_offset)

        counted = CrcCountingWriter(out)
        compressor = zstandard.ZstdCompressor(
            level=level, threads=threads, write_checksum=True, write_content_size=True)
        # Pledging the tar's exact size puts it in the frame header; zstd then refuses
        # on decompression any frame whose content is longer or shorter.
        writer = compressor.stream_writer(counted, size=len(head) + data_size + len(tail),
                                          write_size=ZSTD_WRITE_SIZE, closefd=False)
        writer.write(head)
        data_file.seek(0)
        streamed_size, streamed_crc = 0, 0
        while chunk := data_file.read(READ_CHUNK_BYTES):
            streamed_crc = google_crc32c.extend(streamed_crc, chunk)
            streamed_size += len(chunk)
            if streamed_size > data_size:
                break
            writer.write(chunk)
            if progress is not None:
                progress(len(chunk))
        if streamed_size != data_size or streamed_crc != data_crc:
            # Not closing the writer: ending the frame would fail on the pledged size
            # and hide this, the real reason.
            raise CorruptionError(
                f"{DATA_MEMBER} changed while it was being packaged (size {data_size} "
                f"-> {streamed_size}, crc32c {crc32c_hex(data_crc)} -> "
                f"{crc32c_hex(streamed_crc)}): nothing may write an export",
                partition=name, path=str(data_path))
        writer.write(tail)
        writer.close()  # ends the frame (closefd=False: ``out`` stays open)

    result_manifest = dataclasses.replace(
        archived,
        object_key=manifest.object_key,
        object_size_bytes=counted.size_bytes,
        object_crc32c=counted.crc32c_hex,
    )
    return PackageResult(
        manifest=result_manifest,
        data_size_bytes=data_size,
        data_crc32c=crc32c_hex(data_crc),
        object_size_bytes=counted.size_bytes,
        object_crc32c=counted.crc32c_hex,
        item_count=item_count,
        logical_checksum=digest,
        elapsed_seconds=time.perf_counter() - started,
    )


def package_partition_to_file(
    env_dir: Path,
    manifest: PartitionManifest,
    path: Path,
    *,
    level: int = 3,
    threads: int = 2,
    progress: Progress | None = None,
) -> PackageResult:
    """:func:`package_partition` into ``path`` atomically: temp file, fsync, rename, fsync dir.

    A crash never leaves a half-written object under the final name.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as out:
            result = package_partition(env_dir, manifest, out, level=level,
                                       threads=threads, progress=progress)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    if corrupt_packaged_object_hook is not None:
        corrupt_packaged_object_hook(path)
    return result


def crc_file(data_file: BinaryIO) -> tuple[int, int]:
    """``(size, CRC32C)`` of the rest of ``data_file``, read in 4 MiB chunks."""
    size, crc = 0, 0
    while chunk := data_file.read(READ_CHUNK_BYTES):
        crc = google_crc32c.extend(crc, chunk)
        size += len(chunk)
    return size, crc
