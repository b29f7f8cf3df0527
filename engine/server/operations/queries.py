"""Query and Scan, paged as DynamoDB pages them (API Reference, Query and Scan):

- ``Limit`` counts the items *evaluated* (read), before the filter; a page also stops at
  1 MB of evaluated items. ``Count`` is what passed the filter, ``ScannedCount`` what was
  evaluated; ``LastEvaluatedKey`` is the last evaluated item's key whenever the page
  stopped early, even if the filter dropped that item.
- ``Select``: ``ALL_ATTRIBUTES`` (the default without a projection on a table),
  ``SPECIFIC_ATTRIBUTES`` (the default with one, and it needs one), ``COUNT`` (no items),
  ``ALL_PROJECTED_ATTRIBUTES`` (only with ``IndexName``, and the default there).
- A Query's filter (``FilterExpression`` or ``QueryFilter``) may not name key attributes:
  those belong in the key condition.
- ``ExclusiveStartKey`` must be a key of the table; for a parallel Scan it must lie in the
  segment it resumes.
- ``IndexName`` (engine.indexes.query.Index): the key condition is on the index's keys
  and the filter may not name them; ``ExclusiveStartKey`` / ``LastEvaluatedKey`` hold the
  index's and the table's key attributes. A GSI is eventually consistent
  (``ConsistentRead`` is refused), returns only what it projects (``ALL_ATTRIBUTES`` is
  refused unless it projects ALL; a projection naming other attributes finds them absent,
  as "global secondary index queries cannot fetch attributes from the parent table");
  an LSI fetches what it does not project from the table.
- Capacity: the evaluated items' total size, rounded up to 4 KB once per page.
"""

from __future__ import annotations

from typing import Any

from engine.attrvalue import serialize_item
from engine.errors import ValidationException
from engine.expressions import legacy
from engine.expressions.ast import Path, Projection
from engine.expressions.keycondition import check_filter_keys, check_key_paths, key_condition

from .capacity import add_consumed, capacity_mode, index_read, read_units
from .common import (
    SELECT,
    RequestExpressions,
    ServerContext,
    boolean,
    enum,
    get,
    key_schema,
    limit,
    open_table,
    parse_key,
    projection_of,
    table_name,
)
from .indexes import open_index

__all__ = ["query", "scan", "MAX_SCAN_SEGMENTS"]

MAX_SCAN_SEGMENTS = 1_000_000


def _select(request: dict, projection: Projection | None, index: Any = None) -> str:
    """Select, checked against the projection (dynalite / DynamoDB messages)."""
    select = enum(request, "Select", SELECT, None)
    legacy_projection = request.get("AttributesToGet") is not None
    parameter = "AttributesToGet" if legacy_projection else "ProjectionExpression"
    if select is None:
        if projection is not None:
            return "SPECIFIC_ATTRIBUTES"
        return "ALL_PROJECTED_ATTRIBUTES" if index is not None else "ALL_ATTRIBUTES"
    if select == "ALL_PROJECTED_ATTRIBUTES" and index is None:
        raise ValidationException(
            "One or more parameter values were invalid: Select type ALL_PROJECTED_ATTRIBUTES "
            "is supported only when querying an index (IndexName)"
        )
    if select == "SPECIFIC_ATTRIBUTES" and projection is None:
        raise ValidationException(
            "Must specify the AttributesToGet or ProjectionExpression when choosing to get "
            "SPECIFIC_ATTRIBUTES"
        )
    if select in ("ALL_ATTRIBUTES", "COUNT", "ALL_PROJECTED_ATTRIBUTES") and (
            projection is not None):
        raise ValidationException(
            f"Cannot specify the {parameter} when choosing to get {select}"
        )
    return select


def _filter(request: dict, expressions: RequestExpressions | None, parameter: str,
            key_names: list[str] | None) -> Any:
    """FilterExpression, or the legacy QueryFilter / ScanFilter; ``key_names`` (Query
    only) are attributes a filter may not use."""
    if request.get("FilterExpression") is not None:
        assert expressions is not None
        condition = expressions.condition(request["FilterExpression"], "FilterExpression")
        if key_names:
            check_filter_keys(condition, key_names)
        return condition
    return legacy.filter_condition(
        request.get(parameter), request.get("ConditionalOperator"),
        parameter=parameter, key_names=key_names or (),
    )


