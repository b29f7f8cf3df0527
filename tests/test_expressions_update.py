"""UpdateExpressions on items (engine.expressions.update) on hand-built bound trees.

Expected results follow the Developer Guide ("Using update expressions") and the cases the
Alternator suite checked against DynamoDB (operands read from the old item, list indexes
as of before the update, appends in index order, invalid parents, REMOVE of missing
leaves). The hypothesis test compares simple top-level updates with a reference.
"""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ValidationException
from engine.expressions.ast import (
    AddAction,
    Arithmetic,
    Call,
    DeleteAction,
    Literal,
    Path,
    RemoveAction,
    SetAction,
    Update,
)
from engine.expressions.projection import project_paths
from engine.expressions.tuples import condition_from_tuples, update_from_tuples
from engine.expressions.update import apply_update
from engine.expressions.values import add_numbers, subtract_numbers, values_equal

KEY = {"pk": "k"}
KEY_NAMES = ("pk",)


def P(*elements) -> Path:
    return Path(tuple(elements))


def L(value) -> Literal:
    return Literal(value)


def run(item, *actions):
    before = copy.deepcopy(item)
    new, touched = apply_update(Update(tuple(actions)), item, KEY, KEY_NAMES)
    assert item == before  # the input item is never changed
    return new


def fails(item, *actions, match):
    before = copy.deepcopy(item)
    with pytest.raises(ValidationException, match=match):
        apply_update(Update(tuple(actions)), item, KEY, KEY_NAMES)
    assert item == before


MISSING_ATTRIBUTE = "refers to an attribute that does not exist in the item"
WRONG_TYPE = "An operand in the update expression has an incorrect data type"
BAD_PATH = "document path provided in the update expression is invalid for update"


# ------------------------------------------------------------------ SET
def test_set_creates_from_the_key_when_the_item_is_missing():
    assert run(None, SetAction(P("a"), L(1))) == {"pk": "k", "a": 1}


def test_set_replaces_and_copies():
    item = {"pk": "k", "a": "hello"}
    assert run(item, SetAction(P("b"), P("a"))) == {"pk": "k", "a": "hello", "b": "hello"}
    assert run(item, SetAction(P("a"), P("a"))) == item
    fails(item, SetAction(P("c"), P("z")), match=MISSING_ATTRIBUTE)
    fails(None, SetAction(P("c"), P("z")), match=MISSING_ATTRIBUTE)


def test_operands_are_read_from_the_item_before_the_update():
    item = {"pk": "k", "a": "hello"}
    fails(item, SetAction(P("x"), L(4)), SetAction(P("y"), P("x")), match=MISSING_ATTRIBUTE)
    assert run(item, RemoveAction(P("a")), SetAction(P("b"), P("a"))) == {"pk": "k", "b": "hello"}
    assert run(item, SetAction(P("a"), L(1)), SetAction(P("b"), P("a")))["b"] == "hello"


def test_set_copies_share_nothing_with_the_old_item():
    item = {"pk": "k", "m": {"x": [1]}}
    new = run(item, SetAction(P("c"), P("m")), SetAction(P("m", "x", 0), L(2)))
    assert new == {"pk": "k", "m": {"x": [2]}, "c": {"x": [1]}}


def test_plus_and_minus():
    item = {"pk": "k", "a": 2, "d": Decimal("0.1"), "s": "x", "t": True}
    assert run(item, SetAction(P("a"), Arithmetic("+", P("a"), L(3))))["a"] == 5
    assert run(item, SetAction(P("a"), Arithmetic("+", L(4), P("a"))))["a"] == 6
    assert run(item, SetAction(P("b"), Arithmetic("-", L(7), P("a"))))["b"] == 5
    assert run(item, SetAction(P("b"), Arithmetic("+", P("a"), P("a"))))["b"] == 4
    assert run(item, SetAction(P("d"), Arithmetic("+", P("d"), L(Decimal("0.2")))))["d"] \
        == Decimal("0.3")
    assert run(item, SetAction(P("d"), Arithmetic("+", P("d"), L(Decimal("0.9")))))["d"] == 1
    fails(item, SetAction(P("a"), Arithmetic("+", P("nope"), L(1))), match=MISSING_ATTRIBUTE)
    fails(None, SetAction(P("a"), Arithmetic("+", P("a"), L(1))), match=MISSING_ATTRIBUTE)
    fails(item, SetAction(P("a"), Arithmetic("+", P("s"), L(1))), match=WRONG_TYPE)
    fails(item, SetAction(P("a"), Arithmetic("+", P("t"), L(1))), match=WRONG_TYPE)  # BOOL
    fails(item, SetAction(P("a"), Arithmetic("+", L("dog"), L(3))),
          match=r"operator or function: \+, operand type: S")
    fails(item, SetAction(P("a"), Arithmetic("-", P("a"), L(True))),
          match="operator or function: -, operand type: BOOL")


