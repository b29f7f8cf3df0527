"""Conditions on items (engine.expressions.evaluate) on hand-built bound trees.

The expected results follow the Developer Guide ("Comparison operator and function
reference", "Condition expressions") and the cases the Alternator suite checked against
DynamoDB itself (missing attributes, ``<>``, request values of the wrong type). The
hypothesis test compares :func:`evaluate` with a reference written here in another way:
values are first turned into canonical typed tuples, then compared with Python's ``==``.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ValidationException
from engine.expressions.ast import (
    And,
    Arithmetic,
    Between,
    Call,
    Compare,
    In,
    Literal,
    Not,
    Or,
    Path,
)
from engine.expressions.evaluate import check_condition, compile_condition, evaluate, resolve
from engine.expressions.values import compare, type_of, values_equal


def P(*elements) -> Path:
    return Path(tuple(elements))


def L(value) -> Literal:
    return Literal(value)


def cmp(op, left, right) -> Compare:
    return Compare(op, left, right)


ITEM = {
    "pk": "k",
    "n": 5,
    "d": Decimal("2.5"),
    "s": "héllo",
    "b": b"\x01\x02\x03",
    "t": True,
    "f": False,
    "z": None,
    "ss": {"x", "y"},
    "ns": {1, 2, Decimal("3.5")},
    "bs": {b"a", b"b"},
    "l": [1, "two", [3], {"four": 4}],
    "m": {"x": 1, "y": {"deep": [10, 20]}},
    "ones": [1],
}


# ------------------------------------------------------------------ typed values
def test_bool_is_not_a_number():
    assert not values_equal(True, 1) and not values_equal(1, True)
    assert not values_equal([1], [True]) and not values_equal({"a": 0}, {"a": False})
    assert values_equal([True], [True]) and values_equal(1, Decimal("1.0"))
    assert compare(True, 0) is None


def test_the_wrong_write_case_list_of_one_is_not_list_of_true():
    """item a=[1]; condition a = [true] must fail (it used to pass: Python's True == 1)."""
    assert not evaluate(cmp("=", P("a"), L([True])), {"a": [1]})
    assert evaluate(cmp("<>", P("a"), L([True])), {"a": [1]})
    assert not evaluate(In(P("a"), (L([True]), L([Decimal(2)]))), {"a": [1]})


def test_sets_compare_as_sets_of_one_type():
    assert evaluate(cmp("=", P("ss"), L({"y", "x"})), ITEM)
    assert evaluate(cmp("=", P("ns"), L({Decimal("1.0"), 2, Decimal("3.50")})), ITEM)
    assert not evaluate(cmp("=", P("ns"), L({"1", "2", "3.5"})), ITEM)
    assert not evaluate(cmp("=", P("ss"), L(["x", "y"])), ITEM)  # a set is not a list


def test_deep_equality_of_lists_and_maps():
    assert evaluate(cmp("=", P("l"), L([1, "two", [3], {"four": Decimal(4)}])), ITEM)
    assert not evaluate(cmp("=", P("l"), L([1, "two", [3], {"four": "4"}])), ITEM)
    assert not evaluate(cmp("=", P("l"), L([1, "two", [3]])), ITEM)
    assert evaluate(cmp("=", P("m"), L({"y": {"deep": [10, 20]}, "x": 1})), ITEM)
    assert not evaluate(cmp("=", P("m"), L({"x": 1})), ITEM)


@pytest.mark.parametrize("value", [1, "1", True, b"1", None, [1], {"a": 1}, {"a"}, {1}, {b"a"}])
def test_values_of_different_types_are_never_equal(value):
    for other in [2, "2", False, b"2", [2], {"b": 1}, {"b"}, {2}, {b"b"}]:
        if type_of(other) != type_of(value):
            assert not evaluate(cmp("=", P("v"), L(other)), {"v": value})
            assert evaluate(cmp("<>", P("v"), L(other)), {"v": value})
    assert evaluate(cmp("=", P("v"), L(value)), {"v": value})
    assert evaluate(cmp("=", P("v"), P("w")), {"v": value, "w": value})


# ------------------------------------------------------------------ comparisons
@pytest.mark.parametrize(
    "op, left, right, expected",
    [
        ("<", 1, 2, True), ("<", 2, 2, False), ("<=", 2, 2, True), (">", 3, 2, True),
        (">=", 2, 3, False), ("<", Decimal("-0.5"), 0, True),
        ("<", "cat", "dog", True), (">", "cat", "aardvark", True), ("<=", "cat", "cat", True),
        # S orders by UTF-8 bytes: U+E000 (EE 80 80) sorts after U+00E9 (C3 A9)
        ("<", "\u00e9", "\ue000", True),
        ("<", b"cat", b"dog", True), (">", b"\xff", b"\x00\xff", True),
        ("<", 1, "2", False), (">", "1", 0, False), ("<", True, 2, False),
        ("<", False, True, False), ("<", None, None, False),
    ],
)
def test_order_comparisons(op, left, right, expected):
    if type_of(right) in ("N", "S", "B"):  # other request values are errors (below)
        assert evaluate(cmp(op, P("a"), L(right)), {"a": left}) is expected
    assert evaluate(cmp(op, P("a"), P("b")), {"a": left, "b": right}) is expected


def test_order_between_item_values_of_unordered_types_is_false():
    item = {"x": [1, 2, 3], "y": {"a"}, "n": 1}
    for op in ("<", "<=", ">", ">="):
        assert not evaluate(cmp(op, P("x"), L(1)), item)
        assert not evaluate(cmp(op, L(1), P("x")), item)
        assert not evaluate(cmp(op, P("x"), P("x")), item)
        assert not evaluate(cmp(op, P("y"), P("y")), item)


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, {"a"}, True, None])
def test_a_request_value_of_an_unordered_type_is_a_validation_error(value):
    for op in ("<", "<=", ">", ">="):
        for condition in (cmp(op, P("a"), L(value)), cmp(op, L(value), P("a"))):
            with pytest.raises(ValidationException, match="Incorrect operand type"):
                check_condition(condition)
            with pytest.raises(ValidationException, match="Incorrect operand type"):
                evaluate(condition, {"a": 1})


