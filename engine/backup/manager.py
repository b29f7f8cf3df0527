"""The backup API of an engine: create, describe, list, delete; limits; crash recovery
(SPEC §6–7).

Backup records live in the catalog (they survive restarts); the objects live in the
backup store under ``{backup_id}/``. A record is CREATING while its run works, AVAILABLE
once the manifest is written, DELETING while its objects go, or FAILED with a reason. On
open, a backup left CREATING by a crash or shutdown is resumed from fresh snapshots (its
half-uploaded objects are removed first); one whose manifest made it to the store but
whose record did not is marked AVAILABLE; one whose table is gone is marked FAILED.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import (
    BackupInUseException,
    BackupNotFoundException,
    CorruptionError,
    EngineClosedError,
    LimitExceededException,
    ObjectNotFoundError,
    StoreError,
    TableNotFoundException,
    ValidationException,
)
from ..priority import DEFAULT_BACKGROUND_NICE, lower_thread_priority
from ..store import ObjectStore
from .create import BackupRun
from .manifest import BackupManifest, manifest_key

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..services import OpenTables, ReplicaSource

_BACKUP_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")
DEFAULT_MAX_IN_FLIGHT = 4
DEFAULT_PARALLELISM = 2


def default_zstd_threads(parallelism: int) -> int:
    """zstd workers per partition so that ``parallelism`` partitions fill the cores.

    More workers than cores only adds switching: on 2 cores, 2 partitions x 1 worker
    backed 1 GiB up in 8.1-8.7 s, 2 x 2 workers in 9.0-10.7 s (bench/bench_backup.py).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, parallelism))


def new_backup_id(region: str) -> str:
    """Time-ordered and unique across regions: ``<ms since epoch>-<random>-<region>``."""
    return f"{int(time.time() * 1000):014d}-{secrets.token_hex(4)}-{region}"