def test_arithmetic_is_exact_to_38_digits():
    big = 10 ** 37
    assert add_numbers(big, 1) == big + 1
    assert add_numbers(Decimal("0.1"), Decimal("0.2")) == Decimal("0.3")
    assert subtract_numbers(Decimal("1E-120"), Decimal("1E-120")) == 0
    with pytest.raises(ValidationException, match="38 significant digits"):
        add_numbers(10 ** 38, 1)  # 39 digits
    with pytest.raises(ValidationException, match="38 significant digits"):
        add_numbers(Decimal("1E+20"), Decimal("1E-20"))
    with pytest.raises(ValidationException, match="overflow"):
        add_numbers(Decimal("9.9999999999999999999999999999999999999E+125"),
                    Decimal("0.0000000000000000000000000000000000001E+125"))
    with pytest.raises(ValidationException, match="underflow"):
        subtract_numbers(Decimal("1.1E-130"), Decimal("1E-130"))
    item = {"pk": "k", "a": 10 ** 37}
    fails(item, SetAction(P("a"), Arithmetic("+", P("a"), L(Decimal("0.1")))),
          match="38 significant digits")


def test_if_not_exists():
    item = {"pk": "k", "a": 2}
    assert run(item, SetAction(P("a"), Call("if_not_exists", (P("a"), L(3)))))["a"] == 2
    assert run(item, SetAction(P("b"), Call("if_not_exists", (P("c"), L(4)))))["b"] == 4
    assert run(item, SetAction(P("b"), Call("if_not_exists", (P("a"), L(6)))))["b"] == 2
    assert run(item, SetAction(P("b"), Arithmetic(
        "+", Call("if_not_exists", (P("b"), L(2))), L(3))))["b"] == 5
    fails(item, SetAction(P("b"), Call("if_not_exists", (L(3), L(6)))),
          match="requires a document path")


def test_list_append_either_order():
    item = {"pk": "k", "a": ["hi", 2], "n": 7, "m": {"a": 1}, "s": {"x"}}
    assert run(item, SetAction(P("a"), Call("list_append", (P("a"), L([4])))))["a"] == ["hi", 2, 4]
    assert run(item, SetAction(P("a"), Call("list_append", (L([4]), P("a")))))["a"] == [4, "hi", 2]
    assert run(item, SetAction(P("c"), Call("list_append", (P("a"), P("a")))))["c"] == \
        ["hi", 2, "hi", 2]
    assert run(item, SetAction(P("c"), Call("list_append", (L([]), L([1])))))["c"] == [1]
    for other in ("n", "m", "s"):
        fails(item, SetAction(P("c"), Call("list_append", (P(other), L([1])))), match=WRONG_TYPE)
    fails(item, SetAction(P("c"), Call("list_append", (P("nope"), L([1])))),
          match=MISSING_ATTRIBUTE)
    fails(item, SetAction(P("c"), Call("list_append", (L([1]), L("hi")))),
          match="list_append, operand type: S")
    fails(item, SetAction(P("c"), Call("list_append", (L([1]),))), match="number of operands: 1")


def test_set_nested_paths():
    item = {"pk": "k", "a": {"b": 3, "c": ["hi", {"x": {"y": [3, 5, 7]}}]}, "s": "x", "l": ["x"]}
    new = run(item, SetAction(P("a", "c", 1, "x", "y", 1), L(9)), SetAction(P("a", "d"), L(1)))
    assert new["a"] == {"b": 3, "c": ["hi", {"x": {"y": [3, 9, 7]}}], "d": 1}
    assert run(item, SetAction(P("a", "b"), L({"new": "map"})))["a"]["b"] == {"new": "map"}
    for bad in (P("s", "c"), P("l", "c"), P("nope", "c"), P("s", 0), P("a", 0), P("nope", 0),
                P("a", "nope", "x")):
        fails(item, SetAction(bad, L(7)), match=BAD_PATH)
    fails(None, SetAction(P("c", "c"), L(7)), match=BAD_PATH)


