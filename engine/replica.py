"""Partition replicas: a copy in another directory (volume) that follows the WAL (SPEC §10).

A replica is made by the shared mechanism of SPEC §5 (``Partition.export_copy``: physical
copy + WAL catch-up) and then *follows* its partition: a background thread tails the
partition's WAL segment files (reading only the bytes appended since its last look, so
writers are never slowed by it) and applies each record with
:func:`engine.partition.apply_records`. The replica shares its partition's LSN space:
its ``applied_lsn`` is the primary LSN it reflects.

WAL retention: each replica holds (``Partition.hold_wal``) the records above the LSN its
environment has been *synced* to, so after any crash — of the process or the machine —
the segments it still needs are there. Reopened after a crash, a replica catches up from
the WAL; if the records it needs are gone anyway it is rebuilt by a fresh copy.

The catalog records each replica (``record["replicas"]``: partition id, replica id,
directory). A split, merge or move of a partition drops its replicas.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ResourceNotFoundException, ValidationException
from .partition import (
    APPLIED_LSN_KEY,
    Partition,
    apply_records,
    copy_and_catch_up,
    open_environment,
    read_applied_lsn,
)
from .volumes import writable_volume
from .wal_tail import WalTail

if TYPE_CHECKING:
    from .services import PartitionedTables, PartitionLocks

POLL_SECONDS = 0.005  # how often an idle follower looks at the WAL
HOLD_ADVANCE_SECONDS = 0.5  # how often the replica syncs and moves its WAL hold


class Replica:
    """One replica of one partition, followed by its own thread."""

    def __init__(self, table_name: str, partition: Partition, replica_id: str,
                 directory: Path) -> None:
        self.table_name = table_name
        self.partition = partition
        self.replica_id = replica_id
        self.directory = Path(directory)
        self.applied_lsn = 0
        self.synced_lsn = 0
        self.status = "CREATING"
        self.error: str | None = None
        self.records_applied = 0
        self._hold: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress = threading.Condition()
        self.env = self.items_db = self.meta_db = None

    # ------------------------------------------------------------------ lifecycle
    def create(self) -> None:
        """Physical copy + catch-up into ``directory``, holding the WAL throughout."""
        hold = self.partition.hold_wal(0)
        try:
            reached = self.partition.export_copy(self.directory / "lmdb")
            self._hold = self.partition.hold_wal(reached)
        finally:
            self.partition.release_wal(hold)

    def start(self) -> None:
        """Open the environment, hold the WAL above it, start following."""
        self.env, self.items_db, self.meta_db = open_environment(
            self.directory / "lmdb", map_size=self.partition.map_size
        )
        self.env.sync(True)  # the copy came through the page cache: durable before use
        self.applied_lsn = self.synced_lsn = read_applied_lsn(self.env, self.meta_db)
        if self._hold is None:
            self._hold = self.partition.hold_wal(self.applied_lsn)
        first = self.partition.wal.first_lsn
        if self.applied_lsn < self.partition.applied_lsn and first and first > self.applied_lsn + 1:
            self._rebuild()
        self.status = "ACTIVE"
        self._thread = threading.Thread(
            target=self._follow, name=f"replica-{self.replica_id}", daemon=True
        )
        self._thread.start()

    def _rebuild(self) -> None:
        """The WAL no longer has what we need: start over from a fresh copy."""
        self.env.close()
        shutil.rmtree(self.directory / "lmdb", ignore_errors=True)
        old_hold, self._hold = self._hold, None
        self.create()
        self.partition.release_wal(old_hold)
        self.env, self.items_db, self.meta_db = open_environment(
            self.directory / "lmdb", map_size=self.partition.map_size
        )
        self.env.sync(True)  # the copy came through the page cache: durable before use
        self.applied_lsn = self.synced_lsn = read_applied_lsn(self.env, self.meta_db)

    def _follow(self) -> None:
        try:
            tail = WalTail(self.partition, self.applied_lsn)
            last_sync = time.monotonic()
            while not self._stop.is_set():
                target = self.partition.applied_lsn
                records = tail.read(target) if target > self.applied_lsn else []
                if records:
                    self.applied_lsn = apply_records(
                        self.env, self.items_db, self.meta_db, records,
                        source=self.partition.name,
                        gsi_outbox=False,  # a replica's outbox has no follower to drain it
                    )
                    self.records_applied += len(records)
                    with self._progress:
                        self._progress.notify_all()
                else:
                    self._stop.wait(POLL_SECONDS)
                if time.monotonic() - last_sync >= HOLD_ADVANCE_SECONDS:
                    self._advance_hold()
                    last_sync = time.monotonic()
        except BaseException as err:  # noqa: BLE001 - reported by describe, not lost
            if not self._stop.is_set():
                self.status = "FAILED"
                self.error = f"{type(err).__name__}: {err}"
            with self._progress:
                self._progress.notify_all()

    def _advance_hold(self) -> None:
        """Sync the replica, then let the partition drop the WAL below what it reflects."""
        if self.applied_lsn == self.synced_lsn:
            return
        lsn = self.applied_lsn
        self.env.sync(True)
        new_hold = self.partition.hold_wal(lsn)
        old_hold, self._hold = self._hold, new_hold
        if old_hold is not None:
            self.partition.release_wal(old_hold)
        self.synced_lsn = lsn

    def wait_for(self, lsn: int, timeout: float) -> bool:
        """Block until the replica has applied ``lsn`` (False on timeout or failure)."""
        deadline = time.monotonic() + timeout
        with self._progress:
            while self.applied_lsn < lsn and self.status == "ACTIVE":
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(min(remaining, 0.05))
        return self.applied_lsn >= lsn

    def stop(self, *, release_hold: bool) -> None:
        """Stop following and close. Keep the WAL hold unless ``release_hold`` (at engine
        close the partition must still keep what the replica needs after a restart)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.env is not None:
            self.env.sync(True)
            self.env.close()
            self.env = None
        if release_hold and self._hold is not None:
            self.partition.release_wal(self._hold)
            self._hold = None
        if self.status == "ACTIVE":
            self.status = "STOPPED"

    def describe(self) -> dict:
        return {
            "partition_id": self.partition.partition_id,
            "replica_id": self.replica_id,
            "dir": str(self.directory),
            "status": self.status,
            "applied_lsn": self.applied_lsn,
            "partition_lsn": self.partition.applied_lsn,
            "lag_records": max(0, self.partition.applied_lsn - self.applied_lsn),
            "records_applied": self.records_applied,
            "error": self.error,
        }


