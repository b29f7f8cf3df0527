"""BatchGetItem and BatchWriteItem (API Reference): up to 100 keys / 25 writes per call
over any number of tables, every request validated before anything is read or written.

Limits and errors as DynamoDB: an empty ``RequestItems``; more than 25 writes or 100 keys
in all ("Too many items requested for the BatchWriteItem call"); a key twice in one
table's list ("Provided list of item keys contains duplicates"); a write request with
neither or both of PutRequest / DeleteRequest. Everything is processed, so
``UnprocessedItems`` / ``UnprocessedKeys`` are always present and empty. Capacity is
reported per table, as a list.
"""

from __future__ import annotations

from typing import Any

from engine.attrvalue import deserialize_item, serialize_item
from engine.errors import SerializationException, ValidationException
from engine.expressions import legacy
from engine.expressions.projection import project

from .capacity import (
    capacity_mode,
    consumed,
    item_collection_metrics_mode,
    item_read_units,
    item_write_units,
)
from .common import (
    RequestExpressions,
    ServerContext,
    check_item_key,
    constraint_error,
    get,
    key_schema,
    open_table,
    parse_key,
    projection_of,
    table_name_problems,
    top_level_names,
)

__all__ = ["batch_get_item", "batch_write_item", "MAX_BATCH_WRITE_REQUESTS",
           "MAX_BATCH_GET_KEYS"]

MAX_BATCH_WRITE_REQUESTS = 25
MAX_BATCH_GET_KEYS = 100


def _request_items(request: dict) -> dict:
    request_items = get(request, "RequestItems", dict, required=True)
    if not request_items:
        raise constraint_error(
            "{}", "requestItems", "Member must have length greater than or equal to 1"
        )
    for name in request_items:
        problems = table_name_problems(name)
        if problems:
            raise ValidationException(
                "1 validation error detected: Value at 'requestItems' failed to satisfy "
                f"constraint: Map keys must satisfy constraint: [{', '.join(problems)}]"
            )
    return request_items


def batch_get_item(ctx: ServerContext, request: dict) -> dict:
    request_items = _request_items(request)
    capacity = capacity_mode(request)
    plan = []
    total = 0
    for name, spec in request_items.items():
        if not isinstance(spec, dict):
            raise SerializationException(f"RequestItems.{name} must be a KeysAndAttributes map")
        keys = spec.get("Keys")
        if not isinstance(keys, list):
            raise constraint_error(None, f"requestItems.{name}.member.keys",
                                   "Member must not be null")
        if not keys:
            raise constraint_error("[]", f"requestItems.{name}.member.keys",
                                   "Member must have length greater than or equal to 1")
        if len(keys) > MAX_BATCH_GET_KEYS:
            raise constraint_error(
                f"[{len(keys)} keys]", f"requestItems.{name}.member.keys",
                f"Member must have length less than or equal to {MAX_BATCH_GET_KEYS}")
        total += len(keys)
        if total > MAX_BATCH_GET_KEYS:
            raise ValidationException("Too many items requested for the BatchGetItem call")
        consistent = spec.get("ConsistentRead", False)
        if not isinstance(consistent, bool):
            raise SerializationException(f"RequestItems.{name}.ConsistentRead must be a boolean")
        uses_expressions = legacy.check_not_mixed(spec, "BatchGetItem")
        expressions = RequestExpressions(spec) if uses_expressions else None
        table = open_table(ctx, name)
        schema = key_schema(table)
        projection = projection_of(spec, expressions)
        if expressions is not None:
            expressions.finish()
        parsed, seen = [], set()
        for raw in keys:
            key = parse_key(schema, raw)
            identity = check_item_key(schema, key)
            if identity in seen:
                raise ValidationException("Provided list of item keys contains duplicates")
            seen.add(identity)
            parsed.append(key)
        plan.append((name, table, parsed, projection, consistent))
    responses: dict[str, list] = {}
    capacities = []
    for name, table, keys, projection, consistent in plan:
        names = top_level_names(projection) if projection is not None else None
        if capacity == "NONE" and (projection is None or names is not None):
            items = table.batch_get(keys, projection=names)
        else:
            items = table.batch_get(keys)
            # Each key is a read of its own: a missing item costs the minimum.
            units = sum(item_read_units(item, consistent) for item in items)
            units += (len(keys) - len(items)) * item_read_units(None, consistent)
            capacities.append(consumed(capacity, table.name, units, write=False))
            if projection is not None:
                items = [project(item, projection) for item in items]
        responses[name] = [serialize_item(item) for item in items]
    response: dict[str, Any] = {"Responses": responses, "UnprocessedKeys": {}}
    if capacity != "NONE":
        response["ConsumedCapacity"] = capacities
    return response


def batch_write_item(ctx: ServerContext, request: dict) -> dict:
    request_items = _request_items(request)
    capacity = capacity_mode(request)
    item_collection_metrics_mode(request)
    total = 0
    for name, requests in request_items.items():
        if not isinstance(requests, list):
            raise SerializationException(f"RequestItems.{name} must be a list of WriteRequests")
        if not 1 <= len(requests) <= MAX_BATCH_WRITE_REQUESTS:
            raise ValidationException(
                "1 validation error detected: Value at 'requestItems' failed to satisfy "
                "constraint: Map value must satisfy constraint: [Member must have length less "
                "than or equal to 25, Member must have length greater than or equal to 1]"
            )
        total += len(requests)
    if total > MAX_BATCH_WRITE_REQUESTS:
        raise ValidationException("Too many items requested for the BatchWriteItem call")
    plan = []
    for name, requests in request_items.items():
        table = open_table(ctx, name)
        schema = key_schema(table)
        puts, deletes, seen = [], [], set()
        for write in requests:
            if not isinstance(write, dict):
                raise SerializationException("Each WriteRequest must be a map")
            kinds = [kind for kind in ("PutRequest", "DeleteRequest")
                     if write.get(kind) is not None]
            if len(kinds) != 1:
                raise ValidationException(
                    "Supplied AttributeValue has more than one datatypes set, must contain "
                    "exactly one of the supported datatypes"
                    if kinds else
                    "1 validation error detected: Value null at 'requestItems."
                    f"{name}.member.1.member' failed to satisfy constraint: a WriteRequest "
                    "needs one of PutRequest or DeleteRequest"
                )
            if kinds[0] == "PutRequest":
                body = write["PutRequest"]
                if not isinstance(body, dict):
                    raise SerializationException("PutRequest must be a map")
                raw = body.get("Item")
                if raw is None:
                    raise constraint_error(None, f"requestItems.{name}.member.putRequest.item",
                                           "Member must not be null")
                item = deserialize_item(raw, "Item")
                identity = check_item_key(schema, item)
                puts.append(item)
            else:
                body = write["DeleteRequest"]
                if not isinstance(body, dict):
                    raise SerializationException("DeleteRequest must be a map")
                key = parse_key(schema, body.get("Key"))
                identity = check_item_key(schema, key)
                deletes.append(key)
            if identity in seen:
                raise ValidationException("Provided list of item keys contains duplicates")
            seen.add(identity)
        plan.append((table, puts, deletes))
    capacities = []
    for table, puts, deletes in plan:
        table.batch_write(puts=puts, deletes=deletes)
        if capacity != "NONE":
            units = sum(item_write_units(item) for item in puts) + float(len(deletes))
            capacities.append(consumed(capacity, table.name, units, write=True))
    response: dict[str, Any] = {"UnprocessedItems": {}}
    if capacity != "NONE":
        response["ConsumedCapacity"] = capacities
    return response
