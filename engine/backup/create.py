"""CreateBackup's orchestrator: every partition in parallel, then the manifest (SPEC §6).

A run starts from snapshots taken when the backup was requested (so every write
acknowledged before ``create_backup`` was called is in it), exports each partition on a
thread pool (:func:`engine.backup.export.export_partition`), and when all are uploaded
writes the backup manifest — the commit point. If the table's partition set changed
meanwhile (a split, merge or move), the run discards what it uploaded and starts over
with fresh snapshots of the new set.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from ..partition import Snapshot
from ..partition_map import PartitionMap
from ..store import ObjectStore
from .export import PartitionExportFailed, PartitionProgress, export_partition
from .manifest import BackupManifest, PartitionManifest, manifest_key, partition_object_key

if TYPE_CHECKING:
    from ..table import Table

MAX_RESTARTS = 5


class PartitionSetChanged(Exception):
    """The table's partition map changed during the run: start over (SPEC §6)."""


class BackupRun:
    """One backup being created; owns its snapshots until it ends."""

    def __init__(
        self,
        record: dict,
        table: Table,
        store: ObjectStore,
        work_dir: Path,
        *,
        parallelism: int,
        level: int,
        threads_per_partition: int,
        replica_source: Callable[[str, str], Any] | None = None,
    ) -> None:
        self.record = record
        # SPEC §10: copy from a replica (engine.replica.ReplicaManager.snapshot_for).
        self.replica_source = replica_source
        self._replica_snapshots: dict[str, Any] = {}
        self.backup_id = record["backup_id"]
        self.table = table
        self.store = store
        self.work_dir = work_dir
        self.parallelism = parallelism
        self.level = level
        self.threads_per_partition = threads_per_partition
        self.cancel_event = threading.Event()
        self.progress: dict[str, PartitionProgress] = {}
        self.partition_map: PartitionMap | None = None
        self._snapshots: list[Snapshot] = []
        self.thread: threading.Thread | None = None
        self.restarts = 0

    # ------------------------------------------------------------------ snapshots
    def take_snapshots(self) -> None:
        """Pin every partition now; ``backup_lsn`` of each is its LSN at this moment."""
        self.release_snapshots()
        pmap = self.table.partition_map
        partitions = self.table.partitions
        snapshots = []
        try:
            for partition in partitions:
                snapshots.append(partition.snapshot())
        except BaseException:
            for snapshot in snapshots:
                snapshot.release()
            raise
        self.partition_map = pmap
        self._snapshots = snapshots
        if self.replica_source is not None:
            for snapshot in snapshots:
                pid = snapshot.partition.partition_id
                pinned = self.replica_source(self.table.name, pid)
                if pinned is not None:
                    self._replica_snapshots[pid] = pinned
        self.progress = {
            snapshot.partition.partition_id: PartitionProgress(
                snapshot.partition.partition_id, snapshot.lsn
            )
            for snapshot in snapshots
        }

    def release_snapshots(self) -> None:
        for snapshot in self._snapshots:
            snapshot.release()
        self._snapshots = []
        for pinned in self._replica_snapshots.values():
            pinned.release()
        self._replica_snapshots = {}

    # ------------------------------------------------------------------ the run
    def run(self) -> BackupManifest:
        """Export every partition and commit the manifest; returns it. Raises on failure."""
        try:
            while True:
                try:
                    return self._attempt()
                except PartitionSetChanged:
                    self.restarts += 1
                    self.store.delete_prefix(f"{self.backup_id}/")
                    if self.restarts > MAX_RESTARTS:
                        raise PartitionExportFailed(
                            f"the partition set of table {self.table.name} changed "
                            f"{self.restarts} times during the backup"
                        ) from None
                    self.take_snapshots()
        finally:
            self.release_snapshots()
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _attempt(self) -> BackupManifest:
        record = self.record
        intervals = {interval.partition_id: interval for interval in self.partition_map}
        templates = {}
        for snapshot in self._snapshots:
            pid = snapshot.partition.partition_id
            interval = intervals[pid]
            templates[pid] = PartitionManifest(
                backup_id=self.backup_id,
                table_name=record["table_name"],
                table_id=record["table_id"],
                partition_id=pid,
                interval_start=interval.start.hex(),
                interval_end=None if interval.end is None else interval.end.hex(),
                key_schema=record["key_schema"],
                partitioning=record["partitioning"],
                backup_lsn=snapshot.lsn,
                object_key=partition_object_key("", self.backup_id, pid),
                compression_level=self.level,
            )
        with ThreadPoolExecutor(
            max_workers=self.parallelism, thread_name_prefix=f"backup-{self.backup_id[-8:]}"
        ) as pool:
            futures = {
                snapshot.partition.partition_id: pool.submit(
                    export_partition,
                    snapshot.partition,
                    snapshot,
                    templates[snapshot.partition.partition_id],
                    self.store,
                    self.work_dir / snapshot.partition.partition_id,
                    self.progress[snapshot.partition.partition_id],
                    level=self.level,
                    threads=self.threads_per_partition,
                    cancelled=self._should_stop,
                    source=self._replica_snapshots.get(snapshot.partition.partition_id),
                )
                for snapshot in self._snapshots
            }
            manifests = {}
            failure: BaseException | None = None
            pids = {future: pid for pid, future in futures.items()}
            # In completion order: the first partition to fail names the reason and stops
            # the others at once, instead of after the ones submitted before it.
            for future in as_completed(pids):
                try:
                    manifests[pids[future]] = future.result()
                except BaseException as err:  # noqa: BLE001 - first failure cancels the rest
                    if failure is None:
                        failure = err
                        self.cancel_event.set()
            if failure is not None:
                if self.table.partition_map is not self.partition_map and not self.closing:
                    self.cancel_event.clear()
                    raise PartitionSetChanged() from failure
                raise failure
        if self.table.partition_map is not self.partition_map:
            raise PartitionSetChanged()
        partitions = [manifests[interval.partition_id] for interval in self.partition_map]
        manifest = BackupManifest(
            backup_id=self.backup_id,
            backup_name=record["backup_name"],
            table_name=record["table_name"],
            table_id=record["table_id"],
            region=record["region"],
            key_schema=record["key_schema"],
            partitioning=record["partitioning"],
            settings={"sync": record.get("sync", "batch"), "partitions": len(partitions),
                      "key_format": record.get("key_format", 1),
                      **({"billing": record["billing"]} if record.get("billing") else {}),
                      **({"indexes": record["indexes"]} if record.get("indexes") else {})},
            partitions=partitions,
            created_at=record["created_at"],
            completed_at=time.time(),
            size_bytes=sum(p.object_size_bytes for p in partitions),
            item_count=sum(p.item_count for p in partitions),
        )
        if self._should_stop():
            raise PartitionExportFailed("backup cancelled before its manifest was written")
        try:
            # The commit point: a backup without this object does not exist.
            self.store.put(manifest_key("", self.backup_id), manifest.to_json())
        except StoreError as err:
            raise PartitionExportFailed(f"writing the backup manifest failed: {err}") from err
        return manifest

    closing = False  #: cancelled by an engine shutdown (resumes on the next open)

    def _should_stop(self) -> bool:
        return self.cancel_event.is_set() or self.table.partition_map is not self.partition_map

    def cancel(self, *, closing: bool = False) -> None:
        self.closing = closing
        self.cancel_event.set()
