"""The legacy (pre-expression) parameters through a real server with boto3's resource API:
Expected + ConditionalOperator, AttributeUpdates, KeyConditions, QueryFilter, ScanFilter,
AttributesToGet — each ComparisonOperator with its AttributeValueList arity and type
rules (API Reference, "Condition" and "ExpectedAttributeValue"), and DynamoDB's refusal to
mix legacy and expression parameters in one request."""

from __future__ import annotations

from decimal import Decimal

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from test_server_http import (  # noqa: F401  (module-scoped fixtures: engine, app, server, client)
    ACCESS_KEY,
    REGION,
    SECRET,
    app,
    client,
    engine,
    error_code,
    new_table,
    server,
)

from engine.attrvalue import serialize
from engine.expressions import legacy as legacy_module
from engine.expressions.evaluate import evaluate


def message(caught: pytest.ExceptionInfo) -> str:
    return caught.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def resource(server):  # noqa: F811
    return boto3.resource(
        "dynamodb", endpoint_url=server.endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def table(client, resource):  # noqa: F811
    return resource.Table(new_table(client, sort_type=None))


@pytest.fixture(scope="module")
def sorted_table(client, resource):  # noqa: F811
    table = resource.Table(new_table(client, sort_type="N"))
    with table.batch_writer() as batch:
        for sk in range(10):
            batch.put_item(Item={"pk": "q", "sk": sk, "n": sk * 10,
                                 "s": f"item-{sk}", "tags": {"all", f"t{sk}"}})
    return table


_keys = iter(range(10**6))


def fresh(table, **attributes) -> dict:
    key = {"pk": f"k{next(_keys)}"}
    table.put_item(Item={**key, **attributes})
    return key


# --- Expected ---------------------------------------------------------------------------

ITEM = {"a": 1, "b": "cat", "c": b"cat", "set": {"x", "y"}, "list": [1, "two"]}


@pytest.mark.parametrize(
    ("attribute", "operator", "values", "holds"),
    [
        ("a", "EQ", [1], True), ("a", "EQ", [2], False), ("a", "EQ", ["1"], False),
        ("set", "EQ", [{"y", "x"}], True), ("list", "EQ", [[1, "two"]], True),
        ("a", "NE", [2], True), ("a", "NE", [1], False), ("nope", "NE", [1], True),
        ("a", "LE", [1], True), ("a", "LE", [0], False), ("b", "LE", ["dog"], True),
        ("c", "LE", [b"dog"], True), ("a", "LE", ["1"], False),
        ("a", "LT", [2], True), ("a", "LT", [1], False),
        ("a", "GE", [1], True), ("b", "GE", ["dog"], False),
        ("a", "GT", [0], True), ("c", "GT", [b"cas"], True), ("nope", "GT", [0], False),
        ("a", "NOT_NULL", [], True), ("nope", "NOT_NULL", [], False),
        ("nope", "NULL", [], True), ("a", "NULL", [], False),
        ("b", "CONTAINS", ["at"], True), ("set", "CONTAINS", ["x"], True),
        ("list", "CONTAINS", ["two"], True), ("c", "CONTAINS", [b"a"], True),
        ("b", "CONTAINS", ["dog"], False), ("nope", "CONTAINS", ["x"], False),
        ("b", "NOT_CONTAINS", ["dog"], True), ("set", "NOT_CONTAINS", ["x"], False),
        ("nope", "NOT_CONTAINS", ["x"], False),
        ("b", "BEGINS_WITH", ["ca"], True), ("c", "BEGINS_WITH", [b"c"], True),
        ("b", "BEGINS_WITH", ["at"], False), ("a", "BEGINS_WITH", ["1"], False),
        ("a", "IN", [3, 2, 1], True), ("b", "IN", ["dog", "cow"], False),
        ("a", "BETWEEN", [0, 1], True), ("a", "BETWEEN", [2, 3], False),
        ("b", "BETWEEN", ["bat", "cow"], True), ("a", "BETWEEN", ["0", "9"], False),
    ],
)
def test_expected_comparison_operators(table, attribute, operator, values, holds):
    key = fresh(table, **ITEM)
    call = lambda: table.update_item(  # noqa: E731
        Key=key, AttributeUpdates={"z": {"Value": 1, "Action": "PUT"}},
        Expected={attribute: {"ComparisonOperator": operator, "AttributeValueList": values}},
    )
    if holds:
        call()
        assert table.get_item(Key=key)["Item"]["z"] == 1
    else:
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == "ConditionalCheckFailedException"
        assert "z" not in table.get_item(Key=key)["Item"]


@pytest.mark.parametrize(
    ("operator", "values"),
    [("EQ", [1, 2]), ("NE", []), ("LT", [1, 2]), ("NULL", [1]), ("NOT_NULL", [1]),
     ("BETWEEN", [1]), ("BETWEEN", [1, 2, 3]), ("IN", []), ("CONTAINS", []),
     ("BEGINS_WITH", ["a", "b"])],
)
def test_expected_arity(table, operator, values):
    key = fresh(table, a=1)
    with pytest.raises(ClientError) as caught:
        table.put_item(Item=key, Expected={
            "a": {"ComparisonOperator": operator, "AttributeValueList": values}})
    assert error_code(caught) == "ValidationException"
    assert f"Invalid number of argument(s) for the {operator} ComparisonOperator" in message(
        caught)


@pytest.mark.parametrize(
    ("operator", "values", "kind"),
    [("LT", [{"a"}], "SS"), ("GE", [[1]], "L"), ("BEGINS_WITH", [1], "N"),
     ("CONTAINS", [{"a": 1}], "M"), ("IN", [{1, 2}], "NS"), ("BETWEEN", [True, True], "BOOL")],
)
def test_expected_value_types(table, operator, values, kind):
    key = fresh(table, a=1)
    with pytest.raises(ClientError) as caught:
        table.put_item(Item=key, Expected={
            "a": {"ComparisonOperator": operator, "AttributeValueList": values}})
    assert f"ComparisonOperator {operator} is not valid for {kind} AttributeValue type" in message(
        caught)


def test_in_values_of_one_type(table):
    key = fresh(table, a=1)
    with pytest.raises(ClientError) as caught:
        table.put_item(Item=key, Expected={
            "a": {"ComparisonOperator": "IN", "AttributeValueList": ["a", 3]}})
    assert "must be of same type" in message(caught)


def test_expected_between_bounds(table):
    key = fresh(table, a=1)
    with pytest.raises(ClientError) as caught:
        table.put_item(Item=key, Expected={
            "a": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [1, "2"]}})
    assert "must be of same type" in message(caught)
    with pytest.raises(ClientError) as caught:
        table.put_item(Item=key, Expected={
            "a": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [2, 1]}})
    assert error_code(caught) == "ValidationException"


