"""Back up one partition: physical copy + catch-up, package, verify, upload (SPEC §6).

This is the per-partition worker; :mod:`engine.backup.create` runs one per partition in
parallel. Each step is a shared mechanism: ``Partition.export_copy`` (the same copy +
catch-up that replicas and splits use), ``package_partition_to_file``,
``verify_packaged_file`` and the object store's ``put_file``.

Retries: the worker repeats the whole export when *its own* bytes fail a check — the
package fails verification, or the staged object no longer matches its CRC32C when the
store reads it for the upload — up to ``max_attempts`` times. It never retries the
transport: the store has done that under its one retry policy (for S3,
:mod:`engine.store.retry`), so a ``StoreError`` fails the partition at once.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ChecksumMismatchError, CorruptionError, StoreError
from ..partition import Partition, Snapshot
from ..store import ObjectStore
from .manifest import PartitionManifest
from .package import package_partition_to_file
from .verify import verify_packaged_file

#: Exports of one partition when its package fails verification or its staged object
#: fails its CRC32C at upload (local damage, not transport: see the module docstring).
DEFAULT_EXPORT_ATTEMPTS = 3


@dataclass
class PartitionProgress:
    """Live progress of one partition's backup, shown by ``describe_backup``."""

    partition_id: str
    backup_lsn: int
    phase: str = "pending"  # pending, exporting, packaging, verifying, uploading, done
    bytes_done: int = 0
    bytes_total: int = 0
    attempts: int = 0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class PartitionExportFailed(Exception):
    """A partition could not be backed up; the message says why (becomes FAILED's reason)."""


def export_partition(
    partition: Partition,
    snapshot: Snapshot,
    template: PartitionManifest,
    store: ObjectStore,
    work_dir: Path,
    progress: PartitionProgress,
    *,
    level: int = 3,
    threads: int = 2,
    max_attempts: int = DEFAULT_EXPORT_ATTEMPTS,
    cancelled: Callable[[], bool] = lambda: False,
    source=None,
) -> PartitionManifest:
    """Export, package, verify and upload one partition, re-exporting up to ``max_attempts``.

    Returns the partition's complete manifest entry. ``snapshot`` pins the partition at
    ``template.backup_lsn``; it stays pinned until the caller releases it, so a re-export
    yields the same data. ``source`` (an ``engine.replica.ReplicaSnapshot``) copies from
    a replica instead of the partition, catching up from the partition's WAL (SPEC §10).

    Bound: at most ``max_attempts`` uploads of the object, each started only after the
    previous one found the staged bytes damaged (``ChecksumMismatchError``: nothing was
    stored); transport faults are the store's alone and end the export with the store's
    ``StoreError`` — they never multiply by ``max_attempts``.
    """
    name = f"{template.table_name}/{template.partition_id}"
    uploaded = None
    for attempt in range(1, max_attempts + 1):
        if cancelled():
            raise PartitionExportFailed(f"partition {name}: backup cancelled")
        progress.attempts = attempt
        attempt_dir = work_dir / f"attempt-{attempt}"
        shutil.rmtree(attempt_dir, ignore_errors=True)
        attempt_dir.mkdir(parents=True)
        try:
            progress.phase = "exporting"
            export_dir = attempt_dir / "env"
            reached = (source or partition).export_copy(
                export_dir, target_lsn=template.backup_lsn, snapshot=snapshot,
                clear_page_gaps=True,  # ~1/3 smaller objects, ~1/4 less zstd CPU
            )
            if reached != template.backup_lsn:
                raise CorruptionError(
                    f"export reached LSN {reached}, expected {template.backup_lsn}",
                    partition=name, path=str(export_dir),
                )
            progress.phase = "packaging"
            object_path = attempt_dir / "partition.tar.zst"
            result = package_partition_to_file(
                export_dir, template, object_path, level=level, threads=threads
            )
            progress.phase = "verifying"
            verdict = verify_packaged_file(object_path, result.manifest,
                                           export_dir=export_dir)
            shutil.rmtree(export_dir, ignore_errors=True)
        except CorruptionError as err:
            progress.problems.append(f"attempt {attempt}: {err}")
            continue
        if not verdict.ok:
            progress.problems.append(
                f"attempt {attempt}: verification failed: {verdict.message}")
            continue
        progress.phase = "uploading"
        progress.bytes_total = result.manifest.object_size_bytes
        try:
            _upload(store, object_path, result.manifest, progress, name, cancelled)
        except ChecksumMismatchError as err:  # the staged bytes changed: export again
            progress.problems.append(f"attempt {attempt}: upload refused the staged object: "
                                     f"{type(err).__name__}: {err}")
            continue
        uploaded = result.manifest
        break
    if uploaded is None:
        raise PartitionExportFailed(
            f"partition {name} failed verification {max_attempts} times: "
            + "; ".join(progress.problems[-max_attempts:])
        )
    progress.bytes_done = uploaded.object_size_bytes
    progress.phase = "done"
    shutil.rmtree(work_dir, ignore_errors=True)
    return uploaded


def _upload(
    store: ObjectStore,
    object_path: Path,
    manifest: PartitionManifest,
    progress: PartitionProgress,
    name: str,
    cancelled: Callable[[], bool],
) -> None:
    """``store.put_file`` the verified object, once.

    The store verifies the bytes it reads against ``object_crc32c`` (taken while
    packaging), so a staged file damaged after verification fails the put with
    ``ChecksumMismatchError`` and nothing is stored under the key; the caller exports
    again. Any other ``StoreError`` (or ``OSError``) comes after the store's own retries
    and fails the partition: retrying here would multiply them.
    """

    def uploaded(count: int) -> None:
        if cancelled():
            raise PartitionExportFailed(f"partition {name}: backup cancelled during upload")
        progress.bytes_done += count

    progress.bytes_done = 0
    try:
        store.put_file(manifest.object_key, object_path, size=manifest.object_size_bytes,
                       crc32c=int(manifest.object_crc32c, 16), progress=uploaded)
    except ChecksumMismatchError:
        raise
    except (StoreError, OSError) as err:
        progress.problems.append(f"upload: {type(err).__name__}: {err}")
        raise PartitionExportFailed(
            f"partition {name}: upload to {store.url} failed: {type(err).__name__}: {err}"
        ) from err
