"""The open tables of one engine: their catalog records, partitions, directories and the
one lock that orders changes to them.

Every service (backups, restores, copies, repartitioning, replicas, auto-split) reaches
tables only through this object, and only through the narrow interface its
:mod:`engine.services` protocol names; :class:`~engine.Engine` composes them. Litestream's
shape: the database's local state knows nothing of the services that read it.

Thread safety: :attr:`lock` (re-entrant) guards every change of the set and every
read-modify-write of a table's catalog record. Holders never wait on I/O of other
partitions while they hold it, except the short open/close of one table.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from .catalog import Catalog
from .errors import EngineClosedError, TableNotFoundException
from .indexes.definitions import IndexDefinition
from .indexes.gsi_store import GsiStore, gsi_root
from .indexes.maintain import build_meta
from .keys import KeySchema
from .partition import Partition
from .partition_map import PartitionMap
from .table import Table
from .table_dirs import all_dirs_outside, cleanup_stray_dirs, partition_dir


class TableSet:
    """Owns the open :class:`Table` handles and their :class:`Partition` objects."""

    def __init__(self, path: Path, catalog: Catalog, *, map_size_bytes: int,
                 wal_segment_bytes: int) -> None:
        self.path = Path(path)
        self.catalog = catalog
        self.map_size_bytes = map_size_bytes
        self.wal_segment_bytes = wal_segment_bytes
        self.lock = threading.RLock()
        self._tables: dict[str, Table] = {}
        self._partitions: dict[str, dict[str, Partition]] = {}
        self._gsi: dict[str, dict[str, GsiStore]] = {}  # table -> index name -> store
        self._closed = False

    # ------------------------------------------------------------------ state
    @property
    def closed(self) -> bool:
        return self._closed

    def check_open(self) -> None:
        """Raise :class:`EngineClosedError` once :meth:`close` ran."""
        if self._closed:
            raise EngineClosedError()

    # ------------------------------------------------------------------ records
    def record(self, name: str) -> dict:
        """The catalog record of ``name``; TableNotFoundException if there is none."""
        record = self.catalog.get_table(name) if isinstance(name, str) else None
        if record is None:
            raise TableNotFoundException(f"Table not found: {name}")
        return record

    def records(self) -> list[dict]:
        return self.catalog.list_tables()

    def put_record(self, record: dict) -> None:
        self.catalog.put_table(record)

    def delete_record(self, name: str) -> None:
        self.catalog.delete_table(name)

    def update_record(self, name: str, change: Callable[[dict | None], dict | None]) -> None:
        """Read-modify-write of a table's record, under :attr:`lock`."""
        with self.lock:
            self.catalog.update("table", name, change)

    def table_dir(self, record: dict) -> Path:
        return self.path / "tables" / record["table_id"]

    # ------------------------------------------------------------------ open tables
    def table(self, name: str) -> Table:
        """The open handle of ``name`` (TableNotFoundException if it is not open)."""
        self.check_open()
        table = self._tables.get(name)
        if table is None:
            raise TableNotFoundException(f"Table not found: {name}")
        return table

    def current_table(self, name: str, table_id: str) -> Table | None:
        """The open handle of ``name`` if it is still the table ``table_id`` (not dropped
        and re-created meanwhile), else None."""
        table = self._tables.get(name)
        record = self.catalog.get_table(name)
        if table is None or record is None or record["table_id"] != table_id:
            return None
        return table

    def open_tables(self) -> Iterator[tuple[str, Table]]:
        """A snapshot of the open tables, by name."""
        return iter(list(self._tables.items()))

    def partitions(self, name: str) -> dict[str, Partition]:
        """The open partitions of table ``name`` by id (a copy)."""
        return dict(self._partitions.get(name, {}))

    def install_partitions(self, name: str, partitions: dict[str, Partition]) -> None:
        """Record the table's partitions after a split, merge or move (under :attr:`lock`)."""
        self._partitions[name] = dict(partitions)

    def new_partition(self, directory: Path, partition_id: str, record: dict) -> Partition:
        """Open a partition of the table ``record`` with this engine's settings."""
        return Partition(
            directory, partition_id=partition_id, table_name=record["name"],
            sync=record["sync"], map_size=self.map_size_bytes,
            segment_bytes=self.wal_segment_bytes,
        )

    def open_table(self, record: dict) -> Table:
        """Open every partition of ``record`` and register the table. On a failure the
        partitions opened so far are closed again, so a later open in the same process
        finds no environment already open."""
        schema = KeySchema.from_json(record["key_schema"], record["partitioning"],
                                     record.get("key_format", 1))
        pmap = PartitionMap.from_json(record["partition_map"])
        partitions: dict[str, Partition] = {}
        try:
            for interval in pmap:
                pid = interval.partition_id
                partitions[pid] = self.new_partition(
                    partition_dir(self.table_dir(record), record, pid), pid, record)
            table = Table(record["name"], schema, pmap, partitions)
            stores = self._open_indexes(record, partitions)
        except BaseException:
            for partition in partitions.values():
                partition.close()
            raise
        with self.lock:
            self._tables[record["name"]] = table
            self._partitions[record["name"]] = partitions
            self._gsi[record["name"]] = stores
        return table

    # ------------------------------------------------------------------ secondary indexes
    @staticmethod
    def index_definitions(record: dict) -> list[IndexDefinition]:
        """The indexes the table's partitions maintain: every LSI, and every GSI not
        being deleted (engine.indexes)."""
        indexes = record.get("indexes") or {}
        return [IndexDefinition.from_json(data) for data in [
            *indexes.get("local", []),
            *(data for data in indexes.get("global", []) if data["status"] != "DELETING")]]

    def index_meta(self, record: dict) -> dict:
        """What each partition's meta must hold (engine.indexes.maintain.build_meta)."""
        return build_meta(record["key_schema"], record["partitioning"] == "hash",
                          self.index_definitions(record), record.get("key_format", 1))

    def _open_indexes(self, record: dict, partitions: dict[str, Partition]) -> dict:
        """Make each partition's stored definitions those of the record, open the GSIs."""
        meta = self.index_meta(record)
        for partition in partitions.values():
            current = partition.index_state.meta if partition.index_state else None
            if current != meta and (current is not None or meta["indexes"]):
                partition.set_index_meta(meta)
        stores: dict[str, GsiStore] = {}
        try:
            for data in (record.get("indexes") or {}).get("global", []):
                if data["status"] != "DELETING":
                    stores[data["name"]] = self.new_gsi_store(record, data)
        except BaseException:
            for store in stores.values():
                store.close()
            raise
        return stores

    def gsi_dir(self, record: dict, index_id: str) -> Path:
        return gsi_root(self.table_dir(record)) / index_id

    def new_gsi_store(self, record: dict, data: dict) -> GsiStore:
        """Open (creating) the partitions of the GSI ``data`` (its catalog entry)."""
        # A GSI write is durable before its deltas leave the base outbox, whatever the
        # table's policy: under "none" an unsynced GSI record could be lost after the
        # outbox deletion was synced by a base checkpoint.
        sync = "batch" if record["sync"] == "none" else record["sync"]
        return GsiStore(self.gsi_dir(record, data["index_id"]), data["partition_map"],
                        name=f"{record['name']}.{data['name']}", sync=sync,
                        map_size=self.map_size_bytes, segment_bytes=self.wal_segment_bytes,
                        partition_dirs=data.get("partition_dirs"))

    def gsi_stores(self, name: str) -> dict[str, GsiStore]:
        """The open GSIs of table ``name`` by index name (a copy)."""
        return dict(self._gsi.get(name, {}))

    def set_gsi_store(self, name: str, index_name: str, store: GsiStore | None) -> None:
        """Register (or with None forget) an open GSI of table ``name``."""
        with self.lock:
            stores = self._gsi.setdefault(name, {})
            if store is None:
                stores.pop(index_name, None)
            else:
                stores[index_name] = store

    def clean_stray_dirs(self, record: dict) -> None:
        """Delete the directories an interrupted split/merge/move left (SPEC §10)."""
        if cleanup_stray_dirs(self.table_dir(record), record):
            self.catalog.put_table(record)

    def close_table(self, name: str) -> None:
        """Forget the table's handle and close its partitions (its files stay)."""
        with self.lock:
            self._tables.pop(name, None)
            partitions = self._partitions.pop(name, {})
            stores = self._gsi.pop(name, {})
        for partition in partitions.values():
            partition.close()
        for store in stores.values():
            store.close()

    def drop_files(self, record: dict) -> None:
        """Delete every directory of the table: moved partitions, replicas, the table's."""
        for directory in all_dirs_outside(self.table_dir(record), record):
            shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(self.table_dir(record), ignore_errors=True)
        shutil.rmtree(gsi_root(self.table_dir(record)), ignore_errors=True)
        for data in (record.get("indexes") or {}).get("global", []):
            for directory in (data.get("partition_dirs") or {}).values():  # moved ones
                shutil.rmtree(directory, ignore_errors=True)

    # ------------------------------------------------------------------ descriptions
    def describe(self, record: dict) -> dict:
        """The engine's description of a table (``Engine.describe_table``)."""
        table = self._tables.get(record["name"])
        count, size = table.stats() if table is not None else (0, 0)
        description = {
            "name": record["name"],
            "table_id": record["table_id"],
            "status": record["status"],
            "key_schema": [tuple(pair) for pair in record["key_schema"]],
            "partitioning": record["partitioning"],
            "key_format": record.get("key_format", 1),
            "partitions": len(record["partition_map"]),
            "partition_map": record["partition_map"],
            "sync": record["sync"],
            "item_count": count,
            "size_bytes": size,
            "created_at": record["created_at"],
        }
        indexes = record.get("indexes") or {}
        if indexes.get("local") or indexes.get("global"):
            # Definitions and status; Engine.describe_table adds counts, sizes and lag.
            description["local_indexes"] = [
                {"name": data["name"], "index_id": data["index_id"],
                 "key_schema": [tuple(pair) for pair in data["key_schema"]],
                 "projection": dict(data["projection"]), "status": "ACTIVE"}
                for data in indexes.get("local", [])]
            description["global_indexes"] = [
                {"name": data["name"], "index_id": data["index_id"],
                 "key_schema": [tuple(pair) for pair in data["key_schema"]],
                 "projection": dict(data["projection"]), "status": data["status"],
                 "backfilling": bool(data.get("backfilling"))}
                for data in indexes.get("global", [])]
        if record.get("failure_reason"):
            description["failure_reason"] = record["failure_reason"]
        if record.get("billing"):  # engine.billing: kept, described, not enforced
            description["billing"] = dict(record["billing"])
        if record.get("restore"):  # restored from a backup (engine.backup.restore_manager)
            description["restore"] = dict(record["restore"])
        return description

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close every partition. Idempotent; later calls to :meth:`table` raise
        :class:`EngineClosedError`."""
        with self.lock:
            self._closed = True
            partitions = [p for table in self._partitions.values() for p in table.values()]
            stores = [store for table in self._gsi.values() for store in table.values()]
            self._partitions.clear()
            self._tables.clear()
            self._gsi.clear()
        for partition in partitions:
            partition.close()
        for store in stores:
            store.close()
