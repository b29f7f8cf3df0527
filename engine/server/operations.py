"""One function per DynamoDB operation: request JSON -> engine call -> response JSON.

Every function takes the :class:`ServerContext` and the decoded request body (a dict) and
returns the response body (a dict). They block (the engine is synchronous); the app runs
them on a worker thread. Errors are raised as ``engine.errors`` exceptions; the app turns
them into DynamoDB's error body, translating each to a code the operation can return
(:func:`error_code`) — e.g. a missing table is ``ResourceNotFoundException`` for GetItem
but ``TableNotFoundException`` for CreateBackup, as in DynamoDB.

Tessera extensions, invisible to clients that do not use them: CreateTable reads the
partition count and scheme from the tags ``tessera:partitions`` and
``tessera:partitioning`` (``hash`` or ``range``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import (
    ConditionalCheckFailedException,
    ResourceInUseException,
    ResourceNotFoundException,
    TableAlreadyExistsException,
    ValidationException,
)
from engine.attrvalue import deserialize_item, serialize_item, value_type
from engine.server.expressions import (
    ExpressionContext,
    evaluate_condition,
    parse_condition,
    parse_key_condition,
    parse_projection,
    parse_update,
)

__all__ = ["ServerContext", "OPERATIONS", "error_code"]

MAX_BATCH_WRITE_REQUESTS = 25
MAX_BATCH_GET_KEYS = 100
MAX_LIST_TABLES_LIMIT = 100
MAX_LIST_BACKUPS_LIMIT = 100
MAX_SCAN_SEGMENTS = 1_000_000


@dataclass
class ServerContext:
    engine: Any
    region: str = "us-east-1"
    account_id: str = "000000000000"
    default_partitions: int = 4


# --- request helpers --------------------------------------------------------------------


def _get(
    request: dict, field: str, kind: type | tuple[type, ...], *, required: bool = False
) -> Any:
    value = request.get(field)
    if value is None:
        if required:
            raise ValidationException(
                f"1 validation error detected: Value null at '{field[0].lower() + field[1:]}' "
                "failed to satisfy constraint: Member must not be null"
            )
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValidationException(f"{field} has the wrong type: {type(value).__name__}")
    return value


def _limit(request: dict, field: str = "Limit", maximum: int | None = None) -> int | None:
    limit = _get(request, field, int)
    if limit is None:
        return None
    if limit < 1:
        raise ValidationException(
            f"1 validation error detected: Value '{limit}' at '{field[0].lower() + field[1:]}' "
            "failed to satisfy constraint: Member must have value greater than or equal to 1"
        )
    if maximum is not None and limit > maximum:
        raise ValidationException(
            f"1 validation error detected: Value '{limit}' at '{field[0].lower() + field[1:]}' "
            f"failed to satisfy constraint: Member must have value less than or equal to {maximum}"
        )
    return limit


def _refuse(request: dict, *fields: str) -> None:
    """Legacy or unsupported parameters: say so rather than silently ignore them."""
    for field in fields:
        if request.get(field) is not None:
            raise ValidationException(f"The parameter {field} is not supported by this server")


def _return_values(request: dict, allowed: tuple[str, ...]) -> str:
    value = _get(request, "ReturnValues", str) or "NONE"
    if value not in allowed:
        raise ValidationException(
            f"Return values set to invalid value: {value} (allowed: {', '.join(allowed)})"
        )
    return value


def _expression_context(request: dict) -> ExpressionContext:
    return ExpressionContext(
        request.get("ExpressionAttributeNames"), request.get("ExpressionAttributeValues")
    )


def _projection(request: dict, context: ExpressionContext) -> list[str] | None:
    expression = request.get("ProjectionExpression")
    attributes = request.get("AttributesToGet")
    if expression is not None and attributes is not None:
        raise ValidationException(
            "Can not use both expression and non-expression parameters in the same request: "
            "Non-expression parameters: {AttributesToGet} Expression parameters: {ProjectionExpression}"
        )
    if expression is not None:
        return parse_projection(expression, context)
    if attributes is not None:
        if (
            not isinstance(attributes, list)
            or not attributes
            or not all(isinstance(a, str) for a in attributes)
        ):
            raise ValidationException("AttributesToGet must be a non-empty list of attribute names")
        if len(set(attributes)) != len(attributes):
            raise ValidationException(
                "One or more parameter values were invalid: Duplicate value in attribute name"
            )
        return list(attributes)
    return None


@contextlib.contextmanager
def _table_must_exist(name: str) -> Iterator[None]:
    """DynamoDB's answer for a missing table in table and item operations."""
    try:
        yield
    except ResourceNotFoundException as err:
        raise ResourceNotFoundException(
            f"Requested resource not found: Table: {name} not found"
        ) from err