def test_set_past_the_end_of_a_list_appends_in_index_order():
    item = {"pk": "k", "a": ["one", "two", "three"]}
    assert run(item, SetAction(P("a", 7), L("hello")))["a"] == ["one", "two", "three", "hello"]
    new = run(item, SetAction(P("a", 84), L("a1")), SetAction(P("a", 37), L("a2")),
              SetAction(P("a", 17), L("a3")), SetAction(P("a", 50), L("a4")))
    assert new["a"] == ["one", "two", "three", "a3", "a2", "a4", "a1"]


def test_an_empty_set_is_never_stored():
    fails({"pk": "k"}, SetAction(P("a"), L(set())), match="empty set")


# ------------------------------------------------------------------ REMOVE
def test_remove_top_level_nested_and_list_elements():
    item = {"pk": "k", "a": {"b": 3, "c": ["hi", {"x": {"y": [3, 5, 7]}, "q": 2}]}, "d": 1}
    new = run(item, RemoveAction(P("a", "c", 1, "x", "y", 1)), RemoveAction(P("a", "c", 1, "q")),
              RemoveAction(P("d")))
    assert new == {"pk": "k", "a": {"b": 3, "c": ["hi", {"x": {"y": [3, 7]}}]}}
    assert run({"pk": "k", "a": {"b": 1}}, RemoveAction(P("a", "b")))["a"] == {}
    assert run({"pk": "k", "a": [1]}, RemoveAction(P("a", 0)))["a"] == []


def test_several_list_indexes_are_removed_as_of_before_the_update():
    item = {"pk": "k", "a": [0, 1, 2, 3, 4, 5]}
    assert run(item, RemoveAction(P("a", 1)), RemoveAction(P("a", 3)))["a"] == [0, 2, 4, 5]
    assert run(item, RemoveAction(P("a", 4)), RemoveAction(P("a", 0)))["a"] == [1, 2, 3, 5]
    item = {"pk": "k", "a": [2, 3, 4, 5, 6, 7]}
    for actions in ((RemoveAction(P("a", 1)), SetAction(P("a", 3), L(17))),
                    (SetAction(P("a", 3), L(17)), RemoveAction(P("a", 1)))):
        assert run(item, *actions)["a"] == [2, 4, 17, 6, 7]


def test_remove_of_missing_things():
    item = {"pk": "k", "a": {"x": 3}, "b": ["hi"], "s": "hello"}
    assert run(item, RemoveAction(P("a", "y")), RemoveAction(P("b", 7)),
               RemoveAction(P("c"))) == item
    for bad in (P("s", "c"), P("b", "c"), P("c", "c"), P("s", 0), P("c", 0)):
        fails(item, RemoveAction(bad), match=BAD_PATH)
    # on an item that does not exist, a nested REMOVE does nothing
    assert run(None, RemoveAction(P("x", "y")), RemoveAction(P("z", 0))) == {"pk": "k"}


# ------------------------------------------------------------------ ADD / DELETE
def test_add_numbers_and_sets():
    item = {"pk": "k", "a": 3, "b": "hi", "s": {"dog", "cat"}, "l": [1, 2], "m": {"n": 1}}
    assert run(item, AddAction(P("a"), L(4)))["a"] == 7
    assert run(item, AddAction(P("a"), L(-4)))["a"] == -1
    assert run(item, AddAction(P("new"), L(7)))["new"] == 7
    assert run(None, AddAction(P("new"), L(8))) == {"pk": "k", "new": 8}
    assert run(item, AddAction(P("s"), L({"pig", "cat"})))["s"] == {"dog", "cat", "pig"}
    assert run(item, AddAction(P("t"), L({b"x"})))["t"] == {b"x"}
    assert run(item, AddAction(P("m", "n"), L(1)))["m"] == {"n": 2}  # nested paths too
    assert run(item, AddAction(P("m", "o"), L(1)))["m"] == {"n": 1, "o": 1}
    fails(item, AddAction(P("a"), L("hello")), match="operator: ADD, operand type: STRING")
    fails(item, AddAction(P("l"), L([3])), match="operator: ADD, operand type: LIST")
    fails(item, AddAction(P("b"), L(1)), match=WRONG_TYPE)
    fails(item, AddAction(P("s"), L({1})), match=WRONG_TYPE)
    fails(item, AddAction(P("l"), L({3})), match=WRONG_TYPE)
    fails(item, AddAction(P("a"), L(True)), match="operand type: BOOLEAN")
    fails(item, AddAction(P("nope", "x"), L(1)), match=BAD_PATH)


