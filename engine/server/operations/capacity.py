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
``INDEXES`` adds ``"Table": {"CapacityUnits"}`` (no secondary indexes here, so no
``GlobalSecondaryIndexes`` / ``LocalSecondaryIndexes``); ``NONE`` leaves it out.
"""

from __future__ import annotations

import math
from typing import Any

from engine.itemsize import item_size

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
]

READ_UNIT_BYTES = 4 * 1024
WRITE_UNIT_BYTES = 1024


def capacity_mode(request: dict) -> str:
    """ReturnConsumedCapacity, validated: ``NONE`` when absent."""
    return enum(request, "ReturnConsumedCapacity", RETURN_CONSUMED_CAPACITY, "NONE")


def item_collection_metrics_mode(request: dict) -> str:
    """ReturnItemCollectionMetrics, validated. Item collections exist only on tables with
    local secondary indexes, which this server does not create, so DynamoDB's answer is
    always to leave ItemCollectionMetrics out."""
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


def consumed(mode: str, table_name: str, units: float, *, write: bool) -> dict[str, Any] | None:
    """The ConsumedCapacity object for one table, or None for mode ``NONE``."""
    if mode == "NONE":
        return None
    result: dict[str, Any] = {
        "TableName": table_name,
        "CapacityUnits": units,
        ("WriteCapacityUnits" if write else "ReadCapacityUnits"): units,
    }
    if mode == "INDEXES":
        result["Table"] = {
            "CapacityUnits": units,
            ("WriteCapacityUnits" if write else "ReadCapacityUnits"): units,
        }
    return result


def add_consumed(response: dict, mode: str, table_name: str, units: float, *,
                 write: bool) -> dict:
    """Add ``ConsumedCapacity`` to a single-table response when asked for."""
    value = consumed(mode, table_name, units, write=write)
    if value is not None:
        response["ConsumedCapacity"] = value
    return response