def test_missing_paths():
    item = {"a": 1, "m": {"l": [1, 2]}}
    assert not evaluate(cmp("=", P("q"), L(1)), item)
    assert not evaluate(cmp("=", P("q"), P("z")), item)  # two unset attributes are not equal
    assert evaluate(cmp("<>", P("q"), L(1)), item)  # DynamoDB: unset is "not equal" to anything
    assert evaluate(cmp("<>", P("q"), P("z")), item)
    for op in ("<", "<=", ">", ">="):
        assert not evaluate(cmp(op, P("q"), L(1)), item)
        assert not evaluate(cmp(op, L(1), P("q")), item)
        assert not evaluate(cmp(op, P("q"), P("z")), item)
    assert not evaluate(Between(P("q"), L(0), L(2)), item)
    assert not evaluate(In(P("q"), (L(1),)), item)
    # a missing item: every path is missing
    assert evaluate(Call("attribute_not_exists", (P("pk"),)), None)
    assert evaluate(cmp("<>", P("a"), L(1)), None)
    assert not evaluate(cmp("=", P("a"), L(1)), None)


def test_document_paths_resolve_through_maps_and_lists():
    assert resolve(ITEM, P("m", "y", "deep", 1)) == 20
    assert evaluate(cmp("=", P("l", 3, "four"), L(4)), ITEM)
    assert evaluate(cmp("<", P("m", "x"), P("m", "y", "deep", 0)), ITEM)
    assert not evaluate(cmp("<", P("m", "x"), P("m", "y", "deep", 100)), ITEM)  # past the end
    assert not evaluate(Call("attribute_exists", (P("l", 4),)), ITEM)
    assert not evaluate(Call("attribute_exists", (P("m", 0),)), ITEM)  # index into a map
    assert not evaluate(Call("attribute_exists", (P("l", "x"),)), ITEM)  # name into a list
    assert not evaluate(Call("attribute_exists", (P("n", "x"),)), ITEM)  # into a number
    assert evaluate(Call("attribute_exists", (P("m", "y", "deep"),)), ITEM)
    assert evaluate(Call("attribute_not_exists", (P("m", "y", "shallow"),)), ITEM)


