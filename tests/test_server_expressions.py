"""Update/Condition/KeyCondition/Projection expressions (engine.server.expressions)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ValidationException
from engine.server.expressions import (
    ExpressionContext,
    evaluate_condition,
    parse_condition,
    parse_key_condition,
    parse_projection,
    parse_update,
    typed_equal,
)

VALUES = {
    ":n": {"N": "5"},
    ":s": {"S": "x"},
    ":ss": {"SS": ["a", "b"]},
    ":ns": {"NS": ["1"]},
    ":d": {"N": "1.5"},
    ":lo": {"N": "1"},
    ":hi": {"N": "9"},
    ":p": {"S": "pre"},
}
NAMES = {"#a": "alpha", "#st": "status"}


def ctx(names=None, values=None):
    """A context with the test placeholders; ``{}`` means "no names/values given"."""
    names = dict(NAMES) if names is None else names
    values = dict(VALUES) if values is None else values
    return ExpressionContext(names or None, values or None)


# --- UpdateExpression -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "actions"),
    [
        ("SET a = :s", [("SET", "a", "x")]),
        ("set a = :s, b = :n", [("SET", "a", "x"), ("SET", "b", 5)]),
        ("SET #a = #a + :n", [("INCREMENT", "alpha", 5)]),
        ("SET a = a - :d", [("INCREMENT", "a", Decimal("-1.5"))]),
        ("SET a = :n + a", [("INCREMENT", "a", 5)]),
        ("SET a = if_not_exists(a, :n)", [("SET_IF_NOT_EXISTS", "a", 5)]),
        ("SET a = IF_NOT_EXISTS ( a , :n )", [("SET_IF_NOT_EXISTS", "a", 5)]),
        ("REMOVE a, #st", [("REMOVE", "a"), ("REMOVE", "status")]),
        ("ADD c :n, d :ss", [("ADD", "c", 5), ("ADD", "d", {"a", "b"})]),
        ("DELETE d :ss", [("DELETE", "d", {"a", "b"})]),
        (
            "SET a = :s REMOVE b ADD c :n DELETE d :ns",
            [("SET", "a", "x"), ("REMOVE", "b"), ("ADD", "c", 5), ("DELETE", "d", {1})],
        ),
        ("REMOVE b SET a=:s", [("REMOVE", "b"), ("SET", "a", "x")]),
    ],
)
def test_update_parses(expression, actions):
    assert parse_update(expression, ctx()) == actions


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("", "can not be empty"),
        ("SET a = :s SET b = :n", 'The "SET" section can only be used once'),
        ("SET a = :s, a = :n", "Two document paths overlap"),
        ("SET a = :s REMOVE a", "Two document paths overlap"),
        ("SET a = b", "not supported"),
        ("SET a = b + :n", "not supported"),
        ("SET a = :n - a", "not supported"),
        ("SET a = a + :s", "Incorrect operand type"),
        ("SET a = if_not_exists(b, :n)", "not supported"),
        ("SET a = list_append(a, :s)", "not supported"),
        ("SET a.b = :s", "nested document path"),
        ("REMOVE a[0]", "nested document path"),
        ("ADD a :s", "Incorrect operand type"),
        ("DELETE a :n", "Incorrect operand type"),
        ("SET a = :missing", "attribute value used in expression is not defined"),
        ("SET #missing = :s", "attribute name used in the document path is not defined"),
        ("UPSERT a = :s", "Syntax error"),
        ("SET a :s", "Syntax error"),
        ("SET a = :s,", "Syntax error"),
        ("SET a = :s $", "Syntax error"),
    ],
)
def test_update_errors(expression, fragment):
    with pytest.raises(ValidationException) as caught:
        parse_update(expression, ctx())
    assert fragment in caught.value.message
    assert (
        caught.value.message.startswith("Invalid UpdateExpression")
        or "ExpressionAttribute" in caught.value.message
    )


def test_unused_placeholders_are_reported():
    context = ctx({"#a": "alpha", "#b": "beta"}, {":s": {"S": "x"}, ":unused": {"S": "y"}})
    parse_update("SET #a = :s", context)
    with pytest.raises(
        ValidationException, match=r"ExpressionAttributeNames unused in expressions: keys: \{#b\}"
    ):
        context.check_all_used()
    context = ctx({"#a": "alpha"}, {":s": {"S": "x"}, ":unused": {"S": "y"}})
    parse_update("SET #a = :s", context)
    with pytest.raises(
        ValidationException,
        match=r"ExpressionAttributeValues unused in expressions: keys: \{:unused\}",
    ):
        context.check_all_used()


def test_bad_placeholder_value_names_the_placeholder():
    with pytest.raises(ValidationException, match=":bad"):
        parse_update("SET a = :bad", ctx(values={":bad": {"N": "x"}}))


identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: (
        name.upper() not in {"SET", "REMOVE", "ADD", "DELETE", "AND", "OR", "NOT", "BETWEEN", "IN"}
    )
)


@given(st.lists(identifiers, min_size=1, max_size=6, unique=True), st.data())
def test_generated_updates_round_trip(names, data):
    """Write random actions as text; parsing gives back exactly those actions."""
    values = {}
    clauses: dict[str, list[str]] = {}
    expected = []
    for index, name in enumerate(names):
        verb = data.draw(st.sampled_from(["SET", "INC", "IFNE", "REMOVE", "ADD"]))
        placeholder = f":v{index}"
        number = data.draw(st.integers(-1000, 1000))
        values[placeholder] = {"N": str(number)}
        use_hash = data.draw(st.booleans())
        ref = f"#n{index}" if use_hash else name
        if verb == "SET":
            clauses.setdefault("SET", []).append(f"{ref} = {placeholder}")
            expected.append(("SET", name, number))
        elif verb == "INC":
            clauses.setdefault("SET", []).append(f"{ref} = {ref} + {placeholder}")
            expected.append(("INCREMENT", name, number))
        elif verb == "IFNE":
            clauses.setdefault("SET", []).append(f"{ref} = if_not_exists({ref}, {placeholder})")
            expected.append(("SET_IF_NOT_EXISTS", name, number))
        elif verb == "REMOVE":
            del values[placeholder]
            clauses.setdefault("REMOVE", []).append(ref)
            expected.append(("REMOVE", name))
        else:
            clauses.setdefault("ADD", []).append(f"{ref} {placeholder}")
            expected.append(("ADD", name, number))
    expression = " ".join(f"{verb} {', '.join(parts)}" for verb, parts in clauses.items())
    names_map = {
        f"#n{index}": name for index, name in enumerate(names) if f"#n{index}" in expression
    }
    context = ExpressionContext(names_map or None, values or None)
    actions = parse_update(expression, context)
    context.check_all_used()
    order = {verb: position for position, verb in enumerate(clauses)}
    verb_of = {
        "SET": "SET",
        "INCREMENT": "SET",
        "SET_IF_NOT_EXISTS": "SET",
        "REMOVE": "REMOVE",
        "ADD": "ADD",
    }
    assert actions == sorted(expected, key=lambda action: order[verb_of[action[0]]])


# --- ConditionExpression ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "clauses"),
    [
        ("attribute_exists(a)", [("attribute_exists", "a")]),
        ("attribute_not_exists(#a)", [("attribute_not_exists", "alpha")]),
        ("a = :s", [("=", "a", "x")]),
        (":s = a", [("=", "a", "x")]),
        ("a <> :n", [("<>", "a", 5)]),
        (
            "attribute_exists(a) AND (b = :s and c <> :n)",
            [("attribute_exists", "a"), ("=", "b", "x"), ("<>", "c", 5)],
        ),
    ],
)
def test_condition_parses(expression, clauses):
    assert parse_condition(expression, ctx()) == clauses


@pytest.mark.parametrize(
    "expression",
    [
        "a = :s OR b = :s",
        "NOT attribute_exists(a)",
        "a < :n",
        "a BETWEEN :lo AND :hi",
        "begins_with(a, :p)",
        "contains(a, :s)",
        "a = b",
        "a = :s AND",
        "(a = :s",
        "size(a) = :n",
    ],
)
def test_condition_errors(expression):
    with pytest.raises(ValidationException, match="Invalid ConditionExpression"):
        parse_condition(expression, ctx())


def test_condition_evaluation_is_typed():
    item = {"a": 1, "b": True, "l": [1, "x"], "m": {"k": True}}
    assert evaluate_condition([("=", "a", Decimal("1.0"))], item)
    assert not evaluate_condition([("=", "b", 1)], item)
    assert evaluate_condition([("<>", "b", 1)], item)
    assert evaluate_condition([("<>", "missing", 1)], item)
    assert not evaluate_condition([("=", "missing", 1)], item)
    assert evaluate_condition([("attribute_exists", "a"), ("attribute_not_exists", "z")], item)
    assert typed_equal([1, "x"], [Decimal(1), "x"]) and not typed_equal({"k": True}, {"k": 1})


# --- KeyConditionExpression -------------------------------------------------------------

SCHEMA = [("pk", "S"), ("sk", "N")]
STRING_SORT = [("pk", "S"), ("sk", "S")]


@pytest.mark.parametrize(
    ("expression", "schema", "expected"),
    [
        ("pk = :s", SCHEMA, ("x", None)),
        ("pk = :s AND sk = :n", SCHEMA, ("x", ("=", 5))),
        ("sk < :n AND pk = :s", SCHEMA, ("x", ("<", 5))),
        ("pk = :s AND sk <= :n", SCHEMA, ("x", ("<=", 5))),
        ("pk = :s AND sk > :n", SCHEMA, ("x", (">", 5))),
        ("pk = :s AND :n <= sk", SCHEMA, ("x", (">=", 5))),
        ("pk = :s AND sk BETWEEN :lo AND :hi", SCHEMA, ("x", ("between", 1, 9))),
        ("pk = :s AND begins_with(sk, :p)", STRING_SORT, ("x", ("begins_with", "pre"))),
        ("(pk = :s) AND (sk >= :n)", SCHEMA, ("x", (">=", 5))),
        ("#k = :s", [("key", "S")], ("x", None)),
    ],
)
def test_key_condition_parses(expression, schema, expected):
    context = ctx({"#k": "key"} if "#k" in expression else {})
    assert parse_key_condition(expression, context, schema) == expected


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("sk = :n", "missed key schema element: pk"),
        ("pk > :s", "Query key condition not supported"),
        ("pk = :n", "Condition parameter type does not match schema type"),
        ("pk = :s AND sk = :s", "Condition parameter type does not match schema type"),
        ("pk = :s AND other = :n", "missed key schema element"),
        ("pk = :s AND pk = :s", "one condition per key"),
        ("pk = :s AND begins_with(sk, :n)", "begins_with"),
        ("pk = :s OR sk = :n", "OR"),
        ("pk = :s AND sk <> :n", "Invalid operator"),
        ("pk = :s AND contains(sk, :n)", "Invalid function name"),
    ],
)
def test_key_condition_errors(expression, fragment):
    with pytest.raises(ValidationException) as caught:
        parse_key_condition(expression, ctx({}), SCHEMA)
    assert fragment in caught.value.message


# --- ProjectionExpression ---------------------------------------------------------------


def test_projection():
    assert parse_projection("a, #a,b", ctx({"#a": "alpha"})) == ["a", "alpha", "b"]
    with pytest.raises(ValidationException, match="overlap"):
        parse_projection("a, a", ctx({}))
    with pytest.raises(ValidationException, match="nested"):
        parse_projection("a.b", ctx({}))
    with pytest.raises(ValidationException, match="Syntax error"):
        parse_projection("a,, b", ctx({}))
