"""DynamoDB's typed JSON (``{"S": "x"}``, ``{"N": "1.5"}``, ...) to Python values and back.

Python side (SPEC §2): str (S), int or Decimal (N, exact — a float never appears), bytes (B),
bool (BOOL), None (NULL), sets of str / numbers / bytes (SS / NS / BS), list (L), dict (M).
Numbers arrive as strings and are parsed with :class:`decimal.Decimal`; integral values
become ``int`` (what the engine returns), the rest stay ``Decimal``.

Two kinds of bad input, answered as DynamoDB answers them: JSON of the wrong shape for the
protocol — a JSON number where a string belongs (``{"N": 123}``), a list where a map
belongs, bad base64 — is a :class:`~engine.errors.SerializationException` (DynamoDB's
deserializer refuses it before validation runs); well-formed JSON holding an invalid value —
``{"N": "dog"}``, ``{"N": " 1"}``, an empty set, ``{"NULL": false}``, an empty
AttributeValue — is a :class:`~engine.errors.ValidationException`. Both name the attribute.
"""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from engine.errors import SerializationException, ValidationException

__all__ = [
    "deserialize",
    "deserialize_item",
    "serialize",
    "serialize_item",
    "parse_number",
    "format_number",
    "value_type",
]

# DynamoDB's limits on N: 38 significant digits, magnitude in
# [1E-130, 9.9999999999999999999999999999999999999E+125].
_MAX_DIGITS = 38
_MAX_ADJUSTED_EXPONENT = 125
_MIN_ADJUSTED_EXPONENT = -130

# normalize() rounds to the context's precision (28 by default): give it room for any
# number that could be valid, so a 39-digit input is reported, never silently rounded.
_EXACT = Context(prec=400, Emax=999_999, Emin=-999_999)

# What DynamoDB reads as a number: optional sign, digits with an optional point (".5" and
# "5." included), optional exponent. No spaces, underscores, NaN or Infinity, which
# Decimal() would accept.
_NUMBER_SYNTAX = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

_TYPES = ("S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M")


def _json_kind(value: Any) -> str:
    """The name DynamoDB's deserializer gives a JSON value in its error messages."""
    if isinstance(value, bool):
        return "BOOLEAN_VALUE"
    if isinstance(value, (int, float)):
        return "NUMBER_VALUE"
    if isinstance(value, str):
        return "STRING_VALUE"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, dict):
        return "START_OBJECT"
    return "VALUE_NULL"


def _wrong_json(value: Any, wanted: str, where: str) -> SerializationException:
    return SerializationException(f"{_json_kind(value)} cannot be converted to {wanted} ({where})")


def parse_number(text: Any, where: str) -> int | Decimal:
    """Parse a DynamoDB number string exactly; int when integral, else Decimal.

    A JSON number (not a string) is a SerializationException, as in DynamoDB; spaces,
    NaN and Infinity are not numbers (ValidationException "cannot be converted to a
    numeric value").
    """
    if not isinstance(text, str):
        raise _wrong_json(text, "String", where)
    if _NUMBER_SYNTAX.fullmatch(text) is None:
        raise ValidationException(
            f"The parameter cannot be converted to a numeric value: {text} ({where})"
        )
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValidationException(
            f"The parameter cannot be converted to a numeric value: {text} ({where})"
        ) from None
    if not number.is_finite():
        raise ValidationException(
            f"The parameter cannot be converted to a numeric value: {text} ({where})"
        )
    if number.is_zero():
        return 0
    adjusted = number.adjusted()  # exact, needs no context
    if adjusted > _MAX_ADJUSTED_EXPONENT:
        raise ValidationException(
            "Number overflow. Attempting to store a number with magnitude larger than "
            f"supported range ({where})"
        )
    if adjusted < _MIN_ADJUSTED_EXPONENT:
        raise ValidationException(
            "Number underflow. Attempting to store a number with magnitude smaller than "
            f"supported range ({where})"
        )
    digits = "".join(map(str, number.as_tuple().digits)).strip("0")
    if len(digits) > _MAX_DIGITS:
        raise ValidationException(
            f"Attempting to store more than 38 significant digits in a Number ({where})"
        )
    normalized = number.normalize(_EXACT)  # exact now: at most 38 digits
    if normalized.as_tuple().exponent >= 0:
        return int(normalized)
    return normalized


def format_number(number: int | Decimal) -> str:
    """The canonical string of a number: no exponent, no trailing zeros (as DynamoDB returns)."""
    if isinstance(number, int):
        return str(number)
    if number.is_zero():
        return "0"
    normalized = number.normalize(_EXACT)
    if normalized.as_tuple().exponent >= 0:
        return str(int(normalized))
    return format(normalized, "f")