def test_between():
    assert evaluate(Between(P("n"), L(5), L(5)), ITEM)
    assert evaluate(Between(P("n"), L(Decimal("4.9")), L(6)), ITEM)
    assert not evaluate(Between(P("n"), L(6), L(7)), ITEM)
    assert evaluate(Between(P("s"), L("h"), L("i")), ITEM)
    assert evaluate(Between(P("b"), L(b"\x01"), L(b"\x02")), ITEM)
    assert not evaluate(Between(P("n"), L("0"), L("9")), ITEM)  # type differs: false
    item = {"a": 1, "two": 2, "x": 0, "y": 2, "l": [1]}
    assert evaluate(Between(P("a"), P("x"), P("y")), item)
    # bounds from the item that are out of order or of another type: false, not an error
    assert not evaluate(Between(P("a"), P("two"), L(1)), item)
    assert not evaluate(Between(P("a"), P("two"), L("dog")), item)
    assert not evaluate(Between(P("l"), P("l"), P("l")), item)


@pytest.mark.parametrize(
    "low, high, message",
    [(2, 1, "greater than or equal"), (2, "dog", "same data type"), ([1], [2], "operand type")],
)
def test_between_request_bounds_out_of_order_or_of_other_types_are_errors(low, high, message):
    condition = Between(P("a"), L(low), L(high))
    with pytest.raises(ValidationException, match=message):
        check_condition(condition)
    with pytest.raises(ValidationException, match=message):
        evaluate(condition, {"a": 1})


def test_in():
    assert evaluate(In(P("n"), (L("5"), L(5))), ITEM)
    assert evaluate(In(P("n"), tuple(L(i) for i in range(99))), ITEM)
    assert not evaluate(In(P("n"), (L("5"), L(True))), ITEM)
    assert evaluate(In(P("ss"), (L({"x", "y"}),)), ITEM)
    assert evaluate(In(P("n"), (P("m", "x"), P("n"))), ITEM)


def test_and_or_not():
    true, false = cmp("=", P("n"), L(5)), cmp("=", P("n"), L(6))
    assert evaluate(And(true, true), ITEM) and not evaluate(And(true, false), ITEM)
    assert evaluate(Or(false, true), ITEM) and not evaluate(Or(false, false), ITEM)
    assert evaluate(Not(false), ITEM) and not evaluate(Not(true), ITEM)
    assert evaluate(Not(Not(Not(Not(true)))), ITEM)
    # a OR (b AND c): precedence is the parser's; the tree is evaluated as built
    assert evaluate(Or(true, And(false, true)), ITEM)


# ------------------------------------------------------------------ functions
def test_attribute_exists_and_not_exists():
    assert evaluate(Call("attribute_exists", (P("z"),)), ITEM)  # NULL exists
    assert not evaluate(Call("attribute_exists", (P("nope"),)), ITEM)
    assert evaluate(Call("attribute_not_exists", (P("nope"),)), ITEM)
    with pytest.raises(ValidationException, match="requires a document path"):
        check_condition(Call("attribute_exists", (L(3),)))


@pytest.mark.parametrize(
    "name, type_name",
    [("s", "S"), ("ss", "SS"), ("n", "N"), ("d", "N"), ("ns", "NS"), ("b", "B"), ("bs", "BS"),
     ("t", "BOOL"), ("f", "BOOL"), ("z", "NULL"), ("l", "L"), ("m", "M")],
)
def test_attribute_type(name, type_name):
    assert evaluate(Call("attribute_type", (P(name), L(type_name))), ITEM)
    for other in ("S", "SS", "N", "NS", "B", "BS", "BOOL", "NULL", "L", "M"):
        if other != type_name:
            assert not evaluate(Call("attribute_type", (P(name), L(other))), ITEM)
    assert not evaluate(Call("attribute_type", (P("missing"), L(type_name))), ITEM)


def test_attribute_type_errors():
    with pytest.raises(ValidationException, match="Invalid attribute type name found; type: DOG"):
        check_condition(Call("attribute_type", (P("a"), L("DOG"))))
    with pytest.raises(ValidationException, match="DOG"):
        evaluate(Call("attribute_type", (P("a"), L("DOG"))), {"a": 1})
    with pytest.raises(ValidationException):
        check_condition(Call("attribute_type", (P("a"), P("b"))))  # must be a value
    assert evaluate(Call("attribute_type", (L(0), L("N"))), {})  # a value as first operand


