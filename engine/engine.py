"""The engine: a data directory holding a catalog and the tables' partitions.

Layout::

    <data>/system/                      the catalog (engine.catalog)
    <data>/tables/<table_id>/<pid>/     one directory per partition (engine.partition)

One :class:`Engine` per data directory, enforced: the directory's lock
(:mod:`engine.dirlock`) refuses a second process, and a second Engine of the same process
is refused too (LMDB's rule: one environment handle per process). It is safe to share
between threads. Do not carry it across ``fork()``: open it in the child instead.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .backup.manager import DEFAULT_MAX_IN_FLIGHT, DEFAULT_PARALLELISM, BackupManager
from .backup.restore_manager import RestoreManager
from .billing import PAY_PER_REQUEST, billing_of, check_billing
from .catalog import Catalog
from .dirlock import DirectoryLock
from .errors import (
    DataDirectoryInUseError,
    EngineClosedError,
    ResourceInUseException,
    TableAlreadyExistsException,
    TableInUseException,
    TableNotFoundException,
    ValidationException,
)
from .indexes.definitions import parse_all
from .indexes.gsi_store import DEFAULT_GSI_PARTITIONS, new_gsi_map
from .indexes.manager import IndexManager
from .indexes.query import Index
from .keys import KeySchema, validate_table_name
from .layout import initial_boundaries
from .partition import DEFAULT_MAP_SIZE
from .partition_map import build_map
from .priority import DEFAULT_BACKGROUND_NICE
from .repartition import AutoSplitter, Repartitioner, TableLocks
from .replica import Replica, ReplicaManager
from .store import LocalStore, ObjectStore, open_store
from .table import Table
from .tableset import TableSet
from .wal import DEFAULT_SEGMENT_BYTES, SYNC_POLICIES

# Data directories opened by an Engine of this process (real paths). The directory lock
# (engine.dirlock) keeps other processes out; this keeps a second Engine of the same
# process out too (LMDB allows one handle per environment per process).
_OPEN_DIRECTORIES: set[str] = set()
_OPEN_GUARD = threading.Lock()


def _claim_directory(path: Path) -> DirectoryLock:
    lock = DirectoryLock(path).acquire()
    key = os.path.realpath(path)
    with _OPEN_GUARD:
        if key in _OPEN_DIRECTORIES:
            lock.release()
            raise DataDirectoryInUseError(
                f"data directory {path} is already open by another Engine of this process "
                f"(PID {os.getpid()}): share that Engine, or close it first",
                path=str(path), pid=os.getpid())
        _OPEN_DIRECTORIES.add(key)
    return lock


def _release_directory(lock: DirectoryLock) -> None:
    with _OPEN_GUARD:
        _OPEN_DIRECTORIES.discard(os.path.realpath(lock.path))
    lock.release()


class Engine:
    """Open with :meth:`Engine.open`; close with :meth:`close` (or use ``with``).

    A facade: the open tables live in a :class:`~engine.tableset.TableSet`, and each
    service (backups, restores and copies, repartitioning, replicas, auto-split) is
    handed only the narrow interface of :mod:`engine.services` it needs. After
    :meth:`close`, every public method raises :class:`~engine.errors.EngineClosedError`.
    """

    def __init__(
        self,
        path: Path,
        *,
        region: str = "local",
        map_size_bytes: int = DEFAULT_MAP_SIZE,
        wal_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        backup_store: str | ObjectStore | None = None,
        max_backups_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        backup_parallelism: int = DEFAULT_PARALLELISM,
        backup_compression_level: int = 3,
        auto_split_bytes: int | None = None,
        background_nice: int = DEFAULT_BACKGROUND_NICE,
        index_backfill_pace: float | None = None,
    ) -> None:
        self.path = Path(path)
        self._index_backfill_pace = index_backfill_pace
        self.region = region
        self.map_size_bytes = map_size_bytes
        self.wal_segment_bytes = wal_segment_bytes
        self._closed = False
        self._close_lock = threading.Lock()
        # Everything close() releases starts as None, so a failed open can close what it
        # had opened (LMDB allows one handle per environment per process: a leaked one
        # would make the next open of this directory in the process fail).
        self._dir_lock: DirectoryLock | None = None
        self._catalog: Catalog | None = None
        self._tables: TableSet | None = None
        self._replicas: ReplicaManager | None = None
        self._auto_split: AutoSplitter | None = None
        self._indexes: IndexManager | None = None
        self.backups: BackupManager | None = None
        self.restores: RestoreManager | None = None
        try:
            self._open(backup_store, max_backups_in_flight, backup_parallelism,
                       backup_compression_level, auto_split_bytes, background_nice)
        except BaseException:
            self.close()
            raise

    def _open(self, backup_store, max_backups_in_flight, backup_parallelism,
              backup_compression_level, auto_split_bytes, background_nice) -> None:
        self._dir_lock = _claim_directory(self.path)  # one owner per data directory
        (self.path / "tables").mkdir(parents=True, exist_ok=True)
        self._catalog = Catalog(self.path / "system")
        tables = self._tables = TableSet(self.path, self._catalog,
                                         map_size_bytes=self.map_size_bytes,
                                         wal_segment_bytes=self.wal_segment_bytes)
        locks = TableLocks()
        self._replicas = ReplicaManager(tables, locks)
        self._indexes = IndexManager(tables, locks, backfill_pace=self._index_backfill_pace)
        self._repartitioner = Repartitioner(tables, locks, self._replicas.forget_partition,
                                            drain_indexes=self._indexes.drain)
        interrupted_restores = self._recover_tables()
        self._indexes.start()
        if backup_store is None:
            backup_store = LocalStore(self.path.parent / "backups")
        elif isinstance(backup_store, (str, Path)):
            backup_store = open_store(str(backup_store))
        self.backup_store: ObjectStore = backup_store
        self.backups = BackupManager(
            tables, self._catalog, backup_store, region=self.region,
            work_root=self.path / "backup-work", replicas=self._replicas,
            max_in_flight=max_backups_in_flight, parallelism=backup_parallelism,
            compression_level=backup_compression_level, nice=background_nice,
        )
        self.backups.recover()
        self.restores = RestoreManager(tables, self._catalog, self.backups, backup_store,
                                       parallelism=max(2, backup_parallelism))
        self.restores.recover(interrupted_restores)
        if auto_split_bytes is not None:
            self._auto_split = AutoSplitter(tables, self._repartitioner.split, auto_split_bytes)

    @classmethod
    def open(cls, path: str | Path, **options: Any) -> Engine:
        """Open (creating if needed) the engine at ``path``; replays every partition's WAL.

        Options: ``region`` (carried by backup ids), ``map_size_bytes`` (LMDB address
        space per partition), ``wal_segment_bytes``, ``backup_store`` (an ObjectStore or
        a URL; default a directory ``backups`` beside ``path``), ``max_backups_in_flight``,
        ``backup_parallelism`` (partitions exported at once), ``backup_compression_level``,
        ``auto_split_bytes`` (split any partition whose LMDB pages in use exceed it; off by
        default), ``background_nice`` (nice increment of backup threads, default 10, so
        requests win the CPU; 0 = same priority), ``index_backfill_pace`` (a GSI backfill
        sleeps this fraction of each batch's time so writers keep their latency; default
        0.5, 0 = flat out).

        A failed open (a corrupt WAL record, say) closes everything it had opened before
        raising, so the same directory can be opened again in this process once repaired.
        """
        return cls(Path(path), **options)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def catalog(self) -> Catalog:
        """The system catalog (tables and backups records)."""
        self._check_open()
        return self._catalog

    # ------------------------------------------------------------------ recovery
    def _recover_tables(self) -> list[dict]:
        """Open every ACTIVE table; finish interrupted drops; return the restores that a
        crash or shutdown interrupted (resumed once the backup catalog is up — see
        engine.backup.restore_manager)."""
        tables = self._tables
        interrupted = []
        for record in tables.records():
            if record["status"] == "CREATING" and record.get("restore"):
                interrupted.append(record)
                continue
            if record["status"] == "FAILED":
                continue  # a failed restore: described, deletable, never opened
            if record["status"] in ("CREATING", "DELETING"):
                # Never acknowledged (CREATING) or already being dropped: finish the drop.
                tables.drop_files(record)
                tables.delete_record(record["name"])
                continue
            tables.clean_stray_dirs(record)  # SPEC §10 crash safety
            tables.open_table(record)
            self._replicas.recover(record)
            self._indexes.recover(record)
        return interrupted

    # ------------------------------------------------------------------ tables
    def create_table(
        self,
        name: str,
        partition_key: tuple[str, str] = ("pk", "S"),
        sort_key: tuple[str, str] | None = None,
        partitions: int = 4,
        partitioning: str = "hash",
        sync: str = "batch",
        split_points: Sequence[Any] | None = None,
        *,
        local_indexes: Sequence[dict] | None = None,
        global_indexes: Sequence[dict] | None = None,
        gsi_partitions: int = DEFAULT_GSI_PARTITIONS,
        billing: dict | None = None,
    ) -> dict:
        """Create a table and return its description (status ACTIVE).

        ``partitions`` hash partitions split the 64-bit hash space evenly. Range
        partitioning splits at ``split_points`` (partition-key values, sorted) or, by
        default, evenly over the first byte of the encoded partition key.

        ``local_indexes`` / ``global_indexes``: secondary index definitions
        (:mod:`engine.indexes.definitions`: ``{"name", "key_schema": [(name, type), ...],
        "projection": "ALL" | "KEYS_ONLY" | {"type": "INCLUDE", "non_key_attributes":
        [...]}}``); each GSI gets ``gsi_partitions`` hash partitions of its own.

        ``billing``: DynamoDB's billing mode and provisioned units (:mod:`engine.billing`),
        stored and described, kept by backups and restores; not enforced. None is
        PAY_PER_REQUEST.
        """
        self._check_open()
        validate_table_name(name)
        schema = KeySchema.build(partition_key, sort_key, partitioning)
        local_defs, global_defs = parse_all(schema.to_json(), local_indexes, global_indexes)
        if global_defs and not (isinstance(gsi_partitions, int) and 1 <= gsi_partitions <= 256):
            raise ValidationException(
                f"gsi_partitions must be an integer from 1 to 256, got {gsi_partitions!r}")
        if sync not in SYNC_POLICIES:
            raise ValidationException(
                f"sync must be one of {', '.join(SYNC_POLICIES)}, got {sync!r}"
            )
        boundaries = initial_boundaries(schema, partitions, split_points)
        stored_billing = check_billing(billing) if billing is not None else None
        tables = self._tables
        with tables.lock:
            if self._catalog.get_table(name) is not None:
                raise TableAlreadyExistsException(f"Table already exists: {name}")
            partition_ids = [f"p{index:04d}" for index in range(len(boundaries))]
            pmap = build_map(partition_ids, boundaries)
            record = {
                "name": name,
                "table_id": uuid.uuid4().hex,
                "status": "CREATING",
                "key_schema": schema.to_json(),
                "partitioning": partitioning,
                "key_format": schema.key_format,
                "partition_map": pmap.to_json(),
                "next_partition_seq": len(partition_ids),
                "sync": sync,
                "created_at": time.time(),
            }
            if stored_billing is not None:
                record["billing"] = stored_billing
            if local_defs or global_defs:
                record["indexes"] = {
                    "local": [definition.to_json() for definition in local_defs],
                    "global": [{**definition.to_json(), "status": "ACTIVE",
                                "backfilling": False, "created_at": record["created_at"],
                                "partition_map": new_gsi_map(gsi_partitions)}
                               for definition in global_defs]}
            tables.put_record(record)
            tables.open_table(record)
            record["status"] = "ACTIVE"
            tables.put_record(record)
            return tables.describe(record)

    def describe_table(self, name: str) -> dict:
        self._check_open()
        record = self._tables.record(name)
        description = self._tables.describe(record)
        if record.get("indexes"):
            description.update(self._indexes.describe(record))
        if "restore" in description:
            progress = self.restores.restore_progress(name)
            if progress is not None:
                description["restore"]["progress"] = progress
        return description

    def set_billing(self, name: str, billing: dict) -> dict:
        """Change a table's billing mode and provisioned units (DynamoDB's UpdateTable
        BillingMode / ProvisionedThroughput; :mod:`engine.billing`): stored, described, kept
        by later backups; not enforced. Only an ACTIVE table changes (ResourceInUseException
        otherwise, as DynamoDB answers). Returns the table's description."""
        self._check_open()
        stored = check_billing(billing)

        def change(record: dict | None) -> dict:
            if record is None:
                raise TableNotFoundException(f"Table not found: {name}")
            if record["status"] != "ACTIVE":
                raise ResourceInUseException(
                    f"Table {name} is {record['status']}: wait until it is ACTIVE")
            current = billing_of(record)
            if stored["mode"] == PAY_PER_REQUEST:  # BillingModeSummary's time of the switch
                switched = (current.get("switched_to_pay_per_request_at")
                            if current["mode"] == PAY_PER_REQUEST else time.time())
                if switched is not None:
                    stored["switched_to_pay_per_request_at"] = switched
            record["billing"] = stored
            return record

        self._tables.update_record(name, change)
        return self.describe_table(name)

    def list_tables(self) -> list[str]:
        self._check_open()
        return sorted(record["name"] for record in self._tables.records())

    def table(self, name: str) -> Table:
        """The :class:`Table` handle for ``name`` (TableNotFoundException if none)."""
        self._check_open()
        return self._tables.table(name)

    def table_directory(self, name: str) -> Path:
        """Where the table's partitions live (``<data>/tables/<table_id>``; moved
        partitions and replicas may live on other volumes, see ``describe_replicas``)."""
        self._check_open()
        return self._tables.table_dir(self._tables.record(name))

    def delete_table(self, name: str) -> dict:
        """Drop a table and its files; returns its last description with status DELETING."""
        self._check_open()
        tables = self._tables
        with tables.lock:
            record = tables.record(name)
            if record["status"] not in ("ACTIVE", "FAILED"):
                raise ResourceInUseException(
                    f"Table {name} is {record['status']}: wait until it is ACTIVE"
                )
            self._indexes.check_deletable(name)
            self._check_deletable(record)
            description = tables.describe(record)
            record["status"] = "DELETING"
            tables.put_record(record)
            self._replicas.forget_table(name)
            self._indexes.forget_table(name)
            with self._indexes.table_lock(name):  # no follower round reads it meanwhile
                tables.close_table(name)
            tables.drop_files(record)
            tables.delete_record(name)
        description["status"] = "DELETING"
        return description

    def _check_deletable(self, record: dict) -> None:
        if self._repartitioner.busy(record["name"]):
            raise ResourceInUseException(
                f"Table {record['name']} is being repartitioned (a split, merge or move is "
                "running); delete it when that finishes"
            )
        backup_id = self.backups.backing_up(record["name"])
        if backup_id is not None:
            raise TableInUseException(
                f"Table {record['name']} is being backed up (backup {backup_id}); "
                "delete it when the backup is AVAILABLE"
            )

    # ------------------------------------------------------------------ secondary indexes
    def index(self, table: str, index_name: str) -> Index:
        """A query/scan handle on one secondary index (:class:`engine.indexes.query.Index`:
        ``query_page``, ``scan_page``, ``query``, ``scan``, ``iter_entries``). Unknown
        index: ValidationException "The table does not have the specified index"."""
        self._check_open()
        return self._indexes.index(table, index_name)

    def create_global_index(self, table: str, definition: dict,
                            partitions: int = DEFAULT_GSI_PARTITIONS) -> dict:
        """Add a GSI online (DynamoDB's UpdateTable Create); returns its description with
        status CREATING and ``backfilling`` True. Existing items are indexed in the
        background, paced so writes keep their latency; wait with :meth:`wait_for_index`."""
        self._check_open()
        return self._indexes.create_global_index(table, definition, partitions)

    def delete_global_index(self, table: str, index_name: str) -> dict:
        """Remove a GSI (UpdateTable Delete); returns its last description, status
        DELETING. A backfill in progress stops; the index's files are gone on return."""
        self._check_open()
        return self._indexes.delete_global_index(table, index_name)

    def wait_for_index(self, table: str, index_name: str, timeout: float = 600.0) -> dict:
        """Block until a GSI is no longer CREATING (backfilled); returns its description."""
        self._check_open()
        return self._indexes.wait_for_index(table, index_name, timeout)

    def wait_for_index_catch_up(self, table: str, timeout: float = 600.0) -> None:
        """Wait for the table's backfills, then apply every pending GSI delta in this
        thread: afterwards every GSI reflects every write acknowledged before the call
        (GSIs are otherwise eventually consistent, as in DynamoDB)."""
        self._check_open()
        self._indexes.catch_up(table, timeout)

    def split_index_partition(self, table: str, index_name: str, partition_id: str,
                              at: bytes | None = None) -> list[str]:
        """Split one partition of a GSI's own storage (``at``: the first storage key of
        the right half; None: the median entry); returns the two new partition ids (the
        GSI's ``partition_ids`` in :meth:`describe_table`)."""
        self._check_open()
        return self._indexes.split_index_partition(table, index_name, partition_id, at)

    def merge_index_partitions(self, table: str, index_name: str, left_id: str,
                               right_id: str) -> str:
        """Merge two neighbouring partitions of a GSI; returns the new partition id."""
        self._check_open()
        return self._indexes.merge_index_partitions(table, index_name, left_id, right_id)

    def move_index_partition(self, table: str, index_name: str, partition_id: str,
                             volume_dir: str | Path) -> str:
        """Move one partition of a GSI to another directory (volume); returns its new id."""
        self._check_open()
        return self._indexes.move_index_partition(table, index_name, partition_id, volume_dir)

    def index_lag(self) -> dict[str, float]:
        """The follower's write-to-GSI delay percentiles (``p50``, ``p99``, ``max`` in
        seconds, ``samples``) since :meth:`reset_index_lag` (for benchmarks, monitoring)."""
        self._check_open()
        return self._indexes.follower.lag_percentiles()

    def reset_index_lag(self) -> None:
        self._check_open()
        self._indexes.follower.reset_lag()

    # ------------------------------------------------------------------ backups
    def create_backup(self, table_name: str, backup_name: str, source: str = "primary") -> dict:
        """Start an on-demand backup of a table (SPEC §6); returns it with status CREATING.

        ``source="replica"``: copy partitions that have a replica from it (SPEC §10).
        """
        self._check_open()
        return self.backups.create_backup(table_name, backup_name, source)

    def describe_backup(self, backup_id: str) -> dict:
        self._check_open()
        description = self.backups.describe_backup(backup_id)
        # Restores and copies of it in progress (engine.backup.restore_manager).
        if description["copies_in_progress"]:
            description["copy_progress"] = self.restores.copy_progress(backup_id)
        if description["restores_in_progress"]:
            description["restore_progress"] = {
                name: self.restores.restore_progress(name)
                for name in description["restores_in_progress"]}
        return description

    def list_backups(self, table: str | None = None, start: float | None = None,
                     end: float | None = None, limit: int | None = None,
                     exclusive_start: str | None = None) -> tuple[list[dict], str | None]:
        self._check_open()
        return self.backups.list_backups(table, start, end, limit, exclusive_start)

    def delete_backup(self, backup_id: str) -> dict:
        self._check_open()
        return self.backups.delete_backup(backup_id)

    def wait_for_backup(self, backup_id: str, timeout: float = 600.0) -> dict:
        """Block until a backup is no longer CREATING; returns its description."""
        self._check_open()
        return self.backups.wait(backup_id, timeout)

    # ------------------------------------------------------------------ restore, copy
    def restore_table(
        self,
        backup_id: str,
        target_table: str,
        partitions: int | None = None,
        split_points: Sequence[Any] | None = None,
        sync: str | None = None,
        *,
        store: ObjectStore | None = None,
        global_indexes: Sequence[dict] | None = None,
        local_indexes: Sequence[dict] | None = None,
        billing: dict | None = None,
    ) -> dict:
        """Restore a backup into a new table (SPEC §8); returns it with status CREATING.

        ``partitions`` / ``split_points`` (range tables: partition-key values) repartition
        during the restore; ``sync`` overrides the backed-up sync policy. ``store`` restores
        from another store's backup (by manifest, with no catalog record), as the offline
        tools do. Wait with :meth:`wait_for_table`: ACTIVE, or FAILED with
        ``failure_reason`` (delete it with :meth:`delete_table`).

        Secondary indexes (DynamoDB's GlobalSecondaryIndexOverride /
        LocalSecondaryIndexOverride): ``None`` restores the backed-up ones; a list of
        definitions is exactly the restored table's indexes (drop one by leaving it out,
        add one, change a projection). Every index is rebuilt from the restored items
        before the table is ACTIVE.

        ``billing`` (:mod:`engine.billing`; DynamoDB's BillingModeOverride /
        ProvisionedThroughputOverride): the restored table's; None keeps the backed-up one.
        """
        self._check_open()
        return self.restores.restore_table(backup_id, target_table, partitions=partitions,
                                           split_points=split_points, sync=sync, store=store,
                                           global_indexes=global_indexes,
                                           local_indexes=local_indexes, billing=billing)

    def wait_for_table(self, name: str, timeout: float = 600.0) -> dict:
        """Block until a table is no longer CREATING; returns its description."""
        self._check_open()
        return self.restores.wait_for_table(name, timeout)

    def copy_backup(self, backup_id: str, destination_store: str | ObjectStore,
                    region: str | None = None) -> dict:
        """Copy an AVAILABLE backup to another store under the same id (SPEC §8); returns
        the copy with status COPYING. Progress and outcome show in :meth:`describe_backup`
        (``copies_in_progress``, ``copy_progress``, ``copies``)."""
        self._check_open()
        return self.restores.copy_backup(backup_id, destination_store, region)

    def wait_for_copies(self, backup_id: str, timeout: float = 600.0) -> dict:
        """Block until no copy of the backup runs; returns the backup's description."""
        self._check_open()
        return self.restores.wait_for_copies(backup_id, timeout)

    # ------------------------------------------------------------------ repartitioning
    def split_partition(self, table: str, partition_id: str, at: Any = None) -> list[str]:
        """Split a partition in two while it keeps serving (SPEC §10); returns the new ids.

        ``at`` is the first key of the right half — a storage key (bytes) or a key dict;
        ``None`` splits at the median storage key of its items.
        """
        self._check_open()
        return self._repartitioner.split(table, partition_id, at)

    def merge_partitions(self, table: str, left_id: str, right_id: str) -> str:
        """Merge two neighbouring partitions (``left_id`` ends where ``right_id`` starts);
        returns the new partition id."""
        self._check_open()
        return self._repartitioner.merge(table, left_id, right_id)

    def move_partition(self, table: str, partition_id: str, volume_dir: str | Path) -> str:
        """Move a partition to another directory (volume); returns its new partition id."""
        self._check_open()
        return self._repartitioner.move(table, partition_id, volume_dir)

    # ------------------------------------------------------------------ replicas
    def add_replica(self, table: str, partition_id: str, volume_dir: str | Path) -> dict:
        """Copy a partition into ``volume_dir`` and keep the copy following its WAL."""
        self._check_open()
        return self._replicas.add(table, partition_id, volume_dir)

    def remove_replica(self, table: str, replica_id: str) -> None:
        self._check_open()
        self._replicas.remove(table, replica_id)

    def replica(self, table: str, replica_id: str) -> Replica:
        """The :class:`~engine.replica.Replica` handle (its applied LSN, lag, status)."""
        self._check_open()
        return self._replicas.get(table, replica_id)

    @property
    def auto_splitter(self) -> AutoSplitter | None:
        """The auto-split service when opened with ``auto_split_bytes`` (its ``splits``
        count and ``last_error``), else None."""
        return self._auto_split

    def describe_replicas(self, table: str) -> list[dict]:
        """Each replica of the table: partition, directory, status, applied LSN and lag."""
        self._check_open()
        return self._replicas.describe(table)

    # ------------------------------------------------------------------ lifecycle
    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError()

    def close(self) -> None:
        """Flush every WAL, sync every environment and close. Idempotent; afterwards every
        public method raises :class:`~engine.errors.EngineClosedError`. Also what a failed
        open calls, so each step tolerates the parts that were never built."""
        if self._auto_split is not None:
            self._auto_split.close()  # before the lock: a split in flight takes it
        if self.restores is not None and not self._closed:
            # Before taking the lock: a finishing restore thread needs it to open its table.
            self.restores.close()
        if self._indexes is not None and not self._closed:
            self._indexes.close()  # backfills restart on the next open
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self.backups is not None:
            self.backups.close()
        if self._replicas is not None:
            self._replicas.close()  # keeps its WAL holds: the partitions close after
        if self._tables is not None:
            self._tables.close()
        if self._catalog is not None:
            self._catalog.close()
        if self._dir_lock is not None:
            _release_directory(self._dir_lock)
