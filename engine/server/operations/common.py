"""What every operation shares: the server context, parameter validation with DynamoDB's
messages, table lookup, keys, and the request's expressions (parsed once per text, bound
per request).

DynamoDB validates a request's members before it looks at any data and reports them as
``1 validation error detected: Value 'X' at 'returnValues' failed to satisfy constraint:
Member must satisfy enum value set: [...]`` (API Reference, "Common Errors"); the helpers
here produce those messages, so clients that parse them see what DynamoDB would send.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.attrvalue import deserialize, deserialize_item, value_type
from engine.errors import (
    ResourceNotFoundException,
    SerializationException,
    ValidationException,
)
from engine.expressions import legacy, parser
from engine.expressions.ast import (
    Condition,
    Projection,
    Update,
)
from engine.expressions.placeholders import Placeholders

__all__ = [
    "ServerContext",
    "RequestExpressions",
    "enum",
    "get",
    "limit",
    "table_name",
    "open_table",
    "parse_key",
    "check_item_key",
]

_TABLE_NAME = re.compile(r"[a-zA-Z0-9_.-]+")

#: Enum members as DynamoDB lists them in "Member must satisfy enum value set" messages.
RETURN_CONSUMED_CAPACITY = ("INDEXES", "TOTAL", "NONE")
RETURN_ITEM_COLLECTION_METRICS = ("SIZE", "NONE")
RETURN_VALUES = ("ALL_NEW", "UPDATED_OLD", "ALL_OLD", "NONE", "UPDATED_NEW")
RETURN_VALUES_ON_CONDITION_CHECK_FAILURE = ("ALL_OLD", "NONE")
SELECT = ("SPECIFIC_ATTRIBUTES", "COUNT", "ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES")


@dataclass
class ServerContext:
    engine: Any
    region: str = "us-east-1"
    account_id: str = "000000000000"
    default_partitions: int = 4


# --- members ----------------------------------------------------------------------------


def member_name(field: str) -> str:
    """DynamoDB names members in messages in lower camel case: ``returnValues``."""
    return field[0].lower() + field[1:]


def constraint_error(value: Any, where: str, constraint: str) -> ValidationException:
    shown = "null" if value is None else f"'{value}'"
    return ValidationException(
        f"1 validation error detected: Value {shown} at '{where}' failed to satisfy "
        f"constraint: {constraint}"
    )


_JSON_TYPES = {str: "String", bool: "Boolean", int: "Integer", dict: "Map", list: "List"}


def get(request: dict, field: str, kind: type | tuple[type, ...], *,
        required: bool = False) -> Any:
    """A member of ``request`` of JSON type ``kind``; a wrong JSON type is DynamoDB's
    SerializationException, a missing required member its "must not be null"."""
    value = request.get(field)
    if value is None:
        if required:
            raise constraint_error(None, member_name(field), "Member must not be null")
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        wanted = _JSON_TYPES.get(kinds[0], kinds[0].__name__)
        raise SerializationException(
            f"{type(value).__name__} value cannot be converted to {wanted} ({field})"
        )
    return value


def refuse(request: dict, *fields: str) -> None:
    """Parameters for features this server does not have: say so rather than ignore them."""
    for field in fields:
        if request.get(field) is not None:
            raise ValidationException(f"The parameter {field} is not supported by this server")


def enum(request: dict, field: str, allowed: tuple[str, ...], default: str | None) -> Any:
    value = get(request, field, str)
    if value is None:
        return default
    if value not in allowed:
        raise constraint_error(
            value, member_name(field), f"Member must satisfy enum value set: [{', '.join(allowed)}]"
        )
    return value


def boolean(request: dict, field: str, default: bool = False) -> bool:
    value = get(request, field, bool)
    return default if value is None else value


def limit(request: dict, field: str = "Limit", maximum: int | None = None) -> int | None:
    value = get(request, field, int)
    if value is None:
        return None
    if value < 1:
        raise constraint_error(
            value, member_name(field), "Member must have value greater than or equal to 1"
        )
    if maximum is not None and value > maximum:
        raise constraint_error(
            value, member_name(field), f"Member must have value less than or equal to {maximum}"
        )
    return value


def table_name_problems(name: str) -> list[str]:
    """DynamoDB's table-name constraints (3..255 characters of [a-zA-Z0-9_.-])."""
    problems = []
    if len(name) < 3:
        problems.append("Member must have length greater than or equal to 3")
    if len(name) > 255:
        problems.append("Member must have length less than or equal to 255")
    if not _TABLE_NAME.fullmatch(name):
        problems.append("Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+")
    return problems


def table_name(request: dict, field: str = "TableName") -> str:
    name = get(request, field, str, required=True)
    problems = table_name_problems(name)
    if problems:
        count = len(problems)
        raise ValidationException(
            f"{count} validation error{'s' if count > 1 else ''} detected: "
            + "; ".join(
                f"Value '{name}' at '{member_name(field)}' failed to satisfy constraint: {p}"
                for p in problems
            )
        )
    return name


