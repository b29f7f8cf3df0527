"""The secondary-index service: online GSI create and delete (with backfill), the
follower, catch-up waits, descriptions and query handles.

Handed the narrow :class:`engine.services.IndexedTables` (the open tables, their
partitions and GSI stores) and the tables' repartitioning locks; the engine facade
composes it (:class:`engine.Engine`).

Catalog form (the table record's ``indexes``)::

    {"local":  [definition JSON, ...],
     "global": [definition JSON + {"status": "CREATING"|"ACTIVE"|"DELETING",
                                   "backfilling": bool, "partition_map": [...],
                                   "created_at": float}, ...]}

Create: the entry is written CREATING + backfilling, the GSI's partitions are opened,
the definition is installed in every base partition (writes fill the outbox from then
on), then a background thread backfills (:mod:`.backfill`) and marks it ACTIVE. All of
it under the table's repartitioning lock, so no split copies a partition half-way
through. Delete: DELETING, the definition leaves every partition (its pending deltas
with it), the files go, then the entry. A crash mid-create restarts the backfill from
an empty GSI on open; a crash mid-delete finishes the delete.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ResourceInUseException, ResourceNotFoundException, ValidationException
from ..volumes import writable_volume
from . import gsi_repartition
from .backfill import BackfillCancelled, backfill_partition
from .definitions import GLOBAL, IndexDefinition, parse_definition, validate_indexes
from .follower import IndexFollower
from .gsi_store import DEFAULT_GSI_PARTITIONS, new_gsi_map
from .maintain import IndexSpec
from .query import Index

if TYPE_CHECKING:
    from ..partition import Partition
    from ..services import IndexedTables, PartitionLocks


@dataclass
class _Backfill:
    table_name: str
    index_name: str
    index_id: str
    done: set[str] = field(default_factory=set)  # partitions backfilled
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    items: int = 0
    error: str | None = None
    thread: threading.Thread | None = None


def _global_entry(record: dict, index_name: str) -> dict | None:
    for data in (record.get("indexes") or {}).get("global", []):
        if data["name"] == index_name:
            return data
    return None


class IndexManager:
    """Secondary indexes of one engine's tables (see the module docstring)."""

    def __init__(self, tables: IndexedTables, locks: PartitionLocks, *,
                 backfill_pace: float | None = None) -> None:
        self.tables = tables
        self.locks = locks
        self._backfills: dict[tuple[str, str], _Backfill] = {}
        self._guard = threading.Lock()
        self._closed = False
        self.backfill_pace_ratio = backfill_pace  # None: BACKFILL_PACE_RATIO
        self.follower = IndexFollower(
            tables=self._followed_tables,
            partitions=lambda name: self.tables.table(name).partitions,
            stores=self.tables.gsi_stores, waiting=self._waiting)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the follower thread (after the tables are open and recovered)."""
        self.follower.start()

    def recover(self, record: dict) -> None:
        """After a table was opened: finish interrupted GSI deletes, restart interrupted
        backfills (from an empty GSI: see :mod:`.backfill`)."""
        for data in list((record.get("indexes") or {}).get("global", [])):
            if data["status"] == "DELETING":
                self._finish_delete(record["name"], data)
            elif data.get("backfilling"):
                store = self.tables.gsi_stores(record["name"]).get(data["name"])
                if store is not None:
                    store.drop()
                store = self.tables.new_gsi_store(record, data)
                self.tables.set_gsi_store(record["name"], data["name"], store)
                self._start_backfill(record["name"], record["table_id"], data)

    def close(self) -> None:
        """Stop backfills (they restart on the next open) and the follower."""
        self._closed = True
        with self._guard:
            jobs = list(self._backfills.values())
        for job in jobs:
            job.cancel.set()
        for job in jobs:
            if job.thread is not None:
                job.thread.join()
        self.follower.close()

    def check_deletable(self, name: str) -> None:
        """ResourceInUseException while a GSI of the table is being backfilled (DynamoDB
        refuses to delete a table that is being updated)."""
        with self._guard:
            jobs = [job for job in self._backfills.values()
                    if job.table_name == name and not job.finished.is_set()]
        if jobs:
            raise ResourceInUseException(
                f"Table {name} is being updated: global secondary index {jobs[0].index_name} "
                "is being backfilled; delete the table when the index is ACTIVE (or delete "
                "the index first)")

    def forget_table(self, name: str) -> None:
        """Before a table is dropped: stop whatever backfill is left (not waited for: it
        may need the table lock the caller holds; it ends at its next batch)."""
        with self._guard:
            jobs = [job for job in self._backfills.values() if job.table_name == name]
            for job in jobs:
                self._backfills.pop((name, job.index_id), None)
        for job in jobs:
            job.cancel.set()

    def table_lock(self, name: str):
        """The follower lock of a table: hold it to close or swap the table's partitions
        while no follower round reads them."""
        return self.follower.lock(name)

    # ------------------------------------------------------------------ the follower
    def _followed_tables(self) -> Iterable[str]:
        return [name for name, _ in self.tables.open_tables() if self.tables.gsi_stores(name)]

    def _waiting(self, table_name: str, index_id: str, partition_id: str) -> bool:
        job = self._backfills.get((table_name, index_id))
        return job is not None and partition_id not in job.done

    def drain(self, table_name: str, partitions: list[Partition]) -> int:
        """Apply every pending GSI delta of ``partitions`` (repartitioning's final phase)."""
        return self.follower.drain(table_name, partitions)

    def catch_up(self, table_name: str, timeout: float = 600.0) -> None:
        """Wait for running backfills of the table, then apply every GSI delta pending now:
        afterwards each GSI reflects every write acknowledged before the call."""
        self.tables.record(table_name)
        deadline = time.monotonic() + timeout
        with self._guard:
            jobs = [job for job in self._backfills.values() if job.table_name == table_name]
        for job in jobs:
            if not job.finished.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(
                    f"index {job.index_name} of table {table_name} is still backfilling "
                    f"after {timeout} s")
        self.follower.catch_up(table_name)

    # ------------------------------------------------------------------ create / delete
    def create_global_index(self, table_name: str, definition: Any,
                            partitions: int = DEFAULT_GSI_PARTITIONS) -> dict:
        """Add a GSI to a table online; returns its description (CREATING, backfilling)."""
        if not isinstance(partitions, int) or isinstance(partitions, bool) or not (
                1 <= partitions <= 256):
            raise ValidationException(
                f"a GSI's partitions must be an integer from 1 to 256, got {partitions!r}")
        definition = parse_definition(definition, GLOBAL)
        tables = self.tables
        with self.locks.table_lock(table_name):
            with tables.lock:
                record = tables.record(table_name)
                if record["status"] != "ACTIVE":
                    raise ResourceInUseException(
                        f"Table {table_name} is {record['status']}: wait until it is ACTIVE")
                indexes = record.get("indexes") or {}
                local = [IndexDefinition.from_json(d) for d in indexes.get("local", [])]
                global_ = [IndexDefinition.from_json(d) for d in indexes.get("global", [])]
                validate_indexes(record["key_schema"], local, [*global_, definition])
                entry = {**definition.to_json(), "status": "CREATING", "backfilling": True,
                         "partition_map": new_gsi_map(partitions), "created_at": time.time()}

                def add(current: dict | None) -> dict:
                    current.setdefault("indexes", {"local": [], "global": []})
                    current["indexes"].setdefault("global", []).append(entry)
                    return current

                tables.update_record(table_name, add)
                record = tables.record(table_name)
            job = _Backfill(table_name, definition.name, definition.index_id)
            with self._guard:
                self._backfills[(table_name, definition.index_id)] = job
            store = tables.new_gsi_store(record, entry)
            tables.set_gsi_store(table_name, definition.name, store)
            meta = tables.index_meta(record)
            for partition in tables.table(table_name).partitions:
                partition.set_index_meta(meta)
        self._start_backfill(table_name, record["table_id"], entry, job)
        return self.describe_index(table_name, definition.name)

    def _start_backfill(self, table_name: str, table_id: str, entry: dict,
                        job: _Backfill | None = None) -> None:
        if job is None:
            job = _Backfill(table_name, entry["name"], entry["index_id"])
            with self._guard:
                self._backfills[(table_name, entry["index_id"])] = job
        job.thread = threading.Thread(
            target=self._run_backfill, args=(table_name, table_id, entry, job),
            name=f"backfill-{table_name}-{entry['name']}", daemon=True)
        job.thread.start()

    def _run_backfill(self, table_name: str, table_id: str, entry: dict,
                      job: _Backfill) -> None:
        tables = self.tables
        try:
            with self.locks.table_lock(table_name):
                table = tables.current_table(table_name, table_id)
                if table is None or job.cancel.is_set():
                    return
                record = tables.record(table_name)
                spec = IndexSpec(IndexDefinition.from_json(entry), record["key_schema"],
                                 record["partitioning"] == "hash",
                                 record.get("key_format", 1) == 2)
                store = tables.gsi_stores(table_name)[entry["name"]]
                for partition in table.partitions:
                    lsn, _ = backfill_partition(
                        partition, spec, store, cancelled=job.cancel.is_set,
                        pace_ratio=self.backfill_pace_ratio,
                        on_batch=lambda count: setattr(job, "items", job.items + count))
                    with self.follower.lock(table_name):
                        partition.purge_outbox(spec.id_bytes, lsn)
                        job.done.add(partition.partition_id)

                def activate(current: dict | None) -> dict | None:
                    data = _global_entry(current, entry["name"]) if current else None
                    if data is not None and data["index_id"] == entry["index_id"]:
                        data["status"] = "ACTIVE"
                        data["backfilling"] = False
                    return current

                tables.update_record(table_name, activate)
        except BackfillCancelled:
            pass
        except Exception as err:  # noqa: BLE001 - described, retried on the next open
            job.error = f"{type(err).__name__}: {err}"
        finally:
            if job.error is None:
                with self._guard:
                    self._backfills.pop((table_name, entry["index_id"]), None)
            job.finished.set()
            self.follower.wake()

    def delete_global_index(self, table_name: str, index_name: str) -> dict:
        """Remove a GSI (a backfill in progress is stopped); returns its last description
        with status DELETING. Its files are gone when this returns."""
        tables = self.tables
        record = tables.record(table_name)
        data = _global_entry(record, index_name)
        if data is None or data["status"] == "DELETING":
            raise ResourceNotFoundException(
                f"Requested resource not found: Index: {index_name} not found in table "
                f"{table_name}")
        with self._guard:
            job = self._backfills.get((table_name, data["index_id"]))
        if job is not None:
            job.cancel.set()
            if job.thread is not None:
                job.thread.join()
        description = self.describe_index(table_name, index_name, quick=True)
        description["status"] = "DELETING"
        with self.locks.table_lock(table_name):

            def mark(current: dict | None) -> dict | None:
                entry = _global_entry(current, index_name) if current else None
                if entry is not None:
                    entry["status"] = "DELETING"
                return current

            tables.update_record(table_name, mark)
            self._finish_delete(table_name, data)
        with self._guard:
            self._backfills.pop((table_name, data["index_id"]), None)
        return description

    def _finish_delete(self, table_name: str, data: dict) -> None:
        tables = self.tables
        record = tables.record(table_name)
        meta = tables.index_meta(record)
        with self.follower.lock(table_name):
            for partition in tables.table(table_name).partitions:
                partition.set_index_meta(meta)
            store = tables.gsi_stores(table_name).get(data["name"])
            tables.set_gsi_store(table_name, data["name"], None)
            if store is not None:
                store.drop()
            else:
                shutil.rmtree(tables.gsi_dir(record, data["index_id"]), ignore_errors=True)

        def remove(current: dict | None) -> dict | None:
            if current is not None:
                current["indexes"]["global"] = [
                    entry for entry in current["indexes"]["global"]
                    if entry["index_id"] != data["index_id"]]
            return current

        tables.update_record(table_name, remove)

    # ------------------------------------------------------------------ GSI partitions
    def split_index_partition(self, table_name: str, index_name: str, partition_id: str,
                              at: bytes | None = None) -> list[str]:
        """Split a partition of a GSI's own storage; returns the two new partition ids."""
        def build(store, ids):
            pmap, partitions, old = gsi_repartition.split(store, partition_id, ids, at)
            return pmap, partitions, [old]

        return self._repartition_gsi(table_name, index_name, 2, build)

    def merge_index_partitions(self, table_name: str, index_name: str, left_id: str,
                               right_id: str) -> str:
        """Merge two neighbouring partitions of a GSI; returns the new partition id."""
        return self._repartition_gsi(table_name, index_name, 1, lambda store, ids:
                                     gsi_repartition.merge(store, left_id, right_id,
                                                           ids[0]))[0]

    def move_index_partition(self, table_name: str, index_name: str, partition_id: str,
                             volume_dir: str | Path) -> str:
        """Move a partition of a GSI to another directory (volume); returns its new id."""
        volume = writable_volume(
            volume_dir, f"move partition {partition_id} of index {index_name}")
        record = self.tables.record(table_name)
        entry = _global_entry(record, index_name)
        index_id = entry["index_id"] if entry else "unknown"

        def build(store, ids):
            directory = volume / f"{record['table_id']}.gsi" / index_id / ids[0]
            pmap, partitions, old = gsi_repartition.move(store, partition_id, ids[0],
                                                         directory)
            return pmap, partitions, [old]

        return self._repartition_gsi(table_name, index_name, 1, build)[0]

    def _repartition_gsi(self, table_name: str, index_name: str, count: int,
                         build: Any) -> list[str]:
        tables = self.tables
        with self.locks.table_lock(table_name), self.follower.lock(table_name):
            record = tables.record(table_name)
            entry = _global_entry(record, index_name)
            store = tables.gsi_stores(table_name).get(index_name)
            if entry is None or store is None:
                raise ResourceNotFoundException(
                    f"Requested resource not found: Index: {index_name} not found in table "
                    f"{table_name}")
            if entry["status"] != "ACTIVE":
                raise ResourceInUseException(
                    f"index {index_name} of table {table_name} is {entry['status']}: "
                    "repartition it once it is ACTIVE")
            seq = entry.get("next_partition_seq", len(entry["partition_map"]))
            ids = [f"p{seq + offset:04d}" for offset in range(count)]
            pmap, partitions, replaced = build(store, ids)

            def commit(current: dict | None) -> dict | None:
                data = _global_entry(current, index_name) if current else None
                if data is not None:
                    data["partition_map"] = pmap.to_json()
                    data["next_partition_seq"] = seq + count
                    live = {interval.partition_id for interval in pmap}
                    data["partition_dirs"] = {pid: path for pid, path
                                              in store.partition_dirs.items() if pid in live}
                return current

            try:
                tables.update_record(table_name, commit)
            except BaseException:
                for partition in partitions:
                    if partition.partition_id in ids:
                        partition.close()
                        shutil.rmtree(partition.directory, ignore_errors=True)
                raise
            store.swap(pmap, partitions, replaced)
            live = {interval.partition_id for interval in pmap}
            for pid in [pid for pid in store.partition_dirs if pid not in live]:
                del store.partition_dirs[pid]  # its files go when the store closes
            return ids

    def wait_for_index(self, table_name: str, index_name: str, timeout: float = 600.0) -> dict:
        """Block until the GSI is no longer CREATING; returns its description. A failed
        backfill raises with its error (it is retried on the next open)."""
        record = self.tables.record(table_name)
        data = _global_entry(record, index_name)
        if data is None:
            raise ResourceNotFoundException(
                f"Requested resource not found: Index: {index_name} not found in table "
                f"{table_name}")
        with self._guard:
            job = self._backfills.get((table_name, data["index_id"]))
        if job is not None:
            if not job.finished.wait(timeout):
                raise TimeoutError(
                    f"index {index_name} of table {table_name} is still backfilling after "
                    f"{timeout} s")
            if job.error is not None:
                raise ResourceInUseException(
                    f"backfill of index {index_name} of table {table_name} failed: "
                    f"{job.error}; it restarts when the engine is opened again")
        return self.describe_index(table_name, index_name)

    # ------------------------------------------------------------------ reads
    def index(self, table_name: str, index_name: str) -> Index:
        """A query/scan handle on one index of the table."""
        tables = self.tables
        table = tables.table(table_name)
        record = tables.record(table_name)
        hashed = record["partitioning"] == "hash"
        indexes = record.get("indexes") or {}
        for data in indexes.get("local", []):
            if data["name"] == index_name:
                spec = IndexSpec(IndexDefinition.from_json(data), record["key_schema"], hashed,
                                 record.get("key_format", 1) == 2)
                return Index(table, spec, None, lambda: ("ACTIVE", False))
        data = _global_entry(record, index_name)
        store = tables.gsi_stores(table_name).get(index_name)
        if data is None or store is None:
            raise ValidationException(
                f"The table does not have the specified index: {index_name}")
        spec = IndexSpec(IndexDefinition.from_json(data), record["key_schema"], hashed,
                                 record.get("key_format", 1) == 2)

        def status() -> tuple[str, bool]:
            current = _global_entry(tables.record(table_name), index_name)
            if current is None:
                return "DELETING", False
            return current["status"], bool(current.get("backfilling"))

        return Index(table, spec, store, status)

    def describe_index(self, table_name: str, index_name: str, *, quick: bool = False) -> dict:
        for description in self.describe(self.tables.record(table_name), quick=quick).get(
                "global_indexes", []):
            if description["name"] == index_name:
                return description
        raise ResourceNotFoundException(
            f"Requested resource not found: Index: {index_name} not found in table "
            f"{table_name}")

    def describe(self, record: dict, *, quick: bool = False) -> dict:
        """``{"local_indexes": [...], "global_indexes": [...]}`` for a table description:
        each index's definition, status, backfilling, item_count, size_bytes, and for GSIs
        the lag (deltas not yet applied, and the age in seconds of the oldest)."""
        tables = self.tables
        name = record["name"]
        indexes = record.get("indexes") or {}
        try:
            partitions = tables.table(name).partitions
        except Exception:  # noqa: BLE001 - not open (a failed restore): no counts
            partitions = []
        local = []
        for data in indexes.get("local", []):
            count = size = 0
            for partition in partitions:
                state = partition.index_state
                spec = state.by_name(data["name"]) if state is not None else None
                if spec is not None:
                    entries, used = partition.db_stats(spec.db)
                    count += entries
                    size += used
            local.append({"name": data["name"], "index_id": data["index_id"],
                          "key_schema": [tuple(pair) for pair in data["key_schema"]],
                          "projection": dict(data["projection"]), "status": "ACTIVE",
                          "item_count": count, "size_bytes": size})
        stores = tables.gsi_stores(name)
        now = time.time_ns()
        global_ = []
        for data in indexes.get("global", []):
            store = stores.get(data["name"])
            count, size = store.stats() if store is not None and not quick else (0, 0)
            lag_records, oldest = 0, None
            if not quick:
                id_bytes = bytes.fromhex(data["index_id"])
                for partition in partitions:
                    pending, first = partition.outbox_pending(id_bytes)
                    lag_records += pending
                    if first is not None:
                        oldest = first if oldest is None else min(oldest, first)
            with self._guard:
                job = self._backfills.get((name, data["index_id"]))
            description = {
                "name": data["name"], "index_id": data["index_id"],
                "key_schema": [tuple(pair) for pair in data["key_schema"]],
                "projection": dict(data["projection"]), "status": data["status"],
                "backfilling": bool(data.get("backfilling")),
                "partitions": len(data["partition_map"]),
                "partition_ids": [entry["partition_id"] for entry in data["partition_map"]],
                "item_count": count, "size_bytes": size, "lag_records": lag_records,
                "lag_seconds": 0.0 if oldest is None else max(0.0, (now - oldest) / 1e9),
                "created_at": data["created_at"],
            }
            if job is not None:
                description["backfilled_items"] = job.items
                if job.error is not None:
                    description["backfill_error"] = job.error
            global_.append(description)
        return {"local_indexes": local, "global_indexes": global_}
