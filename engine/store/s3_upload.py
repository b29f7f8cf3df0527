"""Uploads to S3: one ``PutObject`` up to the part size, parallel multipart above it.

Every request carries a precomputed ``x-amz-checksum-crc32c`` (AWS validates it; botocore
could only compute it itself with ``botocore[crt]``) and, except multipart parts sent to
AWS S3, ``Content-MD5`` (servers such as rclone reject a mismatch with ``BadDigest``). The
whole-object CRC32C goes into the object's metadata (``x-amz-meta-crc32c``) so ``head``
returns it without trusting the server's checksum support — measured: neither rclone nor
moto validates ``x-amz-checksum-*``, and moto accepts a wrong ``Content-MD5``.

Metadata is fixed when a multipart upload is created, so the CRC32C must be known before
the first part is sent: pass ``crc32c=`` (the backup packager knows it), or give a
seekable source (one fast extra pass computes it), or the bytes are spooled to a
temporary file first.

Retries follow :mod:`engine.store.retry`: botocore retries each request, our loop resends
a part only when its bytes arrived damaged. A server that drops the whole multipart
upload after a damaged part (rclone answers the resend ``NoSuchUpload``) gets a fresh
upload from :meth:`S3Uploader.put_file`, which can read its parts again; every send of a
part counts against the same ``integrity_attempts``, so the bound holds across restarts.
A failed multipart upload is aborted, so nothing is visible.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import hashlib
import os
import tempfile
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO

import google_crc32c
from botocore.exceptions import ClientError

from engine.errors import ChecksumMismatchError, StoreError
from engine.store.base import (
    MiB,
    ObjectInfo,
    ProgressCallback,
    crc32c_combine,
    crc32c_of_stream,
    crc32c_to_base64,
    format_crc32c,
    read_full,
    seekable_remaining,
)
from engine.store.retry import describe, error_code, is_integrity_failure
from engine.store.s3_endpoint import S3Connection

#: S3's limits: parts of 5 MiB or more except the last, at most 10,000 parts.
MIN_PART_SIZE_BYTES = 5 * MiB
MAX_PARTS = 10_000
_SPOOL_CHUNK_BYTES = 1 * MiB

#: A test hook: ``hook(part_number, attempt, content_md5) -> content_md5_to_send`` (None:
#: none is sent, see ``part_content_md5``). Called before every upload attempt of a part
#: (a single ``PutObject`` is part 1); it may return a wrong digest to have the server
#: answer ``BadDigest``. Never set in production.
PartRequestHook = Callable[[int, int, str | None], str | None]


class UploadLost(StoreError):
    """The server dropped a multipart upload after a damaged part; a fresh one may work."""


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def part_size_for(part_size_bytes: int, total: int | None) -> int:
    """The part size: ``part_size_bytes``, raised to whole MiB to fit in 10,000 parts."""
    if total is not None and total > part_size_bytes * MAX_PARTS:
        part_size = -(-total // MAX_PARTS)
        return -(-part_size // MiB) * MiB
    return part_size_bytes


class _Upload:
    """One multipart upload's id, and what damaged one of its parts, if anything did."""

    def __init__(self, upload_id: str) -> None:
        self.upload_id = upload_id
        self.damage: str | None = None  # set by any part's worker; read by the others


