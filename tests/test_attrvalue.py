"""DynamoDB typed JSON <-> Python values (engine.attrvalue)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.attrvalue import (
    deserialize,
    deserialize_item,
    format_number,
    parse_number,
    serialize,
    serialize_item,
)
from engine.errors import SerializationException, ValidationException

numbers = st.one_of(
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=6, min_value=-(10**20), max_value=10**20
    ),
).map(lambda n: parse_number(str(n), "n"))

scalars = st.one_of(
    st.text(),
    numbers,
    st.binary(),
    st.booleans(),
    st.none(),
    st.sets(st.text(), min_size=1, max_size=5),
    st.sets(numbers, min_size=1, max_size=5),
    st.sets(st.binary(), min_size=1, max_size=5),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(min_size=1), children, max_size=4)
    ),
    max_leaves=20,
)


@given(values)
def test_round_trip_through_json(value):
    wire = json.loads(json.dumps(serialize(value)))
    assert deserialize(wire) == value


@given(st.dictionaries(st.text(min_size=1), values, max_size=6))
def test_item_round_trip(item):
    assert deserialize_item(json.loads(json.dumps(serialize_item(item)))) == item


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("-0", 0),
        ("1.50", Decimal("1.5")),
        ("1E+3", 1000),
        ("12345678901234567890123456789012345678", 12345678901234567890123456789012345678),
        ("0.1", Decimal("0.1")),
        ("1e-130", Decimal("1e-130")),
        ("+3", 3),
        (".123", Decimal("0.123")),
        ("0001.23", Decimal("1.23")),
        ("1e+5", 100000),
        ("0e1000", 0),
        ("-17.4E37", -174 * 10**36),
    ],
)
def test_numbers_are_exact(text, expected):
    parsed = parse_number(text, "n")
    assert parsed == expected
    assert type(parsed) is type(expected)
    assert not isinstance(parsed, float)


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1, "1"),
        (Decimal("1.500"), "1.5"),
        (Decimal("1E+5"), "100000"),
        (Decimal("-0.0"), "0"),
        (Decimal("1E-7"), "0.0000001"),
    ],
)
def test_format_number(number, text):
    assert format_number(number) == text


@pytest.mark.parametrize(
    "text",
    ["abc", "NaN", "Infinity", "-Infinity", "-NaN", "dog", "-dog", " 1", "1 ", " 7 ", "1_000",
     "0x10", "1e", "e5", ".", "1e126", "1e-131", "123456789012345678901234567890123456789", ""],
)
def test_bad_numbers(text):
    # DynamoDB: "The parameter cannot be converted to a numeric value" (spaces too); range
    # and precision errors are ValidationExceptions as well (Developer Guide, "Number").
    with pytest.raises(ValidationException):
        parse_number(text, "n")


@pytest.mark.parametrize("text", ["NaN", " 1", "1 ", "dog"])
def test_not_numbers_say_numeric(text):
    with pytest.raises(ValidationException, match="cannot be converted to a numeric value"):
        parse_number(text, "n")


@pytest.mark.parametrize("av", [{"N": 5}, {"N": 1.5}, {"NS": [1]}, {"S": 1}, {"S": True}])
def test_json_numbers_are_serialization_errors(av):
    # A JSON number where DynamoDB's protocol wants a string never reaches validation:
    # DynamoDB answers SerializationException ({"N": 123} in the Alternator suite).
    with pytest.raises(SerializationException):
        deserialize(av, "count")


@pytest.mark.parametrize(
    ("av", "fragment"),
    [
        ({}, "empty"),
        ({"S": "a", "N": "1"}, "more than one"),
        ({"X": "a"}, "unknown datatype"),
    ],
)
def test_invalid_values_name_the_attribute(av, fragment):
    with pytest.raises(ValidationException) as caught:
        deserialize_item({"colour": av})
    assert fragment in caught.value.message
    assert "colour" in caught.value.message


@pytest.mark.parametrize(
    ("av", "message"),
    [
        ({"NULL": False}, "Null attribute value types must have the value of true"),
        ({"SS": []}, "An string set  may not be empty"),
        ({"NS": []}, "An number set  may not be empty"),
        ({"BS": []}, "Binary sets should not be empty"),
        ({"SS": ["a", "a"]}, "Input collection [a, a] contains duplicates."),
        ({"NS": ["1", "1.0"]}, "Input collection [1, 1.0] contains duplicates."),
    ],
)
def test_set_and_null_errors_are_dynamodbs_texts(av, message):
    """Clients match these texts (DynamoDB's, double space included), so they carry no
    attribute name."""
    with pytest.raises(ValidationException) as caught:
        deserialize_item({"colour": av})
    assert caught.value.message == "One or more parameter values were invalid: " + message


@pytest.mark.parametrize(
    ("av", "fragment"),
    [
        ({"S": 1}, "String"),
        ({"B": "not base64!"}, "base64"),
        ({"B": "abc"}, "base64"),
        ({"B": 5}, "Blob"),
        ({"BOOL": "true"}, "Boolean"),
        ({"NULL": "yes"}, "Boolean"),
        ({"SS": "a"}, "List"),
        ({"SS": [1]}, "String"),
        ({"L": {}}, "List"),
        ({"M": []}, "Map"),
        ("x", "AttributeValue"),
        (["x"], "AttributeValue"),
    ],
)
def test_wrong_json_shapes_are_serialization_errors(av, fragment):
    # DynamoDB's deserializer refuses JSON of the wrong shape before any validation:
    # SerializationException, not ValidationException (Alternator: bad base64, {"N": 123}).
    with pytest.raises(SerializationException) as caught:
        deserialize_item({"colour": av})
    assert fragment in caught.value.message
    assert "colour" in caught.value.message


def test_nested_errors_give_the_path():
    with pytest.raises(ValidationException, match=r"doc\.inner\[1\]"):
        deserialize_item({"doc": {"M": {"inner": {"L": [{"S": "ok"}, {"N": "x"}]}}}})


def test_empty_attribute_name_refused():
    with pytest.raises(ValidationException):
        deserialize_item({"": {"S": "a"}})


def test_binary_is_base64():
    assert serialize(b"\x00\xff") == {"B": base64.b64encode(b"\x00\xff").decode()}
    assert deserialize({"BS": ["AA==", "/w=="]}) == {b"\x00", b"\xff"}


def test_bool_is_not_a_number():
    assert serialize(True) == {"BOOL": True}
    assert serialize({1, 2}) == {"NS": ["1", "2"]}


def test_float_refused():
    with pytest.raises(TypeError):
        serialize(1.5)