def test_begins_with():
    assert evaluate(Call("begins_with", (P("s"), L("hé"))), ITEM)
    assert evaluate(Call("begins_with", (P("s"), L(""))), ITEM)
    assert not evaluate(Call("begins_with", (P("s"), L("x"))), ITEM)
    assert evaluate(Call("begins_with", (P("b"), L(b"\x01\x02"))), ITEM)
    assert not evaluate(Call("begins_with", (P("b"), L(b"\x02"))), ITEM)
    assert not evaluate(Call("begins_with", (P("s"), L(b"h"))), ITEM)  # S vs B: false
    assert not evaluate(Call("begins_with", (P("n"), L("5"))), ITEM)  # item N: false
    assert not evaluate(Call("begins_with", (P("missing"), L("a"))), ITEM)
    assert evaluate(Call("begins_with", (L("héllo there"), P("s"))), ITEM)  # either way round
    with pytest.raises(ValidationException, match="begins_with, operand type: N"):
        check_condition(Call("begins_with", (P("s"), L(2))))


def test_contains():
    assert evaluate(Call("contains", (P("s"), L("éll"))), ITEM)
    assert not evaluate(Call("contains", (P("s"), L("hello"))), ITEM)
    assert evaluate(Call("contains", (P("b"), L(b"\x02\x03"))), ITEM)
    assert not evaluate(Call("contains", (P("b"), L("\x02"))), ITEM)
    assert evaluate(Call("contains", (P("ss"), L("x"))), ITEM)
    assert not evaluate(Call("contains", (P("ss"), L({"x"}))), ITEM)
    assert evaluate(Call("contains", (P("ns"), L(Decimal("3.50")))), ITEM)
    assert not evaluate(Call("contains", (P("ns"), L("1"))), ITEM)
    assert evaluate(Call("contains", (P("bs"), L(b"a"))), ITEM)
    assert evaluate(Call("contains", (P("l"), L([3]))), ITEM)
    assert evaluate(Call("contains", (P("l"), L({"four": 4}))), ITEM)
    assert evaluate(Call("contains", (P("l"), L("two"))), ITEM)
    assert not evaluate(Call("contains", (P("ones"), L(True))), ITEM)  # typed: True is not 1
    assert not evaluate(Call("contains", (P("m"), L("x"))), ITEM)  # maps: no
    assert not evaluate(Call("contains", (P("n"), L(5))), ITEM)
    assert not evaluate(Call("contains", (P("missing"), L(5))), ITEM)
    assert evaluate(Call("contains", (P("ss"), P("m", "y", "deep"))), {**ITEM, "ss": {"x"}}) \
        is False


def size(path: Path) -> Call:
    return Call("size", (path,))


def test_size():
    assert evaluate(cmp("=", size(P("s")), L(6)), ITEM)  # UTF-8 bytes: é is two
    assert evaluate(cmp("=", size(P("b")), L(3)), ITEM)
    assert evaluate(cmp("=", size(P("ss")), L(2)), ITEM)
    assert evaluate(cmp("=", size(P("ns")), L(3)), ITEM)
    assert evaluate(cmp("=", size(P("l")), L(4)), ITEM)
    assert evaluate(cmp("=", size(P("m")), L(2)), ITEM)
    assert evaluate(cmp(">", size(P("l")), size(P("m"))), ITEM)
    assert evaluate(cmp("=", size(P("s")), P("n")), {**ITEM, "n": 6})
    assert evaluate(Between(size(P("l")), L(1), L(4)), ITEM)
    for sizeless in ("n", "t", "z", "missing"):
        assert not evaluate(cmp("=", size(P(sizeless)), L(1)), ITEM)
        assert not evaluate(cmp(">=", size(P(sizeless)), L(0)), ITEM)
    assert not evaluate(cmp("=", size(P("s")), L("6")), ITEM)  # compared with a non-number


