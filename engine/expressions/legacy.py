"""DynamoDB's legacy (pre-expression) parameters, translated into the expression AST.

Older SDKs, ORMs and much application code still send ``Expected``, ``AttributeUpdates``,
``KeyConditions``, ``QueryFilter``, ``ScanFilter``, ``ConditionalOperator`` and
``AttributesToGet``. Each becomes the same bound tree the expression parser produces
(:mod:`engine.expressions.ast`), so one evaluator decides both (API Reference, "Legacy
conditional parameters"; each ``Condition`` / ``ExpectedAttributeValue`` /
``AttributeValueUpdate`` data type). Values arrive in DynamoDB's typed JSON and are
decoded here; the trees hold :class:`~engine.expressions.ast.Literal` engine values.

DynamoDB's rules enforced here, with its messages: each ComparisonOperator's
AttributeValueList arity ("Invalid number of argument(s) for the EQ ComparisonOperator")
and value types ("ComparisonOperator LT is not valid for SS AttributeValue type"); the
``Value`` / ``Exists`` / ``ComparisonOperator`` combinations of ``Expected``; the
``AttributeUpdates`` actions per value type; and :func:`check_not_mixed`, which refuses a
request that mixes legacy and expression parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engine.attrvalue import deserialize, value_type
from engine.errors import SerializationException, ValidationException
from engine.expressions.ast import (
    AddAction,
    And,
    Between,
    Call,
    Compare,
    Condition,
    DeleteAction,
    In,
    Literal,
    Not,
    Or,
    Path,
    Projection,
    RemoveAction,
    SetAction,
    Update,
    UpdateAction,
)

__all__ = [
    "COMPARISON_OPERATORS",
    "attribute_updates",
    "attributes_to_get",
    "check_not_mixed",
    "expected_condition",
    "filter_condition",
    "key_conditions",
]

INVALID = "One or more parameter values were invalid: "

#: ComparisonOperator -> (min, max) length of AttributeValueList (None = no upper bound).
_ARITY: dict[str, tuple[int, int | None]] = {
    "EQ": (1, 1), "NE": (1, 1), "LE": (1, 1), "LT": (1, 1), "GE": (1, 1), "GT": (1, 1),
    "NOT_NULL": (0, 0), "NULL": (0, 0), "CONTAINS": (1, 1), "NOT_CONTAINS": (1, 1),
    "BEGINS_WITH": (1, 1), "IN": (1, None), "BETWEEN": (2, 2),
}
# The enum as DynamoDB lists it in its "Member must satisfy enum value set" message.
COMPARISON_OPERATORS = (
    "IN", "NULL", "BETWEEN", "LT", "NOT_CONTAINS", "EQ", "GT", "NOT_NULL", "NE", "LE",
    "BEGINS_WITH", "GE", "CONTAINS",
)
_SCALARS = ("S", "N", "B")
#: The value types each operator accepts (EQ and NE take any type).
_VALUE_TYPES: dict[str, tuple[str, ...]] = {
    "LE": _SCALARS, "LT": _SCALARS, "GE": _SCALARS, "GT": _SCALARS, "BETWEEN": _SCALARS,
    "IN": _SCALARS, "CONTAINS": _SCALARS, "NOT_CONTAINS": _SCALARS,
    "BEGINS_WITH": ("S", "B"),
}
_COMPARATORS = {"EQ": "=", "NE": "<>", "LE": "<=", "LT": "<", "GE": ">=", "GT": ">"}
_KEY_OPERATORS = {"EQ": "=", "LE": "<=", "LT": "<", "GE": ">=", "GT": ">",
                  "BEGINS_WITH": "begins_with", "BETWEEN": "between"}

#: Operation -> (legacy parameters, their expression counterparts), for check_not_mixed.
_MIXING: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "GetItem": (("AttributesToGet",), ("ProjectionExpression",)),
    "BatchGetItem": (("AttributesToGet",), ("ProjectionExpression",)),
    "PutItem": (("Expected", "ConditionalOperator"), ("ConditionExpression",)),
    "DeleteItem": (("Expected", "ConditionalOperator"), ("ConditionExpression",)),
    "UpdateItem": (
        ("AttributeUpdates", "Expected", "ConditionalOperator"),
        ("UpdateExpression", "ConditionExpression"),
    ),
    "Query": (
        ("AttributesToGet", "KeyConditions", "QueryFilter", "ConditionalOperator"),
        ("ProjectionExpression", "KeyConditionExpression", "FilterExpression"),
    ),
    "Scan": (
        ("AttributesToGet", "ScanFilter", "ConditionalOperator"),
        ("ProjectionExpression", "FilterExpression"),
    ),
}


def check_not_mixed(request: dict, operation: str) -> bool:
    """Refuse legacy and expression parameters in one request, as DynamoDB does; also
    ExpressionAttributeNames/Values without any expression. Returns whether the request
    uses expressions."""
    legacy_names, expression_names = _MIXING[operation]
    legacy = [name for name in legacy_names if request.get(name) is not None]
    expressions = [name for name in expression_names if request.get(name) is not None]
    if legacy and expressions:
        raise ValidationException(
            "Can not use both expression and non-expression parameters in the same request: "
            f"Non-expression parameters: {{{', '.join(legacy)}}} "
            f"Expression parameters: {{{', '.join(expressions)}}}"
        )
    if not expressions:
        for name in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
            if request.get(name) is not None:
                raise ValidationException(f"{name} can only be specified when using expressions")
    return bool(expressions)


def _enum_error(value: Any, where: str, allowed: Iterable[str]) -> ValidationException:
    return ValidationException(
        f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy "
        f"constraint: Member must satisfy enum value set: [{', '.join(allowed)}]"
    )


def _conditional_operator(value: Any) -> str:
    if value is None:
        return "AND"
    if value not in ("AND", "OR"):
        raise _enum_error(value, "conditionalOperator", ("OR", "AND"))
    return value


def _no_conditions(conditional_operator: Any, parameter: str) -> None:
    """ConditionalOperator joins conditions: DynamoDB refuses it when there are none (the
    parameter absent or an empty map, which otherwise means "no condition")."""
    if conditional_operator is not None:
        _conditional_operator(conditional_operator)
        raise ValidationException(
            f"{INVALID}ConditionalOperator can only be used when {parameter} has at least one "
            "condition"
        )


def _map(value: Any, parameter: str) -> dict:
    if not isinstance(value, dict):
        raise SerializationException(f"{parameter} must be a map of attribute names")
    return value


def _values(raw: Any, where: str) -> list[tuple[str, Any]]:
    """An AttributeValueList as (type, value) pairs."""
    if not isinstance(raw, list):
        raise SerializationException(f"AttributeValueList of {where} must be a list")
    decoded = []
    for element in raw:
        value = deserialize(element, where)
        decoded.append((value_type(value), value))
    return decoded


def _comparison(attribute: str, operator: Any, values: list[tuple[str, Any]],
                where: str) -> Condition:
    """One attribute's ComparisonOperator + AttributeValueList as a condition."""
    if operator not in _ARITY:
        raise _enum_error(operator, f"{where}.{attribute}.member.comparisonOperator",
                          COMPARISON_OPERATORS)
    low, high = _ARITY[operator]
    if len(values) < low or (high is not None and len(values) > high):
        raise ValidationException(
            f"{INVALID}Invalid number of argument(s) for the {operator} ComparisonOperator"
        )
    allowed = _VALUE_TYPES.get(operator)
    if allowed is not None:
        for kind, _ in values:
            if kind not in allowed:
                raise ValidationException(
                    f"{INVALID}ComparisonOperator {operator} is not valid for {kind} "
                    "AttributeValue type"
                )
    path = Path((attribute,))
    literals = [Literal(value) for _, value in values]
    if operator in _COMPARATORS:
        return Compare(_COMPARATORS[operator], path, literals[0])
    if operator == "NOT_NULL":
        return Call("attribute_exists", (path,))
    if operator == "NULL":
        return Call("attribute_not_exists", (path,))
    if operator == "CONTAINS":
        return Call("contains", (path, literals[0]))
    if operator == "NOT_CONTAINS":
        # A missing attribute neither contains nor "not contains" anything in DynamoDB.
        return And(Call("attribute_exists", (path,)), Not(Call("contains", (path, literals[0]))))
    if operator == "BEGINS_WITH":
        return Call("begins_with", (path, literals[0]))
    if operator == "IN":
        if len({kind for kind, _ in values}) > 1:
            raise ValidationException(
                f"{INVALID}AttributeValues inside AttributeValueList must be of same type"
            )
        return In(path, tuple(literals))
    (low_kind, low_value), (high_kind, high_value) = values
    if low_kind != high_kind:
        raise ValidationException(
            f"{INVALID}AttributeValues inside AttributeValueList must be of same type"
        )
    if _greater(low_value, high_value):
        raise ValidationException(
            f"{INVALID}The BETWEEN condition was provided a range where the lower bound is "
            f"greater than the upper bound (attribute {attribute})"
        )
    return Between(path, literals[0], literals[1])


