"""ReturnConsumedCapacity: DynamoDB's capacity-unit formulas and response shapes.

Developer Guide, "Read/write capacity units" and "Item sizes": one read unit is one
strongly consistent read of up to 4 KB (an eventually consistent read costs half); one
write unit is one write of up to 1 KB. Sizes are DynamoDB's item sizes
(:mod:`engine.itemsize`), never our storage encoding, and a projection does not reduce
them. Per operation:

- GetItem: the whole item's size rounded up to 4 KB (a missing item counts as one unit).
- Query / Scan: the total size of the items *evaluated* (before the filter), rounded up to
  4 KB once for the whole page — not per item.
- BatchGetItem: each item on its own, summed per table.
- PutItem / UpdateItem / DeleteItem: the larger of the old and the new item, rounded up to
  1 KB (at least one unit, also when nothing was there).
- BatchWriteItem: each put by its new item's size, each delete one unit, summed per table.

``TOTAL`` reports ``{"TableName", "CapacityUnits"}`` (with the read or write split);
``INDEXES`` adds ``"Table": {"CapacityUnits"}`` and, for the secondary indexes the
operation touched, ``GlobalSecondaryIndexes`` / ``LocalSecondaryIndexes`` maps of index
name to capacity; ``NONE`` leaves it out. The total counts the table and its indexes.

Secondary indexes (Developer Guide, "Provisioned throughput considerations" for GSIs and
LSIs): a Query or Scan of an index consumes its units on the index (the table's share is
0). A write consumes, on each index whose entry it changes, the projected entry's size
rounded up to 1 KB: a new entry or a removed one is one write, an entry whose projected
attributes changed under the same index key one write, an entry whose index key changed
two (delete and put); an index the write leaves alone costs nothing.

ReturnItemCollectionMetrics ``SIZE`` (tables with LSIs only): the written item's
partition key and ``SizeEstimateRangeGB``, a bracket of 1 GB around the item
collection's stored size (base items and LSI entries of that partition key).
"""

from __future__ import annotations

import math
from typing import Any

from engine.attrvalue import serialize_item
from engine.indexes.maintain import item_collection_bytes
from engine.itemsize import item_size
from engine.partition_map import key_successor

from .common import RETURN_CONSUMED_CAPACITY, RETURN_ITEM_COLLECTION_METRICS, enum

__all__ = [
    "READ_UNIT_BYTES",
    "WRITE_UNIT_BYTES",
    "capacity_mode",
    "item_collection_metrics_mode",
    "read_units",
    "write_units",
    "item_read_units",
    "item_write_units",
    "consumed",
    "index_read",
    "index_write_units",
    "item_collection_metrics",
]

READ_UNIT_BYTES = 4 * 1024
WRITE_UNIT_BYTES = 1024


def capacity_mode(request: dict) -> str:
    """ReturnConsumedCapacity, validated: ``NONE`` when absent."""
    return enum(request, "ReturnConsumedCapacity", RETURN_CONSUMED_CAPACITY, "NONE")


def item_collection_metrics_mode(request: dict) -> str:
    """ReturnItemCollectionMetrics, validated (``NONE`` when absent). Item collections
    exist only on tables with local secondary indexes: see :func:`item_collection_metrics`."""
    return enum(request, "ReturnItemCollectionMetrics", RETURN_ITEM_COLLECTION_METRICS, "NONE")


