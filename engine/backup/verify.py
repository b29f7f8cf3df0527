"""Verify a partition object end to end, pgBackRest style: a result per object, not a raise.

Checks, in the order pgBackRest's verify uses (size, then checksum, then content):

1. the stored object's size and CRC32C against ``object_size_bytes`` / ``object_crc32c``
   (taken in the same pass that re-inflates it, so a streamed download is read once);
2. re-inflation through :func:`~engine.backup.unpack.unpack_partition` (structure, the
   in-archive manifest against the expected one, ``data.mdb`` size and CRC32C);
3. the re-inflated ``data.mdb`` opened read-only with plain py-lmdb: ``applied_lsn``,
   item count and logical checksum recomputed and compared.

A backup verifies each object before uploading it while the export it was packaged from
is still on disk (:func:`verify_packaged_file` with ``export_dir``): step 2 then compares
the re-inflated ``data.mdb`` byte for byte with the export's instead of writing it out,
and step 3 is not repeated, because packaging already opened that very file with LMDB
and took its ``applied_lsn``, item count and logical checksum. Byte-identical data gives
the same items, so re-walking it would recompute the same numbers; what verification
must catch — damage by packaging, compression or the disk the object sits on — shows up
as a difference in the comparison, the CRC32C or the zstd frame checksum. This saves
writing a full-size scratch copy and a second walk per partition.

Data problems become a :class:`VerifyResult` so one run can report every bad partition;
only misuse (an expected manifest without object checksums) and I/O errors raise.
LMDB is only ever handed a file whose CRC32C matched the packaging-time value, so a
damaged object cannot reach LMDB's page parser.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import lmdb

from ..errors import CorruptionError, ValidationException
from .checksums import CrcCountingReader
from .logical import logical_checksum, open_readonly, read_applied_lsn
from .manifest import PartitionManifest
from .package import DATA_MEMBER
from .unpack import compare_partition, unpack_partition

VerifyStatus = Literal["ok", "missing", "checksum_mismatch", "size_invalid", "corrupt"]


@dataclass(frozen=True)
class VerifyResult:
    """The outcome for one partition object; ``message`` says what was found and where."""

    status: VerifyStatus
    message: str
    source_name: str
    partition_id: str
    object_size_bytes: int | None = None  # as read (None if the object was missing)
    object_crc32c: str | None = None
    item_count: int | None = None  # recomputed from the re-inflated data (None if not reached)
    logical_checksum: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def verify_partition_object(
    source: BinaryIO | str | os.PathLike[str],
    expected: PartitionManifest,
    *,
    work_dir: Path,
    source_name: str | None = None,
) -> VerifyResult:
    """Verify one object against its backup-manifest entry; see the module docstring.

    ``source`` is an open binary stream (read to its end, not closed) or a path (a
    missing file gives status ``missing``). ``source_name`` (the object key) names the
    object in messages; it defaults to the path. Scratch files go in a fresh directory
    under ``work_dir``, removed before returning.
    """
    _require_object_checksums(expected)
    if source_name is None:
        if not isinstance(source, (str, os.PathLike)):
            raise ValidationException("source_name is required when source is a stream")
        source_name = os.fspath(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            stream = open(source, "rb")
        except FileNotFoundError:
            return VerifyResult("missing", f"partition {expected.partition_id}: object "
                                f"{source_name} does not exist",
                                source_name, expected.partition_id)
        with stream:
            return _verify_stream(stream, expected, Path(work_dir), source_name)
    return _verify_stream(source, expected, Path(work_dir), source_name)


def verify_packaged_file(
    path: Path,
    expected: PartitionManifest,
    *,
    work_dir: Path | None = None,
    export_dir: Path | None = None,
) -> VerifyResult:
    """Verify a freshly packaged file before upload (``expected`` = ``PackageResult.manifest``).

    With ``export_dir`` (the export it was packaged from, unchanged since), the
    re-inflated data is compared with the export's ``data.mdb`` instead of being written
    and reopened (see the module docstring). Otherwise ``work_dir`` defaults to the
    file's directory, so the scratch copy lands on the same volume as the staging area.
    """
    path = Path(path)
    if export_dir is None:
        return verify_partition_object(path, expected, work_dir=work_dir or path.parent,
                                       source_name=str(path))
    _require_object_checksums(expected)
    with open(path, "rb") as stream:
        return _verify_stream(stream, expected, None, str(path),
                              reference=Path(export_dir) / DATA_MEMBER)


def _require_object_checksums(expected: PartitionManifest) -> None:
    if expected.object_size_bytes is None or expected.object_crc32c is None:
        raise ValidationException(
            f"partition {expected.partition_id}: the expected manifest has no "
            "object_size_bytes/object_crc32c to verify against (pass PackageResult.manifest "
            "or the backup manifest's entry)")


def _verify_stream(stream: BinaryIO, expected: PartitionManifest, work_dir: Path | None,
                   source_name: str, reference: Path | None = None) -> VerifyResult:
    def result(status: VerifyStatus, message: str, **found: object) -> VerifyResult:
        return VerifyResult(status, message, source_name, expected.partition_id,
                            object_size_bytes=counted.size_bytes,
                            object_crc32c=counted.crc32c_hex, **found)  # type: ignore[arg-type]

    def physical_problem() -> VerifyResult | None:
        if counted.size_bytes != expected.object_size_bytes:
            return result("size_invalid",
                          f"partition {expected.partition_id}: object {source_name} is "
                          f"{counted.size_bytes} bytes, "
                          f"the manifest says {expected.object_size_bytes}")
        if counted.crc32c_hex != expected.object_crc32c:
            return result("checksum_mismatch",
                          f"partition {expected.partition_id}: object {source_name} has CRC32C "
                          f"{counted.crc32c_hex}, the manifest says {expected.object_crc32c}")
        return None

    counted = CrcCountingReader(stream)
    if reference is not None:
        try:
            compare_partition(counted, reference, expected, source_name=source_name)
        except CorruptionError as err:
            counted.drain()
            return physical_problem() or result("corrupt", str(err))
        return physical_problem() or result(
            "ok", f"partition {expected.partition_id}: object re-inflated byte-identical to "
            f"the export of {expected.item_count} items",
            item_count=expected.item_count, logical_checksum=expected.logical_checksum)
    assert work_dir is not None
    work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"verify-{expected.partition_id}-", dir=work_dir))
    try:
        try:
            unpack_partition(counted, scratch, expected, source_name=source_name,
                             fsync=False)
        except CorruptionError as err:
            counted.drain()  # the whole object's size and CRC say more than "corrupt"
            return physical_problem() or result("corrupt", str(err))
        problem = physical_problem()
        if problem is not None:
            return problem
        return _check_contents(scratch, expected, result)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check_contents(scratch: Path, expected: PartitionManifest, result) -> VerifyResult:
    name = f"partition {expected.partition_id}"
    try:
        env = open_readonly(scratch)
    except lmdb.Error as err:
        return result("corrupt", f"{name}: LMDB cannot open the re-inflated data.mdb: {err}")
    try:
        applied_lsn = read_applied_lsn(env)
    except (lmdb.Error, CorruptionError) as err:
        return result("corrupt", f"{name}: reading the re-inflated data.mdb failed: {err}")
    finally:
        env.close()
    try:
        item_count, digest = logical_checksum(scratch)  # closed: walked in C, without the GIL
    except CorruptionError as err:
        return result("corrupt", f"{name}: reading the re-inflated data.mdb failed: {err}")
    found = {"item_count": item_count, "logical_checksum": digest}
    if applied_lsn != expected.backup_lsn:
        return result("corrupt", f"{name}: re-inflated data is at applied_lsn {applied_lsn}, "
                      f"the manifest says backup_lsn {expected.backup_lsn}", **found)
    if item_count != expected.item_count:
        return result("checksum_mismatch", f"{name}: re-inflated data holds {item_count} "
                      f"items, the manifest says {expected.item_count}", **found)
    if digest != expected.logical_checksum:
        return result("checksum_mismatch", f"{name}: logical checksum of the re-inflated "
                      f"items is {digest}, the manifest says {expected.logical_checksum}",
                      **found)
    return result("ok", f"{name}: object, data.mdb and {item_count} items verified", **found)
