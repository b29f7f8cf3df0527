"""Object stores: one interface (``base``), a local directory and S3 (SPEC §9).

``open_store`` turns a URL into a store::

    open_store("./backups")                      # LocalStore, the embedded default
    open_store("file:///var/lib/tessera/backups")
    open_store("s3://bucket/tessera/backups", endpoint_url="http://127.0.0.1:9000")

``engine.store.s3`` (and so boto3) is imported only when an ``s3://`` URL is opened.
"""

from __future__ import annotations

from typing import Any

from engine.store.base import ObjectInfo, ObjectStore, ProgressCallback, validate_key
from engine.store.local import LocalStore

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "ProgressCallback",
    "S3RetryPolicy",
    "S3Store",
    "open_store",
    "validate_key",
]


def open_store(url: str, *, endpoint_url: str | None = None, **options: Any) -> ObjectStore:
    """Open the store at ``url``: ``s3://bucket[/prefix]``, ``file://DIR`` or a plain path.

    ``endpoint_url`` and ``options`` (``part_size_bytes``, ``max_concurrency``,
    ``retry=S3RetryPolicy(...)``, credentials, …) go to :class:`~engine.store.s3.S3Store`;
    a local store takes none.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"store URL must be a non-empty string, got {url!r}")
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"store URL {url!r} names no bucket; use s3://bucket/prefix")
        from engine.store.s3 import S3Store

        return S3Store(bucket, prefix, endpoint_url=endpoint_url, **options)
    if endpoint_url is not None or options:
        raise ValueError(f"endpoint_url and options apply to s3:// stores only, not {url!r}")
    if url.startswith("file://"):
        path = url[len("file://") :]
        if not path:
            raise ValueError(f"store URL {url!r} names no directory; use file:///abs/dir")
        return LocalStore(path)
    if "://" in url:
        raise ValueError(
            f"unsupported store URL {url!r}; use a path, file://DIR or s3://bucket/prefix"
        )
    return LocalStore(url)


def __getattr__(name: str) -> Any:
    # The S3 names are exported lazily so that importing engine.store does not import boto3.
    if name == "S3Store":
        from engine.store.s3 import S3Store

        return S3Store
    if name == "S3RetryPolicy":
        from engine.store.retry import S3RetryPolicy

        return S3RetryPolicy
    raise AttributeError(f"module 'engine.store' has no attribute {name!r}")
