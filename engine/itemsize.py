"""An item's size as DynamoDB counts it — for the 400 KB item limit and for capacity units.

DynamoDB's formula (Developer Guide, "DynamoDB item sizes and formats"): the sum over
attributes of the UTF-8 length of the name plus the value's size, where a string is its
UTF-8 length, a binary its raw length, a number 1 byte per two significant digits plus 1
(leading and trailing zeros trimmed), null and Boolean 1 byte, a set the sum of its
members, and a list or map 3 bytes of overhead plus 1 byte per element plus the elements
(map keys count as names). Our own storage encoding is a different size and is never used
for these limits.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

MAX_ITEM_SIZE_BYTES = 400 * 1024  # DynamoDB's item limit, by this formula


def number_size(number: int | Decimal) -> int:
    """1 byte per two significant digits (leading and trailing zeros trimmed), plus 1."""
    if isinstance(number, int):
        digits = str(abs(number))
    else:
        digits = "".join(str(digit) for digit in number.as_tuple().digits)
    significant = digits.strip("0")
    return (max(len(significant), 1) + 1) // 2 + 1


def value_size(value: Any) -> int:
    """The size of one value (without its attribute name)."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, (int, Decimal)):
        return number_size(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, (set, frozenset)):
        return sum(value_size(member) for member in value)
    if isinstance(value, list):
        return 3 + sum(1 + value_size(element) for element in value)
    if isinstance(value, dict):
        return 3 + sum(1 + len(name.encode("utf-8")) + value_size(element)
                       for name, element in value.items())
    raise TypeError(f"not a DynamoDB value: {type(value).__name__}")


def item_size(item: dict) -> int:
    """The item's size in bytes by DynamoDB's formula (names plus values)."""
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())
