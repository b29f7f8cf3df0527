"""engine.expressions Placeholders and bind: one request's ExpressionAttributeNames /
ExpressionAttributeValues resolved into parsed trees, with DynamoDB's checks and messages."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ValidationException
from engine.expressions import (
    AddAction,
    Arithmetic,
    Between,
    Call,
    Compare,
    In,
    Literal,
    Path,
    Placeholders,
    Projection,
    RemoveAction,
    SetAction,
    Update,
    ValueRef,
    bind,
    parse_condition,
    parse_projection,
    parse_update,
)


def P(*elements):
    return Path(tuple(elements))


def error_of(call, *args) -> str:
    with pytest.raises(ValidationException) as caught:
        call(*args)
    return caught.value.message


def bind_update(text, names=None, values=None):
    return bind(parse_update(text), Placeholders(names, values), "UpdateExpression")


def bind_condition(text, names=None, values=None, kind="ConditionExpression"):
    return bind(parse_condition(text, kind), Placeholders(names, values), kind)


# --- the maps themselves ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "values", "message"),
    [
        ({}, None, "ExpressionAttributeNames must not be empty"),
        (None, {}, "ExpressionAttributeValues must not be empty"),
        ({"a": "b"}, None, 'ExpressionAttributeNames contains invalid key: Syntax error; key: "a"'),
        ({"#": "b"}, None, 'ExpressionAttributeNames contains invalid key: Syntax error; key: "#"'),
        ({"#a-b": "b"}, None,
         'ExpressionAttributeNames contains invalid key: Syntax error; key: "#a-b"'),
        ({"#a": ""}, None,
         "ExpressionAttributeNames contains invalid value: Empty attribute name for key #a"),
        (None, {"b": 1}, 'ExpressionAttributeValues contains invalid key: Syntax error; key: "b"'),
        (None, {":": 1}, 'ExpressionAttributeValues contains invalid key: Syntax error; key: ":"'),
        ("x", None, "ExpressionAttributeNames must be a map"),
        (None, ["x"], "ExpressionAttributeValues must be a map"),
    ],
)
def test_maps_are_validated_on_arrival(names, values, message):
    assert error_of(Placeholders, names, values) == message


def test_none_means_not_given():
    placeholders = Placeholders(None, None)
    placeholders.check_all_used()
    assert dict(placeholders.names) == {} and dict(placeholders.values) == {}


def test_unused_placeholders_are_reported_names_first():
    placeholders = Placeholders({"#a": "a", "#b": "b", "#c": "c"}, {":x": 1, ":y": 2})
    bind(parse_condition("#b = :y"), placeholders, "ConditionExpression")
    # listed in Java HashSet order, as DynamoDB lists them: "#c" (hash 1184) falls in
    # bucket 0 of 16, "#a" (hash 1182) in bucket 14
    assert error_of(placeholders.check_all_used) == (
        "Value provided in ExpressionAttributeNames unused in expressions: keys: {#c, #a}"
    )
    bind(parse_projection("#a, #c"), placeholders, "ProjectionExpression")
    assert error_of(placeholders.check_all_used) == (
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:x}"
    )
    bind(parse_update("SET z = :x"), placeholders, "UpdateExpression")
    placeholders.check_all_used()


def test_one_object_serves_every_expression_of_a_request():
    placeholders = Placeholders({"#k": "pk", "#s": "status"}, {":p": "x", ":s": "ok", ":n": 1})
    key = bind(parse_condition("#k = :p", "KeyConditionExpression"), placeholders,
               "KeyConditionExpression")
    filtered = bind(parse_condition("#s = :s", "FilterExpression"), placeholders,
                    "FilterExpression")
    update = bind(parse_update("ADD hits :n"), placeholders, "UpdateExpression")
    placeholders.check_all_used()
    assert key == Compare("=", P("pk"), Literal("x"))
    assert filtered == Compare("=", P("status"), Literal("ok"))
    assert update == Update((AddAction(P("hits"), Literal(1)),))
    assert placeholders.used_names == {"#k", "#s"}
    assert placeholders.used_values == {":p", ":s", ":n"}


# --- resolution ---------------------------------------------------------------------------


def test_names_and_values_are_resolved_everywhere():
    names = {"#a": "alpha", "#b": "b.c", "#i": "[3]"}
    values = {":v": "x", ":n": Decimal("1.5"), ":l": [1, "y"], ":s": {1, 2}}
    assert bind_condition("#a.#b[2] = :v AND size(#a) > :n", names, {":v": "x", ":n": 1}) == (
        parse_condition("q = :v AND size(q) > :n").__class__(
            Compare("=", P("alpha", "b.c", 2), Literal("x")),
            Compare(">", Call("size", (P("alpha"),)), Literal(1)),
        )
    )
    update = bind_update(
        "SET #a = list_append(#a, :l), #i = #a.#b + :n REMOVE zz ADD s :s",
        names, {":l": values[":l"], ":n": values[":n"], ":s": values[":s"]},
    )
    assert update == Update((
        SetAction(P("alpha"), Call("list_append", (P("alpha"), Literal([1, "y"])))),
        SetAction(P("[3]"), Arithmetic("+", P("alpha", "b.c"), Literal(Decimal("1.5")))),
        RemoveAction(P("zz")),
        AddAction(P("s"), Literal({1, 2})),
    ))
    projection = bind(parse_projection("#a, x[1]"), Placeholders(names), "ProjectionExpression")
    assert projection == Projection((P("alpha"), P("x", 1)))


def test_binding_leaves_the_cached_tree_unbound():
    tree = parse_condition("#a IN (:x, :y)")
    bound = bind(tree, Placeholders({"#a": "a"}, {":x": 1, ":y": 2}), "ConditionExpression")
    assert bound == In(P("a"), (Literal(1), Literal(2)))
    assert tree == In(P("#a"), (ValueRef(":x"), ValueRef(":y")))
    assert parse_condition("#a IN (:x, :y)") is tree


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("ConditionExpression", "#missing = :v"),
        ("FilterExpression", "a.#missing = :v"),
        ("KeyConditionExpression", "#missing = :v"),
    ],
)
def test_undefined_name(kind, text):
    assert error_of(bind_condition, text, None, {":v": 1}, kind) == (
        f"Invalid {kind}: An expression attribute name used in the document path is not "
        "defined; attribute name: #missing"
    )


def test_undefined_value():
    assert error_of(bind_condition, "a = :nope", None, {":v": 1}) == (
        "Invalid ConditionExpression: An expression attribute value used in expression is "
        "not defined; attribute value: :nope"
    )
    assert error_of(bind_update, "SET a = if_not_exists(a, :c)", None, {":a": "a"}) == (
        "Invalid UpdateExpression: An expression attribute value used in expression is not "
        "defined; attribute value: :c"
    )
    assert error_of(bind, parse_projection("#p"), Placeholders(), "ProjectionExpression") == (
        "Invalid ProjectionExpression: An expression attribute name used in the document "
        "path is not defined; attribute name: #p"
    )


# --- overlapping and conflicting paths ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "one", "two"),
    [
        ("SET a = :v, a = :w", "[a]", "[a]"),
        ("SET a = :v REMOVE a", "[a]", "[a]"),
        ("REMOVE a, a.b", "[a]", "[a, b]"),
        ("SET a.b[1] = :v REMOVE a", "[a, b, [1]]", "[a]"),
        ("SET #a = :v REMOVE a", "[a]", "[a]"),  # only visible once #a is resolved
        ("set d[1] = a, d.b = a, c[1].a = a, #c = if_not_exists(a, b)", "[c, [1], a]", "[c]"),
        ("set #c[3].#d = a, #c[3] = a", "[c, [3], [3]]", "[c, [3]]"),
    ],
)
def test_update_paths_overlap(text, one, two):
    names = {"#a": "a", "#c": "c", "#d": "[3]"}
    used = {key: value for key, value in names.items() if key in text}
    assert error_of(bind_update, text, used or None, {":v": 1, ":w": 2}
                    if ":w" in text else ({":v": 1} if ":v" in text else None)) == (
        "Invalid UpdateExpression: Two document paths overlap with each other; must remove "
        f"or rewrite one of these paths; path one: {one}, path two: {two}"
    )


@pytest.mark.parametrize(
    ("text", "one", "two"),
    [
        ("set #c[3].#d = a, #c.#d[3] = if_not_exists(a, b)", "[c, [3], [3]]",
         "[c, [3], [3]]"),
        ("remove a.#c set a[1] = #d", "[a, c]", "[a, [1]]"),
    ],
)
def test_update_paths_conflict(text, one, two):
    assert error_of(bind_update, text, {"#c": "c", "#d": "[3]"}) == (
        "Invalid UpdateExpression: Two document paths conflict with each other; must remove "
        f"or rewrite one of these paths; path one: {one}, path two: {two}"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("set a = if_not_exists(c)", "Incorrect number of operands for operator or function; "
         "operator or function: if_not_exists, number of operands: 1"),
        ("set a = list_append(c)", "Incorrect number of operands for operator or function; "
         "operator or function: list_append, number of operands: 1"),
        ("set a = if_not_exists(:a, c)", "Operator or function requires a document path; "
         "operator or function: if_not_exists"),
        ("set a = if_not_exists(if_not_exists(a, b), c)", "Operator or function requires a "
         "document path; operator or function: if_not_exists"),
        ("set a" + ".b" * 32 + " = c", "The document path has too many nesting levels; "
         "nesting levels: 33"),
    ],
)
def test_update_checks_after_the_overlap_check(text, message):
    values = {":a": "a"} if ":a" in text else None
    assert error_of(bind_update, text, None, values) == f"Invalid UpdateExpression: {message}"


def test_update_overlap_is_reported_before_arity():
    # DynamoDB's answer to this (two problems): the overlap
    message = error_of(bind_update, "set d[1] = a, d.b = a, c[1].a = a, #c = if_not_exists(a)",
                       {"#c": "c"})
    assert message == (
        "Invalid UpdateExpression: Two document paths overlap with each other; must remove or "
        "rewrite one of these paths; path one: [c, [1], a], path two: [c]"
    )


def test_update_checks_actions_last_to_first():
    assert error_of(bind_update, "SET a = :x, b = :y", None, {":z": 1}).endswith(
        "attribute value: :y"
    )
    assert error_of(bind_update, "SET a = #x, b = :y", None, None).endswith(
        "attribute name: #x"  # every name is checked before any value
    )


def test_placeholder_keys_are_at_most_255_bytes():
    long_name = "#" + "n" * 255
    assert error_of(Placeholders, {long_name: "a"}, None) == (
        "ExpressionAttributeNames contains invalid key: The expression attribute map contains "
        "a key that is too long; size of key: 256"
    )
    assert error_of(Placeholders, None, {":" + "v" * 255: 1}).startswith(
        "ExpressionAttributeValues contains invalid key: The expression attribute map "
        "contains a key that is too long;"
    )
    Placeholders({"#" + "n" * 254: "a"}, {":" + "v" * 254: 1})


def test_projection_paths_overlap_and_conflict():
    def bind_projection(text, names=None):
        return bind(parse_projection(text), Placeholders(names), "ProjectionExpression")

    assert error_of(bind_projection, "a, #a.b", {"#a": "a"}) == (
        "Invalid ProjectionExpression: Two document paths overlap with each other; must "
        "remove or rewrite one of these paths; path one: [a], path two: [a, b]"
    )
    assert error_of(bind_projection, "a.b, a[1]") == (
        "Invalid ProjectionExpression: Two document paths conflict with each other; must "
        "remove or rewrite one of these paths; path one: [a, b], path two: [a, [1]]"
    )
    # siblings are fine
    assert bind_projection("a.b, a.c, l[0], l[1]").paths == (
        P("a", "b"), P("a", "c"), P("l", 0), P("l", 1)
    )


def test_overlap_is_reported_before_conflict():
    assert "overlap" in error_of(bind_update, "REMOVE a.b, a[1], x, x.y")


# --- operand types refused before any item is read ------------------------------------------


@pytest.mark.parametrize(
    ("clause", "value", "shown"),
    [
        ("ADD", "s", "STRING"), ("DELETE", "s", "STRING"),
        ("ADD", None, "NULL"), ("DELETE", None, "NULL"),
        ("ADD", True, "BOOLEAN"), ("DELETE", False, "BOOLEAN"),
        ("ADD", b"a", "BINARY"), ("DELETE", b"a", "BINARY"),
        ("ADD", {"a": [1]}, "MAP"), ("DELETE", {"a": [1]}, "MAP"),
        ("ADD", [1], "LIST"), ("DELETE", [1], "LIST"),
        ("DELETE", 1, "NUMBER"),
    ],
)
def test_add_and_delete_operand_types(clause, value, shown):
    assert error_of(bind_update, f"{clause} a.b :a", None, {":a": value}) == (
        "Invalid UpdateExpression: Incorrect operand type for operator or function; "
        f"operator: {clause}, operand type: {shown}, typeSet: ALLOWED_FOR_{clause}_OPERAND"
    )


@pytest.mark.parametrize("value", [1, Decimal("2.5"), {"a"}, {1, 2}, {b"x"}])
def test_add_accepts_numbers_and_sets(value):
    bind_update("ADD a :a", None, {":a": value})


@pytest.mark.parametrize("value", [{"a"}, {1, 2}, {b"x"}])
def test_delete_accepts_sets(value):
    bind_update("DELETE a :a", None, {":a": value})


VALUES = {
    ":a": "a", ":b": 1, ":c": b"a", ":d": False, ":e": None, ":f": {"a"}, ":g": {1},
    ":h": {b"a"}, ":i": {}, ":j": [],
}


@pytest.mark.parametrize(
    ("text", "function", "shown"),
    [
        ("set a = list_append(:a, a)", "list_append", "S"),
        ("set a = list_append(a, :b)", "list_append", "N"),
        ("set a = list_append(:c, a)", "list_append", "B"),
        ("set a = list_append(:d, a)", "list_append", "BOOL"),
        ("set a = list_append(:e, a)", "list_append", "NULL"),
        ("set a = list_append(:f, a)", "list_append", "SS"),
        ("set a = list_append(:g, a)", "list_append", "NS"),
        ("set a = list_append(:h, a)", "list_append", "BS"),
        ("set a = list_append(:i, a)", "list_append", "M"),
        ("set a = a + :a", "+", "S"),
        ("set a = :a + :c", "+", "S"),
        ("set a = :c + a", "+", "B"),
        ("set a = a + :d", "+", "BOOL"),
        ("set a = a + :e", "+", "NULL"),
        ("set a = a - :f", "-", "SS"),
        ("set a = a - :i", "-", "M"),
        ("set a = a - :j", "-", "L"),
        ("set a = list_append(if_not_exists(a, :j), :b)", "list_append", "N"),
    ],
)
def test_set_operand_types(text, function, shown):
    used = {key: value for key, value in VALUES.items() if key in text}
    assert error_of(bind_update, text, None, used) == (
        "Invalid UpdateExpression: Incorrect operand type for operator or function; "
        f"operator or function: {function}, operand type: {shown}"
    )


def test_well_typed_set_values_bind():
    bind_update("SET a = a + :n, b = :n - b, c = list_append(:l, c), d = if_not_exists(d, :s)",
                None, {":n": 3, ":l": [1], ":s": "x"})


@pytest.mark.parametrize(
    ("text", "values", "message"),
    [
        ("a BETWEEN :b AND :a", {":a": "a", ":b": "b"},
         "The BETWEEN operator requires upper bound to be greater than or equal to lower "
         "bound; lower bound operand: AttributeValue: {S:b}, upper bound operand: "
         "AttributeValue: {S:a}"),
        ("a BETWEEN :b AND :a", {":a": 1, ":b": Decimal("1.5")},
         "The BETWEEN operator requires upper bound to be greater than or equal to lower "
         "bound; lower bound operand: AttributeValue: {N:1.5}, upper bound operand: "
         "AttributeValue: {N:1}"),
        ("a BETWEEN :b AND :a", {":a": b"\x00", ":b": b"\x01"},
         "The BETWEEN operator requires upper bound to be greater than or equal to lower "
         "bound; lower bound operand: AttributeValue: {B:java.nio.HeapByteBuffer[pos=0 lim=1 "
         "cap=1]}, upper bound operand: AttributeValue: {B:java.nio.HeapByteBuffer[pos=0 "
         "lim=1 cap=1]}"),
        ("a BETWEEN :b AND :a", {":a": "a", ":b": 1},
         "The BETWEEN operator requires same data type for lower and upper bounds; lower "
         "bound operand: AttributeValue: {N:1}, upper bound operand: AttributeValue: {S:a}"),
        ("begins_with(a, :n)", {":n": 1},
         "Incorrect operand type for operator or function; operator or function: "
         "begins_with, operand type: N"),
        ("begins_with(:m, a)", {":m": {"k": "v"}},
         "Incorrect operand type for operator or function; operator or function: "
         "begins_with, operand type: M"),
        ("attribute_type(a, :t)", {":t": 1},
         "Incorrect operand type for operator or function; operator or function: "
         "attribute_type, operand type: N"),
        ("attribute_type(a, :t)", {":t": "STRING"},
         "Invalid attribute type name found; type: STRING, valid types: "
         "{N,BS,L,B,NULL,M,S,SS,NS,BOOL}"),
        ("attribute_type(a, b)", None,
         "Incorrect operand type for operator or function; operator or function: "
         "attribute_type, operand type: {SS,M,DECIMAL,DOUBLESET,HDS,N,B,DICT,INTSET,BOOL,HD,"
         "BS,INT,DECIMALSET,NULL,FLOAT,FS,S,L,NS,DOUBLE}"),
        ("attribute_type(a, size(b))", None,
         "Incorrect operand type for operator or function; operator or function: "
         "attribute_type, operand type: N"),
        ("size(:v) > :n", {":v": 1, ":n": 1},
         "Incorrect operand type for operator or function; operator or function: size, "
         "operand type: N"),
        ("size(:v) > :n", {":v": True, ":n": 1},
         "Incorrect operand type for operator or function; operator or function: size, "
         "operand type: BOOL"),
        ("a < :v", {":v": True},
         "Incorrect operand type for operator or function; operator or function: <, "
         "operand type: BOOL"),
        (":v >= a", {":v": [1]},
         "Incorrect operand type for operator or function; operator or function: >=, "
         "operand type: L"),
        ("a BETWEEN :v AND :w", {":v": {1}, ":w": {2}},
         "Incorrect operand type for operator or function; operator or function: BETWEEN, "
         "operand type: NS"),
        ("a BETWEEN b AND a", None,
         "The first operand must be distinct from the remaining operands for this operator "
         "or function; operator: BETWEEN, first operand: [a]"),
        ("a IN (:v, a)", {":v": 1},
         "The first operand must be distinct from the remaining operands for this operator "
         "or function; operator: IN, first operand: [a]"),
        ("a = a", None,
         "The first operand must be distinct from the remaining operands for this operator "
         "or function; operator: =, first operand: [a]"),
        ("#x.b < a.b", None,
         "The first operand must be distinct from the remaining operands for this operator "
         "or function; operator: <, first operand: [a, b]"),
        ("contains(a[1], a[1])", None,
         "The first operand must be distinct from the remaining operands for this operator "
         "or function; operator: contains, first operand: [a, [1]]"),
    ],
)
def test_condition_operand_checks(text, values, message):
    names = {"#x": "a"} if "#x" in text else None
    assert error_of(bind_condition, text, names, values) == (
        f"Invalid ConditionExpression: {message}"
    )


def test_well_typed_conditions_bind():
    tree = bind_condition(
        "a BETWEEN :lo AND :hi AND begins_with(b, :p) AND attribute_type(c, :t) "
        "AND contains(d, :n) AND e BETWEEN :x AND :x",
        None, {":lo": 1, ":hi": 2, ":p": b"pre", ":t": "NS", ":n": 5, ":x": "same"},
    )
    assert isinstance(tree.left.left.left.left, Between)


# --- generated: bound trees hold no placeholders ------------------------------------------

_name_keys = st.from_regex(r"#[a-z0-9_]{1,3}", fullmatch=True)
_value_keys = st.from_regex(r":[a-z0-9_]{1,3}", fullmatch=True)
# (a resolved name may be anything, "#" included; leaving "#" out keeps the check below simple)
_attribute_names = st.text(min_size=1, max_size=5).filter(lambda name: not name.startswith("#"))
_engine_values = st.one_of(
    st.text(max_size=3), st.integers(-5, 5), st.booleans(), st.none(), st.binary(max_size=3),
    st.lists(st.integers(0, 3), max_size=2), st.frozensets(st.text(max_size=2), min_size=1,
                                                           max_size=2).map(set),
)


def _placeholders_in(node, found):
    if isinstance(node, ValueRef):
        found.append(node.name)
    elif isinstance(node, Path):
        found.extend(e for e in node.elements if isinstance(e, str) and e.startswith("#"))
    elif isinstance(node, (tuple, list)):
        for item in node:
            _placeholders_in(item, found)
    elif hasattr(node, "__slots__") and not isinstance(node, Literal):
        for slot in node.__slots__:
            _placeholders_in(getattr(node, slot), found)
    return found


@settings(max_examples=200)
@given(
    st.dictionaries(_name_keys, _attribute_names, min_size=1, max_size=3),
    st.dictionaries(_value_keys, _engine_values, min_size=1, max_size=3),
    st.data(),
)
def test_generated_binds_resolve_everything_or_refuse(names, values, data):
    name_keys, value_keys = sorted(names), sorted(values)
    operand = st.one_of(
        st.sampled_from(name_keys), st.sampled_from(value_keys), st.just("plain"),
        st.sampled_from(name_keys).map(lambda key: f"{key}.x[1]"),
    )
    left, right, third = data.draw(operand), data.draw(operand), data.draw(operand)
    texts = [
        ("ConditionExpression", parse_condition,
         f"{left} = {right} OR {third} BETWEEN {left} AND {right}"),
        ("FilterExpression", lambda t: parse_condition(t, "FilterExpression"),
         f"begins_with({left}, {right}) AND NOT {third} IN ({left}, {right})"),
    ]
    path_choice = st.one_of(st.sampled_from(name_keys), st.just("plain"))
    target, other = data.draw(path_choice), data.draw(path_choice)
    value = data.draw(st.sampled_from(value_keys))
    texts.append(("UpdateExpression", parse_update,
                  f"SET {target} = {other} + {value} REMOVE {other}.z ADD q {value}"))
    texts.append(("ProjectionExpression", parse_projection, f"{target}, {other}[0]"))
    placeholders = Placeholders(names, values)
    for kind, parse, text in texts:
        try:
            tree = parse(text)
        except ValidationException:
            continue  # e.g. a value where a path is required
        try:
            bound = bind(tree, placeholders, kind)
        except ValidationException as err:
            assert err.message.startswith(f"Invalid {kind}: ")
            continue
        assert _placeholders_in(bound, []) == []
