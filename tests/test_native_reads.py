"""engine._reads: ``Table.get_item`` (one native call) returns exactly what the checked
Python path returns, raises what it raises, and follows the table's routing; full scans
return every item as stored."""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from decimal import Decimal
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine, _itemcodec, _reads
from engine.errors import ValidationException
from engine.table import _projection

# Values no S partition key / N sort key may take (wrong type, empty, float, NaN, None).
BAD_KEY_VALUE = st.sampled_from([None, "", b"", 1.5, True, float("nan"), Decimal("NaN"), [1],
                                 "x" * 2049])
PKS = [f"user-{n}" for n in range(40)] + ["é", "\x00", "p" * 400]  # LMDB keys <= 511 bytes
ATTRIBUTES = ["pk", "sk", "name", "score", "payload", "tags", "deep", "missing"]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    engine = Engine.open(tmp_path_factory.mktemp("reads") / "data", map_size_bytes=1 << 30)
    engine.create_table("Hashed", partition_key=("pk", "S"), sort_key=("sk", "N"), partitions=4)
    engine.create_table("Ranged", partition_key=("pk", "S"), sort_key=("sk", "N"),
                        partitioning="range", partitions=1)
    engine.create_table("PkOnly", partition_key=("pk", "S"), partitions=3)
    for name in ("Hashed", "Ranged"):
        engine.table(name).batch_write(puts=[
            {"pk": pk, "sk": sk, "name": f"item {pk} {sk}", "score": sk * 1000,
             "payload": pk.encode() * 3, "tags": {"a", pk}, "deep": {"l": [sk, None, True]}}
            for pk in PKS for sk in range(3)
        ])
    engine.table("PkOnly").batch_write(puts=[{"pk": pk, "v": n} for n, pk in enumerate(PKS)])
    yield engine
    engine.close()


def checked_get(table, key, projection):
    """The Python path get_item took before engine._reads: checked key, bisect, one read
    transaction, decode (the projection validated only once the item exists)."""
    storage_key = table.schema.key_of(key)
    pmap, partitions = table._routing
    raw = partitions[bisect_right(pmap.starts, storage_key) - 1].get(storage_key)
    if raw is None:
        return None
    return _itemcodec.decode_item(raw, None if projection is None else _projection(projection))


def outcome(call, *args):
    try:
        return "ok", call(*args)
    except Exception as err:  # noqa: BLE001 - the exception itself is the outcome compared
        return type(err), str(err)


sort_keys = st.one_of(st.integers(-1, 3), BAD_KEY_VALUE)
keys = st.one_of(
    st.fixed_dictionaries({"pk": st.sampled_from(PKS), "sk": sort_keys}),
    st.fixed_dictionaries({"pk": st.one_of(st.sampled_from(PKS), BAD_KEY_VALUE),
                           "sk": st.integers(0, 2)}),
    st.fixed_dictionaries({"pk": st.sampled_from(PKS)}),
    st.fixed_dictionaries({"pk": st.sampled_from(PKS), "sk": st.integers(0, 2),
                           "extra": st.integers()}),
    st.builds(lambda pk, sk: OrderedDict(pk=pk, sk=sk), st.sampled_from(PKS), st.integers(0, 2)),
    st.sampled_from([None, "user-1", ["pk", "sk"], {}, {"sk": 1}, {1: "a", 2: "b"}]),
)
projections = st.one_of(
    st.none(),
    st.lists(st.sampled_from(ATTRIBUTES), max_size=4),
    # (a str is a ProjectionExpression now: tests/test_table_expressions.py covers it)
    st.sampled_from([[""], [1], ("name",), {"score"}]),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(table_name=st.sampled_from(["Hashed", "Ranged"]), key=keys, projection=projections)
def test_get_item_is_the_checked_path(tables, table_name, key, projection):
    table = tables.table(table_name)
    got = outcome(table.get_item, key, projection)
    assert got == outcome(checked_get, table, key, projection)
    if got[0] is not ValidationException:
        assert got[0] == "ok"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.one_of(st.fixed_dictionaries({"pk": st.sampled_from(PKS + ["absent"])}),
                     st.fixed_dictionaries({"pk": BAD_KEY_VALUE}),
                     st.fixed_dictionaries({"pk": st.sampled_from(PKS), "sk": st.just(1)})))