def _respond(table: Any, page: Any, select: str, capacity: str, consistent: bool,
             index: Any = None) -> dict:
    """The response of one page; capacity on the evaluated items' size, rounded once (on
    the index when one was read)."""
    response: dict[str, Any] = {"Count": len(page.items), "ScannedCount": page.scanned_count}
    if select != "COUNT":
        response["Items"] = [serialize_item(item) for item in page.items]
    if page.last_evaluated_key:
        response["LastEvaluatedKey"] = serialize_item(page.last_evaluated_key)
    size = page.scanned_size_bytes or 0
    units = read_units(size, consistent)
    if index is not None:
        return add_consumed(response, capacity, table.name, 0.0, write=False,
                            indexes=index_read(index, units))
    return add_consumed(response, capacity, table.name, units, write=False)


def _engine_projection(select: str, projection: Projection | None, schema: list) -> Any:
    """What the engine should return: COUNT needs no attributes (keys keep it cheap)."""
    if select == "COUNT":
        return Projection(tuple(Path((name,)) for name, _ in schema))
    return projection


def query(ctx: ServerContext, request: dict) -> dict:
    name = table_name(request)
    uses_expressions = legacy.check_not_mixed(request, "Query")
    expressions = RequestExpressions(request) if uses_expressions else None
    capacity = capacity_mode(request)
    consistent = boolean(request, "ConsistentRead")
    forward = boolean(request, "ScanIndexForward", True)
    page_limit = limit(request)
    table = open_table(ctx, name)
    index = open_index(ctx, name, request)
    table_schema = key_schema(table)
    # The keys the query runs on (the index's, with IndexName) and every key attribute.
    schema = table_schema if index is None else index.key_schema
    all_keys = _all_keys(table_schema, schema)
    partition_key = schema[0]
    sort_key = schema[1] if len(schema) > 1 else None
    if request.get("KeyConditionExpression") is not None:
        assert expressions is not None
        bound = expressions.condition(
            request["KeyConditionExpression"], "KeyConditionExpression"
        )
        pk_value, sort_condition = key_condition(bound, partition_key, sort_key)
    elif request.get("KeyConditions") is not None:
        pk_value, sort_condition = legacy.key_conditions(
            request["KeyConditions"], partition_key, sort_key
        )
    else:
        raise ValidationException(
            "Either the KeyConditions or KeyConditionExpression parameter must be specified "
            "in the request."
        )
    projection = projection_of(request, expressions)
    if projection is not None:
        check_key_paths(projection, [n for n, _ in all_keys])
    select = _select(request, projection, index)
    condition = _filter(request, expressions, "QueryFilter", [n for n, _ in schema])
    if expressions is not None:
        expressions.finish()
    start = request.get("ExclusiveStartKey")
    start_key = None
    if start is not None:
        start_key = _start_key(all_keys, start)
        if start_key[partition_key[0]] != pk_value:
            raise ValidationException(
                "The provided starting key is invalid: the partition key of ExclusiveStartKey "
                "does not match the query's partition key"
            )
    if index is not None:
        if start_key is not None and sort_key is not None and sort_condition is not None \
                and not _meets(start_key[sort_key[0]], sort_condition):
            raise ValidationException(
                "The provided starting key is outside query boundaries based on provided "
                "conditions"
            )
        page = index.query_page(
            pk_value, sort_condition, forward=forward, limit=page_limit,
            exclusive_start_key=start_key,
            projection=_engine_projection(select, projection, all_keys), filter=condition,
            measure=capacity != "NONE", consistent_read=consistent,
            select_all=select == "ALL_ATTRIBUTES",
        )
        return _respond(table, page, select, capacity, consistent, index)
    if start_key is not None:
        lo, hi = table.schema.query_range(pk_value, sort_condition)
        full_key = table.schema.full_key(start_key)  # query_range is in full keys
        if full_key < lo or (hi is not None and full_key >= hi):
            raise ValidationException(
                "The provided starting key is outside query boundaries based on provided "
                "conditions"
            )
    page = table.query_page(
        pk_value,
        sort_condition=sort_condition,
        forward=forward,
        limit=page_limit,
        exclusive_start_key=start_key,
        projection=_engine_projection(select, projection, schema),
        filter=condition,
        measure=capacity != "NONE",
    )
    return _respond(table, page, select, capacity, consistent)


