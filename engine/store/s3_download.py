"""Reads from S3: ``head``, ranged ``get``, a verifying stream, parallel ranged downloads.

Reads verify against the whole-object CRC32C kept in the object's metadata
(``x-amz-meta-crc32c``, see :mod:`engine.store.s3_upload`): ``open_reader`` at end of
stream, ``download`` before the file is renamed into place, a whole-object ``get`` through
``open_reader``.

Retries follow :mod:`engine.store.retry`: botocore retries the GET request itself; a body
that arrives short or breaks off (botocore has returned by then, so it cannot) is a
:class:`~engine.store.retry.ShortRead` and the range is fetched again by our loop. A
streaming reader cannot go back, so a stream that breaks off fails with ``StoreError``.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import os
import uuid
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from engine.errors import ChecksumMismatchError, StoreError
from engine.store.base import (
    MiB,
    ObjectInfo,
    ProgressCallback,
    VerifyingReader,
    crc32c_of_stream,
    format_crc32c,
    parse_crc32c,
    resolve_range,
)
from engine.store.retry import ShortRead, describe, error_code
from engine.store.s3_endpoint import S3Connection

_READ_CHUNK_BYTES = 1 * MiB


def _metadata(response: dict[str, Any]) -> dict[str, str]:
    # Servers differ in the case they return metadata names in (rclone: "Crc32c").
    return {name.lower(): value for name, value in (response.get("Metadata") or {}).items()}


def object_info(key: str, response: dict[str, Any]) -> ObjectInfo:
    """What a HEAD or GET response says about the object under store key ``key``."""
    metadata = _metadata(response)
    return ObjectInfo(
        key=key,
        size=int(response["ContentLength"]),
        crc32c=parse_crc32c(metadata.get("crc32c")),
        md5=metadata.get("md5"),
        etag=response.get("ETag"),
        last_modified=response.get("LastModified"),
    )


def read_body(response: dict[str, Any], expected_bytes: int) -> bytes:
    """The whole body of a GET response, or :class:`ShortRead` if it broke off or came
    short of ``expected_bytes``. Reads through botocore's ``StreamingBody`` (not its raw
    stream), which turns urllib3's errors into botocore's."""
    body = response["Body"]
    try:
        data = body.read()
    except (BotoCoreError, OSError) as err:
        raise ShortRead(f"the body broke off: {describe(err)}") from err
    finally:
        body.close()
    if len(data) != expected_bytes:
        raise ShortRead(f"got {len(data)} of {expected_bytes} bytes")
    return data


class S3Downloader:
    """The reads of :class:`~engine.store.s3.S3Store` (see the module docstring)."""

    def __init__(self, conn: S3Connection, *, range_size_bytes: int) -> None:
        self._conn = conn
        self._range_size_bytes = range_size_bytes

    def head(self, key: str) -> ObjectInfo:
        conn = self._conn
        full_key = conn.full_key(key)
        response = conn.call(
            f"HEAD {conn.where(key)}",
            key,
            lambda: conn.client.head_object(Bucket=conn.bucket, Key=full_key),
        )
        return object_info(key, response)

    def get(self, key: str, *, start: int, end: int | None) -> bytes:
        conn = self._conn
        full_key = conn.full_key(key)
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
                response = conn.client.get_object(
                    Bucket=conn.bucket, Key=full_key, Range=byte_range
                )
            except ClientError as err:
                if error_code(err) == "InvalidRange":
                    return None  # start is at or past the end
                raise
            return read_body(response, int(response["ContentLength"]))

        data = conn.run(f"GET {byte_range} of {conn.where(key)}", key, attempt)
        if data is None:
            self.head(key)
            return b""
        if end is not None and len(data) > end - start:
            # A server that ignored the Range header sent the whole object.
            data = data[: end - start]
        return data

    def open_reader(self, key: str) -> BinaryIO:
        conn = self._conn
        full_key = conn.full_key(key)
        response = conn.call(
            f"GET {conn.where(key)}",
            key,
            lambda: conn.client.get_object(Bucket=conn.bucket, Key=full_key),
        )
        info = object_info(key, response)
        body = response["Body"]
        where = f"read of {conn.where(key)}"

        def raw_read(count: int) -> bytes:
            try:
                return body.read(count)
            except (BotoCoreError, OSError) as err:
                raise StoreError(f"{where} failed mid-stream: {describe(err)}") from err

        raw = VerifyingReader(
            raw_read, body.close, where=where, expected_size=info.size, expected_crc32c=info.crc32c
        )
        return io.BufferedReader(raw, buffer_size=_READ_CHUNK_BYTES)  # type: ignore[return-value]

    def download(
        self, key: str, dest_path: str, *, progress: ProgressCallback | None
    ) -> ObjectInfo:
        conn = self._conn
        full_key = conn.full_key(key)
        info = self.head(key)
        dest_path = os.path.abspath(os.fspath(dest_path))
        dest_dir = os.path.dirname(dest_path)
        os.makedirs(dest_dir, exist_ok=True)
        temp_path = os.path.join(dest_dir, f".tessera-tmp-{uuid.uuid4().hex}")
        step = self._range_size_bytes
        ranges = [(offset, min(offset + step, info.size)) for offset in range(0, info.size, step)]
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                os.ftruncate(fd, info.size)
                pool = conn.pool()
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
            with open(temp_path, "rb") as handle:
                actual_crc, length = crc32c_of_stream(handle, _READ_CHUNK_BYTES * 8)
            if length != info.size or (info.crc32c is not None and actual_crc != info.crc32c):
                raise ChecksumMismatchError(
                    f"download of {conn.where(key)}: got {length} bytes with CRC32C "
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
                    f"download of {conn.where(key)} to {dest_path} failed: {err}"
                ) from err
            raise
        return info

    def _download_range(self, key: str, full_key: str, fd: int, first: int, stop: int) -> None:
        conn = self._conn
        byte_range = f"bytes={first}-{stop - 1}"

        def attempt(_number: int) -> None:
            response = conn.client.get_object(Bucket=conn.bucket, Key=full_key, Range=byte_range)
            view = memoryview(read_body(response, stop - first))
            offset = first
            while view:
                written = os.pwrite(fd, view, offset)
                view = view[written:]
                offset += written

        conn.run(f"GET {byte_range} of {conn.where(key)}", key, attempt)
