"""Which S3 endpoint, and how to talk to it: the client, its checksum defaults, the keys.

:class:`S3Connection` is what the upload and download halves of
:class:`~engine.store.s3.S3Store` share: one boto3 client (thread-safe; sessions are not,
so it is created once, here), the bucket and key prefix, the retry policy
(:mod:`engine.store.retry`) and the worker pool that parts and ranges run on.

Endpoint policy: who checks what at the other end decides which checksums go on the wire
(see ``S3Store``). "AWS S3" means no ``endpoint_url`` (boto3's default) or a host under
``amazonaws.com``; everything else is an S3-compatible server.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from engine.errors import ObjectNotFoundError, StoreError
from engine.store.base import closed_error, validate_key
from engine.store.retry import NOT_FOUND_CODES, S3RetryPolicy, describe, error_code

T = TypeVar("T")


def is_aws_endpoint(endpoint_url: str | None) -> bool:
    """True for AWS S3 itself: no ``endpoint_url`` (boto3's default) or a host under
    ``amazonaws.com`` (``.com.cn`` too); False for every S3-compatible server."""
    if endpoint_url is None:
        return True
    host = (urlsplit(endpoint_url).hostname or "").lower().rstrip(".")
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def default_part_content_md5(endpoint_url: str | None) -> bool:
    """Send each part's Content-MD5 unless the endpoint is AWS S3: rclone and moto check
    only the MD5, AWS S3 checks the CRC32C itself (an MD5 would be a second pass for
    nothing)."""
    return not is_aws_endpoint(endpoint_url)


def default_full_object_checksum(endpoint_url: str | None) -> bool:
    """Ask for a FULL_OBJECT CRC32C check at completion on AWS S3 only: servers without
    the feature ignore or may reject it."""
    return is_aws_endpoint(endpoint_url)


def make_client(
    endpoint_url: str | None,
    *,
    region_name: str | None,
    retry: S3RetryPolicy,
    max_pool_connections: int,
    connect_timeout_seconds: float,
    read_timeout_seconds: float,
    aws_access_key_id: str | None,
    aws_secret_access_key: str | None,
    aws_session_token: str | None,
) -> Any:
    """A boto3 S3 client; credentials from the usual boto3 chain unless given."""
    config = Config(
        region_name=region_name or "us-east-1",
        retries=retry.botocore_retries(),
        max_pool_connections=max_pool_connections,
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
    return session.client("s3", endpoint_url=endpoint_url, config=config)


class S3Connection:
    """The client, bucket, key prefix, retry policy and worker pool of one store."""

    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        prefix: str,
        endpoint_url: str | None,
        retry: S3RetryPolicy,
        max_concurrency: int,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.retry = retry
        self.max_concurrency = max_concurrency
        self._executor: cf.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def closed(self) -> bool:
        return self._closed

    def full_key(self, key: str) -> str:
        """The S3 key of store key ``key`` (validated): the prefix joined with it."""
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def where(self, key: str) -> str:
        return f"{self.url}/{key}"

    def check_open(self) -> None:
        if self._closed:
            raise closed_error(self.url)

    def pool(self) -> cf.ThreadPoolExecutor:
        """The worker pool for parts and ranges, shared by every call on the store."""
        with self._lock:
            if self._closed:
                raise closed_error(self.url)
            if self._executor is None:
                self._executor = cf.ThreadPoolExecutor(
                    max_workers=self.max_concurrency, thread_name_prefix="tessera-s3"
                )
            return self._executor

    def translator(self, key: str) -> Callable[[BaseException, str], StoreError]:
        """Turns an S3 error about ``key`` into ours: not found, or ``StoreError(message)``."""

        def translate(err: BaseException, message: str) -> StoreError:
            if error_code(err) in NOT_FOUND_CODES:
                return ObjectNotFoundError(f"no object {key!r} in {self.url}")
            return StoreError(message)

        return translate

    def call(self, what: str, key: str, operation: Callable[[], T]) -> T:
        """One request; botocore has retried what it retries, nothing more is tried."""
        try:
            return operation()
        except (ClientError, BotoCoreError) as err:
            attempts = self.retry.requests_made(err)
            message = f"{what} failed after {attempts} attempt(s): {describe(err)}"
            raise self.translator(key)(err, message) from err

    def run(self, what: str, key: str, attempt_fn: Callable[[int], T], *,
            first_attempt: int = 1) -> T:
        """``attempt_fn`` under the retry policy's own loop (integrity failures only)."""
        return self.retry.run(what, attempt_fn, self.translator(key),
                              first_attempt=first_attempt)

    def close(self) -> None:
        """Stop the worker pool and close the client. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self.client.close()