@contextlib.contextmanager
def table_must_exist(name: str) -> Iterator[None]:
    """DynamoDB's answer for a missing table in table and item operations."""
    try:
        yield
    except ResourceNotFoundException as err:
        raise ResourceNotFoundException(
            f"Requested resource not found: Table: {name} not found"
        ) from err


def open_table(ctx: ServerContext, name: str) -> Any:
    with table_must_exist(name):
        return ctx.engine.table(name)


# --- keys -------------------------------------------------------------------------------


def key_schema(table: Any) -> list[tuple[str, str]]:
    return [(name, kind) for name, kind in table.key_schema]


def _empty_key_value(name: str, value: Any) -> None:
    if value == "" or value == b"":
        kind = "string" if isinstance(value, str) else "binary"
        raise ValidationException(
            "One or more parameter values are not valid. The AttributeValue for a key "
            f"attribute cannot contain an empty {kind} value. Key: {name}"
        )


def parse_key(schema: list[tuple[str, str]], raw: Any, where: str = "Key") -> dict[str, Any]:
    """A Key (or ExclusiveStartKey) that must name exactly the key attributes."""
    if raw is None:
        raise constraint_error(None, member_name(where), "Member must not be null")
    key = deserialize_item(raw, where)
    expected = {name: kind for name, kind in schema}
    if set(key) != set(expected) or any(value_type(key[n]) != k for n, k in schema):
        raise ValidationException("The provided key element does not match the schema")
    for name, _ in schema:
        _empty_key_value(name, key[name])
    return key


def check_item_key(schema: list[tuple[str, str]], item: dict[str, Any]) -> tuple:
    """An item to put must hold every key attribute with the schema's type; returns the
    key as a hashable tuple (for duplicate detection in batches)."""
    identity = []
    for name, kind in schema:
        if name not in item:
            raise ValidationException(
                f"One or more parameter values were invalid: Missing the key {name} in the item"
            )
        actual = value_type(item[name])
        if actual != kind:
            raise ValidationException(
                "One or more parameter values were invalid: Type mismatch for key "
                f"{name} expected: {kind} actual: {actual}"
            )
        _empty_key_value(name, item[name])
        value = item[name]
        identity.append(bytes(value) if isinstance(value, (bytearray, memoryview)) else value)
    return tuple(identity)


# --- expressions ------------------------------------------------------------------------


def _parse(kind: str, text: str) -> Any:
    """The unbound tree (the parser caches it by (kind, text): it holds no request values,
    so every request sending the same expression shares it)."""
    if kind == "UpdateExpression":
        return parser.parse_update(text)
    if kind == "ProjectionExpression":
        return parser.parse_projection(text)
    return parser.parse_condition(text, kind)


class RequestExpressions:
    """One request's expressions: parsed (cached by text), bound to its
    ExpressionAttributeNames / ExpressionAttributeValues, and checked for unused
    placeholders once every expression of the request was bound (:meth:`finish`)."""

    def __init__(self, request: dict) -> None:
        names = request.get("ExpressionAttributeNames")
        raw_values = request.get("ExpressionAttributeValues")
        if names is not None and not isinstance(names, dict):
            raise SerializationException("ExpressionAttributeNames must be a map")
        if names:
            for name, value in names.items():
                if not isinstance(value, str):
                    raise SerializationException(
                        f"ExpressionAttributeNames value for {name} must be a string"
                    )
        values: dict[str, Any] | None = None
        if raw_values is not None:
            if not isinstance(raw_values, dict):
                raise SerializationException("ExpressionAttributeValues must be a map")
            values = {}
            for name, raw in raw_values.items():
                try:
                    values[name] = deserialize(raw, name)
                except ValidationException as err:
                    raise ValidationException(
                        f"ExpressionAttributeValues contains invalid value: {err.message} for "
                        f"key {name}"
                    ) from None
        self.placeholders = Placeholders(names, values)

    def _bind(self, kind: str, text: Any) -> Any:
        if not isinstance(text, str):
            raise SerializationException(f"{kind} must be a string")
        return parser.bind(_parse(kind, text), self.placeholders, kind)

    def condition(self, text: Any, kind: str = "ConditionExpression") -> Condition:
        return self._bind(kind, text)

    def update(self, text: Any) -> Update:
        return self._bind("UpdateExpression", text)

    def projection(self, text: Any) -> Projection:
        return self._bind("ProjectionExpression", text)

    def finish(self) -> None:
        self.placeholders.check_all_used()


def projection_of(request: dict, expressions: RequestExpressions | None) -> Projection | None:
    """ProjectionExpression or AttributesToGet (never both: legacy.check_not_mixed)."""
    if request.get("ProjectionExpression") is not None:
        assert expressions is not None
        return expressions.projection(request["ProjectionExpression"])
    if request.get("AttributesToGet") is not None:
        return legacy.attributes_to_get(request["AttributesToGet"])
    return None


def top_level_names(projection: Projection) -> list[str] | None:
    """The attribute names of a projection of top-level attributes only, else None."""
    names = []
    for path in projection.paths:
        if len(path.elements) != 1:
            return None
        names.append(path.elements[0])
    return names