class S3Uploader:
    """``put`` and ``put_file`` of :class:`~engine.store.s3.S3Store` (see the module doc)."""

    def __init__(
        self,
        conn: S3Connection,
        *,
        part_size_bytes: int,
        part_content_md5: bool,
        full_object_checksum: bool,
        part_request_hook: PartRequestHook | None,
    ) -> None:
        self._conn = conn
        self._part_size_bytes = part_size_bytes
        self._part_content_md5 = part_content_md5
        self._full_object_checksum = full_object_checksum
        self._part_request_hook = part_request_hook

    # -- put ------------------------------------------------------------------------

    def put(
        self,
        key: str,
        source: BinaryIO,
        *,
        size: int | None,
        crc32c: int | None,
        progress: ProgressCallback | None,
    ) -> ObjectInfo:
        full_key = self._conn.full_key(key)
        stream = source
        remaining = seekable_remaining(stream)
        if remaining is not None and size is not None and remaining != size:
            raise ChecksumMismatchError(
                f"put {self._conn.where(key)}: the source holds {remaining} bytes but "
                f"size={size} was declared; nothing was stored"
            )
        total = remaining if remaining is not None else size
        part_size = part_size_for(self._part_size_bytes, total)

        if total is not None and total <= part_size:
            data = read_full(stream, total + 1)
            return self._put_single(key, full_key, data, size, crc32c, progress)

        spool: BinaryIO | None = None
        try:
            if crc32c is None:
                # Metadata is fixed at CreateMultipartUpload, so the CRC32C is needed first.
                if remaining is None:
                    spool = tempfile.TemporaryFile(prefix="tessera-s3-spool-")
                    crc32c = self._spool(stream, spool)
                    stream = spool
                    total = seekable_remaining(spool)
                    if size is not None and total != size:
                        raise ChecksumMismatchError(
                            f"put {self._conn.where(key)}: read {total} bytes from the source "
                            f"but size={size} was declared; nothing was stored"
                        )
                else:
                    crc32c, _ = crc32c_of_stream(stream)
            first = read_full(stream, part_size)
            second = read_full(stream, part_size) if len(first) == part_size else b""
            if not second:
                return self._put_single(key, full_key, first, size, crc32c, progress)
            return self._put_multipart(
                key, full_key, stream, [first, second], part_size, total, size, crc32c, progress
            )
        finally:
            if spool is not None:
                spool.close()

    @staticmethod
    def _spool(stream: BinaryIO, spool: BinaryIO) -> int:
        checksum = google_crc32c.Checksum()
        while chunk := stream.read(_SPOOL_CHUNK_BYTES):
            checksum.update(chunk)
            spool.write(chunk)
        spool.seek(0)
        return int.from_bytes(checksum.digest(), "big")

    def _check_streamed(
        self, key: str, length: int, actual_crc: int, size: int | None, crc32c: int | None
    ) -> None:
        if size is not None and length != size:
            raise ChecksumMismatchError(
                f"put {self._conn.where(key)}: read {length} bytes from the source but "
                f"size={size} was declared; nothing was stored"
            )
        if crc32c is not None and actual_crc != crc32c:
            raise ChecksumMismatchError(
                f"put {self._conn.where(key)}: CRC32C of the {length} bytes read is "
                f"{format_crc32c(actual_crc)}, expected {format_crc32c(crc32c)}; the source "
                "changed or is corrupt; nothing was stored"
            )

    def _put_single(
        self,
        key: str,
        full_key: str,
        data: bytes,
        size: int | None,
        crc32c: int | None,
        progress: ProgressCallback | None,
    ) -> ObjectInfo:
        actual_crc = google_crc32c.value(data)
        self._check_streamed(key, len(data), actual_crc, size, crc32c)
        md5 = hashlib.md5(data)
        content_md5 = _b64(md5.digest())
        conn = self._conn

        def attempt(number: int) -> dict[str, Any]:
            sent_md5 = content_md5
            if self._part_request_hook is not None:
                sent_md5 = self._part_request_hook(1, number, content_md5)
            return conn.client.put_object(
                Bucket=conn.bucket,
                Key=full_key,
                Body=data,
                ContentMD5=sent_md5,
                ChecksumCRC32C=crc32c_to_base64(actual_crc),
                Metadata={"crc32c": format_crc32c(actual_crc), "md5": md5.hexdigest()},
            )

        response = conn.run(f"upload of {conn.where(key)}", key, attempt)
        if progress is not None:
            progress(len(data))
        return ObjectInfo(
            key=key,
            size=len(data),
            crc32c=actual_crc,
            md5=md5.hexdigest(),
            etag=response.get("ETag"),
        )

    def _put_multipart(
        self,
        key: str,
        full_key: str,
        stream: BinaryIO,
        lookahead: list[bytes],
        part_size: int,
        total: int | None,
        size: int | None,
        crc32c: int,
        progress: ProgressCallback | None,
    ) -> ObjectInfo:
        upload = self._create_multipart(key, full_key, crc32c)
        pool = self._conn.pool()
        in_flight: dict[cf.Future[dict[str, Any]], int] = {}
        completed: dict[int, dict[str, Any]] = {}
        part_count = f"/{-(-total // part_size)}" if total is not None else ""
        try:
            checksum = google_crc32c.Checksum()
            length = 0
            pending = deque(lookahead)
            part_number = 0
            while True:
                data = pending.popleft() if pending else read_full(stream, part_size)
                if not data:
                    break
                part_number += 1
                if part_number > MAX_PARTS:
                    raise StoreError(
                        f"put {self._conn.where(key)}: more than {MAX_PARTS} parts of "
                        f"{part_size} bytes; pass size= or use a larger part_size_bytes"
                    )
                checksum.update(data)
                offset = length
                length += len(data)
                while len(in_flight) >= self._conn.max_concurrency:
                    self._collect_parts(in_flight, completed, progress, cf.FIRST_COMPLETED)
                what = (
                    f"upload of part {part_number}{part_count} (bytes {offset}-{length - 1}) of "
                    f"{self._conn.where(key)} (multipart upload {upload.upload_id})"
                )
                future = pool.submit(
                    self._upload_part, key, full_key, upload, part_number, data, what, {}
                )
                in_flight[future] = len(data)
                del data
            self._collect_parts(in_flight, completed, progress, cf.ALL_COMPLETED)
            actual_crc = int.from_bytes(checksum.digest(), "big")
            self._check_streamed(key, length, actual_crc, size, crc32c)
            parts = [completed[number] for number in sorted(completed)]
            response = self._complete_multipart(key, full_key, upload, parts, actual_crc)
        except BaseException as err:
            self._abandon_multipart(err, key, full_key, upload, in_flight)
            raise
        return ObjectInfo(key=key, size=length, crc32c=actual_crc, etag=response.get("ETag"))

    # -- put_file -------------------------------------------------------------------

    def put_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        size: int | None,
        crc32c: int,
        progress: ProgressCallback | None,
    ) -> ObjectInfo | None:
        """A multipart upload of a local file, one part per worker (``None``: the file
        fits in one part, the caller streams it through :meth:`put` instead).

        As boto3's ``upload_file`` does, the workers ``pread`` their parts, so reading,
        MD5 and CRC32C run in parallel instead of in the calling thread. The whole-object
        CRC32C is combined from the CRC32C of each part as sent and checked against
        ``crc32c`` before ``CompleteMultipartUpload``: a mismatch aborts the upload
        (``ChecksumMismatchError``). An upload the server dropped after a damaged part is
        started again; each part's sends count against one ``integrity_attempts``.
        """
        full_key = self._conn.full_key(key)
        total = os.path.getsize(path)
        part_size = part_size_for(self._part_size_bytes, total)
        if total <= part_size:
            return None
        if size is not None and total != size:
            raise ChecksumMismatchError(
                f"put {self._conn.where(key)}: {os.fspath(path)} holds {total} bytes but "
                f"size={size} was declared; nothing was stored"
            )
        ranges = [(offset, min(part_size, total - offset)) for offset in range(0, total, part_size)]
        sends: dict[int, int] = {}  # part number -> sends so far, across restarts
        reported: set[int] = set()  # parts whose bytes progress has already counted

        def report(part_number: int, part_bytes: int) -> None:
            if progress is not None and part_number not in reported:
                reported.add(part_number)
                progress(part_bytes)

        fd = os.open(path, os.O_RDONLY)
        try:
            while True:
                try:
                    return self._put_file_once(key, full_key, fd, ranges, total, size, crc32c,
                                               sends, report)
                except UploadLost:
                    continue  # a fresh upload; a part out of sends ends the loop
        finally:
            os.close(fd)

    def _put_file_once(
        self, key: str, full_key: str, fd: int, ranges: list[tuple[int, int]], total: int,
        size: int | None, crc32c: int, sends: dict[int, int],
        report: Callable[[int, int], None],
    ) -> ObjectInfo:
        upload = self._create_multipart(key, full_key, crc32c)
        in_flight: dict[cf.Future[dict[str, Any]], int] = {}
        try:
            pool = self._conn.pool()
            for number, (offset, length) in enumerate(ranges, start=1):
                what = (
                    f"upload of part {number}/{len(ranges)} (bytes {offset}-{offset + length - 1}) "
                    f"of {self._conn.where(key)} (multipart upload {upload.upload_id})"
                )
                future = pool.submit(
                    self._upload_file_part, key, full_key, upload, number, fd, offset, length,
                    what, sends,
                )
                in_flight[future] = length
            completed: dict[int, dict[str, Any]] = {}
            while in_flight:
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    part_bytes = in_flight.pop(future)
                    part = future.result()  # re-raises the part's StoreError
                    completed[part["PartNumber"]] = part
                    report(part["PartNumber"], part_bytes)
            parts = [completed[number] for number in sorted(completed)]
            actual_crc = 0
            for part, (_, length) in zip(parts, ranges, strict=True):
                part_crc = int.from_bytes(base64.b64decode(part["ChecksumCRC32C"]), "big")
                actual_crc = crc32c_combine(actual_crc, part_crc, length)
            self._check_streamed(key, total, actual_crc, size, crc32c)
            response = self._complete_multipart(key, full_key, upload, parts, actual_crc)
        except BaseException as err:
            self._abandon_multipart(err, key, full_key, upload, in_flight)
            raise
        return ObjectInfo(key=key, size=total, crc32c=actual_crc, etag=response.get("ETag"))

    def _upload_file_part(
        self, key: str, full_key: str, upload: _Upload, part_number: int, fd: int, offset: int,
        length: int, what: str, sends: dict[int, int],
    ) -> dict[str, Any]:
        chunks = []
        read = 0
        while read < length:
            chunk = os.pread(fd, length - read, offset + read)
            if not chunk:
                raise ChecksumMismatchError(
                    f"{what}: the file ended {length - read} bytes early (truncated while "
                    "uploading); nothing was stored"
                )
            chunks.append(chunk)
            read += len(chunk)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._upload_part(key, full_key, upload, part_number, data, what, sends)

    # -- the multipart steps ------------------------------------------------------------

    def _create_multipart(self, key: str, full_key: str, crc32c: int) -> _Upload:
        """Start a multipart upload with CRC32C part checksums.

        The whole-object CRC32C goes in the metadata now: S3 cannot add it later.
        """
        conn = self._conn
        created = conn.call(
            f"CreateMultipartUpload for {conn.where(key)}",
            key,
            lambda: conn.client.create_multipart_upload(
                Bucket=conn.bucket,
                Key=full_key,
                ChecksumAlgorithm="CRC32C",
                Metadata={"crc32c": format_crc32c(crc32c)},
                **({"ChecksumType": "FULL_OBJECT"} if self._full_object_checksum else {}),
            ),
        )
        return _Upload(created["UploadId"])

    def _upload_part(
        self, key: str, full_key: str, upload: _Upload, part_number: int, data: bytes,
        what: str, sends: dict[int, int],
    ) -> dict[str, Any]:
        """Send one part under the retry policy; ``sends`` carries its count across a
        restarted upload (each worker touches only its own part's entry)."""
        content_md5 = _b64(hashlib.md5(data).digest()) if self._part_content_md5 else None
        crc_b64 = crc32c_to_base64(google_crc32c.value(data))
        conn = self._conn

        def attempt(number: int) -> dict[str, Any]:
            sends[part_number] = number
            sent_md5 = content_md5
            if self._part_request_hook is not None:
                sent_md5 = self._part_request_hook(part_number, number, content_md5)
            checksums = {"ChecksumCRC32C": crc_b64}
            if sent_md5 is not None:
                checksums["ContentMD5"] = sent_md5
            try:
                return conn.client.upload_part(
                    Bucket=conn.bucket,
                    Key=full_key,
                    UploadId=upload.upload_id,
                    PartNumber=part_number,
                    Body=data,
                    **checksums,
                )
            except ClientError as err:
                if is_integrity_failure(err):
                    upload.damage = describe(err)
                elif error_code(err) == "NoSuchUpload" and upload.damage is not None:
                    raise UploadLost(
                        f"{what}: the server dropped the upload after a damaged part "
                        f"({upload.damage}): {describe(err)}"
                    ) from err
                raise

        response = conn.run(what, key, attempt, first_attempt=sends.get(part_number, 0) + 1)
        return {"PartNumber": part_number, "ETag": response["ETag"], "ChecksumCRC32C": crc_b64}

    @staticmethod
    def _collect_parts(
        in_flight: dict[cf.Future[dict[str, Any]], int],
        completed: dict[int, dict[str, Any]],
        progress: ProgressCallback | None,
        return_when: str,
    ) -> None:
        done, _ = cf.wait(in_flight, return_when=return_when)
        for future in done:
            part_bytes = in_flight.pop(future)
            part = future.result()  # re-raises the part's StoreError
            completed[part["PartNumber"]] = part
            if progress is not None:
                progress(part_bytes)

    def _complete_multipart(
        self, key: str, full_key: str, upload: _Upload, parts: list[dict[str, Any]],
        crc32c: int,
    ) -> dict[str, Any]:
        """Complete the upload; ``crc32c`` is the whole object's, already checked here."""
        conn = self._conn
        whole = ({"ChecksumCRC32C": crc32c_to_base64(crc32c), "ChecksumType": "FULL_OBJECT"}
                 if self._full_object_checksum else {})
        return conn.call(
            f"CompleteMultipartUpload of {conn.where(key)} ({len(parts)} parts)",
            key,
            lambda: conn.client.complete_multipart_upload(
                Bucket=conn.bucket,
                Key=full_key,
                UploadId=upload.upload_id,
                MultipartUpload={"Parts": parts},
                **whole,
            ),
        )

    def _abandon_multipart(
        self,
        err: BaseException,
        key: str,
        full_key: str,
        upload: _Upload,
        in_flight: dict[cf.Future[dict[str, Any]], int],
    ) -> None:
        """Stop the parts still running and abort the upload; ``err`` is the real failure
        (an abort that fails too is added to it as a note, never hides it)."""
        for future in in_flight:
            future.cancel()
        cf.wait(in_flight)
        conn = self._conn
        try:
            conn.client.abort_multipart_upload(
                Bucket=conn.bucket, Key=full_key, UploadId=upload.upload_id
            )
        except Exception as abort_err:  # noqa: BLE001 - must not hide the real failure
            if isinstance(err, UploadLost):
                return  # the server has already forgotten it
            if hasattr(err, "add_note"):  # Python 3.11+
                err.add_note(
                    f"also failed to abort multipart upload {upload.upload_id} of "
                    f"{conn.where(key)}: {describe(abort_err)}; a bucket lifecycle rule "
                    "for incomplete uploads will remove its parts"
                )