def _table(ctx: ServerContext, request: dict) -> Any:
    name = _get(request, "TableName", str, required=True)
    with _table_must_exist(name):
        return ctx.engine.table(name)


def _key_schema(table: Any) -> list[tuple[str, str]]:
    return [(name, kind) for name, kind in table.key_schema]


def _parse_key(key_schema: list[tuple[str, str]], raw: Any, where: str = "Key") -> dict[str, Any]:
    if raw is None:
        raise ValidationException(
            f"1 validation error detected: Value null at '{where[0].lower() + where[1:]}' failed to satisfy constraint: Member must not be null"
        )
    key = deserialize_item(raw, where)
    expected = {name: kind for name, kind in key_schema}
    if set(key) != set(expected):
        raise ValidationException(
            f"The provided key element does not match the schema ({where} has "
            f"{sorted(key)}, the key schema is {[name for name, _ in key_schema]})"
        )
    for name, kind in key_schema:
        if value_type(key[name]) != kind:
            raise ValidationException(
                f"The provided key element does not match the schema ({where} attribute {name} "
                f"is {value_type(key[name])}, the key schema says {kind})"
            )
    return key


def _item_key(key_schema: list[tuple[str, str]], item: dict[str, Any]) -> tuple:
    """The key of a put item, for duplicate detection; the engine validates types itself."""
    key = []
    for name, _kind in key_schema:
        if name not in item:
            raise ValidationException(
                f"One or more parameter values were invalid: Missing the key {name} in the item"
            )
        value = item[name]
        key.append((value_type(value), value))
    return tuple(key)