def _meets(value: Any, condition: tuple) -> bool:
    """Whether a sort-key value meets a key condition's sort part (``("<", v)``, ...,
    ``("between", lo, hi)``, ``("begins_with", p)``). Key values of one type compare as
    DynamoDB orders them: numbers by value, strings by code point (= UTF-8 bytes),
    binaries bytewise."""
    op, *operands = condition
    if op == "begins_with":
        return value[:len(operands[0])] == operands[0]
    if op == "between":
        return operands[0] <= value <= operands[1]
    return {"=": value == operands[0], "<": value < operands[0], "<=": value <= operands[0],
            ">": value > operands[0], ">=": value >= operands[0]}[op]


def _all_keys(table_schema: list, index_schema: list) -> list[tuple[str, str]]:
    """The table's key attributes and the index's (each once): an index's pagination key."""
    return list(dict.fromkeys([*index_schema, *table_schema]))


def _start_key(schema: list, raw: Any) -> dict:
    try:
        return parse_key(schema, raw, "ExclusiveStartKey")
    except ValidationException as err:
        raise ValidationException(f"The provided starting key is invalid: {err.message}") from None


def scan(ctx: ServerContext, request: dict) -> dict:
    name = table_name(request)
    uses_expressions = legacy.check_not_mixed(request, "Scan")
    expressions = RequestExpressions(request) if uses_expressions else None
    capacity = capacity_mode(request)
    consistent = boolean(request, "ConsistentRead")
    page_limit = limit(request)
    segment, total_segments = _segments(request)
    table = open_table(ctx, name)
    index = open_index(ctx, name, request)
    schema = key_schema(table)
    if index is not None:
        schema = _all_keys(schema, index.key_schema)
    projection = projection_of(request, expressions)
    select = _select(request, projection, index)
    condition = _filter(request, expressions, "ScanFilter", None)
    if expressions is not None:
        expressions.finish()
    start = request.get("ExclusiveStartKey")
    start_key = None
    if start is not None:
        start_key = _start_key(schema, start)
    if index is not None:
        page = index.scan_page(
            limit=page_limit, exclusive_start_key=start_key, segment=segment,
            total_segments=total_segments,
            projection=_engine_projection(select, projection, schema), filter=condition,
            measure=capacity != "NONE", consistent_read=consistent,
            select_all=select == "ALL_ATTRIBUTES",
        )
        return _respond(table, page, select, capacity, consistent, index)
    if start_key is not None:
        if segment is not None:
            lo, hi = table.segment_range(segment, total_segments)
            storage_key = table.schema.key_of(start_key)
            if storage_key < lo or (hi is not None and storage_key >= hi):
                raise ValidationException(
                    "The provided Exclusive start key does not map to the provided Segment and "
                    "TotalSegments values."
                )
    page = table.scan_page(
        limit=page_limit,
        exclusive_start_key=start_key,
        segment=segment,
        total_segments=total_segments,
        projection=_engine_projection(select, projection, schema),
        filter=condition,
        measure=capacity != "NONE",
    )
    return _respond(table, page, select, capacity, consistent)


def _segments(request: dict) -> tuple[int | None, int | None]:
    """Segment / TotalSegments: both or neither; 0 <= Segment < TotalSegments <= 1000000."""
    segment = get(request, "Segment", int)
    total_segments = get(request, "TotalSegments", int)
    if total_segments is not None and not 1 <= total_segments <= MAX_SCAN_SEGMENTS:
        bound = "greater than or equal to 1" if total_segments < 1 else (
            f"less than or equal to {MAX_SCAN_SEGMENTS}")
        raise ValidationException(
            f"1 validation error detected: Value '{total_segments}' at 'totalSegments' failed "
            f"to satisfy constraint: Member must have value {bound}"
        )
    if segment is not None and segment < 0:
        raise ValidationException(
            f"1 validation error detected: Value '{segment}' at 'segment' failed to satisfy "
            "constraint: Member must have value greater than or equal to 0"
        )
    if segment is not None and total_segments is None:
        raise ValidationException(
            "The TotalSegments parameter is required but was not present in the request when "
            "Segment parameter is present"
        )
    if total_segments is not None and segment is None:
        raise ValidationException(
            "The Segment parameter is required but was not present in the request when "
            "parameter TotalSegments is present"
        )
    if segment is not None and segment >= total_segments:
        raise ValidationException(
            "The Segment parameter is zero-based and must be less than parameter "
            f"TotalSegments: Segment: {segment} is not less than TotalSegments: {total_segments}"
        )
    return segment, total_segments
