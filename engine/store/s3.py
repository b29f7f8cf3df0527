"""S3 (and any S3-compatible endpoint) as an object store (SPEC §9).

:class:`S3Store` is the public face; the work is done in small modules beside it:

- :mod:`engine.store.s3_endpoint` — which endpoint and how to talk to it: the boto3
  client, checksum defaults for AWS S3 versus S3-compatible servers, the key prefix and
  the worker pool (:class:`~engine.store.s3_endpoint.S3Connection`);
- :mod:`engine.store.retry` — the one retry policy: botocore retries requests, our loop
  only bytes damaged in flight, with the bound written down;
- :mod:`engine.store.s3_upload` — ``PutObject`` and parallel multipart uploads;
- :mod:`engine.store.s3_download` — ``head``, ranged reads, verifying streams and
  parallel ranged downloads.

Listing, deletes and copies are single requests and stay here. These modules are the
only ones that import boto3 (``engine.store`` imports them only for an ``s3://`` URL).

Thread safety: one boto3 client is shared by all threads (boto3 clients are thread-safe;
sessions are not, so the client is created once, in ``__init__``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from engine.errors import ChecksumMismatchError, StoreError
from engine.store.base import (
    MiB,
    ObjectInfo,
    ObjectStore,
    ProgressCallback,
    as_stream,
    validate_key,
    validate_prefix,
)
from engine.store.retry import NOT_FOUND_CODES, S3RetryPolicy, describe, error_code
from engine.store.s3_download import S3Downloader
from engine.store.s3_endpoint import (
    S3Connection,
    default_full_object_checksum,
    default_part_content_md5,
    is_aws_endpoint,
    make_client,
)
from engine.store.s3_upload import MAX_PARTS, MIN_PART_SIZE_BYTES, PartRequestHook, S3Uploader

__all__ = [
    "MAX_COPY_OBJECT_BYTES",
    "MAX_PARTS",
    "MIN_PART_SIZE_BYTES",
    "PartRequestHook",
    "S3RetryPolicy",
    "S3Store",
    "is_aws_endpoint",
]

#: S3's CopyObject limit: larger objects need a multipart copy (not done yet).
MAX_COPY_OBJECT_BYTES = 5 * 1024 * MiB
_DELETE_BATCH = 1000


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix``, through boto3.

    ``part_size_bytes`` (≥ 5 MiB; 16 MiB by default) is both the multipart threshold and
    the part size (raised automatically to stay within 10,000 parts when the size is
    known); ``max_concurrency`` is the number of parts or ranges in flight, shared by all
    calls on this store. Memory per ``put`` is about ``(max_concurrency + 2) * part size``.
    Credentials come from the usual boto3 chain unless given. ``retry`` sets every retry
    count and delay (:class:`~engine.store.retry.S3RetryPolicy`; see that module for who
    retries what and the bound on attempts).

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
        retry: S3RetryPolicy | None = None,
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
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        retry = retry or S3RetryPolicy()
        client = make_client(
            endpoint_url,
            region_name=region_name,
            retry=retry,
            # Every worker plus the calling threads' own requests (head, complete, …).
            max_pool_connections=2 * max_concurrency + 8,
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
        )
        self._conn = S3Connection(client, bucket=bucket, prefix=prefix,
                                  endpoint_url=endpoint_url, retry=retry,
                                  max_concurrency=max_concurrency)
        self._part_size_bytes = part_size_bytes
        self._part_content_md5 = (default_part_content_md5(endpoint_url)
                                  if part_content_md5 is None else part_content_md5)
        self._full_object_checksum = (default_full_object_checksum(endpoint_url)
                                      if full_object_checksum is None else full_object_checksum)
        self._uploader = S3Uploader(
            self._conn,
            part_size_bytes=part_size_bytes,
            part_content_md5=self._part_content_md5,
            full_object_checksum=self._full_object_checksum,
            part_request_hook=part_request_hook,
        )
        self._downloader = S3Downloader(self._conn, range_size_bytes=part_size_bytes)

    # -- what and where ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._conn.url

    @property
    def bucket(self) -> str:
        return self._conn.bucket

    @property
    def prefix(self) -> str:
        return self._conn.prefix

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint given at construction (``None``: AWS S3 through boto3's default)."""
        return self._conn.endpoint_url

    @property
    def part_size_bytes(self) -> int:
        return self._part_size_bytes

    def s3_key(self, key: str) -> str:
        """The S3 key that store key ``key`` lives under (the prefix joined with it), for
        tools that talk to the bucket directly. ``ValueError`` for an invalid key."""
        return self._conn.full_key(key)

    @property
    def retry(self) -> S3RetryPolicy:
        """The retry policy every request of this store follows."""
        return self._conn.retry

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
        return self._conn.client

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Store({self.url!r}{endpoint})"

    # -- writes ---------------------------------------------------------------------

    def put(
        self,
        key: str,
        source: BinaryIO | bytes,
        *,
        size: int | None = None,
        crc32c: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        self._conn.check_open()
        return self._uploader.put(key, as_stream(source), size=size, crc32c=crc32c,
                                  progress=progress)

    def put_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        size: int | None = None,
        crc32c: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        """Upload a local file; a multipart one part per worker, each reading its own range
        (see :meth:`engine.store.s3_upload.S3Uploader.put_file`). Small files, or an
        unknown ``crc32c`` (the object's metadata needs it up front), go through
        :meth:`put`."""
        self._conn.check_open()
        if crc32c is not None:
            info = self._uploader.put_file(key, path, size=size, crc32c=crc32c,
                                           progress=progress)
            if info is not None:
                return info
        return super().put_file(key, path, size=size, crc32c=crc32c, progress=progress)

    # -- reads ----------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        self._conn.check_open()
        return self._downloader.head(key)

    def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        self._conn.check_open()
        return self._downloader.get(key, start=start, end=end)

    def open_reader(self, key: str) -> BinaryIO:
        self._conn.check_open()
        return self._downloader.open_reader(key)

    def download(
        self, key: str, dest_path: str, *, progress: ProgressCallback | None = None
    ) -> ObjectInfo:
        self._conn.check_open()
        return self._downloader.download(key, dest_path, progress=progress)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._conn.check_open()
        validate_prefix(prefix)
        conn = self._conn
        store_prefix = f"{conn.prefix}/" if conn.prefix else ""
        paginator = conn.client.get_paginator("list_objects_v2")
        found: list[ObjectInfo] = []
        try:
            for page in paginator.paginate(Bucket=conn.bucket, Prefix=store_prefix + prefix):
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
            message = (f"LIST {self.url}/{prefix}* failed after "
                       f"{conn.retry.requests_made(err)} attempt(s): {describe(err)}")
            raise conn.translator(prefix)(err, message) from err
        # S3 already lists in UTF-8 byte order (== code-point order); not every
        # S3-compatible server promises it, and the contract does.
        found.sort(key=lambda info: info.key)
        yield from found

    # -- delete and copy --------------------------------------------------------------

    def delete(self, key: str) -> None:
        self._conn.check_open()
        conn = self._conn
        full_key = conn.full_key(key)
        try:
            conn.client.delete_object(Bucket=conn.bucket, Key=full_key)
        except (ClientError, BotoCoreError) as err:
            if error_code(err) in NOT_FOUND_CODES:
                return
            message = (f"DELETE {conn.where(key)} failed after "
                       f"{conn.retry.requests_made(err)} attempt(s): {describe(err)}")
            raise conn.translator(key)(err, message) from err

    def delete_prefix(self, prefix: str) -> int:
        self._conn.check_open()
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix; refusing to empty the store")
        conn = self._conn
        keys = [info.key for info in self.list(prefix)]
        for batch_start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[batch_start : batch_start + _DELETE_BATCH]
            objects = [{"Key": conn.full_key(key)} for key in batch]
            response = conn.call(
                f"DeleteObjects under {self.url}/{prefix}",
                prefix,
                lambda objects=objects: conn.client.delete_objects(
                    Bucket=conn.bucket, Delete={"Objects": objects, "Quiet": True}
                ),
            )
            failures = [
                error
                for error in response.get("Errors", [])
                if error.get("Code") not in NOT_FOUND_CODES
            ]
            if failures:
                sample = ", ".join(f"{e.get('Key')}: {e.get('Code')}" for e in failures[:5])
                raise StoreError(
                    f"delete of {len(failures)} object(s) under {self.url}/{prefix} failed "
                    f"({sample})"
                )
        return len(keys)

    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        self._conn.check_open()
        return self._server_side_copy(self, src_key, dst_key)

    def same_bucket_as(self, other: ObjectStore) -> bool:
        """True when one S3 ``CopyObject`` can move objects from ``other`` into this store:
        both are S3 stores on the same endpoint and bucket (prefixes may differ)."""
        return (isinstance(other, S3Store) and other.endpoint_url == self.endpoint_url
                and other.bucket == self.bucket)

    def copy_object_from(self, source: ObjectStore, key: str) -> ObjectInfo:
        """Copy ``source``'s object ``key`` to the same key here with one ``CopyObject``
        (metadata, and so the CRC32C, kept), then check the copy's size and CRC32C.

        ``source`` must be :meth:`same_bucket_as` this store (``ValueError`` otherwise);
        objects over 5 GiB raise ``StoreError`` (a multipart copy is not done yet). Missing
        ``key`` → ``ObjectNotFoundError``; a copy that differs → ``ChecksumMismatchError``.
        """
        self._conn.check_open()
        if not isinstance(source, S3Store) or not self.same_bucket_as(source):
            return super().copy_object_from(source, key)  # raises ValueError
        return self._server_side_copy(source, key, key)

    def _server_side_copy(self, source: S3Store, src_key: str, dst_key: str) -> ObjectInfo:
        conn = self._conn
        info = source.head(src_key)  # also: source is open, src_key exists and is valid
        where_src = f"{source.url}/{src_key}"
        if info.size > MAX_COPY_OBJECT_BYTES:
            raise StoreError(
                f"copy of {where_src} ({info.size} bytes): objects over 5 GiB need a "
                "multipart copy, which this store does not do yet"
            )
        copy_source = {"Bucket": source.bucket, "Key": source.s3_key(src_key)}
        full_dst = conn.full_key(dst_key)
        conn.call(
            f"COPY {where_src} to {conn.where(dst_key)}",
            src_key,
            lambda: conn.client.copy_object(
                Bucket=conn.bucket, Key=full_dst, CopySource=copy_source,
                MetadataDirective="COPY",
            ),
        )
        copied = self.head(dst_key)
        if copied.size != info.size or copied.crc32c != info.crc32c:
            raise ChecksumMismatchError(
                f"copy of {where_src} to {conn.where(dst_key)}: the copy is {copied.size} "
                f"bytes with CRC32C {copied.crc32c}, the source {info.size} bytes with CRC32C "
                f"{info.crc32c}"
            )
        return copied

    def close(self) -> None:
        self._conn.close()
