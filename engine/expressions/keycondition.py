"""A Query's KeyConditionExpression: its allowed shape, and the engine's form of it.

A key condition is the partition key's equality, optionally ``AND`` one condition on the
sort key (API Reference, Query, ``KeyConditionExpression``): ``=``, ``<``, ``<=``, ``>``,
``>=``, ``BETWEEN ... AND ...`` or ``begins_with``. Parentheses are allowed, and so is the
value on the left of a comparison (``:v < sk`` is ``sk > :v``).

The shape is checked twice: by the parser, on the text alone (so a Query with ``OR`` is
refused before its table is looked up, as DynamoDB does), and by :func:`key_condition`
once the placeholders are bound (two placeholders may name the same key) and the table's
key schema is known. Error texts are DynamoDB's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.attrvalue import value_type
from engine.errors import ValidationException
from engine.expressions.ast import (
    AddAction,
    And,
    Arithmetic,
    Between,
    Call,
    Compare,
    Condition,
    DeleteAction,
    In,
    Literal,
    Not,
    Operand,
    Or,
    Path,
    Projection,
    SetAction,
    Update,
)

__all__ = [
    "KeyTerm",
    "key_terms",
    "key_condition",
    "check_filter_keys",
    "check_key_paths",
    "paths_of",
]

_KIND = "KeyConditionExpression"
# "sk < :v" written as ":v > sk": the operator seen from the key's side.
_FLIPPED = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_NOT_KEY_FUNCTIONS = ("attribute_exists", "attribute_not_exists", "attribute_type", "contains")


@dataclass(frozen=True, slots=True)
class KeyTerm:
    """One condition of a key condition, seen from the key attribute's side.

    ``name`` is the attribute as written (``pk`` or ``#k``) in an unbound tree and the real
    name in a bound one; ``op`` is ``=``, ``<``, ``<=``, ``>``, ``>=``, ``between`` or
    ``begins_with``; ``values`` its value operands (one, or two for ``between``).
    """

    name: str
    op: str
    values: tuple[Operand, ...]


def key_terms(tree: Condition) -> list[KeyTerm]:
    """The conditions of a key condition, in the order written; raises DynamoDB's error
    for any other shape. Works on unbound and bound trees alike."""
    terms: list[KeyTerm] = []
    _collect(tree, terms)
    if len(terms) > 2:
        raise ValidationException("Conditions can be of length 1 or 2 only")
    return terms


def _invalid_operator(operator: str) -> ValidationException:
    return ValidationException(f"Invalid operator used in {_KIND}: {operator}")


def _collect(node: Condition, terms: list[KeyTerm]) -> None:
    if isinstance(node, And):
        _collect(node.left, terms)
        _collect(node.right, terms)
        return
    if isinstance(node, Or):
        raise _invalid_operator("OR")
    if isinstance(node, Not):
        raise _invalid_operator("NOT")
    if isinstance(node, In):
        raise _invalid_operator("IN")
    if isinstance(node, Compare):
        if node.op == "<>":
            raise _invalid_operator("<>")
        operator, args = node.op, (node.left, node.right)
    elif isinstance(node, Between):
        operator, args = "between", (node.operand, node.low, node.high)
    elif isinstance(node, Call):
        if node.name in _NOT_KEY_FUNCTIONS:
            raise _invalid_operator(node.name)
        if node.name != "begins_with":
            raise ValidationException(f"{_KIND}s cannot contain nested operations")
        operator, args = "begins_with", node.args
    else:  # pragma: no cover - nothing else is a condition
        raise TypeError(f"not a condition node: {node!r}")

    if operator in ("between", "begins_with") and not isinstance(args[0], Path):
        shown = "BETWEEN" if operator == "between" else operator
        raise ValidationException(
            f"Invalid condition in {_KIND}: {shown} operator must have the key attribute as "
            "its first operand"
        )
    key: Path | None = None
    key_index = 0
    for index, arg in enumerate(args):
        if isinstance(arg, Path):
            if key is not None:
                raise ValidationException(
                    f"Invalid condition in {_KIND}: Multiple attribute names used in one "
                    "condition"
                )
            if len(arg.elements) > 1:
                raise ValidationException(
                    f"{_KIND}s cannot have conditions on nested attributes"
                )
            key, key_index = arg, index
        elif isinstance(arg, Call):
            raise ValidationException(f"{_KIND}s cannot contain nested operations")
    if key is None:
        raise ValidationException(f"Invalid condition in {_KIND}: No key attribute specified")
    name = key.elements[0]
    assert isinstance(name, str)
    if any(term.name == name for term in terms):
        raise ValidationException(f"{_KIND}s must only contain one condition per key")
    if key_index:  # ":v < sk": only comparisons can have the key second
        operator = _FLIPPED[operator]
    values = tuple(arg for index, arg in enumerate(args) if index != key_index)
    terms.append(KeyTerm(name, operator, values))


def key_condition(
    bound: Condition, partition_key: tuple[str, str], sort_key: tuple[str, str] | None
) -> tuple[Any, tuple | None]:
    """Check a bound KeyConditionExpression against a key schema and return
    ``(partition_value, sort_condition)``.

    ``partition_key`` and ``sort_key`` are ``(attribute name, type)`` with type ``"S"``,
    ``"N"`` or ``"B"``. ``sort_condition`` is None or one of ``("=", v)``, ``("<", v)``,
    ``("<=", v)``, ``(">", v)``, ``(">=", v)``, ``("between", low, high)``,
    ``("begins_with", prefix)``.

    The checks run in DynamoDB's order, key by key (partition key first): a table without
    a sort key takes one condition only ("Query key condition not supported"); a missing
    key is "Query condition missed key schema element: <name>" (the sort key may be
    missing only when it is the one condition's absence); value types must match the
    schema and key values may not be empty; the partition key takes ``=`` only.
    """
    terms = key_terms(bound)
    by_name = {term.name: term for term in terms}
    schema = [(partition_key[0], partition_key[1], True)]
    if sort_key is not None:
        schema.append((sort_key[0], sort_key[1], False))
    for name, key_type, is_partition in schema:
        if is_partition and sort_key is None and len(terms) > 1:
            raise ValidationException("Query key condition not supported")
        term = by_name.get(name)
        if term is None:
            if is_partition or len(terms) > 1:
                raise ValidationException(f"Query condition missed key schema element: {name}")
            continue
        for operand in term.values:
            if not isinstance(operand, Literal):
                raise ValueError("key_condition needs a bound tree (see parser.bind)")
            if _type_or_none(operand.value) != key_type:
                raise ValidationException(
                    "One or more parameter values were invalid: Condition parameter type "
                    "does not match schema type"
                )
            if key_type in ("S", "B") and len(operand.value) == 0:
                empty = "string" if key_type == "S" else "binary"
                raise ValidationException(
                    "One or more parameter values are not valid. The AttributeValue for a key "
                    f"attribute cannot contain an empty {empty} value. Key: {name}"
                )
        if is_partition and term.op != "=":
            raise ValidationException("Query key condition not supported")

    partition_value = by_name[partition_key[0]].values[0].value
    sort_term = by_name.get(sort_key[0]) if sort_key is not None else None
    if sort_term is None:
        return partition_value, None
    values = tuple(operand.value for operand in sort_term.values)
    return partition_value, (sort_term.op, *values)


def _type_or_none(value: Any) -> str | None:
    try:
        return value_type(value)
    except TypeError:  # not an engine value (an empty set): matches no key type
        return None


def paths_of(tree: Condition | Update | Projection | Operand) -> Iterator[Path]:
    """Every document path of a tree, in the order written (an update's targets too)."""
    if isinstance(tree, Path):
        yield tree
    elif isinstance(tree, Projection):
        yield from tree.paths
    elif isinstance(tree, Update):
        for action in tree.actions:
            yield action.path
            if isinstance(action, (SetAction, AddAction, DeleteAction)):
                yield from paths_of(action.value)
    elif isinstance(tree, (And, Or)):
        yield from paths_of(tree.left)
        yield from paths_of(tree.right)
    elif isinstance(tree, Not):
        yield from paths_of(tree.operand)
    elif isinstance(tree, Compare):
        yield from paths_of(tree.left)
        yield from paths_of(tree.right)
    elif isinstance(tree, Between):
        for operand in (tree.operand, tree.low, tree.high):
            yield from paths_of(operand)
    elif isinstance(tree, In):
        yield from paths_of(tree.operand)
        for option in tree.options:
            yield from paths_of(option)
    elif isinstance(tree, Call):
        for arg in tree.args:
            yield from paths_of(arg)
    elif isinstance(tree, Arithmetic):
        yield from paths_of(tree.left)
        yield from paths_of(tree.right)


def check_filter_keys(bound_filter: Condition, key_names: Iterable[str]) -> None:
    """A Query's FilterExpression may not use the key attributes of the table or index
    queried (the key condition does that): DynamoDB's "Filter Expression can only contain
    non-primary key attributes: Primary key attribute: <name>"."""
    keys = set(key_names)
    for path in paths_of(bound_filter):
        if path.elements[0] in keys:
            raise ValidationException(
                "Filter Expression can only contain non-primary key attributes: Primary key "
                f"attribute: {path.elements[0]}"
            )


def check_key_paths(bound: Condition | Update | Projection, key_names: Iterable[str]) -> None:
    """Key attributes hold scalars, so no expression may look inside one (``pk.a``,
    ``sk[0]``): DynamoDB's "Key attributes must be scalars; list random access '[]' and map
    lookup '.' are not allowed: Key: <name>"."""
    keys = set(key_names)
    for path in paths_of(bound):
        if len(path.elements) > 1 and path.elements[0] in keys:
            raise ValidationException(
                "Key attributes must be scalars; list random access '[]' and map lookup '.' "
                f"are not allowed: Key: {path.elements[0]}"
            )