def test_expected_value_and_exists(table):
    key = fresh(table, a=1)
    table.put_item(Item={**key, "a": 2}, Expected={"a": {"Value": 1}})
    table.put_item(Item={**key, "a": 3}, Expected={"a": {"Value": 2, "Exists": True}})
    table.put_item(Item={**key, "a": 4}, Expected={"b": {"Exists": False}})
    with pytest.raises(ClientError) as caught:
        table.put_item(Item={**key, "a": 5}, Expected={"a": {"Exists": False}})
    assert error_code(caught) == "ConditionalCheckFailedException"
    with pytest.raises(ClientError) as caught:
        table.put_item(Item={**key, "a": 5}, Expected={"a": {"Value": 1}})
    assert error_code(caught) == "ConditionalCheckFailedException"
    # A single Value with a ComparisonOperator stands for a one-element list.
    table.put_item(Item={**key, "a": 6}, Expected={"a": {"ComparisonOperator": "GT", "Value": 3}})
    assert table.get_item(Key=key)["Item"]["a"] == 6


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"Exists": True}, "Value must be provided when Exists is true for Attribute: a"),
        ({}, "Value must be provided when Exists is null for Attribute: a"),
        ({"Exists": False, "Value": 1}, "Value cannot be used when Exists is false"),
        ({"ComparisonOperator": "EQ", "Exists": True, "Value": 1},
         "Exists and ComparisonOperator cannot be used together"),
        ({"ComparisonOperator": "EQ", "Value": 1, "AttributeValueList": [1]},
         "Value and AttributeValueList cannot be used together"),
        ({"AttributeValueList": [1]},
         "AttributeValueList can only be used with a ComparisonOperator"),
    ],
)
def test_expected_form_errors(table, spec, fragment):
    key = fresh(table, a=1)
    with pytest.raises(ClientError) as caught:
        table.put_item(Item=key, Expected={"a": spec})
    assert error_code(caught) == "ValidationException"
    assert fragment in message(caught)


