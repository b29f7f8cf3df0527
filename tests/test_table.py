"""Table operations against a real engine: CRUD, conditions, updates, query, scan, batches."""

from decimal import Decimal

import pytest

from engine import (
    ConditionalCheckFailedException,
    Engine,
    TableAlreadyExistsException,
    TableNotFoundException,
    ValidationException,
)

EVERY_TYPE = {
    "pk": "user-1",
    "sk": 7,
    "s": "héllo",
    "n_int": -12345678901234567890123456789012345678,
    "n_dec": Decimal("3.14159265358979323846264338327950288"),
    "b": b"\x00\xffbytes",
    "t": True,
    "f": False,
    "nothing": None,
    "ss": {"a", "b"},
    "ns": {1, Decimal("2.5")},
    "bs": {b"x", b"y"},
    "l": [1, "two", [b"three"], {"four": 4}],
    "m": {"nested": {"deeper": [None, True]}},
}


@pytest.fixture
def music(engine):
    engine.create_table("Music", partition_key=("pk", "S"), sort_key=("sk", "N"), partitions=4)
    return engine.table("Music")


def test_every_type_round_trips_and_survives_restart(tmp_path):
    with Engine.open(tmp_path / "d") as eng:
        eng.create_table("Music", partition_key=("pk", "S"), sort_key=("sk", "N"))
        eng.table("Music").put_item(EVERY_TYPE)
        assert eng.table("Music").get_item({"pk": "user-1", "sk": 7}) == EVERY_TYPE
    with Engine.open(tmp_path / "d") as eng:
        assert eng.list_tables() == ["Music"]
        assert eng.table("Music").get_item({"pk": "user-1", "sk": 7}) == EVERY_TYPE
        description = eng.describe_table("Music")
        assert description["item_count"] == 1 and description["status"] == "ACTIVE"
        assert description["key_schema"] == [("pk", "S"), ("sk", "N")]


def test_projection_and_missing_item(music):
    music.put_item(EVERY_TYPE)
    assert music.get_item({"pk": "user-1", "sk": 7}, projection=["s", "t"]) == {"s": "héllo", "t": True}
    assert music.get_item({"pk": "user-1", "sk": 8}) is None


def test_conditions(music):
    item = {"pk": "a", "sk": 1, "v": 1}
    music.put_item(item, condition=[("attribute_not_exists", "pk")])
    with pytest.raises(ConditionalCheckFailedException):
        music.put_item({**item, "v": 2}, condition=[("attribute_not_exists", "pk")])
    with pytest.raises(ConditionalCheckFailedException):
        music.put_item({**item, "v": 2}, condition=[("=", "v", 5)])
    old = music.put_item({**item, "v": 2}, condition=[("=", "v", 1)], return_values="ALL_OLD")
    assert old == item
    with pytest.raises(ConditionalCheckFailedException):
        music.delete_item({"pk": "a", "sk": 1}, condition=[("attribute_exists", "missing")])
    assert music.get_item({"pk": "a", "sk": 1})["v"] == 2
    assert music.delete_item({"pk": "a", "sk": 1}, return_values="ALL_OLD")["v"] == 2
    assert music.get_item({"pk": "a", "sk": 1}) is None


def test_update_actions_and_return_values(music):
    key = {"pk": "u", "sk": 1}
    new = music.update_item(key, [("SET", "name", "x"), ("ADD", "count", 5), ("ADD", "tags", {"a"})],
                            return_values="ALL_NEW")
    assert new == {"pk": "u", "sk": 1, "name": "x", "count": 5, "tags": {"a"}}
    old = music.update_item(key, [("INCREMENT", "count", -2), ("REMOVE", "name"),
                                  ("DELETE", "tags", {"a"}), ("SET_IF_NOT_EXISTS", "first", 1)],
                            return_values="UPDATED_OLD")
    assert old == {"count": 5, "name": "x", "tags": {"a"}}
    assert music.get_item(key) == {"pk": "u", "sk": 1, "count": 3, "first": 1}
    assert music.update_item(key, [("ADD", "count", Decimal("0.5"))], return_values="UPDATED_NEW") == {
        "count": Decimal("3.5")}
    with pytest.raises(ValidationException, match="part of the key"):
        music.update_item(key, [("SET", "sk", 2)])
    with pytest.raises(ValidationException, match="does not exist"):
        music.update_item(key, [("INCREMENT", "nope", 1)])
    with pytest.raises(ConditionalCheckFailedException):
        music.update_item(key, [("SET", "a", 1)], condition=[("attribute_not_exists", "count")])
    assert "a" not in music.get_item(key)


def test_query_conditions_order_and_pagination(music):
    for sk in range(-20, 20):
        music.put_item({"pk": "p", "sk": sk, "v": sk})
        music.put_item({"pk": "other", "sk": sk})

    def sks(cond=None, **kw):
        items, _ = music.query("p", cond, **kw)
        return [item["sk"] for item in items]

    assert sks() == list(range(-20, 20))
    assert sks(forward=False) == list(range(19, -21, -1))
    assert sks(("=", 3)) == [3]
    assert sks(("<", -18)) == [-20, -19]
    assert sks(("<=", -18)) == [-20, -19, -18]
    assert sks((">", 17)) == [18, 19]
    assert sks((">=", 17)) == [17, 18, 19]
    assert sks(("between", -1, 1)) == [-1, 0, 1]
    assert sks(("between", -1, 1), forward=False) == [1, 0, -1]
    with pytest.raises(ValidationException, match="begins_with"):
        music.query("p", ("begins_with", 1))
    for forward in (True, False):
        seen, start = [], None
        while True:
            items, start = music.query("p", (">=", -5), forward=forward, limit=3, exclusive_start_key=start)
            seen += [item["sk"] for item in items]
            if start is None:
                break
        assert seen == sorted(range(-5, 20), reverse=not forward)


