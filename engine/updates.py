"""Condition checks and update actions on items — the engine-level form of DynamoDB's
ConditionExpression and UpdateExpression (the server parses the text into these).

Conditions are a list of clauses that must all hold::

    ("attribute_exists", name) | ("attribute_not_exists", name)
    | ("=", name, value) | ("<>", name, value)

Update actions apply in order to top-level attributes::

    ("SET", name, value) | ("SET_IF_NOT_EXISTS", name, value) | ("INCREMENT", name, number)
    | ("REMOVE", name) | ("ADD", name, number_or_set) | ("DELETE", name, set)
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from .errors import ConditionalCheckFailedException, ValidationException

# DynamoDB numbers: 38 significant digits, exact. Inexact or out-of-range results raise.
_NUMBER_CONTEXT = decimal.Context(
    prec=38, Emax=125, Emin=-130,
    traps=[decimal.Inexact, decimal.Overflow, decimal.Underflow, decimal.InvalidOperation],
)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, Decimal)) and not isinstance(value, bool)


def _set_kind(value: Any) -> str | None:
    if not isinstance(value, (set, frozenset)) or not value:
        return None
    if all(isinstance(member, str) for member in value):
        return "SS"
    if all(_is_number(member) for member in value):
        return "NS"
    if all(isinstance(member, (bytes, bytearray)) for member in value):
        return "BS"
    return None


def _values_equal(left: Any, right: Any) -> bool:
    """DynamoDB equality: same type and value (numbers compare numerically, sets as sets)."""
    if _is_number(left) and _is_number(right):
        return Decimal(left) == Decimal(right)
    if isinstance(left, (set, frozenset)) and isinstance(right, (set, frozenset)):
        return _set_kind(left) == _set_kind(right) and set(left) == set(right)
    return type(left) is type(right) and left == right


def add_numbers(left: Any, right: Any, *, attribute: str) -> int | Decimal:
    if isinstance(left, int) and isinstance(right, int):
        result: int | Decimal = left + right
        if len(str(abs(result)).rstrip("0") or "0") > 38:
            raise ValidationException(
                f"attribute {attribute}: the result has more than 38 significant digits"
            )
        return result
    try:
        return _NUMBER_CONTEXT.add(Decimal(left), Decimal(right))
    except decimal.DecimalException as err:
        raise ValidationException(
            f"attribute {attribute}: number overflow or precision loss in arithmetic ({err!r})"
        ) from err


def check_condition(item: dict | None, condition: Sequence | None, *, table: str) -> None:
    """Raise ConditionalCheckFailedException unless every clause holds for ``item``."""
    if not condition:
        return
    current = item or {}
    for clause in condition:
        if not isinstance(clause, (tuple, list)) or not clause:
            raise ValidationException(f"invalid condition clause {clause!r}")
        op = clause[0]
        if op in ("attribute_exists", "attribute_not_exists") and len(clause) == 2:
            present = clause[1] in current
            holds = present if op == "attribute_exists" else not present
        elif op in ("=", "<>") and len(clause) == 3:
            name, value = clause[1], clause[2]
            equal = name in current and _values_equal(current[name], value)
            holds = equal if op == "=" else not equal
        else:
            raise ValidationException(
                f"invalid condition clause {clause!r}: use attribute_exists, "
                "attribute_not_exists, = or <>"
            )
        if not holds:
            raise ConditionalCheckFailedException(
                f"The conditional request failed: {op} on {clause[1]!r} of table {table}"
            )


def apply_update(
    old: dict | None, key: dict, actions: Sequence, key_names: Sequence[str]
) -> tuple[dict, set[str]]:
    """The item after ``actions`` (upsert from ``key`` when missing) and the names touched."""
    if not actions:
        raise ValidationException("an update needs at least one action")
    new = dict(old) if old is not None else dict(key)
    touched: set[str] = set()
    for action in actions:
        if not isinstance(action, (tuple, list)) or len(action) < 2:
            raise ValidationException(f"invalid update action {action!r}")
        verb, name = action[0], action[1]
        if not isinstance(name, str) or not name:
            raise ValidationException(f"update action {verb}: attribute name must be a non-empty str")
        if name in key_names:
            raise ValidationException(
                f"One or more parameter values were invalid: Cannot update attribute {name}. "
                "This attribute is part of the key"
            )
        if name in touched:
            raise ValidationException(
                f"Invalid UpdateExpression: Two document paths overlap with each other: {name}"
            )
        touched.add(name)
        if verb == "SET" and len(action) == 3:
            new[name] = action[2]
        elif verb == "SET_IF_NOT_EXISTS" and len(action) == 3:
            new.setdefault(name, action[2])
        elif verb == "INCREMENT" and len(action) == 3:
            current = new.get(name)
            if current is None:
                raise ValidationException(
                    f"The provided expression refers to an attribute that does not exist in the item: {name}"
                )
            if not _is_number(current) or not _is_number(action[2]):
                raise ValidationException(
                    f"An operand in the update expression has an incorrect data type: {name}"
                )
            new[name] = add_numbers(current, action[2], attribute=name)
        elif verb == "REMOVE" and len(action) == 2:
            new.pop(name, None)
        elif verb == "ADD" and len(action) == 3:
            operand = action[2]
            current = new.get(name)
            if _is_number(operand):
                if current is None:
                    new[name] = operand
                elif _is_number(current):
                    new[name] = add_numbers(current, operand, attribute=name)
                else:
                    raise ValidationException(
                        f"An operand in the update expression has an incorrect data type: ADD {name}"
                    )
            elif _set_kind(operand):
                if current is None:
                    new[name] = set(operand)
                elif _set_kind(current) == _set_kind(operand):
                    new[name] = set(current) | set(operand)
                else:
                    raise ValidationException(
                        f"An operand in the update expression has an incorrect data type: ADD {name}"
                    )
            else:
                raise ValidationException(
                    f"Incorrect operand type for operator or function; operator: ADD, operand of {name} "
                    "must be a number or a non-empty set"
                )
        elif verb == "DELETE" and len(action) == 3:
            operand = action[2]
            current = new.get(name)
            if not _set_kind(operand):
                raise ValidationException(
                    f"Incorrect operand type for operator or function; operator: DELETE, operand of {name} "
                    "must be a non-empty set"
                )
            if current is None:
                continue
            if _set_kind(current) != _set_kind(operand):
                raise ValidationException(
                    f"An operand in the update expression has an incorrect data type: DELETE {name}"
                )
            remaining = set(current) - set(operand)
            if remaining:
                new[name] = remaining
            else:
                del new[name]
        else:
            raise ValidationException(
                f"invalid update action {action!r}: use SET, SET_IF_NOT_EXISTS, INCREMENT, "
                "REMOVE, ADD or DELETE"
            )
    return new, touched