def test_conditional_operator(table):
    key = fresh(table, a=1, b=2)
    either = {"a": {"Value": 1}, "b": {"Value": 99}}
    with pytest.raises(ClientError):
        table.put_item(Item={**key, "c": 1}, Expected=either)  # AND by default
    table.put_item(Item={**key, "c": 1}, Expected=either, ConditionalOperator="OR")
    with pytest.raises(ClientError) as caught:
        table.put_item(Item={**key, "c": 1}, Expected=either, ConditionalOperator="XOR")
    assert "conditionalOperator" in message(caught)


def test_empty_expected(table):
    key = fresh(table, a=1)
    table.update_item(Key=key, AttributeUpdates={"z": {"Value": 3}}, Expected={})
    for operator in ("OR", "AND"):
        with pytest.raises(ClientError) as caught:
            table.update_item(Key=key, AttributeUpdates={"z": {"Value": 4}}, Expected={},
                              ConditionalOperator=operator)
        assert error_code(caught) == "ValidationException"
        assert "ConditionalOperator" in message(caught)
    with pytest.raises(ClientError) as caught:
        table.put_item(Item=key, ConditionalOperator="AND")
    assert "ConditionalOperator" in message(caught)
    assert table.get_item(Key=key)["Item"]["z"] == 3


def test_expected_on_delete(table):
    key = fresh(table, a=1)
    with pytest.raises(ClientError):
        table.delete_item(Key=key, Expected={"a": {"Value": 2}})
    table.delete_item(Key=key, Expected={"a": {"ComparisonOperator": "EQ",
                                               "AttributeValueList": [1]}})
    assert "Item" not in table.get_item(Key=key)


# --- AttributeUpdates -------------------------------------------------------------------


def test_attribute_updates_actions(table):
    key = fresh(table, n=1, s={"a", "b"}, gone="x", ns={1, 2}, lst=[1])
    table.update_item(Key=key, AttributeUpdates={
        "n": {"Action": "ADD", "Value": 5},
        "new_n": {"Action": "ADD", "Value": 2},
        "s": {"Action": "DELETE", "Value": {"a"}},
        "ns": {"Action": "ADD", "Value": {3}},
        "gone": {"Action": "DELETE"},
        "put": {"Value": "default action is PUT"},
        "lst": {"Action": "ADD", "Value": [2, 3]},
        "new_list": {"Action": "ADD", "Value": ["x"]},
    })
    assert table.get_item(Key=key)["Item"] == {
        **key, "n": 6, "new_n": 2, "s": {"b"}, "ns": {1, 2, 3},
        "put": "default action is PUT", "lst": [1, 2, 3], "new_list": ["x"],
    }


def test_attribute_updates_delete_last_member_removes_the_attribute(table):
    key = fresh(table, s={"a"})
    table.update_item(Key=key, AttributeUpdates={"s": {"Action": "DELETE", "Value": {"a"}}})
    assert "s" not in table.get_item(Key=key)["Item"]


