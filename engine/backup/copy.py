"""CopyBackup (SPEC §8): put a backup into another store under the same id.

Every partition object is copied — server-side (S3 ``CopyObject``) when source and
destination are the same S3 endpoint and bucket, streamed otherwise — then checked in
the destination (size and CRC32C against the backup manifest) and the manifest is
written **last**, so the destination holds a backup only once every object is there and
verified (a copy cut short leaves objects without a manifest, which are not a backup;
they are removed when the copy fails, or by the next copy of the same id).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import (
    ChecksumMismatchError,
    CorruptionError,
    ObjectNotFoundError,
    ValidationException,
)
from ..store import ObjectStore
from ..store.base import format_crc32c
from .manifest import BackupManifest, PartitionManifest, manifest_key

DEFAULT_COPY_PARALLELISM = 4
#: S3's CopyObject limit; a larger partition object is streamed (no multipart copy yet).
SERVER_SIDE_COPY_MAX_BYTES = 5 << 30


@dataclass
class CopyProgress:
    objects_total: int
    bytes_total: int
    objects_done: int = 0
    bytes_done: int = 0
    server_side: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def object_done(self, size: int) -> None:
        with self._lock:
            self.objects_done += 1
            self.bytes_done += size

    def to_json(self) -> dict:
        return {"objects_done": self.objects_done, "objects_total": self.objects_total,
                "bytes_done": self.bytes_done, "bytes_total": self.bytes_total,
                "server_side": self.server_side}


def same_s3_bucket(source: ObjectStore, destination: ObjectStore) -> bool:
    """True when one S3 ``CopyObject`` can move bytes from ``source`` to ``destination``."""
    return destination.same_bucket_as(source)


def copy_backup_objects(
    source: ObjectStore,
    destination: ObjectStore,
    manifest: BackupManifest,
    *,
    parallelism: int = DEFAULT_COPY_PARALLELISM,
    progress: CopyProgress | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Copy, verify, then write the manifest; on failure remove what was copied."""
    backup_id = manifest.backup_id
    if source.url == destination.url:
        raise ValidationException(f"backup {backup_id}: source and destination are the same "
                                  f"store ({source.url})")
    if destination.exists(manifest_key("", backup_id)):
        raise ValidationException(f"backup {backup_id} already exists in {destination.url}; "
                                  "delete it there first")
    progress = progress or CopyProgress(
        len(manifest.partitions), sum(p.object_size_bytes or 0 for p in manifest.partitions))
    progress.server_side = same_s3_bucket(source, destination)

    def copy_one(entry: PartitionManifest) -> None:
        key = entry.object_key
        assert key is not None
        # CopyObject stops at 5 GiB: larger objects are streamed even within one bucket.
        server_side = progress.server_side and (
            entry.object_size_bytes or 0) <= SERVER_SIDE_COPY_MAX_BYTES
        try:
            if server_side:
                destination.copy_object_from(source, key)
            else:
                with source.open_reader(key) as reader:
                    destination.put(key, reader, size=entry.object_size_bytes,
                                    crc32c=int(entry.object_crc32c, 16), progress=on_bytes)
            info = destination.head(key)
        except ObjectNotFoundError as err:
            raise CorruptionError(f"copy of backup {backup_id}: the partition object is "
                                  "missing from the source", partition=entry.partition_id,
                                  path=key) from err
        except ChecksumMismatchError as err:
            raise CorruptionError(f"copy of backup {backup_id}: {err}",
                                  partition=entry.partition_id, path=key) from err
        stored_crc = None if info.crc32c is None else format_crc32c(info.crc32c)
        if info.size != entry.object_size_bytes or stored_crc != entry.object_crc32c:
            raise CorruptionError(
                f"copy of backup {backup_id}: the copy in {destination.url} is {info.size} "
                f"bytes with CRC32C {stored_crc}; the manifest says {entry.object_size_bytes} "
                f"bytes with {entry.object_crc32c}", partition=entry.partition_id, path=key)
        if server_side and on_bytes is not None:
            on_bytes(info.size)
        progress.object_done(info.size)

    try:
        with ThreadPoolExecutor(max(1, parallelism), thread_name_prefix="copy") as pool:
            list(pool.map(copy_one, manifest.partitions))
        destination.put(manifest_key("", backup_id), manifest.to_json())  # the commit point
    except BaseException:
        try:
            destination.delete_prefix(f"{backup_id}/")
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass
        raise