def test_begins_with_on_string_sort_keys(engine):
    engine.create_table("Docs", partition_key=("pk", "S"), sort_key=("path", "S"), partitions=2)
    docs = engine.table("Docs")
    for path in ["a", "a/b", "a/c", "ab", "b", "a\x00z"]:
        docs.put_item({"pk": "x", "path": path})
    items, _ = docs.query("x", ("begins_with", "a/"))
    assert [i["path"] for i in items] == ["a/b", "a/c"]
    items, _ = docs.query("x", ("begins_with", "a"))
    assert [i["path"] for i in items] == ["a", "a\x00z", "a/b", "a/c", "ab"]


@pytest.mark.parametrize("partitioning", ["hash", "range"])
def test_scan_pages_and_segments_cover_every_item_once(engine, partitioning):
    engine.create_table("Scan", partition_key=("id", "N"), partitions=5, partitioning=partitioning)
    table = engine.table("Scan")
    table.batch_write(puts=[{"id": n, "x": "y" * (n % 7)} for n in range(-300, 300)])
    seen, start = [], None
    while True:
        items, start = table.scan(limit=37, exclusive_start_key=start)
        seen += [item["id"] for item in items]
        if start is None:
            break
    assert sorted(seen) == list(range(-300, 300)) and len(seen) == 600
    segmented = []
    for segment in range(7):
        items, lek = table.scan(segment=segment, total_segments=7)
        assert lek is None
        segmented += [item["id"] for item in items]
    assert sorted(segmented) == list(range(-300, 300))
    if partitioning == "range":
        assert seen == list(range(-300, 300))  # range partitioning scans in key order


def test_range_partitioning_with_split_points(engine):
    engine.create_table("Range", partition_key=("k", "S"), partitions=1, partitioning="range",
                        split_points=["g", "p"])
    table = engine.table("Range")
    table.batch_write(puts=[{"k": c} for c in "abcdefghijklmnopqrstuvwxyz"])
    counts = [p.stats()[0] for p in table.partitions]
    assert counts == [6, 9, 11]
    assert [item["k"] for item in table.iter_items()] == list("abcdefghijklmnopqrstuvwxyz")


def test_batch_write_and_get(music):
    music.batch_write(puts=[{"pk": f"k{n}", "sk": n} for n in range(100)])
    got = music.batch_get([{"pk": f"k{n}", "sk": n} for n in range(0, 120, 10)])
    assert sorted(item["sk"] for item in got) == list(range(0, 100, 10))
    music.batch_write(deletes=[{"pk": f"k{n}", "sk": n} for n in range(50)])
    assert music.stats()[0] == 50
    with pytest.raises(ValidationException, match="duplicates"):
        music.batch_write(puts=[{"pk": "d", "sk": 1}, {"pk": "d", "sk": 1}])


@pytest.mark.parametrize(
    "item, message",
    [
        ({"sk": 1}, "Missing the key pk"),
        ({"pk": "a"}, "Missing the key sk"),
        ({"pk": 1, "sk": 1}, "Type mismatch for key pk"),
        ({"pk": "a", "sk": "1"}, "Type mismatch for key sk"),
        ({"pk": "", "sk": 1}, "pk"),
        ({"pk": "a", "sk": 1, "": 2}, "empty attribute name"),
        ({"pk": "a", "sk": 1, "f": 1.5}, "float"),
        ({"pk": "a", "sk": Decimal("NaN")}, "sk"),
        ({"pk": "a", "sk": 1, "n": Decimal("Infinity")}, "n"),
        ({"pk": "a", "sk": 1, "big": "x" * 500_000}, "400 KB"),
    ],
)
def test_bad_items_are_refused_and_nothing_is_written(music, item, message):
    with pytest.raises(ValidationException, match=message):
        music.put_item(item)
    with pytest.raises(ValidationException):
        music.batch_write(puts=[{"pk": "good", "sk": 1}, item])
    assert music.stats()[0] == 0


def test_bad_keys_and_tables(engine, music):
    with pytest.raises(ValidationException, match="does not match the schema"):
        music.get_item({"pk": "a"})
    with pytest.raises(ValidationException, match="does not match the schema"):
        music.get_item({"pk": "a", "sk": 1, "extra": 2})
    with pytest.raises(TableNotFoundException, match="Nope"):
        engine.table("Nope")
    with pytest.raises(TableNotFoundException):
        engine.describe_table("Nope")
    with pytest.raises(TableAlreadyExistsException):
        engine.create_table("Music", partition_key=("pk", "S"))
    for bad_name in ["", "ab", "bad name", "x" * 256]:
        with pytest.raises(ValidationException, match="table name"):
            engine.create_table(bad_name)
    with pytest.raises(ValidationException, match="key attributes must be S, N or B"):
        engine.create_table("Bad", partition_key=("pk", "BOOL"))
    with pytest.raises(ValidationException, match="sync"):
        engine.create_table("Bad", sync="sometimes")
    assert engine.list_tables() == ["Music"]


def test_delete_table_removes_files(engine):
    engine.create_table("Gone", partitions=2)
    engine.table("Gone").put_item({"pk": "x"})
    table_dirs = list((engine.path / "tables").iterdir())
    assert len(table_dirs) == 1
    assert engine.delete_table("Gone")["status"] == "DELETING"
    assert engine.list_tables() == []
    assert not list((engine.path / "tables").iterdir())
    engine.create_table("Gone", partitions=2)
    assert engine.table("Gone").get_item({"pk": "x"}) is None