class ReplicaSnapshot:
    """A replica pinned for a backup (SPEC §10: a backup may be sourced from a replica).

    Taken when the backup's snapshots are taken, so the replica's LSN ``lsn`` is at most
    the partition's ``backup_lsn``; :meth:`export_copy` copies the replica (not the
    primary's volume) and catches up from the primary's WAL, held from ``lsn`` on.
    Same contract as :meth:`engine.partition.Partition.export_copy`.
    """

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        partition = replica.partition
        first_hold = partition.hold_wal(0)
        try:
            self.txn = replica.env.begin()
            raw = self.txn.get(APPLIED_LSN_KEY, db=replica.meta_db)
            self.lsn = int.from_bytes(raw, "big") if raw else 0
            self._hold: int | None = partition.hold_wal(self.lsn)
        finally:
            partition.release_wal(first_hold)

    def export_copy(self, dest: Path, *, target_lsn: int, snapshot=None,
                    clear_page_gaps: bool = False) -> int:
        partition = self.replica.partition
        if self.txn is None or self.lsn > target_lsn:
            # Released, or (never by construction) past the target: use the primary.
            return partition.export_copy(dest, target_lsn=target_lsn, snapshot=snapshot,
                                         clear_page_gaps=clear_page_gaps)
        return copy_and_catch_up(self.replica.env, self.txn, dest, wal=partition.wal,
                                 target_lsn=target_lsn, map_size=partition.map_size,
                                 name=partition.name, clear_page_gaps=clear_page_gaps)

    def release(self) -> None:
        if self.txn is not None:
            self.txn.abort()
            self.txn = None
        if self._hold is not None:
            self.replica.partition.release_wal(self._hold)
            self._hold = None


