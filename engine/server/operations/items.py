"""PutItem, GetItem, UpdateItem, DeleteItem.

Each validates the whole request before touching data (API Reference, per operation):
members and enums, the key against the schema, expressions (or their legacy
counterparts, never both), placeholders all used. Conditions and updates run inside the
engine's write (one evaluator for expressions and legacy parameters alike), so a
condition is checked against the item the write replaces.

Capacity (see :mod:`.capacity`): a write counts the larger of the old and new item, so
when ReturnConsumedCapacity is asked for, the old item is fetched with the write even if
the client did not ask for it back.
"""

from __future__ import annotations

from typing import Any

from engine.attrvalue import deserialize_item, serialize_item
from engine.errors import ConditionalCheckFailedException, ValidationException
from engine.expressions import legacy
from engine.expressions.ast import Update
from engine.expressions.projection import project

from .capacity import (
    add_consumed,
    capacity_mode,
    index_write_units,
    item_collection_metrics,
    item_collection_metrics_mode,
    item_read_units,
    item_write_units,
)
from .common import (
    RETURN_VALUES,
    RETURN_VALUES_ON_CONDITION_CHECK_FAILURE,
    RequestExpressions,
    ServerContext,
    boolean,
    check_item_key,
    enum,
    get,
    key_schema,
    open_table,
    parse_key,
    projection_of,
    table_name,
    top_level_names,
)

__all__ = ["put_item", "get_item", "update_item", "delete_item"]


def _return_values(request: dict, allowed: tuple[str, ...]) -> str:
    value = enum(request, "ReturnValues", RETURN_VALUES, "NONE")
    if value not in allowed:
        raise ValidationException(f"ReturnValues can only be {' or '.join(allowed[::-1])}")
    return value


def _condition(request: dict, expressions: RequestExpressions | None) -> Any:
    """ConditionExpression, or the legacy Expected (+ ConditionalOperator), or None."""
    if request.get("ConditionExpression") is not None:
        assert expressions is not None
        return expressions.condition(request["ConditionExpression"], "ConditionExpression")
    return legacy.expected_condition(request.get("Expected"), request.get("ConditionalOperator"))


def _expressions(request: dict, operation: str) -> RequestExpressions | None:
    uses_expressions = legacy.check_not_mixed(request, operation)
    return RequestExpressions(request) if uses_expressions else None


def _finish(expressions: RequestExpressions | None) -> None:
    if expressions is not None:
        expressions.finish()


def _on_failure(request: dict) -> str:
    return enum(
        request, "ReturnValuesOnConditionCheckFailure",
        RETURN_VALUES_ON_CONDITION_CHECK_FAILURE, "NONE",
    )


def _failed(
    err: ConditionalCheckFailedException, on_failure: str
) -> ConditionalCheckFailedException:
    """The error DynamoDB sends: with ``Item`` (the item as it was) when the request asked
    for ReturnValuesOnConditionCheckFailure ALL_OLD and an item existed. The app puts
    ``response_fields`` into the error body next to ``message``."""
    item = getattr(err, "item", None)
    if on_failure == "ALL_OLD" and item is not None:
        err.response_fields = {"Item": serialize_item(item)}  # type: ignore[attr-defined]
    return err


def _written(response: dict, table: Any, capacity: str, old: dict | None, new: dict | None,
             metrics_mode: str, key: dict) -> dict:
    """A write's response: ConsumedCapacity (the table's and its indexes' units) and, on
    a table with LSIs under ReturnItemCollectionMetrics SIZE, ItemCollectionMetrics."""
    if capacity != "NONE":
        add_consumed(response, capacity, table.name, item_write_units(old, new), write=True,
                     indexes=index_write_units(table, old, new))
    metrics = item_collection_metrics(table, metrics_mode, key)
    if metrics is not None:
        response["ItemCollectionMetrics"] = metrics
    return response


def put_item(ctx: ServerContext, request: dict) -> dict:
    name = table_name(request)
    expressions = _expressions(request, "PutItem")
    item = deserialize_item(get(request, "Item", dict, required=True), "Item")
    return_values = _return_values(request, ("NONE", "ALL_OLD"))
    capacity = capacity_mode(request)
    metrics_mode = item_collection_metrics_mode(request)
    on_failure = _on_failure(request)
    table = open_table(ctx, name)
    check_item_key(key_schema(table), item)
    condition = _condition(request, expressions)
    _finish(expressions)
    need_old = return_values == "ALL_OLD" or capacity != "NONE"
    try:
        old = table.put_item(
            item, condition=condition, return_values="ALL_OLD" if need_old else "NONE",
            return_values_on_condition_check_failure=on_failure,
        )
    except ConditionalCheckFailedException as err:
        raise _failed(err, on_failure) from None
    response: dict[str, Any] = {}
    if return_values == "ALL_OLD" and old:
        response["Attributes"] = serialize_item(old)
    return _written(response, table, capacity, old, item, metrics_mode, item)