def test_delete_from_sets():
    item = {"pk": "k", "a": {"dog", "cat", "mouse"}, "b": "hi", "n": {1, 2}}
    assert run(item, DeleteAction(P("a"), L({"cat", "mouse"})))["a"] == {"dog"}
    assert run(item, DeleteAction(P("a"), L({"pig"})))["a"] == item["a"]
    assert run(item, DeleteAction(P("a"), L({"dog", "cat", "mouse"}))) == \
        {"pk": "k", "b": "hi", "n": {1, 2}}  # the last member removes the attribute
    assert run(item, DeleteAction(P("n"), L({Decimal("1.0")})))["n"] == {2}
    assert run(item, DeleteAction(P("gone"), L({"dog"}))) == item
    fails(item, DeleteAction(P("a"), L("hello")), match="operator: DELETE, operand type: STRING")
    fails(item, DeleteAction(P("a"), L(set())), match="empty")
    fails(item, DeleteAction(P("a"), L({1})), match=WRONG_TYPE)
    fails(item, DeleteAction(P("b"), L({"h"})), match=WRONG_TYPE)


# ------------------------------------------------------------------ whole-update checks
def test_key_attributes_cannot_be_updated():
    for action in (SetAction(P("pk"), L(4)), RemoveAction(P("pk")), AddAction(P("pk"), L(1)),
                   DeleteAction(P("pk"), L({"x"})), SetAction(P("pk", "x"), L(1))):
        fails({"pk": "k"}, action,
              match="Cannot update attribute pk. This attribute is part of the key")


@pytest.mark.parametrize(
    "first, second",
    [(P("a"), P("a")), (P("a"), P("a", "b")), (P("a", "b"), P("a")), (P("a", "b", "c"),
     P("a", "b")), (P("a", 1), P("a")), (P("a", 1, 1, 1), P("a", 1, 1)), (P("a", 1), P("a", 1))],
)
def test_overlapping_paths(first, second):
    fails({"pk": "k"}, SetAction(first, L(1)), SetAction(second, L(2)),
          match="Two document paths overlap with each other")
    fails({"pk": "k"}, SetAction(first, L(1)), RemoveAction(second), match="overlap")


def test_conflicting_paths():
    fails({"pk": "k"}, SetAction(P("a", "b"), L(1)), SetAction(P("a", 1), L(2)),
          match=r"conflict with each other; must remove or rewrite one of these paths; "
                r"path one: \[a, b\], path two: \[a, \[1\]\]")


def test_several_non_overlapping_changes_to_one_attribute():
    item = {"pk": "k", "a": {"x": 3, "y": 4, "c": {"y": 3}}, "b": {"x": 1, "y": 2}}
    new = run(item, SetAction(P("a", "b"), L(10)), SetAction(P("a", "c", "d"), L("dog")),
              SetAction(P("b", "x"), L(17)), RemoveAction(P("a", "x")), RemoveAction(P("b", "y")))
    assert new == {"pk": "k", "a": {"y": 4, "b": 10, "c": {"y": 3, "d": "dog"}}, "b": {"x": 17}}


def test_all_or_nothing():
    item = {"pk": "k", "a": 1, "s": "x"}
    fails(item, SetAction(P("b"), L(2)), RemoveAction(P("a")),
          SetAction(P("c"), Arithmetic("+", P("s"), L(1))), match=WRONG_TYPE)


def test_touched_paths_give_dynamodb_updated_old_and_new():
    item = {"pk": "k", "a": {"b": "dog", "c": [1, 2, 3]}, "d": "cat"}
    update = Update((SetAction(P("a", "c", 1), L(8)), SetAction(P("a", "b"), L("yo")),
                     SetAction(P("a", "x"), L(1))))
    new, touched = apply_update(update, item, KEY, KEY_NAMES)
    assert project_paths(item, touched) == {"a": {"b": "dog", "c": [2]}}
    assert project_paths(new, touched) == {"a": {"b": "yo", "c": [8], "x": 1}}


