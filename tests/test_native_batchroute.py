"""engine._batchroute: the native routing of a batch's puts equals the checked Python path,
and it hands every item it cannot route back to that path (which gives the precise error)."""

from __future__ import annotations

from bisect import bisect_right
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import _batchroute
from engine.errors import ValidationException
from engine.keys import KeySchema
from engine.partition import OP_PUT
from engine.partition_map import hash_boundaries
from engine.table import MAX_ITEM_BYTES, encode_item

# Values no S partition key / N sort key may take (wrong type, empty, float, NaN, None).
BAD_KEY_VALUE = st.sampled_from([None, "", b"", 1.5, True, float("nan"), Decimal("NaN"), [1]])


def schema(hashed: bool, with_sort: bool) -> KeySchema:
    return KeySchema.build(("pk", "S"), ("sk", "N") if with_sort else None,
                           "hash" if hashed else "range")


def python_route(schema: KeySchema, starts: list[bytes], item: dict) -> tuple[int, bytes, bytes]:
    key = schema.key_of_item(item)
    return bisect_right(starts, key) - 1, key, encode_item(item, table="t", key=key)


items_strategy = st.lists(
    st.fixed_dictionaries(
        {"pk": st.text(min_size=1, max_size=30), "sk": st.integers(-10**20, 10**20)},
        optional={"v": st.one_of(st.text(), st.binary(), st.integers(), st.booleans()),
                  "m": st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), max_size=3)}),
    max_size=40)


@given(items=items_strategy, hashed=st.booleans(), partitions=st.integers(1, 9))
def test_routes_like_the_python_path(items, hashed, partitions):
    sch = schema(hashed, with_sort=True)
    starts = hash_boundaries(partitions) if hashed else sorted(
        {b""} | {sch.key_of_item(item)[:3] for item in items[: partitions - 1]})
    groups: list[list] = [[] for _ in starts]
    seen: set[bytes] = set()
    done = _batchroute.route_puts(items, 0, sch.hashed, "pk", "S", "sk", "N", starts,
                                  MAX_ITEM_BYTES, OP_PUT, groups, seen)
    assert done == len(items)
    expected: list[list] = [[] for _ in starts]
    for item in items:
        index, key, encoded = python_route(sch, starts, item)
        expected[index].append((OP_PUT, key, encoded))
    assert groups == expected
    assert seen == {op[1] for group in expected for op in group}


@given(before=st.lists(st.text(min_size=1, max_size=20), max_size=5), bad=BAD_KEY_VALUE,
       where=st.sampled_from(["pk", "sk"]))
def test_stops_at_the_first_item_it_cannot_route(before, bad, where):
    good = [{"pk": pk, "sk": n} for n, pk in enumerate(before)]
    items = [*good, {"pk": "x", "sk": 1, where: bad}, {"pk": "after", "sk": 0}]
    groups: list[list] = [[], []]
    seen: set[bytes] = set()
    done = _batchroute.route_puts(items, 0, True, "pk", "S", "sk", "N", hash_boundaries(2),
                                  MAX_ITEM_BYTES, OP_PUT, groups, seen)
    assert done == len(good)
    assert sum(len(group) for group in groups) == len(good) == len(seen)
    # Resuming after the bad item routes the rest.
    assert _batchroute.route_puts(items, done + 1, True, "pk", "S", "sk", "N",
                                  hash_boundaries(2), MAX_ITEM_BYTES, OP_PUT, groups,
                                  seen) == len(items)
    assert len(seen) == len(good) + 1


def test_missing_keys_non_dicts_and_oversize_items_go_back_to_the_checked_path():
    sch = schema(hashed=False, with_sort=False)
    for bad in ({"other": "x"}, "not a dict", {"pk": "x", "v": b"\0" * (MAX_ITEM_BYTES + 1)},
                {"pk": "x", "v": 1.5}, {"pk": "x", "v": Decimal("NaN")}):
        groups: list[list] = [[]]
        assert _batchroute.route_puts([{"pk": "a"}, bad], 0, False, "pk", "S", None, None,
                                      [b""], MAX_ITEM_BYTES, OP_PUT, groups, set()) == 1
        assert len(groups[0]) == 1
    assert sch.names == ("pk",)


def test_batch_write_still_names_the_bad_item(engine):
    engine.create_table("Routed", partition_key=("pk", "S"), sort_key=("sk", "N"), partitions=3)
    table = engine.table("Routed")
    good = [{"pk": f"p{n}", "sk": n} for n in range(50)]
    with pytest.raises(ValidationException, match="sk"):
        table.batch_write(puts=[*good, {"pk": "bad", "sk": "not a number"}])
    with pytest.raises(ValidationException, match="400 KB"):
        table.batch_write(puts=[*good, {"pk": "big", "sk": 1, "v": b"x" * (MAX_ITEM_BYTES + 1)}])
    with pytest.raises(ValidationException, match="duplicates"):
        table.batch_write(puts=[*good, good[0]])
    assert list(table.iter_items()) == []  # nothing written by any refused batch
    table.batch_write(puts=good)
    assert len(list(table.iter_items())) == 50