def test_attribute_updates_return_values(table):
    key = fresh(table, a=1)
    result = table.update_item(Key=key, AttributeUpdates={"a": {"Action": "ADD", "Value": 1}},
                               ReturnValues="UPDATED_NEW")
    assert result["Attributes"] == {"a": 2}


@pytest.mark.parametrize(
    ("update", "fragment"),
    [
        ({"pk": {"Value": "x"}}, "This attribute is part of the key"),
        ({"a": {"Action": "PUT"}}, "Only DELETE action is allowed when no attribute value"),
        ({"a": {"Action": "ADD"}}, "Only DELETE action is allowed when no attribute value"),
        ({"a": {"Action": "ADD", "Value": "text"}}, "ADD action is not supported for the type S"),
        ({"a": {"Action": "DELETE", "Value": 3}},
         "DELETE action with value is not supported for the type N"),
    ],
)
def test_attribute_updates_errors(table, update, fragment):
    key = fresh(table, a=1)
    with pytest.raises(ClientError) as caught:
        table.update_item(Key=key, AttributeUpdates=update)
    assert error_code(caught) == "ValidationException"
    assert fragment in message(caught)


def test_attribute_updates_add_to_a_wrong_type_fails(table):
    key = fresh(table, a="text")
    with pytest.raises(ClientError) as caught:
        table.update_item(Key=key, AttributeUpdates={"a": {"Action": "ADD", "Value": 1}})
    assert error_code(caught) == "ValidationException"


# --- KeyConditions, QueryFilter, ScanFilter, AttributesToGet ----------------------------


