"""ProjectionExpressions on items (engine.expressions.projection), as DynamoDB returns them:
nested paths inside their enclosing maps and lists, lists keeping only the projected
elements in index order, missing paths left out (Developer Guide, "Using projection
expressions"; Alternator's test_projection_expression.py, checked against DynamoDB)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.expressions.ast import Path, Projection
from engine.expressions.evaluate import MISSING, resolve
from engine.expressions.projection import project


def P(*elements) -> Path:
    return Path(tuple(elements))


def proj(*paths: Path) -> Projection:
    return Projection(tuple(paths))


ITEM = {
    "pk": "k",
    "a": {"b": ["x", "y", "z"], "c": 1, "d": {"e": 2, "f": 3}},
    "l": [{"n": 1, "m": 2}, {"n": 3}, [4, 5]],
    "s": "str",
}


def test_top_level_names():
    assert project(ITEM, proj(P("s"), P("pk"))) == {"s": "str", "pk": "k"}
    assert project(ITEM, proj(P("s"), P("missing"))) == {"s": "str"}
    assert project(ITEM, proj(P("missing"))) == {}


def test_nested_map_keys_keep_their_enclosing_maps():
    assert project(ITEM, proj(P("a", "c"))) == {"a": {"c": 1}}
    assert project(ITEM, proj(P("a", "d", "f"), P("a", "c"))) == {"a": {"d": {"f": 3}, "c": 1}}
    assert project(ITEM, proj(P("a", "nope"))) == {}
    assert project(ITEM, proj(P("a", "nope"), P("s"))) == {"s": "str"}


def test_list_elements_keep_only_the_projected_indexes_in_order():
    assert project(ITEM, proj(P("a", "b", 1))) == {"a": {"b": ["y"]}}
    assert project(ITEM, proj(P("a", "b", 2), P("a", "b", 0))) == {"a": {"b": ["x", "z"]}}
    assert project(ITEM, proj(P("a", "b", 7))) == {}
    assert project(ITEM, proj(P("l", 0, "m"), P("l", 2, 1))) == {"l": [{"m": 2}, [5]]}
    assert project(ITEM, proj(P("l", 1, "nope"), P("l", 1, "n"))) == {"l": [{"n": 3}]}


def test_type_mismatches_are_missing():
    assert project(ITEM, proj(P("a", 0))) == {}  # an index into a map
    assert project(ITEM, proj(P("l", "n"))) == {}  # a name into a list
    assert project(ITEM, proj(P("s", "x"))) == {}


def test_a_path_and_its_ancestor_project_the_ancestor_whole():
    assert project(ITEM, proj(P("a"), P("a", "c"))) == {"a": ITEM["a"]}
    assert project(ITEM, proj(P("a", "c"), P("a"))) == {"a": ITEM["a"]}


def test_the_item_is_not_changed():
    before = repr(ITEM)
    project(ITEM, proj(P("a", "b", 1), P("l", 0, "n")))
    assert repr(ITEM) == before


values = st.recursive(
    st.one_of(st.integers(0, 9), st.text(alphabet="xy", max_size=2)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.sampled_from(["p", "q"]), children, max_size=2)),
    max_leaves=8,
)
element = st.one_of(st.sampled_from(["p", "q"]), st.integers(0, 3))
paths = st.builds(lambda top, rest: Path((top, *rest)), st.sampled_from(["p", "q"]),
                  st.lists(element, max_size=3))


@given(item=st.dictionaries(st.sampled_from(["p", "q"]), values, max_size=2),
       path=paths)
def test_one_path_yields_its_value_along_the_path(item, path):
    result = project(item, Projection((path,)))
    value = resolve(item, path)
    if value is MISSING:
        assert result == {}
        return
    # Walking the result along the path, with each list index replaced by 0 (the only
    # element kept), reaches the value.
    node = result
    for step in path.elements:
        node = node[0] if isinstance(step, int) else node[step]
    assert node == value