def _greater(left: Any, right: Any) -> bool:
    if isinstance(left, (bytes, bytearray)):
        return bytes(left) > bytes(right)
    return left > right


def _combine(conditions: list[Condition], conditional_operator: str) -> Condition | None:
    if not conditions:
        return None
    node = Or if conditional_operator == "OR" else And
    combined = conditions[0]
    for condition in conditions[1:]:
        combined = node(combined, condition)
    return combined


def expected_condition(expected: Any, conditional_operator: Any = None) -> Condition | None:
    """``Expected`` (+ ``ConditionalOperator``) as one condition; None when empty.

    Per attribute, either ``ComparisonOperator`` with ``AttributeValueList`` (or a single
    ``Value``), or the older ``Value`` / ``Exists`` form: ``Value`` alone means equal,
    ``Exists: false`` means absent (API Reference, ExpectedAttributeValue).
    """
    if not expected:
        _no_conditions(conditional_operator, "Expected")
        return None
    operator = _conditional_operator(conditional_operator)
    conditions = []
    for attribute, spec in _map(expected, "Expected").items():
        spec = _map(spec, f"Expected.{attribute}")
        comparison = spec.get("ComparisonOperator")
        value_list = spec.get("AttributeValueList")
        exists = spec.get("Exists")
        value = spec.get("Value")
        if comparison is not None:
            if exists is not None:
                raise ValidationException(
                    f"{INVALID}Exists and ComparisonOperator cannot be used together for "
                    f"Attribute: {attribute}"
                )
            if value_list is not None and value is not None:
                raise ValidationException(
                    f"{INVALID}Value and AttributeValueList cannot be used together for "
                    f"Attribute: {attribute}"
                )
            if value_list is None:
                value_list = [value] if value is not None else []
            conditions.append(
                _comparison(attribute, comparison, _values(value_list, attribute), "expected")
            )
            continue
        if value_list is not None:
            raise ValidationException(
                f"{INVALID}AttributeValueList can only be used with a ComparisonOperator for "
                f"Attribute: {attribute}"
            )
        if exists is not None and not isinstance(exists, bool):
                raise SerializationException(f"Exists of Expected.{attribute} must be a boolean")
        path = Path((attribute,))
        if exists is False:
            if value is not None:
                raise ValidationException(
                    f"{INVALID}Value cannot be used when Exists is false for Attribute: "
                    f"{attribute}"
                )
            conditions.append(Call("attribute_not_exists", (path,)))
            continue
        if value is None:
            raise ValidationException(
                f"{INVALID}Value must be provided when Exists is "
                f"{'null' if exists is None else 'true'} for Attribute: {attribute}"
            )
        conditions.append(Compare("=", path, Literal(deserialize(value, attribute))))
    return _combine(conditions, operator)


