"""The restore and copy API of an engine (SPEC §8): catalog bookkeeping around
:class:`~engine.backup.restore.RestoreJob` and :func:`~engine.backup.copy.copy_backup_objects`.

Restore: the target table is recorded CREATING at once (its record carries a
``restore`` section: backup id, source store URL) and the work runs on a thread. The
table becomes ACTIVE only when every partition is imported and checked; on bad data it
becomes FAILED with a ``failure_reason`` (no partition is opened; ``delete_table``
removes it). While a restore or copy runs, the backup record lists it
(``restores_in_progress`` / ``copies_in_progress``) and sets ``in_use_by``, so
``delete_backup`` refuses.

Crash recovery (called from ``Engine.__init__``): a table left CREATING by a restore is
**resumed** when its backup is still AVAILABLE in the engine's own backup store: a
same-layout restore keeps the partitions it had imported and checked
(``restore.partitions_kept`` in the table's description) and redoes the rest; a restore
into another layout starts again from scratch; otherwise (the backup
was deleted, or the restore came from another store the engine cannot reopen) the table
is marked FAILED with the reason. A copy interrupted by a crash is recorded as FAILED in
the backup's ``copies`` history: its destination holds objects without a manifest, which
are not a backup (run the copy again; it replaces them).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..billing import billing_from_settings, check_billing
from ..errors import (
    BackupInUseException,
    BackupNotFoundException,
    CorruptionError,
    ObjectNotFoundError,
    TableAlreadyExistsException,
    TableNotFoundException,
    ValidationException,
)
from ..indexes.restore import (
    backed_up_definitions,
    build_restored_indexes,
    check_overrides,
    restored_indexes,
)
from ..keys import validate_table_name
from ..partition_map import PartitionMap
from ..store import ObjectStore, open_store
from ..volumes import check_free_space
from ..wal import SYNC_POLICIES
from .copy import CopyProgress, copy_backup_objects
from .manifest import BackupManifest, check_inflatable, manifest_key
from .restore import RestoreCancelled, RestoreJob, plan_partition_map

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..services import BackupCatalog, RestorableTables


def read_manifest(store: ObjectStore, backup_id: str) -> BackupManifest:
    """The manifest of ``backup_id`` in ``store``; BackupNotFoundException if none."""
    key = manifest_key("", backup_id)
    try:
        data = store.get(key)
    except ObjectNotFoundError:
        raise BackupNotFoundException(
            f"Backup not found: {backup_id} (no {key} in {store.url})") from None
    except ValueError as err:  # an id that cannot be a key
        raise BackupNotFoundException(f"Backup not found: {backup_id} ({err})") from None
    manifest = BackupManifest.from_json(data, f"{store.url}/{key}")
    if manifest.backup_id != backup_id:
        raise CorruptionError(f"manifest of backup {backup_id} names backup "
                              f"{manifest.backup_id}", path=f"{store.url}/{key}")
    return manifest


class _RestoreRun:
    def __init__(self, record: dict, job: RestoreJob, own_store: bool) -> None:
        self.record = record
        self.job = job
        self.own_store = own_store
        self.closing = False
        self.thread: threading.Thread | None = None


class _CopyRun:
    def __init__(self, backup_id: str, destination: ObjectStore, close_destination: bool,
                 region: str | None, progress: CopyProgress) -> None:
        self.backup_id = backup_id
        self.destination = destination
        self.close_destination = close_destination
        self.region = region
        self.progress = progress
        self.thread: threading.Thread | None = None


class RestoreManager:
    """Owned by an :class:`~engine.Engine`; its public methods are the engine's
    restore/copy API. It sees tables through ``tables``
    (:class:`~engine.services.RestorableTables`), backups through ``backups``
    (:class:`~engine.services.BackupCatalog`), and records through ``catalog``."""

    def __init__(self, tables: RestorableTables, catalog: Catalog, backups: BackupCatalog,
                 backup_store: ObjectStore, *, parallelism: int = 4) -> None:
        self.tables = tables
        self.catalog = catalog
        self.backups = backups
        self.backup_store = backup_store
        self.parallelism = parallelism
        self._lock = threading.RLock()
        self._restores: dict[str, _RestoreRun] = {}  # target table name -> run
        self._copies: dict[str, _CopyRun] = {}  # copy id -> run

    # ------------------------------------------------------------------ restore
    def restore_table(
        self,
        backup_id: str,
        target_table: str,
        *,
        partitions: int | None = None,
        split_points: Sequence[Any] | None = None,
        sync: str | None = None,
        store: ObjectStore | None = None,
        global_indexes: Sequence[dict] | None = None,
        local_indexes: Sequence[dict] | None = None,
        billing: dict | None = None,
    ) -> dict:
        """Start a restore (see :meth:`engine.Engine.restore_table`). ``global_indexes`` /
        ``local_indexes``: None restores the backed-up indexes; a list is exactly the
        indexes of the restored table (engine.indexes.restore), all built before ACTIVE."""
        validate_table_name(target_table)
        billing = check_billing(billing) if billing is not None else None
        if sync is not None and sync not in SYNC_POLICIES:
            raise ValidationException(f"sync must be one of {', '.join(SYNC_POLICIES)}, got {sync!r}")
        own_store = store is None
        if own_store:
            record = self.backups.record(backup_id)
            self._check_available(record)
            manifest = self.backups.load_manifest(backup_id)
            store = self.backup_store
        else:
            manifest = read_manifest(store, backup_id)
        # Before anything is written: a manifest that declares more than its objects
        # could inflate to lies, and the data must fit the volume (with a margin).
        check_inflatable(manifest, f"{store.url}/{manifest_key('', backup_id)}")
        check_free_space(sum(p.data_size_bytes or 0 for p in manifest.partitions),
                         self.tables.path / "tables", f"restoring backup {backup_id}")
        target_map = plan_partition_map(manifest, partitions, split_points)
        overrides = None
        if global_indexes is not None or local_indexes is not None:
            overrides = check_overrides(manifest.key_schema, local_indexes, global_indexes)
        with self.tables.lock, self.backups.lock:
            if self.catalog.get_table(target_table) is not None:
                raise TableAlreadyExistsException(f"Table already exists: {target_table}")
            table_record = {
                "name": target_table,
                "table_id": uuid.uuid4().hex,
                "status": "CREATING",
                "key_schema": manifest.key_schema,
                "partitioning": manifest.partitioning,
                "key_format": manifest.settings.get("key_format", 1),
                "partition_map": target_map.to_json(),
                "next_partition_seq": len(target_map),
                "sync": sync or manifest.settings.get("sync", "batch"),
                "created_at": time.time(),
                "restore": {"backup_id": backup_id, "store": store.url,
                            "own_store": own_store, "started_at": time.time(),
                            # DescribeTable's RestoreSummary, also once the backup is gone
                            "source_table_name": manifest.table_name,
                            "source_region": manifest.region,
                            "backup_created_at": manifest.created_at},
            }
            if billing is None:
                billing = billing_from_settings(manifest.settings)
            if billing is not None:
                table_record["billing"] = billing
            if overrides is not None:
                table_record["restore"]["index_overrides"] = overrides
            if own_store:
                self._mark_in_use(backup_id, restore=target_table)
            self.catalog.put_table(table_record)
            # Described before the run starts: it changes the record (ACTIVE) as it ends.
            description = self.tables.describe(table_record)
            self._launch_restore(table_record, manifest, store, own_store)
            return description

    @staticmethod
    def _check_available(record: dict) -> None:
        if record["status"] != "AVAILABLE":
            raise BackupInUseException(
                f"Backup {record['backup_id']} is {record['status']}, not AVAILABLE; only an "
                "AVAILABLE backup can be restored or copied")

    def _launch_restore(self, table_record: dict, manifest: BackupManifest,
                        store: ObjectStore, own_store: bool) -> None:
        job = RestoreJob(store, manifest, self.tables.table_dir(table_record),
                         PartitionMap.from_json(table_record["partition_map"]),
                         map_size=self.tables.map_size_bytes, parallelism=self.parallelism)
        run = _RestoreRun(table_record, job, own_store)
        self._restores[table_record["name"]] = run
        run.thread = threading.Thread(target=self._restore_to_end, args=(run,),
                                      name=f"restore-{table_record['name']}", daemon=True)
        run.thread.start()

    def _restore_to_end(self, run: _RestoreRun) -> None:
        record = run.record
        backup_id = record["restore"]["backup_id"]
        finished = False  # ACTIVE or FAILED: the backup is no longer in use by it
        try:
            run.job.run()
            backed_up = backed_up_definitions(run.job.manifest.settings, run.job.index_meta)
            indexes = restored_indexes(backed_up, record["key_schema"],
                                       record["restore"].get("index_overrides"))
            with self.tables.lock:
                if self.tables.closed:
                    raise RestoreCancelled("engine closed")
                record.pop("indexes", None)
                if indexes is not None:
                    record["indexes"] = indexes
                table = self.tables.open_table(record)
            if indexes is not None:  # rebuilt from the restored items before ACTIVE
                build_restored_indexes(table, record, lambda data: self._empty_gsi(record, data))
            with self.tables.lock:
                if self.tables.closed:
                    raise RestoreCancelled("engine closed")
                record["status"] = "ACTIVE"
                record["restore"]["completed_at"] = time.time()
                if run.job.progress.partitions_kept:  # finished before an interruption
                    record["restore"]["partitions_kept"] = run.job.progress.partitions_kept
                self.catalog.put_table(record)
            finished = True
        except BaseException as err:  # noqa: BLE001 - every failure becomes FAILED(reason)
            if isinstance(err, RestoreCancelled) or run.closing:
                return  # shutdown: the table stays CREATING and resumes on the next open
            self._mark_table_failed(record, f"{type(err).__name__}: {err}")
            finished = True
        finally:
            with self._lock:
                self._restores.pop(record["name"], None)
            if run.own_store and finished:
                self._release(backup_id, restore=record["name"])

    def _empty_gsi(self, record: dict, data: dict):
        """An empty store for a restored table's GSI (drops what a crash left)."""
        store = self.tables.gsi_stores(record["name"]).get(data["name"])
        if store is not None:
            store.drop()
        store = self.tables.new_gsi_store(record, data)
        self.tables.set_gsi_store(record["name"], data["name"], store)
        return store

    def _mark_table_failed(self, record: dict, reason: str) -> None:
        record["status"] = "FAILED"
        record["failure_reason"] = reason
        with self.tables.lock:
            current = self.catalog.get_table(record["name"])
            if current is not None and current["table_id"] == record["table_id"]:
                self.catalog.put_table(record)

    def wait_for_table(self, name: str, timeout: float = 600.0) -> dict:
        """Block until ``name`` leaves CREATING (or ``timeout``); returns its description."""
        deadline = time.monotonic() + timeout
        while True:
            run = self._restores.get(name)
            if run is not None and run.thread is not None:
                run.thread.join(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            record = self.catalog.get_table(name)
            if record is None:
                raise TableNotFoundException(f"Table not found: {name}")
            if record["status"] != "CREATING" or time.monotonic() >= deadline:
                return self.tables.describe(record)
            if run is None:
                time.sleep(0.05)

    def restore_progress(self, name: str) -> dict | None:
        run = self._restores.get(name)
        return None if run is None else run.job.progress.to_json()

    # ------------------------------------------------------------------ copy
    def copy_backup(self, backup_id: str, destination: ObjectStore | str,
                    region: str | None = None) -> dict:
        record = self.backups.record(backup_id)
        self._check_available(record)
        manifest = self.backups.load_manifest(backup_id)
        close_destination = not isinstance(destination, ObjectStore)
        store = open_store(str(destination)) if close_destination else destination
        try:
            if store.url == self.backup_store.url:
                raise ValidationException(f"backup {backup_id} is already in {store.url}")
            with self.backups.lock:
                self._check_available(self.backups.record(backup_id))
                if any(run.backup_id == backup_id and run.destination.url == store.url
                       for run in self._copies.values()):
                    raise BackupInUseException(
                        f"Backup {backup_id} is already being copied to {store.url}")
                copy_id = uuid.uuid4().hex[:12]
                progress = CopyProgress(len(manifest.partitions), manifest.size_bytes)
                run = _CopyRun(backup_id, store, close_destination, region, progress)
                self._mark_in_use(backup_id, copy={"copy_id": copy_id, "destination": store.url,
                                                   "region": region, "started_at": time.time()})
                self._copies[copy_id] = run
        except BaseException:
            if close_destination:
                store.close()
            raise
        run.thread = threading.Thread(target=self._copy_to_end, args=(copy_id, run, manifest),
                                      name=f"copy-{backup_id}", daemon=True)
        run.thread.start()
        return {"copy_id": copy_id, "backup_id": backup_id, "source": self.backup_store.url,
                "destination": store.url, "region": region, "status": "COPYING"}

    def _copy_to_end(self, copy_id: str, run: _CopyRun, manifest: BackupManifest) -> None:
        outcome: dict[str, Any] = {"copy_id": copy_id, "destination": run.destination.url,
                                   "region": run.region}
        try:
            copy_backup_objects(self.backup_store, run.destination, manifest,
                                parallelism=self.parallelism, progress=run.progress)
            outcome.update(status="AVAILABLE", failure_reason=None)
        except BaseException as err:  # noqa: BLE001 - recorded on the backup
            outcome.update(status="FAILED", failure_reason=f"{type(err).__name__}: {err}")
        finally:
            outcome["completed_at"] = time.time()
            if run.close_destination:
                run.destination.close()
            self._release(run.backup_id, copy_id=copy_id, outcome=outcome)
            with self._lock:
                self._copies.pop(copy_id, None)

    def wait_for_copies(self, backup_id: str, timeout: float = 600.0) -> dict:
        """Block until no copy of ``backup_id`` runs; returns the backup's description."""
        deadline = time.monotonic() + timeout
        for run in [r for r in list(self._copies.values()) if r.backup_id == backup_id]:
            if run.thread is not None:
                run.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return self.backups.describe_backup(backup_id)

    def copy_progress(self, backup_id: str) -> dict:
        return {run.destination.url: run.progress.to_json()
                for run in list(self._copies.values()) if run.backup_id == backup_id}

    # ------------------------------------------------------------------ in-use marks
    def _mark_in_use(self, backup_id: str, *, restore: str | None = None,
                     copy: dict | None = None) -> None:
        def change(record):
            if record is None:
                raise BackupNotFoundException(f"Backup not found: {backup_id}")
            self._check_available(record)
            if restore is not None:
                record["restores_in_progress"] = [*record.get("restores_in_progress", []), restore]
            if copy is not None:
                record["copies_in_progress"] = [*record.get("copies_in_progress", []), copy]
            record["in_use_by"] = _in_use_by(record)
            return record

        self.catalog.update("backup", backup_id, change)

    def _release(self, backup_id: str, *, restore: str | None = None,
                 copy_id: str | None = None, outcome: dict | None = None) -> None:
        def change(record):
            if record is None:
                return None
            if restore is not None:
                record["restores_in_progress"] = [
                    name for name in record.get("restores_in_progress", []) if name != restore]
            if copy_id is not None:
                record["copies_in_progress"] = [
                    c for c in record.get("copies_in_progress", []) if c["copy_id"] != copy_id]
            if outcome is not None:
                record["copies"] = [*record.get("copies", []), outcome]
            record["in_use_by"] = _in_use_by(record)
            return record

        with self.backups.lock:
            self.catalog.update("backup", backup_id, change)

    # ------------------------------------------------------------------ recovery
    def recover(self, interrupted_restores: list[dict]) -> None:
        """Resume (or fail) restores a crash interrupted; clear stale in-use marks."""
        resumed: set[str] = set()
        for record in interrupted_restores:
            backup_id = record["restore"]["backup_id"]
            reason = None
            if not record["restore"].get("own_store") or \
                    record["restore"]["store"] != self.backup_store.url:
                reason = ("the restore was interrupted and its source store "
                          f"{record['restore']['store']} is not this engine's backup store; "
                          "delete this table and run the restore again")
            else:
                backup = self.catalog.get_backup(backup_id)
                if backup is None or backup["status"] != "AVAILABLE":
                    reason = f"the restore was interrupted and backup {backup_id} is no longer AVAILABLE"
            manifest = None
            if reason is None:
                try:
                    manifest = self.backups.load_manifest(backup_id)
                except CorruptionError as err:
                    reason = f"the restore was interrupted and resuming it failed: {err}"
            if reason is not None or manifest is None:
                self.tables.drop_files(record)
                self._mark_table_failed(record, reason or "unknown")
                continue
            record["restore"]["resumed"] = record["restore"].get("resumed", 0) + 1
            self.catalog.put_table(record)
            resumed.add(record["name"])
            self._launch_restore(record, manifest, self.backup_store, True)
        for backup in self.catalog.list_backups():
            if not (backup.get("restores_in_progress") or backup.get("copies_in_progress")):
                continue

            def change(current, resumed=resumed):
                if current is None:
                    return None
                current["restores_in_progress"] = [
                    n for n in current.get("restores_in_progress", []) if n in resumed]
                for lost in current.get("copies_in_progress", []):
                    current["copies"] = [*current.get("copies", []), {
                        **lost, "status": "FAILED", "completed_at": time.time(),
                        "failure_reason": "interrupted by a shutdown or crash; copy it again"}]
                current["copies_in_progress"] = []
                current["in_use_by"] = _in_use_by(current)
                return current

            self.catalog.update("backup", backup["backup_id"], change)

    # ------------------------------------------------------------------ lifecycle
    def close(self, timeout: float = 60.0) -> None:
        """Stop restores (they resume on the next open); let copies finish or fail."""
        with self._lock:
            restores = list(self._restores.values())
            copies = list(self._copies.values())
        for run in restores:
            run.closing = True
            run.job.cancel()
        for run in restores + copies:  # type: ignore[operator]
            if run.thread is not None:
                run.thread.join(timeout)


def _in_use_by(record: dict) -> str | None:
    users = [f"restore to table {name}" for name in record.get("restores_in_progress", [])]
    users += [f"copy to {c['destination']}" for c in record.get("copies_in_progress", [])]
    return ", ".join(users) or None