class BackupManager:
    """Owned by an :class:`~engine.Engine`; its public methods are the engine's backup API.

    It reaches tables only through ``tables`` (:class:`~engine.services.OpenTables`) and
    replicas through ``replicas``; restores and copies read backups through the public
    :meth:`record`, :meth:`read_manifest` and :attr:`lock` (the
    :class:`~engine.services.BackupCatalog` protocol).
    """

    def __init__(
        self,
        tables: OpenTables,
        catalog: Catalog,
        store: ObjectStore,
        *,
        region: str,
        work_root: Path,
        replicas: ReplicaSource,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        parallelism: int = DEFAULT_PARALLELISM,
        compression_level: int = 3,
        threads_per_partition: int | None = None,
        nice: int = DEFAULT_BACKGROUND_NICE,
    ) -> None:
        self.tables = tables
        self.region = region
        self.replicas = replicas
        self.nice = nice
        self.catalog = catalog
        self.store = store
        self.max_in_flight = max_in_flight
        self.parallelism = parallelism
        self.compression_level = compression_level
        self.threads_per_partition = (default_zstd_threads(parallelism)
                                      if threads_per_partition is None else threads_per_partition)
        self.work_root = work_root
        self.lock = threading.RLock()
        self._runs: dict[str, BackupRun] = {}
        self._closed = False

    # ------------------------------------------------------------------ recovery
    def recover(self) -> None:
        """Finish what a crash or shutdown interrupted; never leave a record CREATING idle."""
        shutil.rmtree(self.work_root, ignore_errors=True)
        for record in self.catalog.list_backups():
            status = record["status"]
            if status == "DELETING":
                self._delete_objects_and_record(record["backup_id"])
            elif status == "CREATING":
                self._recover_creating(record)
            elif status == "FAILED" and record.get("cleanup_pending"):
                self._clean_up_failed(record["backup_id"])

    def _clean_up_failed(self, backup_id: str) -> bool:
        """Remove a FAILED backup's objects (SPEC §6: objects without a manifest are not a
        backup and are cleaned up); on a store error keep ``cleanup_pending`` for later."""
        try:
            self.store.delete_prefix(f"{backup_id}/")
        except StoreError:
            pending = True
        else:
            pending = False

        def change(record):
            if record is None:
                return None
            record["cleanup_pending"] = pending
            return record

        self.catalog.update("backup", backup_id, change)
        return not pending

    def _recover_creating(self, record: dict) -> None:
        backup_id = record["backup_id"]
        manifest = self.load_manifest(backup_id, missing_ok=True)
        if manifest is not None:
            self._mark_available(backup_id, manifest)
            return
        self.store.delete_prefix(f"{backup_id}/")  # objects without a manifest: not a backup
        table = self.tables.current_table(record["table_name"], record["table_id"])
        if table is None:
            self._mark_failed(backup_id, "the source table was dropped while the backup ran")
            return
        record["resumed"] = record.get("resumed", 0) + 1
        self.catalog.put_backup(record)
        self._start(record, table)

    # ------------------------------------------------------------------ create
    def create_backup(self, table_name: str, backup_name: str, source: str = "primary") -> dict:
        """Start an on-demand backup; returns its description (CREATING) at once.

        ``source="replica"`` copies each partition that has an ACTIVE replica from the
        replica (SPEC §10), the others from the partition itself.
        """
        if source not in ("primary", "replica"):
            raise ValidationException(f"source must be 'primary' or 'replica', got {source!r}")
        if not isinstance(backup_name, str) or not _BACKUP_NAME_RE.match(backup_name):
            raise ValidationException(
                f"invalid backup name {backup_name!r}: use 3 to 255 characters of letters, "
                "digits, '_', '-' and '.'"
            )
        with self.lock:
            self._check_open()
            table_record = self.catalog.get_table(table_name) if isinstance(table_name, str) else None
            if table_record is None:
                # The seed's "Error: Table Not Found": no backup record is created.
                raise TableNotFoundException(f"Table not found: {table_name}")
            if table_record["status"] != "ACTIVE":
                raise ValidationException(
                    f"Table {table_name} is {table_record['status']}; only an ACTIVE table can be backed up"
                )
            for run in self._runs.values():
                if run.record["table_name"] == table_name:
                    raise BackupInUseException(
                        f"Backup {run.backup_id} of table {table_name} is in progress: one backup "
                        "per table at a time; retry when it is AVAILABLE"
                    )
            if len(self._runs) >= self.max_in_flight:
                raise LimitExceededException(
                    f"{len(self._runs)} backups are in progress, the limit is "
                    f"{self.max_in_flight}; retry when one finishes"
                )
            table = self.tables.table(table_name)
            table_items, table_bytes = table.stats()
            record = {
                "backup_id": new_backup_id(self.region),
                "backup_name": backup_name,
                "table_name": table_name,
                "table_id": table_record["table_id"],
                "region": self.region,
                "key_schema": table_record["key_schema"],
                "partitioning": table_record["partitioning"],
                "key_format": table_record.get("key_format", 1),
                "sync": table_record["sync"],
                "status": "CREATING",
                "failure_reason": None,
                "created_at": time.time(),
                "completed_at": None,
                "size_bytes": None,
                "item_count": None,
                "store": self.store.url,
                # The source table as DescribeBackup's SourceTableDetails shows it: its
                # creation time and approximate size now, its billing (engine.billing).
                "table_created_at": table_record["created_at"],
                "table_size_bytes": table_bytes,
                "table_item_count": table_items,
            }
            if table_record.get("billing"):
                record["billing"] = dict(table_record["billing"])
            if table_record.get("indexes"):  # every index definition (engine.indexes)
                record["indexes"] = table_record["indexes"]
            if source == "replica":
                record["source"] = "replica"
            run = self._new_run(record, table)
            run.take_snapshots()  # backup_lsn of every partition: now, before returning
            try:
                self.catalog.put_backup(record)
            except BaseException:
                run.release_snapshots()
                raise
            self._launch(run)
            return self._describe(record)

    def _new_run(self, record: dict, table) -> BackupRun:
        return BackupRun(
            record, table, self.store, self.work_root / record["backup_id"],
            parallelism=self.parallelism, level=self.compression_level,
            threads_per_partition=self.threads_per_partition,
            replica_source=(self.replicas.snapshot_for
                            if record.get("source") == "replica" else None),
        )

    def _start(self, record: dict, table) -> None:
        run = self._new_run(record, table)
        run.take_snapshots()
        self._launch(run)

    def _launch(self, run: BackupRun) -> None:
        self._runs[run.backup_id] = run
        run.thread = threading.Thread(
            target=self._run_to_end, args=(run,), name=f"backup-{run.backup_id}", daemon=True
        )
        run.thread.start()

    def _run_to_end(self, run: BackupRun) -> None:
        lower_thread_priority(self.nice)  # its export threads inherit it: writers come first
        try:
            manifest = run.run()
        except BaseException as err:  # noqa: BLE001 - every failure becomes FAILED(reason)
            if run.closing:
                pass  # shutdown: the record stays CREATING and resumes on the next open
            else:
                # Objects first, so a FAILED backup never shows leftovers; if the store is
                # unreachable, cleanup_pending stays set and recover() (the next open) or
                # delete_backup retries it.
                self._clean_up_failed(run.backup_id)
                self._mark_failed(run.backup_id, f"{type(err).__name__}: {err}")
        else:
            self._mark_available(run.backup_id, manifest)
        finally:
            with self.lock:
                self._runs.pop(run.backup_id, None)

    def _mark_available(self, backup_id: str, manifest: BackupManifest) -> None:
        def change(record):
            if record is None:
                return None
            record.update(status="AVAILABLE", completed_at=manifest.completed_at,
                          size_bytes=manifest.size_bytes, item_count=manifest.item_count,
                          failure_reason=None)
            return record

        self.catalog.update("backup", backup_id, change)

    def _mark_failed(self, backup_id: str, reason: str) -> None:
        def change(record):
            if record is None:
                return None
            record.update(status="FAILED", failure_reason=reason, completed_at=time.time())
            return record

        self.catalog.update("backup", backup_id, change)

    # ------------------------------------------------------------------ read
    def record(self, backup_id: str) -> dict:
        record = self.catalog.get_backup(backup_id) if isinstance(backup_id, str) else None
        if record is None:
            raise BackupNotFoundException(f"Backup not found: {backup_id}")
        return record

    def _describe(self, record: dict) -> dict:
        description = {
            key: record.get(key)
            for key in ("backup_id", "backup_name", "table_name", "table_id", "region",
                        "status", "failure_reason", "created_at", "completed_at",
                        "size_bytes", "item_count", "partitioning", "table_created_at",
                        "table_size_bytes", "table_item_count", "billing", "indexes")
        }
        description["key_schema"] = [tuple(pair) for pair in record["key_schema"]]
        description["backup_type"] = "USER"
        # Restores and copies (engine.backup.restore_manager): in progress, then history.
        description["restores_in_progress"] = list(record.get("restores_in_progress") or [])
        description["copies_in_progress"] = list(record.get("copies_in_progress") or [])
        description["copies"] = list(record.get("copies") or [])
        run = self._runs.get(record["backup_id"])
        if run is not None:
            description["partitions"] = [p.to_json() for p in run.progress.values()]
            description["bytes_done"] = sum(p.bytes_done for p in run.progress.values())
            description["bytes_total"] = sum(p.bytes_total for p in run.progress.values())
        return description

    def describe_backup(self, backup_id: str) -> dict:
        return self._describe(self.record(backup_id))

    def list_backups(
        self,
        table: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int | None = None,
        exclusive_start: str | None = None,
    ) -> tuple[list[dict], str | None]:
        """Backups oldest first, filtered by table and creation time; paginated by id."""
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValidationException(f"limit must be a positive integer, got {limit!r}")
        records = sorted(self.catalog.list_backups(), key=lambda r: (r["created_at"], r["backup_id"]))
        selected = [
            r for r in records
            if (table is None or r["table_name"] == table)
            and (start is None or r["created_at"] >= start)
            and (end is None or r["created_at"] <= end)
        ]
        if exclusive_start is not None:
            ids = [r["backup_id"] for r in selected]
            if exclusive_start not in ids:
                raise ValidationException(f"ExclusiveStartBackupArn {exclusive_start} is not a listed backup")
            selected = selected[ids.index(exclusive_start) + 1:]
        last = None
        if limit is not None and len(selected) > limit:
            selected = selected[:limit]
            last = selected[-1]["backup_id"]
        return [self._describe(r) for r in selected], last

    def wait(self, backup_id: str, timeout: float = 600.0) -> dict:
        """Block until the backup leaves CREATING (for tools and tests); returns it."""
        deadline = time.monotonic() + timeout
        while True:
            run = self._runs.get(backup_id)
            if run is not None and run.thread is not None:
                run.thread.join(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            description = self.describe_backup(backup_id)
            if description["status"] != "CREATING" or time.monotonic() >= deadline:
                return description

    def read_manifest(self, backup_id: str) -> BackupManifest:
        record = self.record(backup_id)
        if record["status"] != "AVAILABLE":
            raise BackupInUseException(f"Backup {backup_id} is {record['status']}, not AVAILABLE")
        return self.load_manifest(backup_id)

    def load_manifest(self, backup_id: str, *, missing_ok: bool = False) -> BackupManifest | None:
        """The stored manifest, whatever the record's status (CorruptionError if it is
        missing, or None with ``missing_ok``)."""
        key = manifest_key("", backup_id)
        try:
            data = self.store.get(key)
        except ObjectNotFoundError:
            if missing_ok:
                return None
            raise CorruptionError(f"backup {backup_id} has no manifest", path=key) from None
        return BackupManifest.from_json(data, key)

    # ------------------------------------------------------------------ delete
    def delete_backup(self, backup_id: str) -> dict:
        """Delete a backup's objects and record; returns its description (DELETING)."""
        with self.lock:
            self._check_open()
            record = self.record(backup_id)
            if record["status"] in ("CREATING", "DELETING"):
                raise BackupInUseException(
                    f"Backup {backup_id} is {record['status']}: wait until it is AVAILABLE or FAILED"
                )
            busy = record.get("in_use_by")
            if busy:
                raise BackupInUseException(f"Backup {backup_id} is being used by {busy}; retry later")
            record["status"] = "DELETING"
            self.catalog.put_backup(record)
        description = self._describe(record)
        self._delete_objects_and_record(backup_id)
        return description

    def _delete_objects_and_record(self, backup_id: str) -> None:
        # Manifest first: from that moment on, the objects left are not a backup.
        self.store.delete(manifest_key("", backup_id))
        self.store.delete_prefix(f"{backup_id}/")
        self.catalog.delete_backup(backup_id)

    # ------------------------------------------------------------------ table hooks
    def backing_up(self, table_name: str) -> str | None:
        """The id of the backup of ``table_name`` in progress, if any."""
        with self.lock:
            for run in self._runs.values():
                if run.record["table_name"] == table_name:
                    return run.backup_id
        return None

    # ------------------------------------------------------------------ lifecycle
    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError()

    def close(self, timeout: float = 60.0) -> None:
        """Stop running backups (they resume on the next open) and wait for their threads."""
        with self.lock:
            self._closed = True
            runs = list(self._runs.values())
        for run in runs:
            run.cancel(closing=True)
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout)
