"""Secondary indexes of a restored table (SPEC §8, issue 14).

A backup carries its partitions' LSI databases, GSI outboxes and index definitions
(each environment's ``meta``), not the GSIs' own partitions. A restore therefore:

1. reads the backed-up definitions (:func:`read_index_meta`) and applies the caller's
   overrides (:func:`restored_indexes`): ``None`` keeps the backed-up set, a list is
   exactly the indexes wanted — so an index is dropped, kept, added or given another
   projection by listing it (or not);
2. once the partitions are open, empties every outbox (its deltas belong to the source
   table's GSIs), recomputes every LSI from the restored items (the layout or the LSI set
   may have changed) and builds every GSI from the items, before the table is ACTIVE
   (:func:`build_restored_indexes`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lmdb

from ..errors import ValidationException
from .backfill import backfill_partition
from .definitions import GLOBAL, LOCAL, IndexDefinition, parse_definition, validate_indexes
from .gsi_store import DEFAULT_GSI_PARTITIONS, new_gsi_map
from .maintain import INDEXES_META_KEY, IndexSpec

if TYPE_CHECKING:
    from ..table import Table
    from .gsi_store import GsiStore


def read_index_meta(env_dir: Path) -> dict | None:
    """The index definitions stored in a (closed) partition environment, or None."""
    env = lmdb.open(str(env_dir), readonly=True, lock=False, subdir=True, max_dbs=16)
    try:
        try:
            meta_db = env.open_db(b"meta", create=False)
        except lmdb.NotFoundError:
            return None
        with env.begin(db=meta_db) as txn:
            raw = txn.get(INDEXES_META_KEY)
        return None if raw is None else json.loads(raw)
    finally:
        env.close()


def backed_up_definitions(settings: dict, partition_meta: dict | None) -> dict | None:
    """The backed-up definitions in meta form (``{"indexes": [...]}``): from the
    manifest's ``settings["indexes"]`` (the table record's ``indexes``, when the backup
    recorded them) else from a restored partition's meta — both name the same indexes
    (a GSI being deleted at backup time is in neither)."""
    recorded = settings.get("indexes") if isinstance(settings, dict) else None
    if isinstance(recorded, dict):
        return {"indexes": [
            *({**data, "kind": LOCAL} for data in recorded.get("local", [])),
            *({key: value for key, value in data.items()
               if key in ("name", "kind", "key_schema", "projection", "index_id")}
              for data in recorded.get("global", []) if data.get("status") != "DELETING"),
        ]}
    return partition_meta


def check_overrides(key_schema: Sequence[Sequence[str]], local: Any, global_: Any) -> dict:
    """Validate restore overrides now (before any download); returns their JSON form
    (``{"local": [...] | None, "global": [...] | None}``) for the table's restore record."""
    local_defs = None if local is None else [parse_definition(d, LOCAL) for d in _list(local)]
    global_defs = None if global_ is None else [
        parse_definition(d, GLOBAL) for d in _list(global_)]
    validate_indexes(key_schema, local_defs or [], global_defs or [])
    return {"local": None if local_defs is None else [d.to_json() for d in local_defs],
            "global": None if global_defs is None else [d.to_json() for d in global_defs]}


def _list(value: Any) -> list:
    if not isinstance(value, (list, tuple)):
        raise ValidationException(
            f"index overrides must be lists of index definitions, got {type(value).__name__}")
    return list(value)


def restored_indexes(backed_up: dict | None, key_schema: Sequence[Sequence[str]],
                     overrides: dict | None, created_at: float | None = None) -> dict | None:
    """The restored table record's ``indexes`` from the backed-up definitions (a
    partition's meta) and the overrides (:func:`check_overrides`); None if no index."""
    defs = [IndexDefinition.from_json(d) for d in (backed_up or {}).get("indexes", [])]
    local = [d for d in defs if d.kind == LOCAL]
    global_ = [d for d in defs if d.kind == GLOBAL]
    overrides = overrides or {}
    if overrides.get("local") is not None:
        local = [IndexDefinition.from_json(d) for d in overrides["local"]]
    if overrides.get("global") is not None:
        global_ = [IndexDefinition.from_json(d) for d in overrides["global"]]
    validate_indexes(key_schema, local, global_)
    if not local and not global_:
        return None
    created_at = time.time() if created_at is None else created_at
    return {"local": [d.to_json() for d in local],
            "global": [{**d.to_json(), "status": "ACTIVE", "backfilling": False,
                        "created_at": created_at,
                        "partition_map": new_gsi_map(DEFAULT_GSI_PARTITIONS)}
                       for d in global_]}


def build_restored_indexes(table: Table, record: dict,
                           reset_store: Callable[[dict], GsiStore]) -> None:
    """Step 2 of the module docstring, on the opened (not yet ACTIVE) table.

    ``reset_store(data)`` returns an empty store for the GSI catalog entry ``data`` (a
    resumed restore may find a partial one).
    """
    for partition in table.partitions:
        partition.reset_indexes()
    hashed = record["partitioning"] == "hash"
    for data in (record.get("indexes") or {}).get("global", []):
        store = reset_store(data)
        spec = IndexSpec(IndexDefinition.from_json(data), record["key_schema"], hashed,
                                 record.get("key_format", 1) == 2)
        for partition in table.partitions:
            backfill_partition(partition, spec, store, cancelled=lambda: False, pace_ratio=0)