def test_function_errors():
    with pytest.raises(ValidationException, match="size, operand type: N"):
        check_condition(cmp("=", size(L(5)), L(1)))
    with pytest.raises(ValidationException, match="number of operands: 2"):
        check_condition(cmp("=", Call("size", (P("a"), P("a"))), L(1)))
    with pytest.raises(ValidationException, match="not allowed"):
        check_condition(Call("size", (P("a"),)))  # size is not a condition
    with pytest.raises(ValidationException, match="not allowed"):
        check_condition(cmp("=", Call("if_not_exists", (P("a"), P("a"))), L(1)))
    with pytest.raises(ValidationException, match="not allowed"):
        check_condition(cmp("<", Call("attribute_exists", (P("a"),)), L(1)))
    with pytest.raises(ValidationException, match="Invalid function name; function: dog"):
        check_condition(cmp("=", Call("dog", (P("a"),)), L(1)))
    with pytest.raises(ValidationException, match="UpdateExpression"):
        check_condition(cmp("=", Arithmetic("+", P("a"), L(1)), L(1)))
    with pytest.raises(ValidationException, match="FilterExpression"):
        evaluate(Call("dog", (P("a"),)), {}, kind="FilterExpression")


# ------------------------------------------------------------------ versus a reference
def canonical(value):
    """A typed, hashable form whose Python equality is DynamoDB's equality."""
    if isinstance(value, bool):
        return ("BOOL", value)
    if isinstance(value, (int, Decimal)):
        return ("N", Decimal(value).normalize() if value else Decimal(0))
    if isinstance(value, str):
        return ("S", value.encode())
    if isinstance(value, bytes):
        return ("B", value)
    if value is None:
        return ("NULL", None)
    if isinstance(value, (set, frozenset)):
        members = frozenset(canonical(member) for member in value)
        return ({"N": "NS", "S": "SS", "B": "BS"}[next(iter(members))[0]], members)
    if isinstance(value, list):
        return ("L", tuple(canonical(element) for element in value))
    return ("M", frozenset((name, canonical(element)) for name, element in value.items()))


_GONE = object()


def ref_resolve(item, path):
    value = item
    for element in path.elements:
        if isinstance(element, int):
            if type(value) is not list or element >= len(value):
                return _GONE
        elif type(value) is not dict or element not in value:
            return _GONE
        value = value[element]
    return value


def ref_value(operand, item):
    if isinstance(operand, Literal):
        return canonical(operand.value)
    if isinstance(operand, Path):
        value = ref_resolve(item, operand)
        return _GONE if value is _GONE else canonical(value)
    value = ref_value(operand.args[0], item)  # size()
    if value is _GONE or value[0] in ("N", "BOOL", "NULL"):
        return _GONE
    return ("N", Decimal(len(value[1])))


def ref_order(left, right):
    if left is _GONE or right is _GONE or left[0] != right[0] or left[0] not in "NSB":
        return None
    return (left[1] > right[1]) - (left[1] < right[1])


def ref_evaluate(condition, item):
    if isinstance(condition, And):
        return ref_evaluate(condition.left, item) and ref_evaluate(condition.right, item)
    if isinstance(condition, Or):
        return ref_evaluate(condition.left, item) or ref_evaluate(condition.right, item)
    if isinstance(condition, Not):
        return not ref_evaluate(condition.operand, item)
    if isinstance(condition, Compare):
        left, right = ref_value(condition.left, item), ref_value(condition.right, item)
        if condition.op == "=":
            return left is not _GONE and left == right
        if condition.op == "<>":
            return left is _GONE or right is _GONE or left != right
        order = ref_order(left, right)
        return order is not None and {"<": order < 0, "<=": order <= 0, ">": order > 0,
                                      ">=": order >= 0}[condition.op]
    if isinstance(condition, Between):
        value = ref_value(condition.operand, item)
        low = ref_order(ref_value(condition.low, item), value)
        high = ref_order(value, ref_value(condition.high, item))
        return low is not None and high is not None and low <= 0 and high <= 0
    if isinstance(condition, In):
        value = ref_value(condition.operand, item)
        return value is not _GONE and any(ref_value(o, item) == value for o in condition.options)
    name, args = condition.name, condition.args
    if name == "attribute_exists":
        return ref_resolve(item, args[0]) is not _GONE
    if name == "attribute_not_exists":
        return ref_resolve(item, args[0]) is _GONE
    first = ref_value(args[0], item)
    if name == "attribute_type":
        return first is not _GONE and first[0] == args[1].value
    second = ref_value(args[1], item)
    if first is _GONE or second is _GONE:
        return False
    if name == "begins_with":
        return first[0] == second[0] and first[0] in "SB" and first[1].startswith(second[1])
    # contains
    if first[0] in ("S", "B"):
        return second[0] == first[0] and second[1] in first[1]
    if first[0] in ("SS", "NS", "BS"):
        return second in first[1]
    if first[0] == "L":
        return second in first[1]
    return False


