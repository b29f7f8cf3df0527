"""boto3's own condition builders (``boto3.dynamodb.conditions.Key`` / ``Attr``) through the
resource API against the server: every operator and combination, each checked against a
plain-Python filter over the same items. Then hypothesis: random conditions give the same
answer through the server, through the engine's Python API (Table.scan_page with the same
expression text) and through the reference filter written here."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, ConditionExpressionBuilder, Key
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_server_http import (  # noqa: F401  (module-scoped fixtures: engine, app, server, client)
    ACCESS_KEY,
    REGION,
    SECRET,
    app,
    client,
    engine,
    new_table,
    server,
)

# --- the items and the reference semantics ----------------------------------------------

WORDS = ["", "a", "ab", "abc", "b", "ba", "cat", "dog", "x"]


def make_items() -> list[dict]:
    """40 items with attributes of varied types; some attributes missing."""
    items = []
    for index in range(40):
        item: dict[str, Any] = {"pk": f"p{index % 4}", "sk": index}
        if index % 5 != 0:
            item["n"] = (index * 7) % 13 - 4
        if index % 3 != 0:
            item["s"] = WORDS[index % len(WORDS)]
        if index % 4 == 1:
            item["s"] = index  # the same name holding a number on some items
        if index % 2 == 0:
            item["ss"] = {WORDS[(index + k) % len(WORDS)] or "z" for k in range(1 + index % 3)}
        if index % 3 == 1:
            item["l"] = [index % 4, WORDS[index % len(WORDS)], [index]]
        if index % 6 != 5:
            item["m"] = {"x": index % 5, "y": {"z": WORDS[index % len(WORDS)]}}
        if index % 7 == 3:
            item["flag"] = index % 2 == 0
        if index % 8 == 2:
            item["nothing"] = None
        items.append(item)
    return items


ITEMS = make_items()
MISSING = object()


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, (int, Decimal)):
        return "N"
    if isinstance(value, str):
        return "S"
    if isinstance(value, bytes):
        return "B"
    if value is None:
        return "NULL"
    if isinstance(value, (set, frozenset)):
        return "SS"
    if isinstance(value, list):
        return "L"
    return "M"


def get(item: dict, path: tuple) -> Any:
    value: Any = item
    for element in path:
        if isinstance(element, int):
            if not isinstance(value, list) or element >= len(value):
                return MISSING
        elif not isinstance(value, dict) or element not in value:
            return MISSING
        value = value[element]
    return value


def equal(left: Any, right: Any) -> bool:
    return left is not MISSING and kind(left) == kind(right) and left == right


def ordered(left: Any, right: Any, op: str) -> bool:
    if left is MISSING or kind(left) != kind(right) or kind(left) not in ("N", "S", "B"):
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right,
            ">=": left >= right}[op]


def size_of(value: Any) -> Any:
    if value is MISSING:
        return MISSING
    if isinstance(value, str):
        return len(value.encode())
    if kind(value) in ("SS", "L", "M", "B"):
        return len(value)
    return MISSING


def contains(value: Any, operand: Any) -> bool:
    if isinstance(value, str) and isinstance(operand, str):
        return operand in value
    if isinstance(value, (set, frozenset)):
        return operand in value and kind(operand) == "S"
    if isinstance(value, list):
        return any(equal(element, operand) for element in value)
    return False


def boto_path(path: tuple) -> str:
    text = ""
    for element in path:
        text += f"[{element}]" if isinstance(element, int) else (
            f".{element}" if text else element)
    return text


# --- every operator, one at a time ------------------------------------------------------

N, S, SS, L, M = ("n",), ("s",), ("ss",), ("l",), ("m",)
MX, MYZ, L0 = ("m", "x"), ("m", "y", "z"), ("l", 0)

CASES = [
    ("eq", Attr("n").eq(3), lambda i: equal(get(i, N), 3)),
    ("eq nested", Attr("m.x").eq(2), lambda i: equal(get(i, MX), 2)),
    ("eq list index", Attr("l[0]").eq(1), lambda i: equal(get(i, L0), 1)),
    ("ne", Attr("n").ne(3), lambda i: not equal(get(i, N), 3)),
    ("lt", Attr("n").lt(0), lambda i: ordered(get(i, N), 0, "<")),
    ("lte", Attr("s").lte("b"), lambda i: ordered(get(i, S), "b", "<=")),
    ("gt", Attr("m.y.z").gt("b"), lambda i: ordered(get(i, MYZ), "b", ">")),
    ("gte", Attr("n").gte(5), lambda i: ordered(get(i, N), 5, ">=")),
    ("between", Attr("n").between(-1, 4),
     lambda i: ordered(get(i, N), -1, ">=") and ordered(get(i, N), 4, "<=")),
    ("begins_with", Attr("s").begins_with("a"),
     lambda i: isinstance(get(i, S), str) and get(i, S).startswith("a")),
    ("is_in", Attr("n").is_in([1, 2, -3]),
     lambda i: any(equal(get(i, N), v) for v in (1, 2, -3))),
    ("exists", Attr("flag").exists(), lambda i: "flag" in i),
    ("not_exists", Attr("n").not_exists(), lambda i: "n" not in i),
    ("attribute_type N", Attr("s").attribute_type("N"), lambda i: kind(get(i, S)) == "N"),
    ("attribute_type NULL", Attr("nothing").attribute_type("NULL"), lambda i: "nothing" in i),
    ("attribute_type BOOL", Attr("flag").attribute_type("BOOL"), lambda i: "flag" in i),
    ("contains string", Attr("s").contains("a"), lambda i: contains(get(i, S), "a")),
    ("contains set", Attr("ss").contains("cat"), lambda i: contains(get(i, SS), "cat")),
    ("contains list", Attr("l").contains(2), lambda i: contains(get(i, L), 2)),
    ("size eq", Attr("ss").size().eq(2), lambda i: size_of(get(i, SS)) == 2),
    ("size gt string", Attr("s").size().gt(1),
     lambda i: size_of(get(i, S)) is not MISSING and size_of(get(i, S)) > 1),
    ("size of map", Attr("m").size().lte(2),
     lambda i: size_of(get(i, M)) is not MISSING and size_of(get(i, M)) <= 2),
    ("and", Attr("n").gt(0) & Attr("s").exists(),
     lambda i: ordered(get(i, N), 0, ">") and "s" in i),
    ("or", Attr("n").lt(-2) | Attr("flag").eq(True),
     lambda i: ordered(get(i, N), -2, "<") or equal(get(i, "flag".split()), True)),
    ("not", ~Attr("ss").exists(), lambda i: "ss" not in i),
    ("nested combination",
     (Attr("n").between(0, 6) | ~Attr("m.x").is_in([0, 1])) & ~(Attr("s").eq("a")),
     lambda i: (ordered(get(i, N), 0, ">=") and ordered(get(i, N), 6, "<=")
                or not any(equal(get(i, MX), v) for v in (0, 1)))
     and not equal(get(i, S), "a")),
]


@pytest.fixture(scope="module")
def resource(server):  # noqa: F811
    return boto3.resource(
        "dynamodb", endpoint_url=server.endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def table(client, resource):  # noqa: F811
    table = resource.Table(new_table(client, sort_type="N"))
    with table.batch_writer() as batch:
        for item in ITEMS:
            batch.put_item(Item=item)
    return table


def scan_keys(table, condition) -> set[int]:
    keys, start = set(), None
    while True:
        extra = {"ExclusiveStartKey": start} if start else {}
        page = table.scan(FilterExpression=condition, **extra)
        keys |= {int(item["sk"]) for item in page["Items"]}
        start = page.get("LastEvaluatedKey")
        if not start:
            return keys


def expected_keys(predicate) -> set[int]:
    return {item["sk"] for item in ITEMS if predicate(item)}


@pytest.mark.parametrize(("label", "condition", "predicate"), CASES, ids=[c[0] for c in CASES])
def test_attr_operator_matches_python(table, label, condition, predicate):
    assert scan_keys(table, condition) == expected_keys(predicate)


def test_condition_expression_with_attr(table):
    key = {"pk": "p1", "sk": 1}
    table.update_item(Key=key, UpdateExpression="SET tally = :zero",
                      ConditionExpression=Attr("tally").not_exists() & Attr("pk").eq("p1"),
                      ExpressionAttributeValues={":zero": 0})
    with pytest.raises(table.meta.client.exceptions.ConditionalCheckFailedException):
        table.update_item(Key=key, UpdateExpression="SET tally = :one",
                          ConditionExpression=Attr("tally").not_exists(),
                          ExpressionAttributeValues={":one": 1})
    table.delete_item(Key={"pk": "p2", "sk": 999},
                      ConditionExpression=Attr("pk").not_exists() | Attr("sk").lt(0))


@pytest.mark.parametrize(
    ("label", "key_condition", "predicate"),
    [
        ("eq", Key("pk").eq("p1"), lambda i: i["pk"] == "p1"),
        ("eq & eq", Key("pk").eq("p1") & Key("sk").eq(5),
         lambda i: i["pk"] == "p1" and i["sk"] == 5),
        ("lt", Key("pk").eq("p2") & Key("sk").lt(10), lambda i: i["pk"] == "p2" and i["sk"] < 10),
        ("lte", Key("pk").eq("p2") & Key("sk").lte(10),
         lambda i: i["pk"] == "p2" and i["sk"] <= 10),
        ("gt", Key("pk").eq("p3") & Key("sk").gt(20), lambda i: i["pk"] == "p3" and i["sk"] > 20),
        ("gte", Key("pk").eq("p3") & Key("sk").gte(19),
         lambda i: i["pk"] == "p3" and i["sk"] >= 19),
        ("between", Key("pk").eq("p0") & Key("sk").between(4, 20),
         lambda i: i["pk"] == "p0" and 4 <= i["sk"] <= 20),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_key_builders(table, label, key_condition, predicate):
    page = table.query(KeyConditionExpression=key_condition)
    assert [int(item["sk"]) for item in page["Items"]] == sorted(expected_keys(predicate))


def test_key_begins_with_and_filter(client, resource):  # noqa: F811
    strings = resource.Table(new_table(client, sort_type="S"))
    for sort in ["a", "ab", "abc", "b", "ba"]:
        strings.put_item(Item={"pk": "k", "sk": sort, "n": len(sort)})
    page = strings.query(KeyConditionExpression=Key("pk").eq("k") & Key("sk").begins_with("ab"),
                         FilterExpression=Attr("n").gt(2))
    assert [item["sk"] for item in page["Items"]] == ["abc"]
    assert page["ScannedCount"] == 2


# --- hypothesis: server, Python API and reference agree ---------------------------------

PATHS = [N, S, SS, L, M, MX, MYZ, L0, ("flag",), ("nothing",), ("absent",)]
SCALARS = st.one_of(st.integers(-5, 8), st.sampled_from(WORDS[1:]))


@st.composite
def leaf(draw) -> tuple:
    path = draw(st.sampled_from(PATHS))
    attr = Attr(boto_path(path))
    operator = draw(st.sampled_from(
        ["eq", "ne", "lt", "lte", "gt", "gte", "between", "begins_with", "is_in", "exists",
         "not_exists", "attribute_type", "contains", "size"]))
    if operator in ("exists", "not_exists"):
        present = operator == "exists"
        return (getattr(attr, operator)(),
                lambda i, p=path, e=present: (get(i, p) is not MISSING) == e)
    if operator == "attribute_type":
        type_name = draw(st.sampled_from(["N", "S", "SS", "L", "M", "BOOL", "NULL"]))
        return attr.attribute_type(type_name), lambda i, p=path, t=type_name: (
            get(i, p) is not MISSING and kind(get(i, p)) == t)
    if operator == "begins_with":
        prefix = draw(st.sampled_from(WORDS[1:]))
        return attr.begins_with(prefix), lambda i, p=path, v=prefix: (
            isinstance(get(i, p), str) and get(i, p).startswith(v))
    if operator == "contains":
        operand = draw(SCALARS)
        return attr.contains(operand), lambda i, p=path, v=operand: contains(get(i, p), v)
    if operator == "is_in":
        options = draw(st.lists(SCALARS, min_size=1, max_size=4, unique=True))
        return attr.is_in(options), lambda i, p=path, vs=tuple(options): any(
            equal(get(i, p), v) for v in vs)
    if operator == "between":
        if draw(st.booleans()):
            low, high = sorted(draw(st.lists(st.integers(-5, 8), min_size=2, max_size=2)))
        else:
            low, high = sorted(draw(st.lists(st.sampled_from(WORDS[1:]), min_size=2, max_size=2)))
        return attr.between(low, high), lambda i, p=path, lo=low, hi=high: (
            ordered(get(i, p), lo, ">=") and ordered(get(i, p), hi, "<="))
    if operator == "size":
        comparator = draw(st.sampled_from(["eq", "lt", "gte"]))
        number = draw(st.integers(0, 4))
        symbol = {"eq": "=", "lt": "<", "gte": ">="}[comparator]

        def by_size(i, p=path, c=symbol, v=number):
            size = size_of(get(i, p))
            if size is MISSING:
                return False
            return size == v if c == "=" else ordered(size, v, c)

        return getattr(attr.size(), comparator)(number), by_size
    operand = draw(SCALARS)
    if operator in ("eq", "ne"):
        negate = operator == "ne"
        return getattr(attr, operator)(operand), lambda i, p=path, v=operand, n=negate: (
            equal(get(i, p), v) != n)
    symbol = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[operator]
    return getattr(attr, operator)(operand), lambda i, p=path, v=operand, c=symbol: ordered(
        get(i, p), v, c)


def combine(children: st.SearchStrategy) -> st.SearchStrategy:
    pairs = st.tuples(children, children)
    return st.one_of(
        pairs.map(lambda ab: (ab[0][0] & ab[1][0],
                              lambda i, a=ab[0][1], b=ab[1][1]: a(i) and b(i))),
        pairs.map(lambda ab: (ab[0][0] | ab[1][0],
                              lambda i, a=ab[0][1], b=ab[1][1]: a(i) or b(i))),
        children.map(lambda c: (~c[0], lambda i, a=c[1]: not a(i))),
    )


conditions = st.recursive(leaf(), combine, max_leaves=5)


def to_engine_values(values: dict) -> dict:
    """boto3 hands numbers over as Decimal; the engine's integral numbers are int."""
    def convert(value: Any) -> Any:
        if isinstance(value, Decimal) and value == value.to_integral_value():
            return int(value)
        return value
    return {name: convert(value) for name, value in values.items()}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conditions)
def test_random_conditions_agree(engine, table, generated):  # noqa: F811
    condition, predicate = generated
    expected = expected_keys(predicate)
    assert scan_keys(table, condition) == expected
    built = ConditionExpressionBuilder().build_expression(condition)
    page = engine.table(table.name).scan_page(
        filter=built.condition_expression, names=built.attribute_name_placeholders or None,
        values=to_engine_values(built.attribute_value_placeholders) or None,
    )
    assert page.last_evaluated_key is None
    assert {item["sk"] for item in page.items} == expected