class ReplicaManager:
    """The engine's replicas, by table. Catalog changes go through the table set's lock;
    one repartitioning or replica change per table at a time (``locks``)."""

    def __init__(self, tables: PartitionedTables, locks: PartitionLocks) -> None:
        self.tables = tables
        self.locks = locks
        self._replicas: dict[str, dict[str, Replica]] = {}
        self._lock = threading.RLock()

    def recover(self, record: dict) -> None:
        """Reopen the replicas a table's record lists (engine open): catch up from the WAL."""
        partitions = self.tables.partitions(record["name"])
        for entry in record.get("replicas", []):
            partition = partitions.get(entry["partition_id"])
            if partition is None:
                continue
            replica = Replica(record["name"], partition, entry["replica_id"], Path(entry["dir"]))
            replica.start()
            self._replicas.setdefault(record["name"], {})[replica.replica_id] = replica

    def add(self, table_name: str, partition_id: str, volume_dir: str | Path) -> dict:
        # One repartitioning or replica change per table at a time: a split finishing
        # while we copy would leave the new replica following a retired partition.
        with self.locks.table_lock(table_name):
            return self._add(table_name, partition_id, volume_dir)

    def _add(self, table_name: str, partition_id: str, volume_dir: str | Path) -> dict:
        tables = self.tables
        tables.table(table_name)
        partition = tables.partitions(table_name).get(partition_id)
        if partition is None:
            raise ValidationException(
                f"table {table_name} has no partition {partition_id!r}"
            )
        volume = writable_volume(volume_dir, f"place a replica of {table_name}/{partition_id}")
        record = tables.record(table_name)
        replica_id = f"{partition_id}-r{uuid.uuid4().hex[:8]}"
        directory = volume.resolve() / record["table_id"] / replica_id

        def intent(current):
            current["pending_dirs"] = current.get("pending_dirs", []) + [str(directory)]
            return current

        def commit(current):
            current["pending_dirs"] = [d for d in current.get("pending_dirs", [])
                                       if d != str(directory)]
            current.setdefault("replicas", []).append({
                "partition_id": partition_id, "replica_id": replica_id, "dir": str(directory),
            })
            return current

        tables.update_record(table_name, intent)
        replica = Replica(table_name, partition, replica_id, directory)
        try:
            replica.create()
            replica.start()
            tables.update_record(table_name, commit)
        except BaseException:
            replica.stop(release_hold=True)
            shutil.rmtree(directory, ignore_errors=True)
            raise
        with self._lock:
            self._replicas.setdefault(table_name, {})[replica_id] = replica
        return replica.describe()

    def remove(self, table_name: str, replica_id: str) -> None:
        with self._lock:
            replica = self._replicas.get(table_name, {}).pop(replica_id, None)
        if replica is None:
            raise ResourceNotFoundException(
                f"table {table_name} has no replica {replica_id!r}"
            )

        def drop(current):
            current["replicas"] = [r for r in current.get("replicas", [])
                                   if r["replica_id"] != replica_id]
            return current

        self.tables.update_record(table_name, drop)
        replica.stop(release_hold=True)
        shutil.rmtree(replica.directory, ignore_errors=True)

    def forget_partition(self, table_name: str, partition_id: str) -> None:
        """The partition was split, merged or moved: drop its replicas (already out of the
        catalog)."""
        with self._lock:
            replicas = self._replicas.get(table_name, {})
            doomed = [r for r in replicas.values() if r.partition.partition_id == partition_id]
            for replica in doomed:
                replicas.pop(replica.replica_id)
        for replica in doomed:
            replica.stop(release_hold=True)
            shutil.rmtree(replica.directory, ignore_errors=True)

    def forget_table(self, table_name: str) -> None:
        with self._lock:
            replicas = self._replicas.pop(table_name, {})
        for replica in replicas.values():
            replica.stop(release_hold=True)

    def get(self, table_name: str, replica_id: str) -> Replica:
        replica = self._replicas.get(table_name, {}).get(replica_id)
        if replica is None:
            raise ResourceNotFoundException(f"table {table_name} has no replica {replica_id!r}")
        return replica

    def snapshot_for(self, table_name: str, partition_id: str) -> ReplicaSnapshot | None:
        """Pin an ACTIVE replica of the partition for a backup (None if it has none)."""
        with self._lock:
            for replica in self._replicas.get(table_name, {}).values():
                if replica.partition.partition_id == partition_id and replica.status == "ACTIVE":
                    return ReplicaSnapshot(replica)
        return None

    def describe(self, table_name: str) -> list[dict]:
        self.tables.table(table_name)
        with self._lock:
            replicas = list(self._replicas.get(table_name, {}).values())
        return sorted((r.describe() for r in replicas),
                      key=lambda d: (d["partition_id"], d["replica_id"]))

    def close(self) -> None:
        with self._lock:
            tables, self._replicas = self._replicas, {}
        for replicas in tables.values():
            for replica in replicas.values():
                replica.stop(release_hold=False)