def filter_condition(
    conditions: Any,
    conditional_operator: Any = None,
    *,
    parameter: str = "QueryFilter",
    key_names: Iterable[str] = (),
) -> Condition | None:
    """``QueryFilter`` / ``ScanFilter`` (+ ``ConditionalOperator``) as one condition.

    ``key_names``: attributes a filter may not use (a Query's key attributes: "QueryFilter
    can only contain non-primary key attributes").
    """
    if not conditions:
        _no_conditions(conditional_operator, parameter)
        return None
    operator = _conditional_operator(conditional_operator)
    keys = set(key_names)
    parts = []
    where = parameter[0].lower() + parameter[1:]
    for attribute, spec in _map(conditions, parameter).items():
        spec = _map(spec, f"{parameter}.{attribute}")
        if attribute in keys:
            raise ValidationException(
                f"QueryFilter can only contain non-primary key attributes: Primary key "
                f"attribute: {attribute}"
            )
        comparison = spec.get("ComparisonOperator")
        if comparison is None:
            raise ValidationException(
                f"1 validation error detected: Value null at '{where}.{attribute}.member."
                "comparisonOperator' failed to satisfy constraint: Member must not be null"
            )
        value_list = spec.get("AttributeValueList")
        parts.append(
            _comparison(attribute, comparison, _values(value_list or [], attribute), where)
        )
    return _combine(parts, operator)