# ------------------------------------------------------------------ the older tuple forms
def test_tuple_forms_convert():
    update = update_from_tuples([("SET", "a", 1), ("SET_IF_NOT_EXISTS", "b", 2),
                                 ("INCREMENT", "n", 3), ("REMOVE", "r"), ("ADD", "s", {"x"}),
                                 ("DELETE", "t", {"y"})])
    item = {"pk": "k", "b": 0, "n": 1, "r": 1, "t": {"y", "z"}}
    new, touched = apply_update(update, item, KEY, KEY_NAMES)
    assert new == {"pk": "k", "a": 1, "b": 0, "n": 4, "s": {"x"}, "t": {"z"}}
    assert [path.elements for path in touched] == [("a",), ("b",), ("n",), ("r",), ("s",), ("t",)]
    with pytest.raises(ValidationException, match="at least one action"):
        update_from_tuples([])
    with pytest.raises(ValidationException, match="invalid update action"):
        update_from_tuples([("FROB", "a", 1)])
    assert condition_from_tuples([]) is None
    with pytest.raises(ValidationException, match="invalid condition clause"):
        condition_from_tuples([("~", "a", 1)])


# ------------------------------------------------------------------ versus a reference
def reference_update(item, actions):
    """Sequential top-level semantics: every operand read from the old item."""
    old = dict(item) if item is not None else dict(KEY)
    new = dict(old)
    for verb, name, value in actions:
        if verb == "SET":
            new[name] = value
        elif verb == "REMOVE":
            new.pop(name, None)
        elif verb == "INCREMENT":
            if name not in old:
                return "missing"
            if not isinstance(old[name], int) or isinstance(old[name], bool):
                return "type"
            new[name] = old[name] + value
        elif verb == "ADD":
            current = old.get(name)
            if isinstance(value, int):
                if current is None:
                    new[name] = value
                elif isinstance(current, int) and not isinstance(current, bool):
                    new[name] = current + value
                else:
                    return "type"
            elif current is None:
                new[name] = set(value)
            elif isinstance(current, set) and type(next(iter(current))) is type(next(iter(value))):
                new[name] = current | value
            else:
                return "type"
        elif verb == "DELETE":
            current = old.get(name)
            if current is None:
                continue
            if not isinstance(current, set) or type(next(iter(current))) is not type(
                    next(iter(value))):
                return "type"
            remaining = current - value
            if remaining:
                new[name] = remaining
            else:
                del new[name]
    return new


names = st.sampled_from(["a", "b", "c", "d"])
plain_values = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.booleans(),
                         st.sets(st.sampled_from(["x", "y", "z"]), min_size=1))
actions = st.one_of(
    st.tuples(st.just("SET"), names, plain_values),
    st.tuples(st.just("REMOVE"), names, st.none()),
    st.tuples(st.just("INCREMENT"), names, st.integers(-5, 5)),
    st.tuples(st.just("ADD"), names, st.one_of(st.integers(-5, 5),
                                               st.sets(st.sampled_from(["x", "y"]), min_size=1))),
    st.tuples(st.just("DELETE"), names, st.sets(st.sampled_from(["x", "y"]), min_size=1)),
)
old_items = st.one_of(st.none(), st.dictionaries(names, plain_values, max_size=4).map(
    lambda attributes: {**attributes, "pk": "k"}))


@given(item=old_items, action_list=st.lists(actions, min_size=1, max_size=4,
                                            unique_by=lambda action: action[1]))
def test_apply_update_agrees_with_the_reference_on_top_level_updates(item, action_list):
    tuples = [(verb, name) if verb == "REMOVE" else (verb, name, value)
              for verb, name, value in action_list]
    expected = reference_update(item, action_list)
    update = update_from_tuples(tuples)
    if isinstance(expected, str):
        with pytest.raises(ValidationException,
                           match=MISSING_ATTRIBUTE if expected == "missing" else "data type"):
            apply_update(update, item, KEY, KEY_NAMES)
        return
    new, touched = apply_update(update, item, KEY, KEY_NAMES)
    assert values_equal(new, expected), (new, expected)
    assert [path.elements[0] for path in touched] == [action[1] for action in action_list]