def _project(item: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {name: item[name] for name in names if name in item}


def _consumed(request: dict, table_name: str, units: float) -> dict:
    mode = request.get("ReturnConsumedCapacity")
    if mode in ("TOTAL", "INDEXES"):
        return {"ConsumedCapacity": {"TableName": table_name, "CapacityUnits": units}}
    return {}


# --- response shapes --------------------------------------------------------------------


def _table_arn(ctx: ServerContext, name: str, region: str | None = None) -> str:
    return f"arn:aws:dynamodb:{region or ctx.region}:{ctx.account_id}:table/{name}"


def _backup_arn(
    ctx: ServerContext, table_name: str, backup_id: str, region: str | None = None
) -> str:
    return f"{_table_arn(ctx, table_name, region)}/backup/{backup_id}"


def _backup_id(request: dict) -> str:
    arn = _get(request, "BackupArn", str, required=True)
    if "/backup/" in arn:
        return arn.rsplit("/backup/", 1)[1]
    if arn.startswith("arn:") or not arn:
        raise ValidationException(f"Invalid BackupArn: {arn!r}")
    return arn  # a bare backup id, accepted for convenience


def _key_schema_json(key_schema: Any) -> list[dict]:
    return [
        {"AttributeName": name, "KeyType": "HASH" if position == 0 else "RANGE"}
        for position, (name, _kind) in enumerate(key_schema)
    ]


def table_description(ctx: ServerContext, description: dict) -> dict:
    name = description["name"]
    created_at = description.get("created_at") or 0
    return {
        "TableName": name,
        "TableStatus": description["status"],
        "KeySchema": _key_schema_json(description["key_schema"]),
        "AttributeDefinitions": [
            {"AttributeName": attribute, "AttributeType": kind}
            for attribute, kind in description["key_schema"]
        ],
        "CreationDateTime": created_at,
        "ItemCount": description.get("item_count") or 0,
        "TableSizeBytes": description.get("size_bytes") or 0,
        "TableArn": _table_arn(ctx, name),
        "TableId": description.get("table_id"),
        "ProvisionedThroughput": {
            "NumberOfDecreasesToday": 0,
            "ReadCapacityUnits": 0,
            "WriteCapacityUnits": 0,
        },
        "BillingModeSummary": {
            "BillingMode": "PAY_PER_REQUEST",
            "LastUpdateToPayPerRequestDateTime": created_at,
        },
        "DeletionProtectionEnabled": False,
    }


def backup_details(ctx: ServerContext, backup: dict) -> dict:
    details = {
        "BackupArn": _backup_arn(
            ctx, backup["table_name"], backup["backup_id"], backup.get("region")
        ),
        "BackupName": backup["backup_name"],
        "BackupSizeBytes": backup.get("size_bytes") or 0,
        "BackupStatus": backup["status"],
        "BackupType": "USER",
        "BackupCreationDateTime": backup["created_at"],
    }
    if backup.get("failure_reason"):
        # Not a DynamoDB field (clients ignore it); says why a FAILED backup failed.
        details["TesseraFailureReason"] = backup["failure_reason"]
    return details


def backup_description(ctx: ServerContext, backup: dict) -> dict:
    source = {
        "TableName": backup["table_name"],
        "TableId": backup.get("table_id"),
        "TableArn": _table_arn(ctx, backup["table_name"], backup.get("region")),
        "TableSizeBytes": backup.get("size_bytes") or 0,
        "KeySchema": _key_schema_json(backup.get("key_schema") or []),
        "TableCreationDateTime": backup.get("table_created_at") or backup["created_at"],
        "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0},
        "ItemCount": backup.get("item_count") or 0,
        "BillingMode": "PAY_PER_REQUEST",
    }
    return {
        "BackupDetails": backup_details(ctx, backup),
        "SourceTableDetails": source,
        "SourceTableFeatureDetails": {},
    }


def backup_summary(ctx: ServerContext, backup: dict) -> dict:
    return {
        "TableName": backup["table_name"],
        "TableId": backup.get("table_id"),
        "TableArn": _table_arn(ctx, backup["table_name"], backup.get("region")),
        "BackupArn": _backup_arn(
            ctx, backup["table_name"], backup["backup_id"], backup.get("region")
        ),
        "BackupName": backup["backup_name"],
        "BackupCreationDateTime": backup["created_at"],
        "BackupStatus": backup["status"],
        "BackupType": "USER",
        "BackupSizeBytes": backup.get("size_bytes") or 0,
    }


# --- tables -----------------------------------------------------------------------------


def create_table(ctx: ServerContext, request: dict) -> dict:
    name = _get(request, "TableName", str, required=True)
    _refuse(request, "GlobalSecondaryIndexes", "LocalSecondaryIndexes")
    stream = request.get("StreamSpecification")
    if isinstance(stream, dict) and stream.get("StreamEnabled"):
        raise ValidationException("Streams (StreamSpecification) are not supported by this server")
    billing_mode = request.get("BillingMode")
    if billing_mode not in (None, "PROVISIONED", "PAY_PER_REQUEST"):
        raise ValidationException(f"Invalid BillingMode: {billing_mode}")
    key_schema = _get(request, "KeySchema", list, required=True)
    definitions = _get(request, "AttributeDefinitions", list, required=True)
    types = {}
    for definition in definitions:
        if not isinstance(definition, dict) or not isinstance(definition.get("AttributeName"), str):
            raise ValidationException(
                "Each AttributeDefinition needs an AttributeName and an AttributeType"
            )
        kind = definition.get("AttributeType")
        if kind not in ("S", "N", "B"):
            raise ValidationException(
                f"1 validation error detected: Value '{kind}' at 'attributeDefinitions.member.attributeType' "
                "failed to satisfy constraint: Member must satisfy enum value set: [B, N, S]"
            )
        types[definition["AttributeName"]] = kind
    if not 1 <= len(key_schema) <= 2:
        raise ValidationException("KeySchema must have one (HASH) or two (HASH, RANGE) elements")
    expected_roles = ["HASH", "RANGE"][: len(key_schema)]
    schema = []
    for element, role in zip(key_schema, expected_roles, strict=True):
        if not isinstance(element, dict) or element.get("KeyType") != role:
            raise ValidationException(
                "Invalid KeySchema: The first KeySchemaElement is not a HASH key type"
                if role == "HASH"
                else "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type"
            )
        attribute = element.get("AttributeName")
        if attribute not in types:
            raise ValidationException(
                "One or more parameter values were invalid: Some index key attributes are not defined in "
                f"AttributeDefinitions. Keys: [{attribute}], AttributeDefinitions: [{', '.join(types)}]"
            )
        schema.append((attribute, types[attribute]))
    if len(schema) == 2 and schema[0][0] == schema[1][0]:
        raise ValidationException(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name"
        )
    if len(types) != len(schema):
        raise ValidationException(
            "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly "
            "match number of attributes defined in AttributeDefinitions"
        )

    partitions = ctx.default_partitions
    partitioning = "hash"
    for tag in request.get("Tags") or []:
        if not isinstance(tag, dict):
            continue
        if tag.get("Key") == "tessera:partitions":
            try:
                partitions = int(tag.get("Value"))
            except (TypeError, ValueError):
                raise ValidationException(
                    f"Tag tessera:partitions must be an integer, got {tag.get('Value')!r}"
                ) from None
        elif tag.get("Key") == "tessera:partitioning":
            partitioning = tag.get("Value")
            if partitioning not in ("hash", "range"):
                raise ValidationException(
                    f"Tag tessera:partitioning must be 'hash' or 'range', got {partitioning!r}"
                )
    try:
        description = ctx.engine.create_table(
            name,
            partition_key=schema[0],
            sort_key=schema[1] if len(schema) == 2 else None,
            partitions=partitions,
            partitioning=partitioning,
        )
    except TableAlreadyExistsException as err:
        raise ResourceInUseException(f"Table already exists: {name}") from err
    return {"TableDescription": table_description(ctx, description)}


def describe_table(ctx: ServerContext, request: dict) -> dict:
    name = _get(request, "TableName", str, required=True)
    with _table_must_exist(name):
        description = ctx.engine.describe_table(name)
    return {"Table": table_description(ctx, description)}


def list_tables(ctx: ServerContext, request: dict) -> dict:
    start = _get(request, "ExclusiveStartTableName", str)
    limit = _limit(request, maximum=MAX_LIST_TABLES_LIMIT) or MAX_LIST_TABLES_LIMIT
    names = sorted(ctx.engine.list_tables())
    if start is not None:
        names = [name for name in names if name > start]
    response: dict[str, Any] = {"TableNames": names[:limit]}
    if len(names) > limit:
        response["LastEvaluatedTableName"] = names[limit - 1]
    return response


def delete_table(ctx: ServerContext, request: dict) -> dict:
    name = _get(request, "TableName", str, required=True)
    with _table_must_exist(name):
        description = ctx.engine.delete_table(name)
    description = dict(description)
    description["status"] = "DELETING"
    return {"TableDescription": table_description(ctx, description)}


# --- items ------------------------------------------------------------------------------


def put_item(ctx: ServerContext, request: dict) -> dict:
    _refuse(request, "Expected", "ConditionalOperator")
    table = _table(ctx, request)
    item = deserialize_item(_get(request, "Item", dict, required=True))
    return_values = _return_values(request, ("NONE", "ALL_OLD"))
    expressions = _expression_context(request)
    condition = _condition(request, expressions)
    expressions.check_all_used()
    old = table.put_item(item, condition=condition, return_values=return_values)
    response = {"Attributes": serialize_item(old)} if return_values == "ALL_OLD" and old else {}
    response.update(_consumed(request, table.name, 1.0))
    return response


def _condition(request: dict, expressions: ExpressionContext) -> list[tuple] | None:
    expression = request.get("ConditionExpression")
    if expression is None:
        return None
    return parse_condition(expression, expressions)


def get_item(ctx: ServerContext, request: dict) -> dict:
    table = _table(ctx, request)
    key = _parse_key(_key_schema(table), request.get("Key"))
    expressions = _expression_context(request)
    projection = _projection(request, expressions)
    expressions.check_all_used()
    item = table.get_item(key, projection=projection)
    response = {"Item": serialize_item(item)} if item is not None else {}
    response.update(_consumed(request, table.name, 0.5))
    return response


def delete_item(ctx: ServerContext, request: dict) -> dict:
    _refuse(request, "Expected", "ConditionalOperator")
    table = _table(ctx, request)
    key = _parse_key(_key_schema(table), request.get("Key"))
    return_values = _return_values(request, ("NONE", "ALL_OLD"))
    expressions = _expression_context(request)
    condition = _condition(request, expressions)
    expressions.check_all_used()
    old = table.delete_item(key, condition=condition, return_values=return_values)
    response = {"Attributes": serialize_item(old)} if return_values == "ALL_OLD" and old else {}
    response.update(_consumed(request, table.name, 1.0))
    return response


def update_item(ctx: ServerContext, request: dict) -> dict:
    _refuse(request, "AttributeUpdates", "Expected", "ConditionalOperator")
    table = _table(ctx, request)
    key_schema = _key_schema(table)
    key = _parse_key(key_schema, request.get("Key"))
    return_values = _return_values(
        request, ("NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW")
    )
    expressions = _expression_context(request)
    update = request.get("UpdateExpression")
    actions = parse_update(update, expressions) if update is not None else []
    condition = _condition(request, expressions)
    expressions.check_all_used()
    key_names = {name for name, _ in key_schema}
    for action in actions:
        if action[1] in key_names:
            raise ValidationException(
                f"One or more parameter values were invalid: Cannot update attribute {action[1]}. "
                "This attribute is part of the key"
            )
    if actions:
        result = table.update_item(key, actions, condition=condition, return_values=return_values)
    else:
        result = _touch_item(table, key, condition, return_values)
    response = {"Attributes": serialize_item(result)} if return_values != "NONE" and result else {}
    response.update(_consumed(request, table.name, 1.0))
    return response


def _touch_item(table: Any, key: dict, condition: list | None, return_values: str) -> dict | None:
    """UpdateItem without an UpdateExpression: DynamoDB creates the key-only item if missing.

    The engine's update_item needs at least one action, so: read, check the condition,
    and create the item with a put that only succeeds if it is still missing.
    """
    old = table.get_item(key)
    if condition and not evaluate_condition(condition, old or {}):
        raise ConditionalCheckFailedException("The conditional request failed")
    if old is None:
        partition_key_name = _key_schema(table)[0][0]
        try:
            table.put_item(dict(key), condition=[("attribute_not_exists", partition_key_name)])
        except ConditionalCheckFailedException:
            pass  # created meanwhile by another writer: nothing left to do
    if return_values == "ALL_OLD":
        return old
    if return_values == "ALL_NEW":
        return old if old is not None else dict(key)
    return None


# --- query and scan ---------------------------------------------------------------------


def _read_many(
    request: dict,
    table: Any,
    expressions: ExpressionContext,
    run: Callable[[list[str] | None, dict | None], tuple[list[dict], dict | None]],
) -> dict:
    """What Query and Scan share: Select, projection, FilterExpression, paging, counts."""
    key_schema = _key_schema(table)
    projection = _projection(request, expressions)
    filter_expression = request.get("FilterExpression")
    clauses = (
        parse_condition(filter_expression, expressions, "FilterExpression")
        if filter_expression is not None
        else None
    )
    expressions.check_all_used()
    select = _get(request, "Select", str) or (
        "SPECIFIC_ATTRIBUTES" if projection else "ALL_ATTRIBUTES"
    )
    if select == "ALL_PROJECTED_ATTRIBUTES":
        raise ValidationException(
            "ALL_PROJECTED_ATTRIBUTES can be used only when querying an index"
        )
    if select not in ("ALL_ATTRIBUTES", "COUNT", "SPECIFIC_ATTRIBUTES"):
        raise ValidationException(f"Invalid Select value: {select}")
    if select == "SPECIFIC_ATTRIBUTES" and projection is None:
        raise ValidationException(
            "Select SPECIFIC_ATTRIBUTES needs a ProjectionExpression or AttributesToGet"
        )
    if (
        select in ("ALL_ATTRIBUTES", "COUNT")
        and projection is not None
        and request.get("Select") is not None
    ):
        raise ValidationException(
            f"Cannot specify the Select value {select} together with a ProjectionExpression or AttributesToGet"
        )
    start = request.get("ExclusiveStartKey")
    start_key = _parse_key(key_schema, start, "ExclusiveStartKey") if start is not None else None

    if clauses is not None:
        engine_projection = None  # the filter may read attributes the projection drops
    elif select == "COUNT":
        engine_projection = [name for name, _ in key_schema]
    else:
        engine_projection = projection
    items, last_key = run(engine_projection, start_key)
    scanned = len(items)
    if clauses is not None:
        items = [item for item in items if evaluate_condition(clauses, item)]
        if projection is not None:
            items = [_project(item, projection) for item in items]
    response: dict[str, Any] = {"Count": len(items), "ScannedCount": scanned}
    if select != "COUNT":
        response["Items"] = [serialize_item(item) for item in items]
    if last_key:
        response["LastEvaluatedKey"] = serialize_item(last_key)
    response.update(_consumed(request, table.name, max(0.5, scanned * 0.5)))
    return response


def query(ctx: ServerContext, request: dict) -> dict:
    _refuse(request, "KeyConditions", "QueryFilter", "ConditionalOperator")
    table = _table(ctx, request)
    if request.get("IndexName") is not None:
        raise ValidationException(
            f"The table does not have the specified index: {request['IndexName']}"
        )
    expressions = _expression_context(request)
    partition_value, sort_condition = parse_key_condition(
        _get(request, "KeyConditionExpression", str, required=True), expressions, _key_schema(table)
    )
    forward = request.get("ScanIndexForward", True)
    if not isinstance(forward, bool):
        raise ValidationException("ScanIndexForward must be a boolean")
    limit = _limit(request)

    def run(projection: list[str] | None, start_key: dict | None) -> tuple[list[dict], dict | None]:
        return table.query(
            partition_value,
            sort_condition=sort_condition,
            forward=forward,
            limit=limit,
            exclusive_start_key=start_key,
            projection=projection,
        )

    return _read_many(request, table, expressions, run)


def scan(ctx: ServerContext, request: dict) -> dict:
    _refuse(request, "ScanFilter", "ConditionalOperator")
    table = _table(ctx, request)
    if request.get("IndexName") is not None:
        raise ValidationException(
            f"The table does not have the specified index: {request['IndexName']}"
        )
    segment = _get(request, "Segment", int)
    total_segments = _get(request, "TotalSegments", int)
    if (segment is None) != (total_segments is None):
        raise ValidationException(
            "The TotalSegments parameter is required but was not present in the request when Segment parameter is present"
            if total_segments is None
            else "The Segment parameter is required but was not present in the request when parameter TotalSegments is present"
        )
    if total_segments is not None:
        if not 1 <= total_segments <= MAX_SCAN_SEGMENTS:
            raise ValidationException(
                f"1 validation error detected: Value '{total_segments}' at 'totalSegments' failed to satisfy "
                f"constraint: Member must have value between 1 and {MAX_SCAN_SEGMENTS}"
            )
        if not 0 <= segment < total_segments:
            raise ValidationException(
                f"The Segment parameter is zero-based and must be less than parameter TotalSegments: "
                f"Segment: {segment} is not less than TotalSegments: {total_segments}"
            )
    limit = _limit(request)
    expressions = _expression_context(request)

    def run(projection: list[str] | None, start_key: dict | None) -> tuple[list[dict], dict | None]:
        return table.scan(
            limit=limit,
            exclusive_start_key=start_key,
            segment=segment,
            total_segments=total_segments,
            projection=projection,
        )

    return _read_many(request, table, expressions, run)


# --- batches ----------------------------------------------------------------------------


def _request_items(request: dict) -> dict:
    request_items = _get(request, "RequestItems", dict, required=True)
    if not request_items:
        raise ValidationException(
            "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1"
        )
    return request_items


def batch_write_item(ctx: ServerContext, request: dict) -> dict:
    request_items = _request_items(request)
    total = sum(
        len(requests) if isinstance(requests, list) else 0 for requests in request_items.values()
    )
    if total > MAX_BATCH_WRITE_REQUESTS:
        raise ValidationException(
            "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: "
            "Map value must satisfy constraint: [Member must have length less than or equal to 25, "
            "Member must have length greater than or equal to 1]"
        )
    # Validate everything before writing anything.
    plan = []
    for table_name, requests in request_items.items():
        if not isinstance(requests, list) or not requests:
            raise ValidationException(
                f"RequestItems[{table_name}] must be a non-empty list of write requests"
            )
        with _table_must_exist(table_name):
            table = ctx.engine.table(table_name)
        key_schema = _key_schema(table)
        puts, deletes, seen = [], [], set()
        for write in requests:
            if (
                not isinstance(write, dict)
                or len(write) != 1
                or not ({"PutRequest", "DeleteRequest"} >= write.keys())
            ):
                raise ValidationException(
                    "Supplied AttributeValue has more than one datatypes set: each write request needs exactly "
                    "one of PutRequest or DeleteRequest"
                )
            if "PutRequest" in write:
                item = deserialize_item((write["PutRequest"] or {}).get("Item"), "Item")
                key = _item_key(key_schema, item)
                puts.append(item)
            else:
                key_dict = _parse_key(key_schema, (write["DeleteRequest"] or {}).get("Key"))
                key = _item_key(key_schema, key_dict)
                deletes.append(key_dict)
            if key in seen:
                raise ValidationException("Provided list of item keys contains duplicates")
            seen.add(key)
        plan.append((table, puts, deletes))
    for table, puts, deletes in plan:
        table.batch_write(puts=puts, deletes=deletes)
    return {"UnprocessedItems": {}}


def batch_get_item(ctx: ServerContext, request: dict) -> dict:
    request_items = _request_items(request)
    plan = []
    total = 0
    for table_name, spec in request_items.items():
        if not isinstance(spec, dict):
            raise ValidationException(f"RequestItems[{table_name}] must be a map with Keys")
        keys = spec.get("Keys")
        if not isinstance(keys, list) or not keys:
            raise ValidationException(f"RequestItems[{table_name}].Keys must be a non-empty list")
        total += len(keys)
        if total > MAX_BATCH_GET_KEYS:
            raise ValidationException(
                "Too many items requested for the BatchGetItem call (at most 100 keys in all)"
            )
        with _table_must_exist(table_name):
            table = ctx.engine.table(table_name)
        key_schema = _key_schema(table)
        expressions = _expression_context(spec)
        projection = _projection(spec, expressions)
        expressions.check_all_used()
        parsed, seen = [], set()
        for raw in keys:
            key = _parse_key(key_schema, raw)
            identity = _item_key(key_schema, key)
            if identity in seen:
                raise ValidationException("Provided list of item keys contains duplicates")
            seen.add(identity)
            parsed.append(key)
        plan.append((table_name, table, parsed, projection))
    responses = {}
    for table_name, table, keys, projection in plan:
        items = table.batch_get(keys, projection=projection)
        responses[table_name] = [serialize_item(item) for item in items]
    return {"Responses": responses, "UnprocessedKeys": {}}


# --- backups ----------------------------------------------------------------------------


def create_backup(ctx: ServerContext, request: dict) -> dict:
    table_name = _get(request, "TableName", str, required=True)
    backup_name = _get(request, "BackupName", str, required=True)
    backup = ctx.engine.create_backup(table_name, backup_name)
    return {"BackupDetails": backup_details(ctx, backup)}


def describe_backup(ctx: ServerContext, request: dict) -> dict:
    backup = ctx.engine.describe_backup(_backup_id(request))
    return {"BackupDescription": backup_description(ctx, backup)}


def list_backups(ctx: ServerContext, request: dict) -> dict:
    table_name = _get(request, "TableName", str)
    limit = _limit(request, maximum=MAX_LIST_BACKUPS_LIMIT)
    lower = _get(request, "TimeRangeLowerBound", (int, float))
    upper = _get(request, "TimeRangeUpperBound", (int, float))
    backup_type = _get(request, "BackupType", str) or "USER"
    if backup_type not in ("USER", "SYSTEM", "AWS_BACKUP", "ALL"):
        raise ValidationException(f"Invalid BackupType: {backup_type}")
    if backup_type in ("SYSTEM", "AWS_BACKUP"):
        return {"BackupSummaries": []}
    start_arn = _get(request, "ExclusiveStartBackupArn", str)
    start_id = _backup_id({"BackupArn": start_arn}) if start_arn is not None else None
    backups, last_id = ctx.engine.list_backups(
        table=table_name, start=lower, end=upper, limit=limit, exclusive_start=start_id
    )
    response: dict[str, Any] = {
        "BackupSummaries": [backup_summary(ctx, backup) for backup in backups]
    }
    if last_id is not None:
        last = next((b for b in backups if b["backup_id"] == last_id), None)
        if last is None:
            last = ctx.engine.describe_backup(last_id)
        response["LastEvaluatedBackupArn"] = _backup_arn(
            ctx, last["table_name"], last_id, last.get("region")
        )
    return response


def delete_backup(ctx: ServerContext, request: dict) -> dict:
    backup = ctx.engine.delete_backup(_backup_id(request))
    return {"BackupDescription": backup_description(ctx, backup)}


def restore_table_from_backup(ctx: ServerContext, request: dict) -> dict:
    target = _get(request, "TargetTableName", str, required=True)
    _refuse(request, "GlobalSecondaryIndexOverride", "LocalSecondaryIndexOverride")
    backup_id = _backup_id(request)
    backup = ctx.engine.describe_backup(backup_id)
    description = ctx.engine.restore_table(backup_id, target)
    table = table_description(ctx, description)
    table["RestoreSummary"] = {
        "SourceBackupArn": _backup_arn(ctx, backup["table_name"], backup_id, backup.get("region")),
        "SourceTableArn": _table_arn(ctx, backup["table_name"], backup.get("region")),
        "RestoreDateTime": time.time(),
        "RestoreInProgress": description.get("status") != "ACTIVE",
    }
    return {"TableDescription": table}


# --- dispatch ---------------------------------------------------------------------------

_COMMON = frozenset({"ValidationException", "InternalServerError", "LimitExceededException"})
_TABLE_CODES = _COMMON | {"ResourceNotFoundException", "ResourceInUseException"}
_ITEM_CODES = _COMMON | {"ResourceNotFoundException", "ConditionalCheckFailedException"}
_BACKUP_CODES = _COMMON | {
    "TableNotFoundException",
    "TableInUseException",
    "TableAlreadyExistsException",
    "BackupNotFoundException",
    "BackupInUseException",
    "ResourceNotFoundException",
    "ResourceInUseException",
}

#: operation name -> (function, the error codes DynamoDB documents for it)
OPERATIONS: dict[str, tuple[Callable[[ServerContext, dict], dict], frozenset[str]]] = {
    "CreateTable": (create_table, _TABLE_CODES),
    "DescribeTable": (describe_table, _TABLE_CODES),
    "ListTables": (list_tables, _TABLE_CODES),
    "DeleteTable": (delete_table, _TABLE_CODES),
    "PutItem": (put_item, _ITEM_CODES),
    "GetItem": (get_item, _ITEM_CODES),
    "DeleteItem": (delete_item, _ITEM_CODES),
    "UpdateItem": (update_item, _ITEM_CODES),
    "Query": (query, _ITEM_CODES),
    "Scan": (scan, _ITEM_CODES),
    "BatchWriteItem": (batch_write_item, _ITEM_CODES),
    "BatchGetItem": (batch_get_item, _ITEM_CODES),
    "CreateBackup": (create_backup, _BACKUP_CODES),
    "DescribeBackup": (describe_backup, _BACKUP_CODES),
    "ListBackups": (list_backups, _BACKUP_CODES),
    "DeleteBackup": (delete_backup, _BACKUP_CODES),
    "RestoreTableFromBackup": (restore_table_from_backup, _BACKUP_CODES),
}


def error_code(exc: Exception, allowed: frozenset[str]) -> str:
    """The most specific code of ``exc``'s class hierarchy that the operation can return.

    Engine errors are finer than some operations' documented errors: TableNotFoundException
    becomes ResourceNotFoundException for item operations, TableAlreadyExistsException
    becomes ResourceInUseException for CreateTable.
    """
    own = getattr(exc, "code", "InternalServerError")
    if own in allowed:
        return own
    for cls in type(exc).__mro__:
        code = cls.__dict__.get("code")
        if code in allowed:
            return code
    return own