def get_item(ctx: ServerContext, request: dict) -> dict:
    name = table_name(request)
    expressions = _expressions(request, "GetItem")
    consistent = boolean(request, "ConsistentRead")
    capacity = capacity_mode(request)
    table = open_table(ctx, name)
    key = parse_key(key_schema(table), request.get("Key"))
    projection = projection_of(request, expressions)
    _finish(expressions)
    names = top_level_names(projection) if projection is not None else None
    if capacity == "NONE" and (projection is None or names is not None):
        # The fast path: the engine projects top-level names while decoding.
        item = table.get_item(key, projection=names) if names else table.get_item(key)
    else:
        # Capacity counts the whole item, whatever the projection returns.
        item = table.get_item(key)
        units = item_read_units(item, consistent)
        if item is not None and projection is not None:
            item = project(item, projection)
        response = {"Item": serialize_item(item)} if item is not None else {}
        return add_consumed(response, capacity, table.name, units, write=False)
    return {"Item": serialize_item(item)} if item is not None else {}


def delete_item(ctx: ServerContext, request: dict) -> dict:
    name = table_name(request)
    expressions = _expressions(request, "DeleteItem")
    return_values = _return_values(request, ("NONE", "ALL_OLD"))
    capacity = capacity_mode(request)
    metrics_mode = item_collection_metrics_mode(request)
    on_failure = _on_failure(request)
    table = open_table(ctx, name)
    key = parse_key(key_schema(table), request.get("Key"))
    condition = _condition(request, expressions)
    _finish(expressions)
    need_old = return_values == "ALL_OLD" or capacity != "NONE"
    try:
        old = table.delete_item(
            key, condition=condition, return_values="ALL_OLD" if need_old else "NONE",
            return_values_on_condition_check_failure=on_failure,
        )
    except ConditionalCheckFailedException as err:
        raise _failed(err, on_failure) from None
    response: dict[str, Any] = {}
    if return_values == "ALL_OLD" and old:
        response["Attributes"] = serialize_item(old)
    return _written(response, table, capacity, old, None, metrics_mode, key)


def update_item(ctx: ServerContext, request: dict) -> dict:
    try:
        return _update_item(ctx, request)
    except ValidationException as err:
        if request.get("AttributeUpdates") is not None and _is_type_error(err):
            # AttributeUpdates speak of the attribute, not of an expression's operands.
            raise ValidationException(
                "One or more parameter values were invalid: Type mismatch for attribute to "
                "update"
            ) from None
        raise


def _update_item(ctx: ServerContext, request: dict) -> dict:
    name = table_name(request)
    expressions = _expressions(request, "UpdateItem")
    return_values = enum(request, "ReturnValues", RETURN_VALUES, "NONE")
    capacity = capacity_mode(request)
    metrics_mode = item_collection_metrics_mode(request)
    on_failure = _on_failure(request)
    table = open_table(ctx, name)
    schema = key_schema(table)
    key = parse_key(schema, request.get("Key"))
    key_names = [attribute for attribute, _ in schema]
    if request.get("UpdateExpression") is not None:
        assert expressions is not None
        update = expressions.update(request["UpdateExpression"])
    elif request.get("AttributeUpdates") is not None:
        update = legacy.attribute_updates(request["AttributeUpdates"], key_names)
    else:
        update = Update(())  # DynamoDB still creates the key-only item
    condition = _condition(request, expressions)
    _finish(expressions)
    _check_key_not_updated(update, key_names)
    old = table.get_item(key) if capacity != "NONE" else None
    try:
        result = table.update_item(
            key, update, condition=condition, return_values=return_values,
            return_values_on_condition_check_failure=on_failure,
        )
    except ConditionalCheckFailedException as err:
        raise _failed(err, on_failure) from None
    response: dict[str, Any] = {}
    if return_values != "NONE" and result:
        response["Attributes"] = serialize_item(result)
    new = None
    if capacity != "NONE":
        new = result if return_values == "ALL_NEW" else table.get_item(key)
    return _written(response, table, capacity, old, new, metrics_mode, key)


def _is_type_error(err: ValidationException) -> bool:
    """An update operand of the wrong type for the attribute it meets (evaluator words)."""
    return "incorrect data type" in err.message or "Incorrect operand type" in err.message


def _check_key_not_updated(update: Update, key_names: list[str]) -> None:
    for action in update.actions:
        first = action.path.elements[0]
        if first in key_names:
            raise ValidationException(
                "One or more parameter values were invalid: Cannot update attribute "
                f"{first}. This attribute is part of the key"
            )
