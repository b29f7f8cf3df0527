"""The Table API on DynamoDB's expression language: conditions, updates and projections as
bound trees, expression strings (with names= / values=) and the older tuple forms, all run
by the one evaluator; ReturnValues with nested paths; ReturnValuesOnConditionCheckFailure;
Query/Scan pages whose Limit counts items read before the filter."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine import ConditionalCheckFailedException, ValidationException
from engine.expressions.ast import (
    Call,
    Compare,
    Literal,
    Not,
    Or,
    Path,
    Projection,
    RemoveAction,
    SetAction,
    Update,
)
from engine.itemsize import item_size
from engine.table import Page


def P(*elements) -> Path:
    return Path(tuple(elements))


def L(value) -> Literal:
    return Literal(value)


@pytest.fixture
def music(engine):
    engine.create_table("Music", partition_key=("pk", "S"), sort_key=("sk", "N"), partitions=3)
    return engine.table("Music")




# ------------------------------------------------------------------ conditions
def test_the_wrong_write_a_list_of_one_is_not_a_list_of_true(music):
    """Item a=[1]: a put conditioned on a = [true] must fail (Python's True == 1 made it pass)."""
    music.put_item({"pk": "w", "sk": 1, "a": [1]})
    for condition in ([("=", "a", [True])], Compare("=", P("a"), L([True]))):
        with pytest.raises(ConditionalCheckFailedException):
            music.put_item({"pk": "w", "sk": 1, "a": "overwritten"}, condition=condition)
    assert music.get_item({"pk": "w", "sk": 1})["a"] == [1]
    music.put_item({"pk": "w", "sk": 1, "a": "ok"}, condition=[("=", "a", [1])])
    assert music.get_item({"pk": "w", "sk": 1})["a"] == "ok"


def test_condition_trees_on_put_delete_and_update(music):
    item = {"pk": "c", "sk": 1, "m": {"x": 1, "l": [5, 6]}, "n": 3}
    music.put_item(item)
    nested = Compare("<", P("m", "x"), P("m", "l", 0))
    music.put_item({**item, "n": 4}, condition=nested)
    with pytest.raises(ConditionalCheckFailedException):
        music.put_item({**item, "n": 5}, condition=Not(nested))
    with pytest.raises(ConditionalCheckFailedException):
        music.update_item({"pk": "c", "sk": 1}, [("SET", "n", 9)],
                          condition=Call("attribute_exists", (P("m", "l", 2),)))
    music.update_item({"pk": "c", "sk": 1}, [("SET", "n", 9)],
                      condition=Or(Compare("=", P("n"), L(1)), Compare("=", P("n"), L(4))))
    assert music.get_item({"pk": "c", "sk": 1})["n"] == 9
    with pytest.raises(ConditionalCheckFailedException):
        music.delete_item({"pk": "c", "sk": 1}, condition=Compare("<>", P("n"), L(9)))
    music.delete_item({"pk": "c", "sk": 1}, condition=Compare("<>", P("missing"), L(9)))
    assert music.get_item({"pk": "c", "sk": 1}) is None


def test_an_invalid_condition_is_a_validation_error_before_anything_is_read(music):
    with pytest.raises(ValidationException, match="Incorrect operand type"):
        music.put_item({"pk": "v", "sk": 1}, condition=Compare("<", P("a"), L([1])))
    with pytest.raises(ValidationException, match="Invalid attribute type name"):
        music.delete_item({"pk": "v", "sk": 1},
                          condition=Call("attribute_type", (P("a"), L("DOG"))))
    with pytest.raises(ValidationException, match="condition"):
        music.put_item({"pk": "v", "sk": 1}, condition=42)
    assert music.get_item({"pk": "v", "sk": 1}) is None


def test_return_values_on_condition_check_failure(music):
    music.put_item({"pk": "r", "sk": 1, "s": "cat"})
    failing = [("=", "s", "rat")]
    with pytest.raises(ConditionalCheckFailedException) as failure:
        music.update_item({"pk": "r", "sk": 1}, [("SET", "s", "cow")], condition=failing,
                          return_values_on_condition_check_failure="ALL_OLD")
    assert failure.value.item == {"pk": "r", "sk": 1, "s": "cat"}
    with pytest.raises(ConditionalCheckFailedException) as failure:
        music.put_item({"pk": "r", "sk": 1}, condition=failing,
                       return_values_on_condition_check_failure="ALL_OLD")
    assert failure.value.item == {"pk": "r", "sk": 1, "s": "cat"}
    with pytest.raises(ConditionalCheckFailedException) as failure:
        music.delete_item({"pk": "r", "sk": 1}, condition=failing)
    assert failure.value.item is None  # not asked for
    with pytest.raises(ConditionalCheckFailedException) as failure:
        music.update_item({"pk": "r", "sk": 2}, [("SET", "s", "cow")], condition=failing,
                          return_values_on_condition_check_failure="ALL_OLD")
    assert failure.value.item is None  # no item
    with pytest.raises(ValidationException, match="ReturnValuesOnConditionCheckFailure"):
        music.put_item({"pk": "r", "sk": 1}, return_values_on_condition_check_failure="ALL_NEW")


# ------------------------------------------------------------------ updates
def test_nested_updates_and_their_return_values(music):
    key = {"pk": "u", "sk": 1}
    music.put_item({**key, "a": {"b": "dog", "c": [1, 2, 3]}, "d": "cat"})

    def update(*actions, return_values):
        return music.update_item(key, Update(tuple(actions)), return_values=return_values)

    assert update(SetAction(P("a", "b"), L("hi")), return_values="ALL_OLD") == \
        {**key, "a": {"b": "dog", "c": [1, 2, 3]}, "d": "cat"}
    assert update(SetAction(P("a", "b"), L("yo")), return_values="UPDATED_OLD") == \
        {"a": {"b": "hi"}}
    assert update(SetAction(P("a", "c", 1), L(7)), return_values="UPDATED_OLD") == \
        {"a": {"c": [2]}}
    assert update(SetAction(P("a", "c", 1), L(8)), SetAction(P("a", "b"), L("dog")),
                  return_values="UPDATED_OLD") == {"a": {"b": "yo", "c": [7]}}
    assert update(SetAction(P("a", "c", 1), L(3)), SetAction(P("a", "b"), L("dog")),
                  return_values="UPDATED_NEW") == {"a": {"b": "dog", "c": [3]}}
    assert update(SetAction(P("a", "b"), L("hi")), return_values="ALL_NEW") == \
        {**key, "a": {"b": "hi", "c": [1, 3, 3]}, "d": "cat"}
    # a.c[3] does not exist: not in UPDATED_OLD
    assert update(RemoveAction(P("a", "c", 1)), RemoveAction(P("a", "c", 3)),
                  return_values="UPDATED_OLD") == {"a": {"c": [3]}}
    assert update(SetAction(P("a", "x1"), L(8)), return_values="UPDATED_OLD") == {}
    assert update(SetAction(P("a", "x2"), L(8)), return_values="UPDATED_NEW") == \
        {"a": {"x2": 8}}
    # past the end appends (to a.c[2]); UPDATED_NEW of a.c[100] is nothing, as in DynamoDB
    assert update(SetAction(P("a", "c", 100), L(70)), return_values="UPDATED_NEW") == {}
    assert music.get_item(key)["a"]["c"] == [1, 3, 70]


def test_a_failed_update_writes_nothing(music):
    key = {"pk": "f", "sk": 1}
    music.put_item({**key, "s": "x", "n": 1})
    with pytest.raises(ValidationException, match="invalid for update"):
        music.update_item(key, Update((SetAction(P("n"), L(2)), SetAction(P("s", "y"), L(1)))))
    with pytest.raises(ValidationException, match="overlap"):
        music.update_item(key, Update((SetAction(P("n"), L(2)), RemoveAction(P("n")))))
    with pytest.raises(ValidationException, match="part of the key"):
        music.update_item(key, Update((SetAction(P("sk"), L(2)),)))
    assert music.get_item(key) == {**key, "s": "x", "n": 1}


def test_a_remove_only_update_of_a_missing_item_creates_nothing(music):
    key = {"pk": "gone", "sk": 1}
    assert music.update_item(key, [("REMOVE", "b")], return_values="ALL_NEW") is None
    assert music.update_item(key, Update((RemoveAction(P("a", "b")),))) is None
    assert music.get_item(key) is None
    assert music.update_item(key, [("ADD", "n", 1)], return_values="ALL_NEW") == {**key, "n": 1}


def test_arithmetic_results_are_stored_exactly(music):
    key = {"pk": "num", "sk": 1}
    music.put_item({**key, "n": Decimal("0.1")})
    new = music.update_item(key, [("INCREMENT", "n", Decimal("0.2"))], return_values="UPDATED_NEW")
    assert new == {"n": Decimal("0.3")}
    with pytest.raises(ValidationException, match="38 significant digits"):
        music.update_item(key, [("ADD", "n", 10 ** 37)])
    assert music.get_item(key)["n"] == Decimal("0.3")


# ------------------------------------------------------------------ projections
def test_projections_of_get_and_batch_get(music):
    item = {"pk": "p", "sk": 1, "a": {"b": ["x", "y", "z"], "c": 1}, "s": "str"}
    music.put_item(item)
    key = {"pk": "p", "sk": 1}
    assert music.get_item(key, projection=Projection((P("a", "b", 1), P("s")))) == \
        {"a": {"b": ["y"]}, "s": "str"}
    assert music.get_item(key, projection=["s", "missing"]) == {"s": "str"}
    assert music.get_item(key, projection=Projection((P("a", "c"),))) == {"a": {"c": 1}}
    assert music.get_item({"pk": "p", "sk": 2}, projection=Projection((P("a", "c"),))) is None
    assert music.batch_get([key, {"pk": "p", "sk": 2}],
                           projection=Projection((P("a", "b", 2),))) == [{"a": {"b": ["z"]}}]
    assert music.batch_get([key], projection=["s"]) == [{"s": "str"}]
    with pytest.raises(ValidationException, match="projection"):
        music.get_item(key, projection=[])


# ------------------------------------------------------------------ query / scan pages
@pytest.fixture
def loaded(music):
    for sk in range(10):
        music.put_item({"pk": "q", "sk": sk, "v": sk % 3, "tag": f"t{sk}", "m": {"x": sk}})
    return music


def test_limit_counts_items_read_before_the_filter(loaded):
    even = Compare("=", P("v"), L(0))
    page = loaded.query_page("q", limit=4, filter=even)
    assert isinstance(page, Page)
    assert [item["sk"] for item in page.items] == [0, 3]
    assert page.scanned_count == 4
    assert page.last_evaluated_key == {"pk": "q", "sk": 3}
    page = loaded.query_page("q", limit=4, filter=even,
                             exclusive_start_key=page.last_evaluated_key)
    assert [item["sk"] for item in page.items] == [6]
    assert page.scanned_count == 4 and page.last_evaluated_key == {"pk": "q", "sk": 7}
    # a page may be empty and still not the last
    page = loaded.query_page("q", limit=1, filter=even, exclusive_start_key={"pk": "q", "sk": 0})
    assert page.items == [] and page.scanned_count == 1
    assert page.last_evaluated_key == {"pk": "q", "sk": 1}


def test_paging_with_a_filter_finds_every_match_once(loaded):
    for forward in (True, False):
        seen, start = [], None
        while True:
            page = loaded.query_page("q", forward=forward, limit=3, exclusive_start_key=start,
                                     filter=[("=", "v", 1)])
            seen += [item["sk"] for item in page.items]
            start = page.last_evaluated_key
            if start is None:
                break
        assert seen == sorted([1, 4, 7], reverse=not forward)


def test_projection_applies_after_the_filter(loaded):
    page = loaded.query_page("q", filter=Compare(">", P("m", "x"), L(7)),
                             projection=Projection((P("tag"),)))
    assert page.items == [{"tag": "t8"}, {"tag": "t9"}] and page.scanned_count == 10
    page = loaded.scan_page(filter=Compare("=", P("v"), L(2)),
                            projection=Projection((P("m", "x"),)))
    assert sorted(item["m"]["x"] for item in page.items) == [2, 5, 8]
    assert page.last_evaluated_key is None and page.scanned_count == 10


def test_measure_sums_dynamodb_item_sizes_of_the_items_read(loaded):
    everything = [loaded.get_item({"pk": "q", "sk": sk}) for sk in range(10)]
    page = loaded.query_page("q", limit=5, measure=True, filter=[("=", "v", 2)],
                             projection=["tag"])
    assert page.scanned_size_bytes == sum(item_size(item) for item in everything[:5])
    assert loaded.query_page("q", limit=5).scanned_size_bytes == 0  # only when asked
    page = loaded.scan_page(measure=True)
    assert page.scanned_size_bytes == sum(item_size(item) for item in everything)


def test_the_page_byte_cap_counts_items_read(loaded):
    page = loaded.query_page("q", max_page_bytes=1, filter=[("=", "v", 2)])
    assert page.scanned_count == 1 and page.items == []
    assert page.last_evaluated_key == {"pk": "q", "sk": 0}


def test_query_and_scan_keep_their_tuple_results(loaded):
    items, last = loaded.query("q", (">=", 8))
    assert [item["sk"] for item in items] == [8, 9] and last is None
    items, last = loaded.query("q", None, True, 2, None, ["sk"])
    assert items == [{"sk": 0}, {"sk": 1}] and last == {"pk": "q", "sk": 1}
    items, last = loaded.scan(limit=3, filter=[("=", "v", 0)])
    assert all(item["v"] == 0 for item in items) and last is not None


# ------------------------------------------------------------------ expression strings
def test_expression_strings_with_names_and_values(music):
    key = {"pk": "e", "sk": 1}
    music.update_item(key, "SET #a = :one, l = :list", names={"#a": "a"},
                      values={":one": 1, ":list": [1]})
    assert music.get_item(key) == {**key, "a": 1, "l": [1]}
    with pytest.raises(ConditionalCheckFailedException):
        music.put_item({**key, "a": 2}, condition="l = :v", values={":v": [True]})
    new = music.update_item(key, "SET a = a + :n REMOVE l", condition="attribute_exists(a)",
                            values={":n": 2}, return_values="UPDATED_NEW")
    assert new == {"a": 3}
    assert music.get_item(key, projection="#a", names={"#a": "a"}) == {"a": 3}
    music.delete_item(key, condition="a BETWEEN :lo AND :hi", values={":lo": 0, ":hi": 5})
    assert music.get_item(key) is None


def test_unused_or_missing_placeholders_are_errors(music):
    key = {"pk": "e", "sk": 2}
    with pytest.raises(ValidationException, match="unused in expressions: keys: {:extra}"):
        music.update_item(key, "SET a = :one", values={":one": 1, ":extra": 2})
    with pytest.raises(ValidationException, match="unused"):
        music.put_item({**key}, condition="attribute_not_exists(pk)", names={"#n": "x"})
    with pytest.raises(ValidationException, match="not defined"):
        music.update_item(key, "SET a = :one")
    assert music.get_item(key) is None


def test_filter_strings_on_pages(music):
    for sk in range(6):
        music.put_item({"pk": "fs", "sk": sk, "v": sk})
    page = music.query_page("fs", filter="v > :n", values={":n": 3}, projection="sk")
    assert page.items == [{"sk": 4}, {"sk": 5}] and page.scanned_count == 6
    page = music.scan_page(filter="contains(#t, :x)", names={"#t": "v"}, values={":x": 1})
    assert page.items == []


def test_names_or_values_without_any_expression_string_are_refused(music):
    with pytest.raises(ValidationException, match="only be specified when using expressions"):
        music.put_item({"pk": "x", "sk": 1}, values={":v": 1})
    assert music.get_item({"pk": "x", "sk": 1}) is None


def test_a_delete_only_update_of_a_missing_item_creates_nothing(tmp_path):
    from engine import Engine

    with Engine.open(tmp_path / "data", map_size_bytes=1 << 26) as engine:
        engine.create_table("Sets", partitions=1)
        table = engine.table("Sets")
        assert table.update_item({"pk": "a"}, "DELETE s :s REMOVE t", values={":s": {"x"}},
                                 return_values="ALL_NEW") is None
        assert list(table.iter_items()) == []
        table.put_item({"pk": "a", "s": {"x", "y"}})
        assert table.update_item({"pk": "a"}, "DELETE s :s", values={":s": {"x"}},
                                 return_values="ALL_NEW") == {"pk": "a", "s": {"y"}}


def test_an_update_without_actions_creates_the_key_only_item(tmp_path):
    from engine import ConditionalCheckFailedException, Engine
    from engine.expressions.ast import Update

    with Engine.open(tmp_path / "data", map_size_bytes=1 << 26) as engine:
        engine.create_table("Bare", partitions=1)
        table = engine.table("Bare")
        with pytest.raises(ConditionalCheckFailedException):
            table.update_item({"pk": "a"}, Update(()), condition="attribute_exists(pk)")
        assert list(table.iter_items()) == []
        assert table.update_item({"pk": "a"}, Update(()), return_values="ALL_NEW") == {"pk": "a"}
        table.put_item({"pk": "b", "v": 1})
        assert table.update_item({"pk": "b"}, Update(()), return_values="ALL_OLD") == {
            "pk": "b", "v": 1}
        assert sorted(item["pk"] for item in table.iter_items()) == ["a", "b"]