def test_get_item_without_a_sort_key(tables, key):
    table = tables.table("PkOnly")
    assert outcome(table.get_item, key, None) == outcome(checked_get, table, key, None)


def test_bad_keys_raise_the_schema_errors(tables):
    table = tables.table("Hashed")
    with pytest.raises(ValidationException, match="does not match the schema"):
        table.get_item({"pk": "user-1"})
    with pytest.raises(ValidationException, match="Type mismatch for key sk"):
        table.get_item({"pk": "user-1", "sk": "1"})
    with pytest.raises(ValidationException, match="a key must be a dict"):
        table.get_item(None)
    with pytest.raises(ValidationException, match="projection"):
        table.get_item({"pk": "user-1", "sk": 1}, projection=[])
    assert table.get_item({"pk": "user-1", "sk": 9}, projection=[]) is None  # as before


def test_get_item_keyword_arguments_and_method_binding(tables):
    table = tables.table("Hashed")
    key = {"pk": "user-2", "sk": 2}
    assert table.get_item(key=key, projection=["score"]) == {"score": 2000}
    get = table.get_item
    assert get(key)["name"] == "item user-2 2"
    with pytest.raises(TypeError):
        table.get_item()
    with pytest.raises(TypeError):
        _reads.get_item(SimpleNamespace(_reader=table), key)  # not a point reader


def test_get_item_reads_its_own_writes_and_follows_a_split(tmp_path):
    with Engine.open(tmp_path / "d", map_size_bytes=1 << 30) as engine:
        engine.create_table("Tbl", partition_key=("pk", "S"), partitions=2)
        table = engine.table("Tbl")
        get = table.get_item  # bound once, like a caller's hot loop
        for n in range(50):
            table.put_item({"pk": f"k{n}", "v": n})
            assert get({"pk": f"k{n}"}) == {"pk": f"k{n}", "v": n}
        reader = table._reader
        engine.split_partition("Tbl", table.partition_map.intervals[0].partition_id)
        assert table._reader is not reader and len(table.partitions) == 3
        assert table._routing == (table.partition_map, table.partitions)
        assert [get({"pk": f"k{n}"})["v"] for n in range(50)] == list(range(50))
        table.put_item({"pk": "k0", "v": -1})
        table.delete_item({"pk": "k1"})
        assert get({"pk": "k0"}) == {"pk": "k0", "v": -1} and get({"pk": "k1"}) is None


def test_get_item_on_a_closed_engine_raises(tmp_path):
    engine = Engine.open(tmp_path / "d", map_size_bytes=1 << 30)
    engine.create_table("Tbl", partition_key=("pk", "S"))
    table = engine.table("Tbl")
    table.put_item({"pk": "a"})
    engine.close()
    with pytest.raises(Exception, match="closed"):
        table.get_item({"pk": "a"})


def test_point_reader_needs_one_partition_per_interval(tables):
    table = tables.table("Hashed")
    pmap, partitions = table._routing
    with pytest.raises(ValueError, match="4 intervals but 3 partitions"):
        _reads.PointReader((pmap, partitions[:3]), table.schema, table.schema.key_of, _projection)


# ---------------------------------------------------------------------------- scans

def stored_items(table, projection=None):
    """Every item as stored, partition by partition in key order, decoded one by one."""
    result = []
    for partition in table.partitions:
        with partition.reader() as txn:
            result += [_itemcodec.decode_item(raw, projection)
                       for raw in txn.cursor().iternext(keys=False)]
    return result


@pytest.mark.parametrize("table_name", ["Hashed", "Ranged", "PkOnly"])
def test_scan_returns_every_item_as_stored(tables, table_name):
    table = tables.table(table_name)
    assert list(table.iter_items()) == stored_items(table)
    assert list(table.iter_items(["name", "missing"])) == stored_items(
        table, frozenset({"name", "missing"}))
    assert table.stats()[0] == len(list(table.iter_items()))