def _decode_binary(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise _wrong_json(text, "Blob", where)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SerializationException(
            f"Base64 encoded value of {where} is not valid base64: {text[:64]!r}"
        ) from None


def deserialize(av: Any, where: str = "value") -> Any:
    """One typed attribute value to its Python value; ``where`` names it in errors."""
    if not isinstance(av, dict):
        raise _wrong_json(av, "AttributeValue", where)
    av = {tag: body for tag, body in av.items() if body is not None}  # JSON null = absent
    if len(av) != 1:
        if not av:
            raise ValidationException(
                "Supplied AttributeValue is empty, must contain exactly one of the supported "
                f"datatypes ({where})"
            )
        raise ValidationException(
            "Supplied AttributeValue has more than one datatypes set, must contain exactly "
            f"one of the supported datatypes ({where})"
        )
    ((tag, body),) = av.items()
    if tag == "S":
        if not isinstance(body, str):
            raise _wrong_json(body, "String", where)
        return body
    if tag == "N":
        return parse_number(body, where)
    if tag == "B":
        return _decode_binary(body, where)
    if tag == "BOOL":
        if not isinstance(body, bool):
            raise _wrong_json(body, "Boolean", where)
        return body
    if tag == "NULL":
        if not isinstance(body, bool):
            raise _wrong_json(body, "Boolean", where)
        if body is not True:
            raise ValidationException(
                "One or more parameter values were invalid: Null attribute value types must "
                "have the value of true")
        return None
    if tag in ("SS", "NS", "BS"):
        if not isinstance(body, list):
            raise _wrong_json(body, "List", where)
        if not body:  # DynamoDB's texts, to the letter (its double space included)
            raise ValidationException(
                "One or more parameter values were invalid: "
                + {"SS": "An string set  may not be empty",
                   "NS": "An number set  may not be empty",
                   "BS": "Binary sets should not be empty"}[tag])
        if tag == "SS":
            for element in body:
                if not isinstance(element, str):
                    raise _wrong_json(element, "String", where)
            elements: list[Any] = list(body)
        elif tag == "NS":
            elements = [parse_number(element, where) for element in body]
        else:
            elements = [_decode_binary(element, where) for element in body]
        result = set(elements)
        if len(result) != len(elements):
            raise ValidationException(  # Java's list format, as DynamoDB prints it
                "One or more parameter values were invalid: Input collection "
                f"[{', '.join(str(element) for element in body)}] contains duplicates.")
        return result
    if tag == "L":
        if not isinstance(body, list):
            raise _wrong_json(body, "List", where)
        return [deserialize(element, f"{where}[{index}]") for index, element in enumerate(body)]
    if tag == "M":
        if not isinstance(body, dict):
            raise _wrong_json(body, "Map", where)
        return {name: deserialize(value, f"{where}.{name}") for name, value in body.items()}
    # An unknown member is ignored by DynamoDB's deserializer, leaving no datatype set.
    raise ValidationException(
        f"Supplied AttributeValue is empty, must contain exactly one of the supported "
        f"datatypes ({where}: unknown datatype {tag!r}; the datatypes are {', '.join(_TYPES)})"
    )


def deserialize_item(item: Any, where: str = "Item") -> dict[str, Any]:
    """A map of attribute name to typed value (an item or a key) to a Python dict."""
    if not isinstance(item, dict):
        raise _wrong_json(item, "Map", where)
    result = {}
    for name, av in item.items():
        if name == "":
            raise ValidationException(
                f"One or more parameter values were invalid: An attribute name in {where} is empty"
            )
        result[name] = deserialize(av, name)
    return result


def value_type(value: Any) -> str:
    """The DynamoDB type letter(s) of a Python value."""
    if isinstance(value, str):
        return "S"
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, (int, Decimal)):
        return "N"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "B"
    if value is None:
        return "NULL"
    if isinstance(value, (set, frozenset)):
        for element in value:
            element_type = value_type(element)
            if element_type in ("S", "N", "B"):
                return element_type + "S"
            break
        raise TypeError(f"cannot tell the type of set {value!r}")
    if isinstance(value, (list, tuple)):
        return "L"
    if isinstance(value, dict):
        return "M"
    if isinstance(value, float):
        raise TypeError("floats are never stored; numbers are int or Decimal")
    raise TypeError(f"no DynamoDB type for {type(value).__name__}")


def serialize(value: Any) -> dict[str, Any]:
    """One Python value to typed JSON."""
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, Decimal)):
        return {"N": format_number(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"B": base64.b64encode(bytes(value)).decode("ascii")}
    if value is None:
        return {"NULL": True}
    if isinstance(value, dict):
        return {"M": {name: serialize(element) for name, element in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [serialize(element) for element in value]}
    if isinstance(value, (set, frozenset)):
        tag = value_type(value)
        if tag == "SS":
            return {"SS": sorted(value)}
        if tag == "NS":
            return {"NS": [format_number(element) for element in sorted(value)]}
        return {
            "BS": [base64.b64encode(bytes(element)).decode("ascii") for element in sorted(value)]
        }
    raise TypeError(f"no DynamoDB type for {type(value).__name__}: {value!r}")


def serialize_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: serialize(value) for name, value in item.items()}