def read_units(size_bytes: int, consistent: bool) -> float:
    units = max(1, math.ceil(size_bytes / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def write_units(size_bytes: int) -> float:
    return float(max(1, math.ceil(size_bytes / WRITE_UNIT_BYTES)))


def item_read_units(item: dict | None, consistent: bool) -> float:
    return read_units(item_size(item) if item else 0, consistent)


def item_write_units(*items: dict | None) -> float:
    """The units of a write that replaced one of ``items`` by another: the larger counts."""
    return write_units(max((item_size(item) for item in items if item), default=0))


def _capacity(units: float, write: bool) -> dict[str, float]:
    return {"CapacityUnits": units,
            ("WriteCapacityUnits" if write else "ReadCapacityUnits"): units}


def consumed(mode: str, table_name: str, units: float, *, write: bool,
             indexes: dict[str, dict[str, float]] | None = None) -> dict[str, Any] | None:
    """The ConsumedCapacity object for one table, or None for mode ``NONE``. ``units`` are
    the table's own; ``indexes`` (``{"GlobalSecondaryIndexes": {name: units},
    "LocalSecondaryIndexes": {...}}``) the secondary indexes', counted in the total."""
    if mode == "NONE":
        return None
    total = units + sum(sum(by_name.values()) for by_name in (indexes or {}).values())
    result: dict[str, Any] = {"TableName": table_name, **_capacity(total, write)}
    if mode == "INDEXES":
        result["Table"] = _capacity(units, write)
        for member, by_name in (indexes or {}).items():
            if by_name:
                result[member] = {name: _capacity(value, write)
                                  for name, value in by_name.items()}
    return result


def add_consumed(response: dict, mode: str, table_name: str, units: float, *,
                 write: bool, indexes: dict[str, dict[str, float]] | None = None) -> dict:
    """Add ``ConsumedCapacity`` to a single-table response when asked for."""
    value = consumed(mode, table_name, units, write=write, indexes=indexes)
    if value is not None:
        response["ConsumedCapacity"] = value
    return response


def index_read(index: Any, units: float) -> dict[str, dict[str, float]]:
    """The ``indexes`` argument of :func:`consumed` for a read of ``index`` (an
    engine.indexes.query.Index) that cost ``units``."""
    member = "LocalSecondaryIndexes" if index.local else "GlobalSecondaryIndexes"
    return {member: {index.name: units}}


def _index_specs(table: Any) -> list:
    """The index specs a table's partitions maintain (engine.indexes.maintain.IndexSpec);
    every partition holds the same definitions."""
    _, partitions = table.routing
    state = partitions[0].index_state if partitions else None
    return list(state.specs) if state is not None else []


def _projected(spec: Any, item: dict) -> dict:
    names = spec.names
    return item if names is None else {k: v for k, v in item.items() if k in names}


def _projected_size(spec: Any, item: dict) -> int:
    return item_size(_projected(spec, item))


def index_write_units(table: Any, old: dict | None,
                      new: dict | None) -> dict[str, dict[str, float]] | None:
    """Write units per secondary index of a write replacing ``old`` by ``new`` (either
    None), as the module docstring counts them; None if the table has no index."""
    specs = _index_specs(table)
    if not specs:
        return None
    result: dict[str, dict[str, float]] = {}
    for spec in specs:
        old_key, new_key = spec.key(old), spec.key(new)
        if old_key is None and new_key is None:
            continue
        if old_key is not None and new_key is not None:
            if old_key == new_key:
                if _projected(spec, old) == _projected(spec, new):
                    continue  # nothing the index holds changed: no index write
                units = write_units(max(_projected_size(spec, old), _projected_size(spec, new)))
            else:
                units = write_units(_projected_size(spec, old)) + write_units(
                    _projected_size(spec, new))
        else:
            units = write_units(_projected_size(spec, old if new_key is None else new))
        member = "LocalSecondaryIndexes" if spec.local else "GlobalSecondaryIndexes"
        result.setdefault(member, {})[spec.name] = units
    return result


def item_collection_metrics(table: Any, mode: str, key: dict) -> dict | None:
    """ItemCollectionMetrics of a write of the item with key ``key`` under
    ReturnItemCollectionMetrics ``mode``: None unless ``SIZE`` on a table with LSIs."""
    if mode != "SIZE":
        return None
    specs = _index_specs(table)
    if not any(spec.local for spec in specs):
        return None
    pk_name = table.schema.partition_name
    prefix = table.schema.partition_prefix(key[pk_name])
    pmap, partitions = table.routing
    end = key_successor(prefix)
    total = 0
    position = pmap.index_for(prefix)
    # An item collection may straddle a split: add up every partition holding part of it.
    while position < len(partitions):
        partition = partitions[position]
        state = partition.index_state
        if state is not None:
            with partition.env.begin() as txn:
                total += item_collection_bytes(txn, state, prefix)
        position += 1
        if position >= len(pmap) or (end is not None and pmap.intervals[position].start >= end):
            break
    low = float(total // (1 << 30))
    return {"ItemCollectionKey": serialize_item({pk_name: key[pk_name]}),
            "SizeEstimateRangeGB": [low, low + 1.0]}
