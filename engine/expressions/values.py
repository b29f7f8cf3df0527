"""DynamoDB's type rules on the engine's Python values — shared by conditions, updates and
projections.

The engine's values (README "Values"): ``str`` S, ``int``/``Decimal`` N (never float),
``bytes`` B, ``bool`` BOOL, ``None`` NULL, ``set``/``frozenset`` SS/NS/BS, ``list`` L,
``dict`` M. Python's own ``==`` is not DynamoDB's: ``True == 1`` and ``[True] == [1]`` hold
in Python, but a BOOL is never equal to an N in DynamoDB (Developer Guide, "Comparison
operator and function reference": values of different types are never equal). Every typed
comparison in the engine goes through :func:`values_equal` and :func:`compare`.

Numbers: 38 significant digits, magnitude 1E-130 .. 9.99..E+125, exact. Arithmetic that
would round or leave that range raises ValidationException instead of storing a wrong
number (Developer Guide, "Data types": "Numbers ... can have up to 38 digits of precision").
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

from ..errors import ValidationException

__all__ = [
    "TYPE_NAMES",
    "ORDERED_TYPES",
    "type_of",
    "is_number",
    "set_type",
    "values_equal",
    "compare",
    "add_numbers",
    "subtract_numbers",
    "check_number",
    "deep_copy",
]

#: Every DynamoDB data type descriptor (attribute_type's valid second arguments).
TYPE_NAMES = ("S", "SS", "N", "NS", "B", "BS", "BOOL", "NULL", "L", "M")
#: The types with an order (<, <=, >, >=, BETWEEN): numbers, strings, binaries.
ORDERED_TYPES = frozenset({"N", "S", "B"})

_BINARY = (bytes, bytearray, memoryview)
_MAX_DIGITS = 38
_MAX_EXPONENT = 125  # largest magnitude 9.99..E+125
_MIN_EXPONENT = -130  # smallest magnitude 1E-130

# Exact arithmetic: two stored numbers (38 digits, exponents -130..125) add exactly within
# 400 digits; check_number then says what is wrong with a result DynamoDB cannot store.
_EXACT_CONTEXT = decimal.Context(prec=400, Emax=999_999, Emin=-999_999,
                                 traps=[decimal.Inexact, decimal.InvalidOperation])


def is_number(value: Any) -> bool:
    """An N: int or Decimal, and not a bool (``isinstance(True, int)`` holds in Python)."""
    return (isinstance(value, (int, Decimal))) and not isinstance(value, bool)


def set_type(value: Any) -> str:
    """SS, NS or BS for a non-empty set of one kind; ValidationException otherwise."""
    kind = None
    for member in value:
        if isinstance(member, str):
            member_kind = "SS"
        elif is_number(member):
            member_kind = "NS"
        elif isinstance(member, _BINARY):
            member_kind = "BS"
        else:
            raise ValidationException(
                f"a set may hold only strings, numbers or binaries, not {type(member).__name__}"
            )
        if kind is None:
            kind = member_kind
        elif kind != member_kind:
            raise ValidationException("a set's members must all be of one type (SS, NS or BS)")
    if kind is None:
        raise ValidationException("One or more parameter values were invalid: an empty set "
                                  "is not a DynamoDB value")
    return kind


def type_of(value: Any) -> str:
    """The DynamoDB type descriptor of an engine value: S, N, B, BOOL, NULL, SS, NS, BS, L, M."""
    if isinstance(value, str):
        return "S"
    if isinstance(value, bool):  # before the number test: bool is an int in Python
        return "BOOL"
    if isinstance(value, (int, Decimal)):
        return "N"
    if isinstance(value, _BINARY):
        return "B"
    if value is None:
        return "NULL"
    if isinstance(value, dict):
        return "M"
    if isinstance(value, (list, tuple)):
        return "L"
    if isinstance(value, (set, frozenset)):
        return set_type(value)
    raise ValidationException(f"not a DynamoDB value: {type(value).__name__}")


def values_equal(left: Any, right: Any) -> bool:
    """DynamoDB equality: same type and same value, deeply (lists in order, maps by key,
    sets as sets of the same set type, numbers numerically)."""
    left_type = type_of(left)
    if left_type != type_of(right):
        return False
    if left_type in ("S", "N", "BOOL", "NULL"):
        return left == right  # same type: int/Decimal compare exactly, str by code points
    if left_type == "B":
        return bytes(left) == bytes(right)
    if left_type in ("SS", "NS"):
        # Members are all str or all numbers (no bools): Python set equality is DynamoDB's,
        # and int/Decimal hash alike when numerically equal.
        return set(left) == set(right)
    if left_type == "BS":
        return {bytes(m) for m in left} == {bytes(m) for m in right}
    if left_type == "L":
        return len(left) == len(right) and all(
            values_equal(a, b) for a, b in zip(left, right, strict=True))
    # M
    return left.keys() == right.keys() and all(values_equal(left[k], right[k]) for k in left)


def compare(left: Any, right: Any) -> int | None:
    """-1, 0 or 1 when both are the same ordered type (N numerically, S by UTF-8 bytes, B
    bytewise); None when the comparison has no answer (different or unordered types)."""
    left_type = type_of(left)
    if left_type not in ORDERED_TYPES or left_type != type_of(right):
        return None
    if left_type == "B":
        left, right = bytes(left), bytes(right)
    # str: code point order equals UTF-8 byte order (UTF-8 preserves code point order).
    return (left > right) - (left < right)


def check_number(value: int | Decimal) -> int | Decimal:
    """The number if DynamoDB can store it (38 significant digits, magnitude in range),
    normalized: integral values as int, others as a normalized Decimal."""
    if isinstance(value, int):
        digits = str(abs(value)).rstrip("0")
        if value and len(digits) > _MAX_DIGITS:
            raise ValidationException(
                "Attempting to store more than 38 significant digits in a Number")
        if value and len(str(abs(value))) - 1 > _MAX_EXPONENT:
            raise ValidationException(
                "Number overflow. Attempting to store a number with magnitude larger than "
                "supported range")
        return value
    if not value.is_finite():
        raise ValidationException(f"not a DynamoDB number: {value}")
    if not value:
        return 0
    sign, digits, exponent = value.normalize(decimal.Context(prec=1000)).as_tuple()
    if len(digits) > _MAX_DIGITS:
        raise ValidationException(
            "Attempting to store more than 38 significant digits in a Number")
    adjusted = len(digits) - 1 + exponent  # the exponent of the leading digit
    if adjusted > _MAX_EXPONENT:
        raise ValidationException(
            "Number overflow. Attempting to store a number with magnitude larger than "
            "supported range")
    if adjusted < _MIN_EXPONENT:
        raise ValidationException(
            "Number underflow. Attempting to store a number with magnitude smaller than "
            "supported range")
    normalized = Decimal((sign, digits, exponent))
    if exponent >= 0:
        return int(normalized)
    return normalized


def _arithmetic(left: int | Decimal, right: int | Decimal, subtract: bool) -> int | Decimal:
    if type(left) is int and type(right) is int:
        return check_number(left - right if subtract else left + right)
    operation = _EXACT_CONTEXT.subtract if subtract else _EXACT_CONTEXT.add
    try:
        result = operation(Decimal(left), Decimal(right))
    except decimal.DecimalException as err:
        raise ValidationException(f"invalid number arithmetic: {left} and {right}") from err
    return check_number(result)


def add_numbers(left: int | Decimal, right: int | Decimal) -> int | Decimal:
    """``left + right`` exactly, or ValidationException (DynamoDB never rounds silently)."""
    return _arithmetic(left, right, subtract=False)


def subtract_numbers(left: int | Decimal, right: int | Decimal) -> int | Decimal:
    """``left - right`` exactly, or ValidationException."""
    return _arithmetic(left, right, subtract=True)


def deep_copy(value: Any) -> Any:
    """A copy sharing nothing mutable with ``value`` (scalars are immutable and shared)."""
    if isinstance(value, dict):
        return {name: deep_copy(element) for name, element in value.items()}
    if isinstance(value, list):
        return [deep_copy(element) for element in value]
    if isinstance(value, (set, frozenset)):
        return set(value)
    return value