def key_conditions(
    conditions: Any,
    partition_key: tuple[str, str],
    sort_key: tuple[str, str] | None,
) -> tuple[Any, tuple | None]:
    """``KeyConditions`` as ``(partition key value, sort condition)``: the sort condition
    is the engine's tuple (``("=", v)``, ``("<", v)``, ``("between", lo, hi)``,
    ``("begins_with", prefix)``...) or None."""
    conditions = _map(conditions, "KeyConditions")
    if not conditions:
        raise ValidationException(
            "1 validation error detected: Value '{}' at 'keyConditions' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1"
        )
    if len(conditions) > 2:
        raise ValidationException("Conditions can be of length 1 or 2 only")
    key_types = {partition_key[0]: partition_key[1]}
    if sort_key is not None:
        key_types[sort_key[0]] = sort_key[1]
    pk_value: Any = None
    sort_condition: tuple | None = None
    for attribute, spec in conditions.items():
        spec = _map(spec, f"KeyConditions.{attribute}")
        comparison = spec.get("ComparisonOperator")
        if comparison is None:
            raise ValidationException(
                f"1 validation error detected: Value null at 'keyConditions.{attribute}.member."
                "comparisonOperator' failed to satisfy constraint: Member must not be null"
            )
        values = _values(spec.get("AttributeValueList") or [], attribute)
        if comparison not in _ARITY:
            raise _enum_error(comparison, f"keyConditions.{attribute}.member.comparisonOperator",
                              COMPARISON_OPERATORS)
        if attribute not in key_types:
            raise ValidationException(
                "Query condition missed key schema element: "
                f"{sort_key[0] if sort_key and attribute != sort_key[0] else partition_key[0]}"
            )
        if comparison not in _KEY_OPERATORS:
            raise ValidationException(
                "Attempted conditional constraint is not an indexable operation"
            )
        if attribute == partition_key[0] and comparison != "EQ":
            raise ValidationException("Query key condition not supported")
        low, high = _ARITY[comparison]
        if len(values) < low or (high is not None and len(values) > high):
            raise ValidationException(
                f"{INVALID}Invalid number of argument(s) for the {comparison} ComparisonOperator"
            )
        for kind, _ in values:
            if kind != key_types[attribute]:
                raise ValidationException(
                    f"{INVALID}Condition parameter type does not match schema type"
                )
        if attribute == partition_key[0]:
            pk_value = values[0][1]
            continue
        if comparison == "BEGINS_WITH" and key_types[attribute] == "N":
            raise ValidationException(
                f"{INVALID}ComparisonOperator BEGINS_WITH is not valid for N AttributeValue type"
            )
        if comparison == "BETWEEN" and _greater(values[0][1], values[1][1]):
            raise ValidationException(
                f"{INVALID}The BETWEEN condition was provided a range where the lower bound is "
                f"greater than the upper bound (attribute {attribute})"
            )
        sort_condition = (_KEY_OPERATORS[comparison], *(value for _, value in values))
    if partition_key[0] not in conditions:
        raise ValidationException(
            f"Query condition missed key schema element: {partition_key[0]}"
        )
    return pk_value, sort_condition


def attribute_updates(updates: Any, key_names: Iterable[str] = ()) -> Update:
    """``AttributeUpdates`` as an Update. Actions (AttributeValueUpdate): ``PUT`` (the
    default) sets the value; ``DELETE`` without a value removes the attribute, with a set
    value removes those elements; ``ADD`` adds to a number, unions a set, or appends to a
    list (which the expression ADD cannot: here it becomes ``SET a =
    list_append(if_not_exists(a, []), v)``)."""
    keys = set(key_names)
    actions: list[UpdateAction] = []
    for attribute, spec in _map(updates, "AttributeUpdates").items():
        spec = _map(spec, f"AttributeUpdates.{attribute}")
        if attribute in keys:
            raise ValidationException(
                f"{INVALID}Cannot update attribute {attribute}. This attribute is part of the key"
            )
        action = spec.get("Action", "PUT")
        if action is None:
            action = "PUT"
        if action not in ("ADD", "PUT", "DELETE"):
            raise _enum_error(action, f"attributeUpdates.{attribute}.member.action",
                              ("ADD", "PUT", "DELETE"))
        raw = spec.get("Value")
        path = Path((attribute,))
        if raw is None:
            if action != "DELETE":
                raise ValidationException(
                    f"{INVALID}Only DELETE action is allowed when no attribute value is "
                    f"specified (attribute {attribute})"
                )
            actions.append(RemoveAction(path))
            continue
        value = deserialize(raw, attribute)
        kind = value_type(value)
        if action == "PUT":
            actions.append(SetAction(path, Literal(value)))
        elif action == "DELETE":
            if kind not in ("SS", "NS", "BS"):
                raise ValidationException(
                    f"{INVALID}DELETE action with value is not supported for the type {kind}"
                )
            actions.append(DeleteAction(path, Literal(value)))
        elif kind == "L":
            actions.append(SetAction(path, Call("list_append", (
                Call("if_not_exists", (path, Literal([]))), Literal(value)))))
        elif kind in ("N", "SS", "NS", "BS"):
            actions.append(AddAction(path, Literal(value)))
        else:
            raise ValidationException(
                f"{INVALID}ADD action is not supported for the type {kind}"
            )
    return Update(tuple(actions))


def attributes_to_get(names: Any) -> Projection:
    """``AttributesToGet`` as a Projection of top-level attributes."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise SerializationException("AttributesToGet must be a list of attribute names")
    if not names:
        raise ValidationException(
            "1 validation error detected: Value '[]' at 'attributesToGet' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1"
        )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValidationException(
                f"{INVALID}Duplicate value in attribute name: {name}"
            )
        seen.add(name)
    return Projection(tuple(Path((name,)) for name in names))