def sort_keys(response: dict) -> list[int]:
    return [int(item["sk"]) for item in response["Items"]]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (None, list(range(10))),
        ({"ComparisonOperator": "EQ", "AttributeValueList": [3]}, [3]),
        ({"ComparisonOperator": "LT", "AttributeValueList": [3]}, [0, 1, 2]),
        ({"ComparisonOperator": "LE", "AttributeValueList": [3]}, [0, 1, 2, 3]),
        ({"ComparisonOperator": "GT", "AttributeValueList": [7]}, [8, 9]),
        ({"ComparisonOperator": "GE", "AttributeValueList": [7]}, [7, 8, 9]),
        ({"ComparisonOperator": "BETWEEN", "AttributeValueList": [2, 4]}, [2, 3, 4]),
    ],
)
def test_key_conditions(sorted_table, condition, expected):
    conditions = {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": ["q"]}}
    if condition is not None:
        conditions["sk"] = condition
    assert sort_keys(sorted_table.query(KeyConditions=conditions)) == expected


@pytest.mark.parametrize(
    "conditions",
    [
        {"sk": {"ComparisonOperator": "EQ", "AttributeValueList": [1]}},
        {"pk": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": ["q"]}},
        {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": ["q"]},
         "sk": {"ComparisonOperator": "IN", "AttributeValueList": [1]}},
        {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": ["q"]},
         "sk": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [1]}},
        {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": ["q"]},
         "n": {"ComparisonOperator": "EQ", "AttributeValueList": [1]}},
        {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [1]}},
        {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": ["q", "r"]}},
    ],
)
def test_key_conditions_errors(sorted_table, conditions):
    with pytest.raises(ClientError) as caught:
        sorted_table.query(KeyConditions=conditions)
    assert error_code(caught) == "ValidationException"


def test_query_filter_and_conditional_operator(sorted_table):
    keys = {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": ["q"]}}
    page = sorted_table.query(KeyConditions=keys, QueryFilter={
        "n": {"ComparisonOperator": "GE", "AttributeValueList": [70]},
        "tags": {"ComparisonOperator": "CONTAINS", "AttributeValueList": ["t1"]},
    }, ConditionalOperator="OR")
    assert sort_keys(page) == [1, 7, 8, 9]
    assert page["ScannedCount"] == 10
    page = sorted_table.query(KeyConditions=keys, Limit=5, QueryFilter={
        "s": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": ["item-"]},
        "n": {"ComparisonOperator": "NOT_NULL"},
    })
    assert sort_keys(page) == [0, 1, 2, 3, 4] and "LastEvaluatedKey" in page


def test_query_filter_may_not_name_keys(sorted_table):
    with pytest.raises(ClientError) as caught:
        sorted_table.query(
            KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": ["q"]}},
            QueryFilter={"sk": {"ComparisonOperator": "GT", "AttributeValueList": [1]}},
        )
    assert error_code(caught) == "ValidationException"
    assert "non-primary key attributes" in message(caught)


def test_scan_filter(sorted_table):
    page = sorted_table.scan(ScanFilter={
        "pk": {"ComparisonOperator": "EQ", "AttributeValueList": ["q"]},
        "n": {"ComparisonOperator": "IN", "AttributeValueList": [10, 30, 31]},
    })
    assert sorted(sort_keys(page)) == [1, 3]
    page = sorted_table.scan(ScanFilter={
        "tags": {"ComparisonOperator": "NOT_CONTAINS", "AttributeValueList": ["t5"]},
        "pk": {"ComparisonOperator": "EQ", "AttributeValueList": ["q"]},
    })
    assert sorted(sort_keys(page)) == [0, 1, 2, 3, 4, 6, 7, 8, 9]


def test_attributes_to_get(sorted_table):
    key = {"pk": "q", "sk": 1}
    assert sorted_table.get_item(Key=key, AttributesToGet=["n", "nothing"])["Item"] == {"n": 10}
    keys = {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": ["q"]}}
    page = sorted_table.query(KeyConditions=keys, AttributesToGet=["sk"], Limit=2)
    assert page["Items"] == [{"sk": 0}, {"sk": 1}]
    page = sorted_table.scan(AttributesToGet=["s"], Select="SPECIFIC_ATTRIBUTES", Limit=1)
    assert list(page["Items"][0]) == ["s"]
    batch = sorted_table.meta.client.batch_get_item(RequestItems={
        sorted_table.name: {"Keys": [{"pk": "q", "sk": 2}], "AttributesToGet": ["n"]}})
    assert batch["Responses"][sorted_table.name] == [{"n": 20}]


def test_attributes_to_get_errors(sorted_table):
    with pytest.raises(ClientError) as caught:
        sorted_table.get_item(Key={"pk": "q", "sk": 1}, AttributesToGet=["n", "n"])
    assert "Duplicate value in attribute name: n" in message(caught)
    with pytest.raises(ClientError) as caught:
        sorted_table.scan(AttributesToGet=["n"], Select="ALL_ATTRIBUTES")
    assert "Cannot specify the AttributesToGet when choosing to get ALL_ATTRIBUTES" in message(
        caught)


# --- mixing legacy and expression parameters --------------------------------------------


@pytest.mark.parametrize(
    ("operation", "arguments", "legacy", "expression"),
    [
        ("get_item", {"Key": {"pk": "q", "sk": 1}, "AttributesToGet": ["n"],
                      "ProjectionExpression": "n"}, "AttributesToGet", "ProjectionExpression"),
        ("put_item", {"Item": {"pk": "q", "sk": 1}, "Expected": {"n": {"Exists": False}},
                      "ConditionExpression": "attribute_exists(n)"},
         "Expected", "ConditionExpression"),
        ("update_item", {"Key": {"pk": "q", "sk": 1}, "UpdateExpression": "SET a = :v",
                         "ExpressionAttributeValues": {":v": 1},
                         "Expected": {"n": {"Value": 10}}}, "Expected", "UpdateExpression"),
        ("update_item", {"Key": {"pk": "q", "sk": 1},
                         "AttributeUpdates": {"a": {"Value": 1}},
                         "ConditionExpression": "attribute_exists(n)"},
         "AttributeUpdates", "ConditionExpression"),
        ("query", {"KeyConditions": {"pk": {"ComparisonOperator": "EQ",
                                            "AttributeValueList": ["q"]}},
                   "FilterExpression": "n > :v", "ExpressionAttributeValues": {":v": 1}},
         "KeyConditions", "FilterExpression"),
        ("scan", {"ScanFilter": {"n": {"ComparisonOperator": "NOT_NULL"}},
                  "ProjectionExpression": "n"}, "ScanFilter", "ProjectionExpression"),
    ],
)
def test_mixing_refused(sorted_table, operation, arguments, legacy, expression):
    with pytest.raises(ClientError) as caught:
        getattr(sorted_table, operation)(**arguments)
    assert error_code(caught) == "ValidationException"
    text = message(caught)
    assert text.startswith("Can not use both expression and non-expression parameters")
    assert legacy in text and expression in text


def test_mixing_message_exactly(sorted_table):
    with pytest.raises(ClientError) as caught:
        sorted_table.get_item(Key={"pk": "q", "sk": 1}, AttributesToGet=["n"],
                              ProjectionExpression="n")
    assert message(caught) == (
        "Can not use both expression and non-expression parameters in the same request: "
        "Non-expression parameters: {AttributesToGet} Expression parameters: "
        "{ProjectionExpression}"
    )


def test_legacy_numbers_are_exact(table):
    key = fresh(table, a=Decimal("0.1"))
    table.update_item(Key=key, AttributeUpdates={"a": {"Action": "ADD",
                                                       "Value": Decimal("0.2")}},
                      Expected={"a": {"ComparisonOperator": "EQ",
                                      "AttributeValueList": [Decimal("0.1")]}})
    assert table.get_item(Key=key)["Item"]["a"] == Decimal("0.3")


@pytest.mark.parametrize(
    ("existing", "value"),
    [({"dog"}, 2), ({"dog"}, ["cat"]), (["dog"], {"cat"}), (["dog"], 3), (2, ["dog"]),
     (2, {"dog"}), ({1, 2}, {"a"})],
)
def test_attribute_updates_add_type_mismatch(table, existing, value):
    key = fresh(table, a=existing)
    with pytest.raises(ClientError) as caught:
        table.update_item(Key=key, AttributeUpdates={"a": {"Action": "ADD", "Value": value}})
    assert error_code(caught) == "ValidationException"
    assert "mismatch" in message(caught)


def test_attribute_updates_delete_from_a_set_of_another_type(table):
    key = fresh(table, a={1, 2})
    with pytest.raises(ClientError) as caught:
        table.update_item(Key=key, AttributeUpdates={"a": {"Action": "DELETE",
                                                           "Value": {"x"}}})
    assert "mismatch" in message(caught)


@pytest.mark.parametrize("value", ["b", 3, b"b", True, None, [2, 3], {"a": 3}])
def test_attribute_updates_delete_value_must_be_a_set(table, value):
    key = fresh(table, a=value)
    with pytest.raises(ClientError) as caught:
        table.update_item(Key=key, AttributeUpdates={"a": {"Action": "DELETE", "Value": value}})
    assert "type" in message(caught)


def test_attribute_updates_on_a_missing_item(table):
    for update, created in [({}, True), ({"a": {"Action": "DELETE"}}, False),
                            ({"a": {"Action": "DELETE", "Value": {4}}}, False),
                            ({"a": {"Action": "ADD", "Value": [1]}}, True)]:
        key = {"pk": f"missing-{next(_keys)}"}
        table.update_item(Key=key, AttributeUpdates=update)
        assert ("Item" in table.get_item(Key=key)) == created, update


# --- the translation against a reference, over generated items ---------------------------

SCALAR_VALUES = st.one_of(st.integers(-3, 3), st.sampled_from(["", "a", "ab", "b", "ba"]),
                          st.sampled_from([b"", b"a", b"ab", b"b"]))
ATTRIBUTE_VALUES = st.one_of(
    SCALAR_VALUES, st.booleans(), st.none(),
    st.sets(st.sampled_from(["a", "ab", "b"]), min_size=1, max_size=3),
    st.sets(st.integers(-3, 3), min_size=1, max_size=3),
    st.lists(SCALAR_VALUES, max_size=3),
)


def reference_kind(value):
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "N"
    if isinstance(value, str):
        return "S"
    if isinstance(value, bytes):
        return "B"
    if value is None:
        return "NULL"
    if isinstance(value, (set, frozenset)):
        return "NS" if all(isinstance(v, int) for v in value) else "SS"
    return "L"


def same(left, right) -> bool:
    return reference_kind(left) == reference_kind(right) and left == right


def reference(operator: str, present: bool, value, operands: list) -> bool:
    """The legacy operators as the API Reference's Condition data type describes them."""
    if operator == "NULL":
        return not present
    if operator == "NOT_NULL":
        return present
    if operator == "NE":
        return not (present and same(value, operands[0]))
    if not present:
        return False
    if operator == "EQ":
        return same(value, operands[0])
    if operator == "IN":
        return any(same(value, operand) for operand in operands)
    kind = reference_kind(value)
    if operator in ("LT", "LE", "GT", "GE", "BETWEEN"):
        if any(reference_kind(operand) != kind for operand in operands):
            return False
        if operator == "BETWEEN":
            return operands[0] <= value <= operands[1]
        return {"LT": value < operands[0], "LE": value <= operands[0],
                "GT": value > operands[0], "GE": value >= operands[0]}[operator]
    if operator == "BEGINS_WITH":
        return kind == reference_kind(operands[0]) and value.startswith(operands[0])
    operand = operands[0]
    if kind in ("S", "B"):
        holds = reference_kind(operand) == kind and operand in value
    elif kind in ("SS", "NS"):
        holds = any(same(member, operand) for member in value)
    elif kind == "L":
        holds = any(same(element, operand) for element in value)
    else:
        holds = False
    return holds if operator == "CONTAINS" else not holds


@st.composite
def legacy_conditions(draw):
    operator = draw(st.sampled_from(legacy_module.COMPARISON_OPERATORS))
    if operator in ("NULL", "NOT_NULL"):
        operands = []
    elif operator == "BETWEEN":
        low, high = draw(st.one_of(
            st.lists(st.integers(-3, 3), min_size=2, max_size=2),
            st.lists(st.sampled_from(["a", "ab", "b"]), min_size=2, max_size=2)).map(sorted))
        operands = [low, high]
    elif operator == "IN":
        kind = draw(st.sampled_from([st.integers(-3, 3), st.sampled_from(["a", "ab", "b"])]))
        operands = draw(st.lists(kind, min_size=1, max_size=3))
    elif operator == "BEGINS_WITH":
        operands = [draw(st.sampled_from(["a", "b", b"a"]))]
    elif operator in ("EQ", "NE"):
        operands = [draw(ATTRIBUTE_VALUES.filter(lambda v: v != "" and v != b""))]
    else:
        operands = [draw(SCALAR_VALUES.filter(lambda v: v != "" and v != b""))]
    return operator, operands


@settings(max_examples=300, deadline=None)
@given(legacy_conditions(), st.booleans(), ATTRIBUTE_VALUES)
def test_legacy_operators_match_the_reference(condition, present, value):
    operator, operands = condition
    item = {"pk": "k", "a": value} if present else {"pk": "k"}
    spec = {"ComparisonOperator": operator,
            "AttributeValueList": [serialize(operand) for operand in operands]}
    tree = legacy_module.filter_condition({"a": spec}, parameter="ScanFilter")
    assert evaluate(tree, item) == reference(operator, present, item.get("a"), operands)