scalars = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([Decimal("1.5"), Decimal("-0.5"), Decimal("2.0"), Decimal("1E+2")]),
    st.text(alphabet="ab\u00e9\ue000", max_size=3),
    st.binary(max_size=3),
    st.booleans(),
    st.none(),
)
sets = st.one_of(
    st.sets(st.text(alphabet="ab", max_size=2), min_size=1, max_size=3),
    st.sets(st.integers(-2, 2), min_size=1, max_size=3),
    st.sets(st.binary(max_size=2), min_size=1, max_size=3),
)
values = st.recursive(
    st.one_of(scalars, sets),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y"]), children, max_size=2),
    ),
    max_leaves=6,
)
items = st.dictionaries(st.sampled_from(["a", "b", "c"]), values, max_size=3)

paths = st.sampled_from([P("a"), P("b"), P("c"), P("a", "x"), P("a", 0), P("b", 1),
                         P("c", "y", 0), P("gone")])
orderable = st.one_of(st.integers(-3, 3), st.text(alphabet="ab\u00e9", max_size=2),
                      st.binary(max_size=2), st.just(Decimal("1.5")))
operands = st.one_of(paths, values.map(Literal))
ordered_operands = st.one_of(paths, orderable.map(Literal), paths.map(size))


def _valid_between(node: Between) -> bool:
    if isinstance(node.low, Literal) and isinstance(node.high, Literal):
        order = compare(node.low.value, node.high.value)
        return order is not None and order <= 0
    return True


prefixes = st.one_of(paths, st.text(alphabet="ab\u00e9", max_size=2).map(Literal),
                     st.binary(max_size=2).map(Literal))
simple_conditions = st.one_of(
    st.builds(Compare, st.sampled_from(["=", "<>"]), operands, operands),
    st.builds(Compare, st.sampled_from(["<", "<=", ">", ">="]), ordered_operands,
              ordered_operands),
    st.builds(Between, ordered_operands, ordered_operands, ordered_operands).filter(
        _valid_between),
    st.builds(In, operands, st.lists(operands, min_size=1, max_size=3).map(tuple)),
    paths.map(lambda p: Call("attribute_exists", (p,))),
    paths.map(lambda p: Call("attribute_not_exists", (p,))),
    st.builds(lambda p, t: Call("attribute_type", (p, Literal(t))), paths,
              st.sampled_from(["S", "SS", "N", "NS", "B", "BS", "BOOL", "NULL", "L", "M"])),
    st.builds(lambda a, b: Call("begins_with", (a, b)), prefixes, prefixes),
    st.builds(lambda a, b: Call("contains", (a, b)), paths, operands),
)
conditions = st.recursive(
    simple_conditions,
    lambda children: st.one_of(st.builds(And, children, children),
                               st.builds(Or, children, children), st.builds(Not, children)),
    max_leaves=4,
)


@given(condition=conditions, item=items)
def test_evaluate_agrees_with_the_reference(condition, item):
    check_condition(condition)  # the generated trees are all valid requests
    assert evaluate(condition, item) is ref_evaluate(condition, item)


@given(condition=conditions, items=st.lists(items, min_size=1, max_size=4))
def test_the_compiled_form_agrees_with_the_tree_walk(condition, items):
    compiled = compile_condition(condition)
    for item in items:
        assert compiled(item) is evaluate(condition, item) is ref_evaluate(condition, item)


def test_the_compiled_form_checks_the_request_once():
    with pytest.raises(ValidationException, match="BETWEEN"):
        compile_condition(Between(P("a"), Literal(3), Literal(1)))


@given(left=values, right=values)
def test_values_equal_agrees_with_canonical_forms(left, right):
    assert values_equal(left, right) is (canonical(left) == canonical(right))
    assert values_equal(left, left)
