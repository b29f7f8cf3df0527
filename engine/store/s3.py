"""S3 (and any S3-compatible endpoint) as an object store (SPEC §9). The only boto3 user.

Uploads: objects up to ``part_size_bytes`` go in one ``PutObject``; larger ones as a
multipart upload whose parts are sent in parallel on a thread pool. Every request carries
a precomputed ``x-amz-checksum-crc32c`` (AWS validates it; botocore could only compute it
itself with ``botocore[crt]``) and, except multipart parts sent to AWS S3 (see
``S3Store``), ``Content-MD5`` (servers such as rclone reject a mismatch with
``BadDigest``). The whole-object CRC32C goes into the object's metadata
(``x-amz-meta-crc32c``) so ``head`` returns it without trusting the server's checksum
support — measured: neither rclone nor moto validates ``x-amz-checksum-*``, and moto
accepts a wrong ``Content-MD5`` — and reads verify against it.

Because metadata is fixed when a multipart upload is created, the CRC32C must be known
before the first part is sent: pass ``crc32c=`` (the backup packager knows it), or give a
seekable source (one fast extra pass computes it), or the bytes are spooled to a
temporary file first.

Retries: botocore's ``standard`` mode retries transient request failures; on top of that
each part (and each ranged read) is retried with exponential backoff up to
``max_attempts`` times, including ``BadDigest``, then ``StoreError`` names the key, the
part and the last error. A failed multipart upload is aborted, so nothing is visible.

Thread safety: one boto3 client is shared by all threads (boto3 clients are thread-safe;
sessions are not, so the client is created once, in ``__init__``).
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import hashlib
import io
import os
import random
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

import boto3
import google_crc32c
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from engine.errors import ChecksumMismatchError, ObjectNotFoundError, StoreError
from engine.store.base import (
    MiB,
    ObjectInfo,
    ObjectStore,
    ProgressCallback,
    VerifyingReader,
    as_stream,
    closed_error,
    crc32c_combine,
    crc32c_of_stream,
    crc32c_to_base64,
    format_crc32c,
    parse_crc32c,
    read_full,
    resolve_range,
    seekable_remaining,
    validate_key,
    validate_prefix,
)

T = TypeVar("T")

#: S3's limits: parts of 5 MiB or more except the last, at most 10,000 parts, and
#: CopyObject up to 5 GiB.
MIN_PART_SIZE_BYTES = 5 * MiB
MAX_PARTS = 10_000
MAX_COPY_OBJECT_BYTES = 5 * 1024 * MiB

#: Attempts botocore makes per request (standard mode) before our own per-part retries.
_BOTOCORE_TOTAL_ATTEMPTS = 3
_MAX_BACKOFF_SECONDS = 10.0
_READ_CHUNK_BYTES = 1 * MiB
_DELETE_BATCH = 1000

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
#: Errors worth another attempt: corruption in flight and server-side trouble. Anything
#: else (NoSuchUpload, AccessDenied, NoSuchBucket, InvalidRange, …) will not get better.
_RETRYABLE_CODES = frozenset(
    {
        "BadDigest",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "XAmzContentSHA256Mismatch",
        "IncompleteBody",
        "SlowDown",
        "Throttling",
        "InternalError",
        "ServiceUnavailable",
    }
)
_HINTS = {
    "NoSuchUpload": "the server dropped the multipart upload (rclone does so after a BadDigest part)",
    "NoSuchBucket": "create the bucket first or check the store URL",
    "AccessDenied": "check the credentials and the bucket policy",
    "InvalidAccessKeyId": "check the access key",
    "SignatureDoesNotMatch": "check the secret key",
}

#: A test hook: ``hook(part_number, attempt, content_md5) -> content_md5_to_send`` (None:
#: none is sent, see ``part_content_md5``). Called
#: before every upload attempt of a part (a single ``PutObject`` is part 1); it may return
#: a wrong digest or raise ``ConnectionError`` to inject faults. Never set in production.
PartRequestHook = Callable[[int, int, str | None], str | None]


def is_aws_endpoint(endpoint_url: str | None) -> bool:
    """True for AWS S3 itself: no ``endpoint_url`` (boto3's default) or a host under
    ``amazonaws.com`` (``.com.cn`` too); False for every S3-compatible server."""
    if endpoint_url is None:
        return True
    host = (urlsplit(endpoint_url).hostname or "").lower().rstrip(".")
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


class _ShortRead(Exception):
    """A ranged GET returned fewer bytes than asked for; worth another attempt."""


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _error_code(err: BaseException) -> str:
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def _describe(err: BaseException) -> str:
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = error.get("Code", "?")
        message = error.get("Message") or ""
        text = f"{code} (HTTP {status})" + (f": {message}" if message and message != code else "")
        hint = _HINTS.get(code)
        return f"{text}; {hint}" if hint else text
    return f"{type(err).__name__}: {err}"


def _is_retryable(err: BaseException) -> bool:
    if isinstance(err, ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return _error_code(err) in _RETRYABLE_CODES or status >= 500 or status in (408, 429)
    return isinstance(err, (BotoCoreError, OSError, _ShortRead))


def _metadata(response: dict[str, Any]) -> dict[str, str]:
    # Servers differ in the case they return metadata names in (rclone: "Crc32c").
    return {name.lower(): value for name, value in (response.get("Metadata") or {}).items()}


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix``, through boto3.

    ``part_size_bytes`` (≥ 5 MiB; 16 MiB by default) is both the multipart threshold and
    the part size (raised automatically to stay within 10,000 parts when the size is
    known); ``max_concurrency`` is the number of parts or ranges in flight, shared by all
    calls on this store. Memory per ``put`` is about ``(max_concurrency + 2) * part size``.
    Credentials come from the usual boto3 chain unless given.

    Integrity: every part carries its CRC32C (``ChecksumAlgorithm``), and the whole
    object's CRC32C is combined from the parts' and checked before completing. Defaults
    depend on who checks what at the other end:

    * ``part_content_md5`` (default: on unless the endpoint is AWS S3) also sends each
      part's Content-MD5. S3-compatible servers differ: rclone and moto check only the
      MD5, while AWS S3 checks the CRC32C itself, so there the MD5 would be a second pass
      on both ends for nothing.
    * ``full_object_checksum`` (default: on for AWS S3 only) creates the upload with
      ``ChecksumType=FULL_OBJECT`` and completes it with the whole object's CRC32C, which
      AWS S3 checks against the assembled object. Servers without the feature ignore or
      may reject it, hence off elsewhere.

    "AWS S3" means no ``endpoint_url`` or one under ``amazonaws.com``.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        part_size_bytes: int = 16 * MiB,
        max_concurrency: int = 4,
        max_attempts: int = 4,
        retry_base_delay_seconds: float = 0.25,
        connect_timeout_seconds: float = 10.0,
        read_timeout_seconds: float = 60.0,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        part_request_hook: PartRequestHook | None = None,
        part_content_md5: bool | None = None,
        full_object_checksum: bool | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"bucket name {bucket!r} must be non-empty and contain no '/'")
        if part_size_bytes < MIN_PART_SIZE_BYTES:
            raise ValueError(
                f"part_size_bytes={part_size_bytes} is below S3's minimum part size of 5 MiB"
            )
        if max_concurrency < 1 or max_attempts < 1:
            raise ValueError("max_concurrency and max_attempts must be at least 1")
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        self._bucket = bucket
        self._prefix = prefix
        self._part_size_bytes = part_size_bytes
        self._max_concurrency = max_concurrency
        self._max_attempts = max_attempts
        self._retry_base_delay_seconds = retry_base_delay_seconds
        self._part_request_hook = part_request_hook
        aws = is_aws_endpoint(endpoint_url)
        self._part_content_md5 = not aws if part_content_md5 is None else part_content_md5
        self._full_object_checksum = aws if full_object_checksum is None else full_object_checksum
        config = Config(
            region_name=region_name or "us-east-1",
            retries={"mode": "standard", "total_max_attempts": _BOTOCORE_TOTAL_ATTEMPTS},
            # Every worker plus the calling threads' own requests (head, complete, …).
            max_pool_connections=2 * max_concurrency + 8,
            connect_timeout=connect_timeout_seconds,
            read_timeout=read_timeout_seconds,
            # We send Content-MD5 and CRC32C ourselves. botocore's default
            # ("when_supported") would add its own CRC32 header and, over https, switch
            # uploads to aws-chunked trailers that S3-compatible servers handle unevenly.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"} if endpoint_url else {},
        )
        session = boto3.session.Session(
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
        )
        self._client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._endpoint_url = endpoint_url
        self._executor: cf.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- helpers ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}" if self._prefix else f"s3://{self._bucket}"

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def part_size_bytes(self) -> int:
        return self._part_size_bytes

    @property
    def part_content_md5(self) -> bool:
        """Whether multipart parts carry a Content-MD5 (see the class docstring)."""
        return self._part_content_md5

    @property
    def full_object_checksum(self) -> bool:
        """Whether multipart uploads ask the server to check the whole object's CRC32C."""
        return self._full_object_checksum

    @property
    def client(self) -> Any:
        """The underlying boto3 client (for tools and benchmarks; prefer the interface)."""
        return self._client

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self._endpoint_url!r}" if self._endpoint_url else ""
        return f"S3Store({self.url!r}{endpoint})"

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error(self.url)

    def _pool(self) -> cf.ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise closed_error(self.url)
            if self._executor is None:
                self._executor = cf.ThreadPoolExecutor(
                    max_workers=self._max_concurrency, thread_name_prefix="tessera-s3"
                )
            return self._executor

    def _full_key(self, key: str) -> str:
        validate_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    def _where(self, key: str) -> str:
        return f"{self.url}/{key}"

    def _translate(self, err: BaseException, what: str, key: str) -> StoreError:
        if _error_code(err) in _NOT_FOUND_CODES:
            return ObjectNotFoundError(f"no object {key!r} in {self.url}")
        return StoreError(f"{what} failed: {_describe(err)}")

    def _call(self, what: str, key: str, operation: Callable[[], T]) -> T:
        """One request; botocore already retried transient failures."""
        try:
            return operation()
        except (ClientError, BotoCoreError) as err:
            raise self._translate(err, what, key) from err

    def _with_retries(self, what: str, key: str, attempt_fn: Callable[[int], T]) -> T:
        """Run ``attempt_fn(attempt)`` until it succeeds, with exponential backoff and jitter."""
        errors: list[BaseException] = []
        for attempt in range(1, self._max_attempts + 1):
            try:
                return attempt_fn(attempt)
            except Exception as err:  # noqa: BLE001 - classified just below
                errors.append(err)
                if not _is_retryable(err) or attempt == self._max_attempts:
                    break
                delay = self._retry_base_delay_seconds * 2 ** (attempt - 1)
                time.sleep(min(_MAX_BACKOFF_SECONDS, delay * (0.5 + random.random() / 2)))
        last = errors[-1]
        if _error_code(last) in _NOT_FOUND_CODES:
            raise ObjectNotFoundError(f"no object {key!r} in {self.url}") from last
        if not isinstance(last, (ClientError, BotoCoreError, OSError, _ShortRead)):
            raise last  # our own errors (ChecksumMismatchError, …) and bugs pass through
        message = f"{what} failed after {len(errors)} attempt(s); last error: {_describe(last)}"
        if len(errors) > 1 and _describe(errors[0]) != _describe(last):
            message += f"; first error: {_describe(errors[0])}"
        raise StoreError(message) from last

    # -- put ------------------------------------------------------------------------

    def put(
        self,
        key: str,
        source: BinaryIO | bytes,
        *,
        size: int | None = None,
        crc32c: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        self._check_open()
        full_key = self._full_key(key)
        stream = as_stream(source)
        remaining = seekable_remaining(stream)
        if remaining is not None and size is not None and remaining != size:
            raise ChecksumMismatchError(
                f"put {self._where(key)}: the source holds {remaining} bytes but size={size} "
                "was declared; nothing was stored"
            )
        total = remaining if remaining is not None else size
        part_size = self._part_size_bytes
        if total is not None and total > part_size * MAX_PARTS:
            part_size = -(-total // MAX_PARTS)
            part_size = -(-part_size // MiB) * MiB  # whole MiB parts

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
                            f"put {self._where(key)}: read {total} bytes from the source but "
                            f"size={size} was declared; nothing was stored"
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
        while chunk := stream.read(_READ_CHUNK_BYTES):
            checksum.update(chunk)
            spool.write(chunk)
        spool.seek(0)
        return int.from_bytes(checksum.digest(), "big")

    def _check_streamed(
        self, key: str, length: int, actual_crc: int, size: int | None, crc32c: int | None
    ) -> None:
        if size is not None and length != size:
            raise ChecksumMismatchError(
                f"put {self._where(key)}: read {length} bytes from the source but size={size} "
                "was declared; nothing was stored"
            )
        if crc32c is not None and actual_crc != crc32c:
            raise ChecksumMismatchError(
                f"put {self._where(key)}: CRC32C of the {length} bytes read is "
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

        def attempt(number: int) -> dict[str, Any]:
            sent_md5 = content_md5
            if self._part_request_hook is not None:
                sent_md5 = self._part_request_hook(1, number, content_md5)
            return self._client.put_object(
                Bucket=self._bucket,
                Key=full_key,
                Body=data,
                ContentMD5=sent_md5,
                ChecksumCRC32C=crc32c_to_base64(actual_crc),
                Metadata={"crc32c": format_crc32c(actual_crc), "md5": md5.hexdigest()},
            )

        response = self._with_retries(f"upload of {self._where(key)}", key, attempt)
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
        upload_id = self._create_multipart(key, full_key, crc32c)
        pool = self._pool()
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
                        f"put {self._where(key)}: more than {MAX_PARTS} parts of {part_size} "
                        "bytes; pass size= or use a larger part_size_bytes"
                    )
                checksum.update(data)
                offset = length
                length += len(data)
                while len(in_flight) >= self._max_concurrency:
                    self._collect_parts(in_flight, completed, progress, cf.FIRST_COMPLETED)
                what = (
                    f"upload of part {part_number}{part_count} (bytes {offset}-{length - 1}) of "
                    f"{self._where(key)} (multipart upload {upload_id})"
                )
                future = pool.submit(
                    self._upload_part, key, full_key, upload_id, part_number, data, what
                )
                in_flight[future] = len(data)
                del data
            self._collect_parts(in_flight, completed, progress, cf.ALL_COMPLETED)
            actual_crc = int.from_bytes(checksum.digest(), "big")
            self._check_streamed(key, length, actual_crc, size, crc32c)
            parts = [completed[number] for number in sorted(completed)]
            response = self._complete_multipart(key, full_key, upload_id, parts, actual_crc)
        except BaseException as err:
            self._abandon_multipart(err, key, full_key, upload_id, in_flight)
            raise
        return ObjectInfo(key=key, size=length, crc32c=actual_crc, etag=response.get("ETag"))

    def _complete_multipart(
        self, key: str, full_key: str, upload_id: str, parts: list[dict[str, Any]],
        crc32c: int,
    ) -> dict[str, Any]:
        """Complete the upload; ``crc32c`` is the whole object's, already checked here."""
        whole = ({"ChecksumCRC32C": crc32c_to_base64(crc32c), "ChecksumType": "FULL_OBJECT"}
                 if self._full_object_checksum else {})
        return self._call(
            f"CompleteMultipartUpload of {self._where(key)} ({len(parts)} parts)",
            key,
            lambda: self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=full_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **whole,
            ),
        )

    def _abandon_multipart(
        self,
        err: BaseException,
        key: str,
        full_key: str,
        upload_id: str,
        in_flight: dict[cf.Future[dict[str, Any]], int],
    ) -> None:
        """Stop the parts still running and abort the upload; ``err`` is the real failure
        (an abort that fails too is added to it as a note, never hides it)."""
        for future in in_flight:
            future.cancel()
        cf.wait(in_flight)
        try:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=full_key, UploadId=upload_id
            )
        except Exception as abort_err:  # noqa: BLE001 - must not hide the real failure
            if hasattr(err, "add_note"):  # Python 3.11+
                err.add_note(
                    f"also failed to abort multipart upload {upload_id} of "
                    f"{self._where(key)}: {_describe(abort_err)}; a bucket lifecycle rule "
                    "for incomplete uploads will remove its parts"
                )

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

    def _create_multipart(self, key: str, full_key: str, crc32c: int) -> str:
        """Start a multipart upload with CRC32C part checksums; returns its UploadId.

        The whole-object CRC32C goes in the metadata now: S3 cannot add it later.
        """
        created = self._call(
            f"CreateMultipartUpload for {self._where(key)}",
            key,
            lambda: self._client.create_multipart_upload(
                Bucket=self._bucket,
                Key=full_key,
                ChecksumAlgorithm="CRC32C",
                Metadata={"crc32c": format_crc32c(crc32c)},
                **({"ChecksumType": "FULL_OBJECT"} if self._full_object_checksum else {}),
            ),
        )
        return created["UploadId"]

    def _upload_part(
        self, key: str, full_key: str, upload_id: str, part_number: int, data: bytes, what: str
    ) -> dict[str, Any]:
        content_md5 = _b64(hashlib.md5(data).digest()) if self._part_content_md5 else None
        crc_b64 = crc32c_to_base64(google_crc32c.value(data))

        def attempt(number: int) -> dict[str, Any]:
            sent_md5 = content_md5
            if self._part_request_hook is not None:
                sent_md5 = self._part_request_hook(part_number, number, content_md5)
            checksums = {"ChecksumCRC32C": crc_b64}
            if sent_md5 is not None:
                checksums["ContentMD5"] = sent_md5
            return self._client.upload_part(
                Bucket=self._bucket,
                Key=full_key,
                UploadId=upload_id,
                PartNumber=part_number,
                Body=data,
                **checksums,
            )

        response = self._with_retries(what, key, attempt)
        return {"PartNumber": part_number, "ETag": response["ETag"], "ChecksumCRC32C": crc_b64}

    def put_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        size: int | None = None,
        crc32c: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        """Upload a local file; a multipart one part per worker, each reading its own range.

        As boto3's ``upload_file`` does, the workers ``pread`` their parts, so reading,
        MD5 and CRC32C run in parallel instead of in the calling thread. The whole-object
        CRC32C is combined from the CRC32C of each part as sent and checked against
        ``crc32c`` before ``CompleteMultipartUpload``: a mismatch aborts the upload
        (``ChecksumMismatchError``). Small files, or an unknown ``crc32c`` (the object's
        metadata needs it up front), go through :meth:`put`.
        """
        self._check_open()
        full_key = self._full_key(key)
        total = os.path.getsize(path)
        part_size = self._part_size_bytes
        if total > part_size * MAX_PARTS:
            part_size = -(-total // MAX_PARTS)
            part_size = -(-part_size // MiB) * MiB  # whole MiB parts
        if crc32c is None or total <= part_size:
            return super().put_file(key, path, size=size, crc32c=crc32c, progress=progress)
        if size is not None and total != size:
            raise ChecksumMismatchError(
                f"put {self._where(key)}: {os.fspath(path)} holds {total} bytes but size={size} "
                "was declared; nothing was stored"
            )
        upload_id = self._create_multipart(key, full_key, crc32c)
        ranges = [(offset, min(part_size, total - offset)) for offset in range(0, total, part_size)]
        in_flight: dict[cf.Future[dict[str, Any]], int] = {}
        fd = os.open(path, os.O_RDONLY)
        try:
            pool = self._pool()
            for number, (offset, length) in enumerate(ranges, start=1):
                what = (
                    f"upload of part {number}/{len(ranges)} (bytes {offset}-{offset + length - 1}) "
                    f"of {self._where(key)} (multipart upload {upload_id})"
                )
                future = pool.submit(
                    self._upload_file_part, key, full_key, upload_id, number, fd, offset, length,
                    what,
                )
                in_flight[future] = length
            completed: dict[int, dict[str, Any]] = {}
            while in_flight:
                self._collect_parts(in_flight, completed, progress, cf.FIRST_COMPLETED)
            parts = [completed[number] for number in sorted(completed)]
            actual_crc = 0
            for part, (_, length) in zip(parts, ranges, strict=True):
                part_crc = int.from_bytes(base64.b64decode(part["ChecksumCRC32C"]), "big")
                actual_crc = crc32c_combine(actual_crc, part_crc, length)
            self._check_streamed(key, total, actual_crc, size, crc32c)
            response = self._complete_multipart(key, full_key, upload_id, parts, actual_crc)
        except BaseException as err:
            self._abandon_multipart(err, key, full_key, upload_id, in_flight)
            raise
        finally:
            os.close(fd)
        return ObjectInfo(key=key, size=total, crc32c=actual_crc, etag=response.get("ETag"))

    def _upload_file_part(
        self, key: str, full_key: str, upload_id: str, part_number: int, fd: int, offset: int,
        length: int, what: str,
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
        return self._upload_part(key, full_key, upload_id, part_number, data, what)

    # -- reads ----------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        self._check_open()
        full_key = self._full_key(key)
        response = self._call(
            f"HEAD {self._where(key)}",
            key,
            lambda: self._client.head_object(Bucket=self._bucket, Key=full_key),
        )
        return self._info(key, response)

    @staticmethod
    def _info(key: str, response: dict[str, Any]) -> ObjectInfo:
        metadata = _metadata(response)
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            crc32c=parse_crc32c(metadata.get("crc32c")),
            md5=metadata.get("md5"),
            etag=response.get("ETag"),
            last_modified=response.get("LastModified"),
        )

    def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        self._check_open()
        full_key = self._full_key(key)
        resolve_range(start, end, 0)  # rejects negative bounds
        if start == 0 and end is None:
            with self.open_reader(key) as reader:
                return reader.read()
        if end is not None and end <= start:
            self.head(key)  # the contract: a missing key is an error even for b""
            return b""
        byte_range = f"bytes={start}-{'' if end is None else end - 1}"

        def attempt(_number: int) -> bytes | None:
            try:
                response = self._client.get_object(
                    Bucket=self._bucket, Key=full_key, Range=byte_range
                )
            except ClientError as err:
                if _error_code(err) == "InvalidRange":
                    return None  # start is at or past the end
                raise
            with response["Body"] as body:
                data = body.read()
            if len(data) != int(response["ContentLength"]):
                raise _ShortRead(f"got {len(data)} of {response['ContentLength']} bytes")
            return data

        data = self._with_retries(f"GET {byte_range} of {self._where(key)}", key, attempt)
        if data is None:
            self.head(key)
            return b""
        if end is not None and len(data) > end - start:
            # A server that ignored the Range header sent the whole object.
            data = data[: end - start]
        return data

    def open_reader(self, key: str) -> BinaryIO:
        self._check_open()
        full_key = self._full_key(key)
        response = self._call(
            f"GET {self._where(key)}",
            key,
            lambda: self._client.get_object(Bucket=self._bucket, Key=full_key),
        )
        info = self._info(key, response)
        body = response["Body"]
        where = f"read of {self._where(key)}"

        def raw_read(count: int) -> bytes:
            try:
                return body.read(count)
            except (BotoCoreError, OSError) as err:
                raise StoreError(f"{where} failed mid-stream: {_describe(err)}") from err

        raw = VerifyingReader(
            raw_read, body.close, where=where, expected_size=info.size, expected_crc32c=info.crc32c
        )
        return io.BufferedReader(raw, buffer_size=_READ_CHUNK_BYTES)  # type: ignore[return-value]

    def download(
        self, key: str, dest_path: str, *, progress: ProgressCallback | None = None
    ) -> ObjectInfo:
        self._check_open()
        full_key = self._full_key(key)
        info = self.head(key)
        dest_path = os.path.abspath(os.fspath(dest_path))
        dest_dir = os.path.dirname(dest_path)
        os.makedirs(dest_dir, exist_ok=True)
        temp_path = os.path.join(dest_dir, f".tessera-tmp-{uuid.uuid4().hex}")
        ranges = [
            (offset, min(offset + self._part_size_bytes, info.size))
            for offset in range(0, info.size, self._part_size_bytes)
        ]
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                os.ftruncate(fd, info.size)
                pool = self._pool()
                in_flight = {
                    pool.submit(self._download_range, key, full_key, fd, first, stop): stop - first
                    for first, stop in ranges
                }
                try:
                    for future in cf.as_completed(in_flight):
                        future.result()
                        if progress is not None:
                            progress(in_flight[future])
                except BaseException:
                    for future in in_flight:
                        future.cancel()
                    cf.wait(in_flight)
                    raise
                os.fsync(fd)
            finally:
                os.close(fd)
            actual_crc, length = self._file_crc32c(temp_path)
            if length != info.size or (info.crc32c is not None and actual_crc != info.crc32c):
                raise ChecksumMismatchError(
                    f"download of {self._where(key)}: got {length} bytes with CRC32C "
                    f"{format_crc32c(actual_crc)}, the object is {info.size} bytes with CRC32C "
                    f"{format_crc32c(info.crc32c) if info.crc32c is not None else 'unknown'}; "
                    f"{dest_path} was left untouched"
                )
            os.replace(temp_path, dest_path)
        except BaseException as err:
            try:
                os.unlink(temp_path)
            except OSError:
                pass
            if isinstance(err, OSError):
                raise StoreError(
                    f"download of {self._where(key)} to {dest_path} failed: {err}"
                ) from err
            raise
        return info

    def _download_range(self, key: str, full_key: str, fd: int, first: int, stop: int) -> None:
        byte_range = f"bytes={first}-{stop - 1}"

        def attempt(_number: int) -> None:
            response = self._client.get_object(Bucket=self._bucket, Key=full_key, Range=byte_range)
            with response["Body"] as body:
                data = body.read()
            if len(data) != stop - first:
                raise _ShortRead(f"got {len(data)} of {stop - first} bytes")
            view = memoryview(data)
            offset = first
            while view:
                written = os.pwrite(fd, view, offset)
                view = view[written:]
                offset += written

        self._with_retries(f"GET {byte_range} of {self._where(key)}", key, attempt)

    @staticmethod
    def _file_crc32c(path: str) -> tuple[int, int]:
        with open(path, "rb") as handle:
            return crc32c_of_stream(handle, _READ_CHUNK_BYTES * 8)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._check_open()
        validate_prefix(prefix)
        store_prefix = f"{self._prefix}/" if self._prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        found: list[ObjectInfo] = []
        try:
            for page in paginator.paginate(Bucket=self._bucket, Prefix=store_prefix + prefix):
                for entry in page.get("Contents", []):
                    found.append(
                        ObjectInfo(
                            key=entry["Key"][len(store_prefix) :],
                            size=int(entry["Size"]),
                            etag=entry.get("ETag"),
                            last_modified=entry.get("LastModified"),
                        )
                    )
        except (ClientError, BotoCoreError) as err:
            raise self._translate(err, f"LIST {self.url}/{prefix}*", prefix) from err
        # S3 already lists in UTF-8 byte order (== code-point order); not every
        # S3-compatible server promises it, and the contract does.
        found.sort(key=lambda info: info.key)
        yield from found

    # -- delete and copy --------------------------------------------------------------

    def delete(self, key: str) -> None:
        self._check_open()
        full_key = self._full_key(key)
        try:
            self._client.delete_object(Bucket=self._bucket, Key=full_key)
        except (ClientError, BotoCoreError) as err:
            if _error_code(err) in _NOT_FOUND_CODES:
                return
            raise self._translate(err, f"DELETE {self._where(key)}", key) from err

    def delete_prefix(self, prefix: str) -> int:
        self._check_open()
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix; refusing to empty the store")
        keys = [info.key for info in self.list(prefix)]
        for batch_start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[batch_start : batch_start + _DELETE_BATCH]
            objects = [{"Key": self._full_key(key)} for key in batch]
            response = self._call(
                f"DeleteObjects under {self.url}/{prefix}",
                prefix,
                lambda objects=objects: self._client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": objects, "Quiet": True}
                ),
            )
            failures = [
                error
                for error in response.get("Errors", [])
                if error.get("Code") not in _NOT_FOUND_CODES
            ]
            if failures:
                sample = ", ".join(f"{e.get('Key')}: {e.get('Code')}" for e in failures[:5])
                raise StoreError(
                    f"delete of {len(failures)} object(s) under {self.url}/{prefix} failed "
                    f"({sample})"
                )
        return len(keys)

    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        self._check_open()
        full_src = self._full_key(src_key)
        full_dst = self._full_key(dst_key)
        info = self.head(src_key)
        if info.size > MAX_COPY_OBJECT_BYTES:
            raise StoreError(
                f"copy of {self._where(src_key)} ({info.size} bytes): objects over 5 GiB need "
                "a multipart copy, which this store does not do yet"
            )
        self._call(
            f"COPY {self._where(src_key)} to {self._where(dst_key)}",
            src_key,
            lambda: self._client.copy_object(
                Bucket=self._bucket,
                Key=full_dst,
                CopySource={"Bucket": self._bucket, "Key": full_src},
                MetadataDirective="COPY",
            ),
        )
        copied = self.head(dst_key)
        if copied.size != info.size or copied.crc32c != info.crc32c:
            raise ChecksumMismatchError(
                f"copy of {self._where(src_key)} to {self._where(dst_key)}: the copy is "
                f"{copied.size} bytes with CRC32C {copied.crc32c}, the source {info.size} bytes "
                f"with CRC32C {info.crc32c}"
            )
        return copied

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self._client.close()
