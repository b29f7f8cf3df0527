"""engine.expressions key conditions: a Query's KeyConditionExpression, its allowed shape
(API Reference, Query) and DynamoDB's errors, and the engine's (partition, sort) form."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ValidationException
from engine.expressions import (
    Placeholders,
    bind,
    key_condition,
    parse_condition,
    parse_projection,
    parse_update,
)
from engine.expressions.keycondition import (
    KeyTerm,
    check_filter_keys,
    check_key_paths,
    key_terms,
    paths_of,
)

KIND = "KeyConditionExpression"
STRING_SORT = (("pk", "S"), ("sk", "S"))
NUMBER_SORT = (("pk", "S"), ("sk", "N"))
BINARY_KEYS = (("pk", "B"), ("sk", "B"))
HASH_ONLY = (("pk", "S"), None)
VALUES = {":p": "part", ":n": 5, ":lo": 1, ":hi": 9, ":s": "pre", ":x": "x"}


def query(text, schema=NUMBER_SORT, names=None, values=None):
    """Parse, bind and check a key condition as the Query operation does."""
    values = VALUES if values is None else values
    used = {key: value for key, value in values.items() if key in text}
    placeholders = Placeholders(names, used or None)
    bound = bind(parse_condition(text, KIND), placeholders, KIND)
    placeholders.check_all_used()
    return key_condition(bound, *schema)


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(ValidationException) as caught:
        call(*args, **kwargs)
    return caught.value.message


# --- what a key condition may be ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "schema", "expected"),
    [
        ("pk = :p", NUMBER_SORT, ("part", None)),
        ("pk = :p", HASH_ONLY, ("part", None)),
        (":p = pk", HASH_ONLY, ("part", None)),
        ("pk = :p AND sk = :n", NUMBER_SORT, ("part", ("=", 5))),
        ("pk = :p AND sk < :n", NUMBER_SORT, ("part", ("<", 5))),
        ("pk = :p AND sk <= :n", NUMBER_SORT, ("part", ("<=", 5))),
        ("pk = :p AND sk > :n", NUMBER_SORT, ("part", (">", 5))),
        ("pk = :p AND sk >= :n", NUMBER_SORT, ("part", (">=", 5))),
        # the value may come first: the operator is then seen from the key's side
        ("pk = :p AND :n = sk", NUMBER_SORT, ("part", ("=", 5))),
        ("pk = :p AND :n < sk", NUMBER_SORT, ("part", (">", 5))),
        ("pk = :p AND :n <= sk", NUMBER_SORT, ("part", (">=", 5))),
        ("pk = :p AND :n > sk", NUMBER_SORT, ("part", ("<", 5))),
        ("pk = :p AND :n >= sk", NUMBER_SORT, ("part", ("<=", 5))),
        ("pk = :p AND sk BETWEEN :lo AND :hi", NUMBER_SORT, ("part", ("between", 1, 9))),
        ("pk = :p and sk between :lo and :hi", NUMBER_SORT, ("part", ("between", 1, 9))),
        ("pk = :p AND begins_with(sk, :s)", STRING_SORT, ("part", ("begins_with", "pre"))),
        # the sort key's condition may come first; parentheses anywhere (boto3's style)
        ("sk < :n AND pk = :p", NUMBER_SORT, ("part", ("<", 5))),
        ("(pk = :p) AND (sk >= :n)", NUMBER_SORT, ("part", (">=", 5))),
        ("(pk = :p AND begins_with(sk, :s))", STRING_SORT, ("part", ("begins_with", "pre"))),
        ("((pk = :p) AND (sk BETWEEN :lo AND :hi))", NUMBER_SORT,
         ("part", ("between", 1, 9))),
        ("(pk) = (:p)", HASH_ONLY, ("part", None)),
    ],
)
def test_key_conditions(text, schema, expected):
    assert query(text, schema) == expected


def test_names_through_placeholders():
    names = {"#k": "pk", "#s": "sk"}
    assert query("#k = :p AND #s > :n", NUMBER_SORT, names) == ("part", (">", 5))
    # reserved words as key names need them
    schema = (("status", "S"), ("name", "N"))
    names = {"#st": "status", "#nm": "name"}
    assert query("#st = :p AND #nm BETWEEN :lo AND :hi", schema, names) == (
        "part", ("between", 1, 9)
    )


def test_binary_and_decimal_keys():
    values = {":p": b"\x00\x01", ":s": b"\x00", ":d": Decimal("1.5")}
    assert query("pk = :p AND begins_with(sk, :s)", BINARY_KEYS, values=values) == (
        b"\x00\x01", ("begins_with", b"\x00")
    )
    assert query("pk = :p AND sk < :d", (("pk", "B"), ("sk", "N")), values=values) == (
        b"\x00\x01", ("<", Decimal("1.5"))
    )


# --- refused from the text alone (before the table is known) -------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a > b and size(b) > c or a > c", "Invalid operator used in KeyConditionExpression: OR"),
        ("pk = :p OR sk = :n", "Invalid operator used in KeyConditionExpression: OR"),
        ("not a > b", "Invalid operator used in KeyConditionExpression: NOT"),
        ("pk = :p AND NOT sk = :n", "Invalid operator used in KeyConditionExpression: NOT"),
        ("a in (b, c, d)", "Invalid operator used in KeyConditionExpression: IN"),
        ("a <> b", "Invalid operator used in KeyConditionExpression: <>"),
        ("pk = :p AND sk <> :n", "Invalid operator used in KeyConditionExpression: <>"),
        ("attribute_exists(a)", "Invalid operator used in KeyConditionExpression: "
         "attribute_exists"),
        ("attribute_not_exists(a)", "Invalid operator used in KeyConditionExpression: "
         "attribute_not_exists"),
        ("attribute_type(a, :t)", "Invalid operator used in KeyConditionExpression: "
         "attribute_type"),
        ("contains(a.d, b)", "Invalid operator used in KeyConditionExpression: contains"),
        (":a between size(b) and size(a) and b > :b", "Invalid condition in "
         "KeyConditionExpression: BETWEEN operator must have the key attribute as its first "
         "operand"),
        ("begins_with(:a, b) and a > :b", "Invalid condition in KeyConditionExpression: "
         "begins_with operator must have the key attribute as its first operand"),
        ("size(b) > a AND a.b > b AND b > c", "KeyConditionExpressions cannot contain nested "
         "operations"),
        ("a > size(b.d)", "KeyConditionExpressions cannot contain nested operations"),
        ("a between size(b) and size(a)", "KeyConditionExpressions cannot contain nested "
         "operations"),
        ("b > a.b", "Invalid condition in KeyConditionExpression: Multiple attribute names "
         "used in one condition"),
        ("b between c[1] and d", "Invalid condition in KeyConditionExpression: Multiple "
         "attribute names used in one condition"),
        ("begins_with(a, b)", "Invalid condition in KeyConditionExpression: Multiple "
         "attribute names used in one condition"),
        ("b.d > a AND c.d > e.f", "KeyConditionExpressions cannot have conditions on nested "
         "attributes"),
        ("a.d > c", "KeyConditionExpressions cannot have conditions on nested attributes"),
        ("b[0] > a", "KeyConditionExpressions cannot have conditions on nested attributes"),
        (":b > :a AND a < :b", "Invalid condition in KeyConditionExpression: No key attribute "
         "specified"),
        ("b > :a AND b < :a and c = :a and d = :a", "KeyConditionExpressions must only "
         "contain one condition per key"),
        ("(a > :a and b > :a) and (b > :a and c > :a)", "KeyConditionExpressions must only "
         "contain one condition per key"),
        (":a = a and b = :a and :a = c", "Conditions can be of length 1 or 2 only"),
        ("(a > :a and b > :a) and (c > :a and d > :a) and (e > :a and f > :a)",
         "Conditions can be of length 1 or 2 only"),
    ],
)
def test_shapes_refused_at_parse_time(text, message):
    assert error_of(parse_condition, text, KIND) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a > 4", 'Invalid KeyConditionExpression: Syntax error; token: "4", near: "> 4"'),
        ("things are not gonna be ok", "Invalid KeyConditionExpression: Syntax error; "
         'token: "are", near: "things are not"'),
        ("", "Invalid KeyConditionExpression: The expression can not be empty;"),
        ("contains2(a, :v)", "Invalid KeyConditionExpression: Invalid function name; "
         "function: contains2"),
        ("BEGINS_WITH(sk, :s)", "Invalid KeyConditionExpression: Invalid function name; "
         "function: BEGINS_WITH"),
        ("if_not_exists(a, :v) = :v", "Invalid KeyConditionExpression: The function is not "
         "allowed in a condition expression; function: if_not_exists"),
        ("pk = :p AND size(sk)", "Invalid KeyConditionExpression: The function is not allowed "
         "to be used this way in an expression; function: size"),
        ("key = :p", "Invalid KeyConditionExpression: Attribute name is a reserved keyword; "
         "reserved keyword: key"),
    ],
)
def test_general_errors_come_first_and_name_the_kind(text, message):
    assert error_of(parse_condition, text, KIND) == message


def test_key_terms_of_unbound_and_bound_trees():
    tree = parse_condition("#k = :p AND :n < sk", KIND)
    terms = key_terms(tree)
    assert [(term.name, term.op) for term in terms] == [("#k", "="), ("sk", ">")]
    bound = bind(tree, Placeholders({"#k": "pk"}, {":p": "x", ":n": 1}), KIND)
    assert [(term.name, term.op, term.values[0].value) for term in key_terms(bound)] == [
        ("pk", "=", "x"), ("sk", ">", 1)
    ]
    assert isinstance(terms[0], KeyTerm)


# --- refused against the key schema -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "schema", "message"),
    [
        ("sk = :n", NUMBER_SORT, "Query condition missed key schema element: pk"),
        ("z = :x", HASH_ONLY, "Query condition missed key schema element: pk"),
        ("sk between :lo and :hi", NUMBER_SORT, "Query condition missed key schema element: pk"),
        ("pk = :p AND attr = :n", NUMBER_SORT, "Query condition missed key schema element: sk"),
        ("attr = :n AND pk = :p", NUMBER_SORT, "Query condition missed key schema element: sk"),
        ("pk > :p", HASH_ONLY, "Query key condition not supported"),
        (":p <= pk", HASH_ONLY, "Query key condition not supported"),
        ("begins_with(pk, :p)", HASH_ONLY, "Query key condition not supported"),
        ("pk between :p and :p", HASH_ONLY, "Query key condition not supported"),
        ("pk = :p AND sk = :p", HASH_ONLY, "Query key condition not supported"),
        ("y = :p and z = :p", HASH_ONLY, "Query key condition not supported"),
        ("pk > :p AND sk = :n", NUMBER_SORT, "Query key condition not supported"),
        ("pk = :n", NUMBER_SORT, "One or more parameter values were invalid: Condition "
         "parameter type does not match schema type"),
        (":n > pk", HASH_ONLY, "One or more parameter values were invalid: Condition "
         "parameter type does not match schema type"),
        ("pk = :p AND sk = :x", NUMBER_SORT, "One or more parameter values were invalid: "
         "Condition parameter type does not match schema type"),
        ("pk = :p AND sk between :lo and :x", NUMBER_SORT, "Invalid KeyConditionExpression: "
         "The BETWEEN operator requires same data type for lower and upper bounds; lower "
         "bound operand: AttributeValue: {N:1}, upper bound operand: AttributeValue: {S:x}"),
        ("pk = :p AND sk between :hi and :lo", NUMBER_SORT, "Invalid KeyConditionExpression: "
         "The BETWEEN operator requires upper bound to be greater than or equal to lower "
         "bound; lower bound operand: AttributeValue: {N:9}, upper bound operand: "
         "AttributeValue: {N:1}"),
        ("pk = :p AND begins_with(sk, :n)", NUMBER_SORT, "Invalid KeyConditionExpression: "
         "Incorrect operand type for operator or function; operator or function: "
         "begins_with, operand type: N"),
        ("pk = :p AND begins_with(sk, :s)", NUMBER_SORT, "One or more parameter values were "
         "invalid: Condition parameter type does not match schema type"),
    ],
)
def test_schema_errors(text, schema, message):
    assert error_of(query, text, schema) == message


def test_key_values_may_not_be_empty():
    assert error_of(query, "pk = :e", HASH_ONLY, values={":e": ""}) == (
        "One or more parameter values are not valid. The AttributeValue for a key attribute "
        "cannot contain an empty string value. Key: pk"
    )
    assert error_of(query, "pk = :p AND sk > :e", BINARY_KEYS,
                    values={":p": b"x", ":e": b""}) == (
        "One or more parameter values are not valid. The AttributeValue for a key attribute "
        "cannot contain an empty binary value. Key: sk"
    )


def test_two_placeholders_naming_one_key():
    assert error_of(query, "#a = :p AND #b = :p", NUMBER_SORT, {"#a": "pk", "#b": "pk"}) == (
        "KeyConditionExpressions must only contain one condition per key"
    )


def test_key_condition_needs_a_bound_tree():
    with pytest.raises(ValueError):
        key_condition(parse_condition("pk = :p", KIND), ("pk", "S"), None)


# --- other expressions of a Query and the key attributes ------------------------------------


def test_a_query_filter_may_not_use_key_attributes():
    placeholders = Placeholders({"#k": "sk"}, {":v": 1})
    bound = bind(parse_condition("a = :v OR size(#k) > :v", "FilterExpression"), placeholders,
                 "FilterExpression")
    assert error_of(check_filter_keys, bound, ["pk", "sk"]) == (
        "Filter Expression can only contain non-primary key attributes: Primary key "
        "attribute: sk"
    )
    check_filter_keys(bound, ["pk"])


def test_no_expression_may_look_inside_a_key_attribute():
    names = {"#p": "pk"}
    cases = [
        (parse_projection("a, #p.x"), "ProjectionExpression"),
        (parse_condition("attribute_exists(#p[0])"), "ConditionExpression"),
        (parse_update("SET a = #p.b"), "UpdateExpression"),
    ]
    for tree, kind in cases:
        bound = bind(tree, Placeholders(names), kind)
        assert error_of(check_key_paths, bound, ["pk", "sk"]) == (
            "Key attributes must be scalars; list random access '[]' and map lookup '.' are "
            "not allowed: Key: pk"
        )
    check_key_paths(bind(parse_projection("pk, a.b"), Placeholders(), "ProjectionExpression"),
                    ["pk"])


def test_paths_of_every_tree_in_written_order():
    update = parse_update("SET a = b + c, d = list_append(e, :v) REMOVE f ADD g :w")
    assert [p.elements[0] for p in paths_of(update)] == ["a", "b", "c", "d", "e", "f", "g"]
    condition = parse_condition("NOT a IN (b, :v) AND c BETWEEN d AND e OR begins_with(f, g)")
    assert [p.elements[0] for p in paths_of(condition)] == list("abcdefg")


# --- generated: every valid shape gives back its parts --------------------------------------

_sort_terms = st.one_of(
    st.sampled_from(["=", "<", "<=", ">", ">="]).map(lambda op: ("cmp", op)),
    st.just(("between", None)),
    st.just(("begins_with", None)),
)
_FLIP = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@settings(max_examples=200)
@given(
    st.text(min_size=1, max_size=6), st.integers(-100, 100), st.integers(-100, 100),
    st.one_of(st.none(), _sort_terms), st.booleans(), st.booleans(), st.booleans(),
)
def test_generated_key_conditions(partition, first, second, sort, sort_first, flip, parens):
    schema = (("pk", "S"), ("sk", "S" if sort == ("begins_with", None) else "N"))
    values = {":p": partition}
    parts = ["#k = :p" if not flip else ":p = #k"]
    expected_sort = None
    if sort is not None:
        kind, op = sort
        if kind == "cmp":
            values[":a"] = first
            parts.append(f":a {_FLIP[op]} #s" if flip else f"#s {op} :a")
            expected_sort = (op, first)
        elif kind == "between":
            low, high = sorted((first, second))
            values.update({":a": low, ":b": high})
            parts.append("#s BETWEEN :a AND :b")
            expected_sort = ("between", low, high)
        else:
            values[":a"] = str(first)
            parts.append("begins_with(#s, :a)")
            expected_sort = ("begins_with", str(first))
    if sort_first:
        parts.reverse()
    if parens:
        parts = [f"({part})" for part in parts]
    names = {"#k": "pk"} | ({"#s": "sk"} if sort is not None else {})
    text = " AND ".join(parts)
    assert query(text, schema, names, values) == (partition, expected_sort)
