"""The narrow interfaces the engine's services are handed (STYLE: Litestream's shape).

Each service — backups, restores and copies, repartitioning, replicas, auto-split — gets a
:class:`typing.Protocol` of the few methods it uses, never the whole :class:`~engine.Engine`.
:class:`~engine.tableset.TableSet` implements the table-side protocols and
:class:`~engine.backup.manager.BackupManager` the backup-side one; the engine wires them
together in :meth:`engine.Engine.__init__`. A test checks the implementations satisfy them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .backup.manifest import BackupManifest
    from .indexes.definitions import IndexDefinition
    from .indexes.gsi_store import GsiStore
    from .partition import Partition
    from .table import Table


@runtime_checkable
class TableRecords(Protocol):
    """Catalog records of tables and the one lock that orders their changes."""

    lock: threading.RLock

    def record(self, name: str) -> dict: ...
    def update_record(self, name: str, change: Callable[[dict | None], dict | None]) -> None: ...
    def table_dir(self, record: dict) -> Path: ...


@runtime_checkable
class OpenTables(TableRecords, Protocol):
    """Open table handles (for services that read or write items)."""

    def table(self, name: str) -> Table: ...
    def current_table(self, name: str, table_id: str) -> Table | None: ...
    def open_tables(self) -> Iterator[tuple[str, Table]]: ...


@runtime_checkable
class PartitionedTables(OpenTables, Protocol):
    """What repartitioning and replicas need: a table's partitions, and new ones."""

    map_size_bytes: int

    def partitions(self, name: str) -> dict[str, Partition]: ...
    def install_partitions(self, name: str, partitions: dict[str, Partition]) -> None: ...
    def new_partition(self, directory: Path, partition_id: str, record: dict) -> Partition: ...


@runtime_checkable
class IndexedTables(OpenTables, Protocol):
    """What the secondary-index service needs: the tables' GSI stores and the index
    definitions their partitions must hold (engine.indexes.manager)."""

    def gsi_stores(self, name: str) -> dict[str, GsiStore]: ...
    def new_gsi_store(self, record: dict, data: dict) -> GsiStore: ...
    def set_gsi_store(self, name: str, index_name: str, store: GsiStore | None) -> None: ...
    def gsi_dir(self, record: dict, index_id: str) -> Path: ...
    def index_meta(self, record: dict) -> dict: ...
    def index_definitions(self, record: dict) -> list[IndexDefinition]: ...


@runtime_checkable
class RestorableTables(TableRecords, Protocol):
    """What a restore needs: to open the restored table, describe it, or drop its files
    (and ``path``, the data directory, whose volume must have room for it)."""

    map_size_bytes: int
    path: Path

    @property
    def closed(self) -> bool: ...
    def open_table(self, record: dict) -> Table: ...
    def describe(self, record: dict) -> dict: ...
    def drop_files(self, record: dict) -> None: ...
    def gsi_stores(self, name: str) -> dict[str, GsiStore]: ...
    def new_gsi_store(self, record: dict, data: dict) -> GsiStore: ...
    def set_gsi_store(self, name: str, index_name: str, store: GsiStore | None) -> None: ...


@runtime_checkable
class BackupCatalog(Protocol):
    """The backups a restore or a copy reads (implemented by BackupManager)."""

    lock: threading.RLock

    def record(self, backup_id: str) -> dict: ...
    def load_manifest(self, backup_id: str) -> BackupManifest | None: ...
    def describe_backup(self, backup_id: str) -> dict: ...


@runtime_checkable
class ReplicaSource(Protocol):
    """Where a backup of ``source="replica"`` takes its partition snapshots."""

    def snapshot_for(self, table_name: str, partition_id: str) -> Any: ...


@runtime_checkable
class PartitionLocks(Protocol):
    """One repartitioning or replica change per table at a time."""

    def table_lock(self, name: str) -> AbstractContextManager[Any]: ...
    def busy(self, table_name: str) -> bool: ...
