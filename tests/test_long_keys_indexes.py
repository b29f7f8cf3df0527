"""Long keys (key format 2) through the engine's Python API, in secondary indexes and
backups: an LSI on a 1024-byte attribute of an item with a 1024-byte sort key (the
scylla-alternator case); a GSI keyed by a 2048-byte S and a 1024-byte B whose range keys
share long prefixes (stored compacted, one "bucket") answers in range-key order, both
directions, paged, for every key condition, against a plain-Python model; a backup and
restore of such a table (as backed up, into more partitions, range-partitioned at long
split points) gives back every item and index entry in order and keeps key format 2."""

from __future__ import annotations

import random

import pytest
from restore_helpers import backup_of, load_manifest

from engine import Engine, ValidationException

HASH_TOO_LONG = ("One or more parameter values were invalid: Size of hashkey has exceeded the "
                 "maximum size limit of2048 bytes")
RANGE_TOO_LONG = ("One or more parameter values were invalid: Aggregated size of all range "
                  "keys has exceeded the size limit of 1024 bytes")
G_VALUES = ["g" * 2047 + "a", "g" * 2047 + "b"]  # 2048 bytes each, one stored bucket
R_PREFIX = b"\x00" * 110 + b"\xff" * 110  # shared by the range keys; 0x00 is escaped
BY_G = {"name": "byG", "key_schema": [("g", "S"), ("r", "B")], "projection": "ALL"}
BY_G_KEYS = {"name": "byGKeys", "key_schema": [("g", "S"), ("r", "B")],
             "projection": "KEYS_ONLY"}


@pytest.fixture
def eng(tmp_path):
    engine = Engine.open(tmp_path / "data", wal_segment_bytes=1 << 20, map_size_bytes=1 << 28)
    yield engine
    engine.close()


def range_keys(count: int, seed: int) -> list[bytes]:
    """``count`` distinct B values of 300..1024 bytes sharing ``R_PREFIX``, a few of them
    prefixes of one another; sorted bytewise (DynamoDB's B order)."""
    rng = random.Random(seed)
    keys: set[bytes] = set()
    while len(keys) < count - 4:
        length = rng.randint(300, 1024)
        keys.add(R_PREFIX + bytes(rng.choice(b"\x00\x01\x7f\xfe\xff")
                                  for _ in range(length - len(R_PREFIX))))
    longest = max(keys, key=len)
    keys.update({longest[:500], longest[:800], R_PREFIX, R_PREFIX + b"\x00" * 804})
    assert all(len(k) <= 1024 for k in keys)
    return sorted(keys)


def long_pk(n: int) -> str:
    """Table partition keys of 256..2048 bytes; those with the same ``n % 3`` share their
    first 251 bytes (one bucket each)."""
    return f"{n % 3}" + "t" * 250 + f"{n:05d}" + "\u00e9" * ((n * 37) % 896)


def make_items(per_g: int = 60) -> list[dict]:
    """Items indexed by byG: per G value, distinct range keys plus three range keys
    repeated on other items (equal index keys, different base keys); some items lack
    ``g`` (sparse)."""
    items = []
    n = 0
    for which, g in enumerate(G_VALUES):
        keys = range_keys(per_g, seed=which)
        for r in keys + keys[:3]:
            items.append({"pk": long_pk(n), "sk": n, "g": g, "r": r, "n": n})
            n += 1
    for _ in range(10):
        items.append({"pk": long_pk(n), "sk": n, "n": n})
        n += 1
    return items


def make_table(engine, name: str, *, partitions: int = 3, partitioning: str = "hash",
               split_points: list | None = None) -> list[dict]:
    engine.create_table(name, ("pk", "S"), ("sk", "N"), partitions=partitions,
                        partitioning=partitioning, split_points=split_points,
                        global_indexes=[BY_G, BY_G_KEYS])
    items = make_items()
    engine.table(name).batch_write(puts=items)
    engine.wait_for_index_catch_up(name)
    return items


def page_all(handle, hash_value, condition=None, *, forward: bool = True,
             limit: int | None = None) -> list[dict]:
    """Every item a query returns, following last_evaluated_key to the end."""
    got, start = [], None
    while True:
        page = handle.query_page(hash_value, condition, forward=forward, limit=limit,
                                 exclusive_start_key=start)
        got.extend(page.items)
        start = page.last_evaluated_key
        if start is None:
            return got
        assert page.items


def keeps(condition: tuple | None, value: bytes) -> bool:
    """The model of a sort-key condition on B values (bytewise order)."""
    if condition is None:
        return True
    operator, *operands = condition
    if operator == "between":
        return operands[0] <= value <= operands[1]
    if operator == "begins_with":
        return value.startswith(operands[0])
    return {"=": value == operands[0], "<": value < operands[0], "<=": value <= operands[0],
            ">": value > operands[0], ">=": value >= operands[0]}[operator]


def check_gsi_query(got: list[dict], items: list[dict], g: str, condition: tuple | None,
                    forward: bool) -> None:
    """``got`` holds exactly the model's items, in range-key order (items with equal
    range keys, whose relative order DynamoDB leaves open, in any order)."""
    want = sorted((i for i in items if i.get("g") == g and keeps(condition, i["r"])),
                  key=lambda i: i["r"], reverse=not forward)
    assert [i["r"] for i in got] == [i["r"] for i in want], condition
    assert sorted(i["sk"] for i in got) == sorted(i["sk"] for i in want), condition


def gsi_conditions(items: list[dict], g: str) -> list[tuple | None]:
    keys = sorted({i["r"] for i in items if i.get("g") == g})
    mid, other, longest = keys[len(keys) // 2], keys[len(keys) // 5], max(keys, key=len)
    absent = mid + b"\x00" if mid + b"\x00" not in keys and len(mid) < 1024 else mid[:-1]
    deep = longest[:700]
    result: list[tuple | None] = [None]
    for operand in (mid, absent, longest, deep):
        result += [(operator, operand) for operator in ("=", "<", "<=", ">", ">=")]
    result += [("between", *sorted((other, absent))), ("between", deep, longest),
               ("begins_with", R_PREFIX + b"\x00"), ("begins_with", deep),
               ("begins_with", longest), ("begins_with", R_PREFIX[:150])]
    return result


# ---------------------------------------------------------------------- LSI


def test_lsi_on_a_1024_byte_attribute_of_an_item_with_a_1024_byte_sort_key(eng):
    """scylla-alternator's case: (a S hash, b S range), LSI on c S, b and c 1024 bytes."""
    eng.create_table("Alt", ("a", "S"), ("b", "S"), partitions=2, local_indexes=[
        {"name": "byC", "key_schema": [("a", "S"), ("c", "S")], "projection": "ALL"}])
    table = eng.table("Alt")
    item = {"a": "x", "b": "x" * 1024, "c": "y" * 1024}
    table.put_item(item)
    assert table.get_item({"a": "x", "b": "x" * 1024}) == item
    handle = eng.index("Alt", "byC")
    assert handle.query("x", ("=", "y" * 1024))[0] == [item]
    assert handle.query("x", ("begins_with", "y" * 1000))[0] == [item]
    assert handle.query("x", ("<", "y" * 1024))[0] == []
    # more items under a 2048-byte hash key, their c values sharing 900 bytes
    big = "\u00e9" * 1024
    others = [{"a": big, "b": "b" * (1024 - n), "c": "y" * 900 + chr(ord("a") + n) * 62,
               "n": n} for n in range(20)]
    table.batch_write(puts=others)
    assert table.get_item({"a": big, "b": "b" * 1024}) == others[0]
    want = sorted(others, key=lambda i: i["c"])
    for forward in (True, False):
        for limit in (None, 3):
            got = page_all(handle, big, forward=forward, limit=limit)
            assert got == (want if forward else want[::-1])
    assert page_all(handle, big, ("between", others[3]["c"], others[9]["c"])) == want[3:10]


# ---------------------------------------------------------------------- GSI


def test_gsi_with_a_2048_byte_hash_key_and_1024_byte_range_keys_queries_in_order(eng):
    items = make_table(eng, "Long")
    handle = eng.index("Long", "byG")
    for g in G_VALUES:
        everything = page_all(handle, g)
        assert len(everything) == 63 and all(i["g"] == g for i in everything)
        for condition in gsi_conditions(items, g):
            for forward in (True, False):
                for limit in (None, 5):
                    got = page_all(handle, g, condition, forward=forward, limit=limit)
                    check_gsi_query(got, items, g, condition, forward)
    keys_only = page_all(eng.index("Long", "byGKeys"), G_VALUES[1], limit=4)
    assert all(set(entry) == {"pk", "sk", "g", "r"} for entry in keys_only)
    check_gsi_query(keys_only, items, G_VALUES[1], None, True)


def test_gsi_follows_updates_and_deletes_of_long_keys(eng):
    items = make_table(eng, "Long")
    table = eng.table("Long")
    moved = items[:20]
    for item in moved[:10]:  # move to the other G value, with a new long range key
        r = item["r"][:1000] + b"\x01"
        table.update_item({"pk": item["pk"], "sk": item["sk"]}, "SET g = :g, r = :r",
                          values={":g": G_VALUES[1], ":r": r})
        item.update(g=G_VALUES[1], r=r)
    for item in moved[10:]:
        table.delete_item({"pk": item["pk"], "sk": item["sk"]})
    items = [i for i in items if i not in moved[10:]]
    eng.wait_for_index_catch_up("Long")
    handle = eng.index("Long", "byG")
    for g in G_VALUES:
        for forward in (True, False):
            check_gsi_query(page_all(handle, g, forward=forward, limit=6), items, g, None,
                            forward)


def test_index_keys_one_byte_over_refuse_the_write(eng):
    make_table(eng, "Long")
    table = eng.table("Long")
    with pytest.raises(ValidationException) as caught:
        table.put_item({"pk": "p", "sk": 1, "g": "g" * 2049, "r": b"r"})
    assert "2048" in str(caught.value)
    with pytest.raises(ValidationException) as caught:  # DynamoDB's text (as moto has it)
        table.put_item({"pk": "p", "sk": 1, "g": "g", "r": b"\x00" * 1025})
    assert str(caught.value) == RANGE_TOO_LONG
    assert table.get_item({"pk": "p", "sk": 1}) is None
    with pytest.raises(ValidationException) as caught:
        table.put_item({"pk": "p" * 2049, "sk": 1})
    assert str(caught.value) == HASH_TOO_LONG


# ---------------------------------------------------------------------- backup and restore


def check_restored(engine, name: str, items: list[dict]) -> None:
    """Every item back (read by its long key), table and GSI queries in order, key
    format 2 kept (a 2048-byte key can still be written)."""
    table = engine.table(name)
    for item in items:
        assert table.get_item({"pk": item["pk"], "sk": item["sk"]}) == item
    assert sorted(i["sk"] for i in table.iter_items()) == sorted(i["sk"] for i in items)
    for item in items[::17]:  # one partition key per item: its query is that item
        assert table.query(item["pk"])[0] == [item]
    engine.wait_for_index_catch_up(name)
    handle = engine.index(name, "byG")
    for g in G_VALUES:
        for forward in (True, False):
            check_gsi_query(page_all(handle, g, forward=forward, limit=7), items, g, None,
                            forward)
        condition = gsi_conditions(items, g)[-3]
        check_gsi_query(page_all(handle, g, condition, limit=2), items, g, condition, True)
    assert table.schema.key_format == 2
    assert engine._tables.record(name)["key_format"] == 2  # the catalog record keeps it
    new = {"pk": "\U0001f600" * 512, "sk": 1, "g": G_VALUES[0], "r": R_PREFIX + b"\x02" * 804}
    table.put_item(new)
    assert table.get_item({"pk": new["pk"], "sk": 1}) == new
    engine.wait_for_index_catch_up(name)
    check_gsi_query(page_all(handle, G_VALUES[0], limit=9), [*items, new], G_VALUES[0], None,
                    True)


@pytest.mark.parametrize("partitions", [None, 5])
def test_backup_and_restore_keep_long_keys(eng, partitions):
    items = make_table(eng, "Source")
    backup_id = backup_of(eng, "Source")
    assert load_manifest(eng.backup_store, backup_id).settings["key_format"] == 2
    eng.restore_table(backup_id, "Restored", partitions=partitions)
    done = eng.wait_for_table("Restored", timeout=60)
    assert done["status"] == "ACTIVE"
    if partitions is not None:
        assert len(eng.table("Restored").partitions) == partitions
    check_restored(eng, "Restored", items)


def test_restore_of_a_range_partitioned_table_at_long_split_points(eng):
    """Range partitioning at long split points (each sharing its first 251 bytes with a
    third of the keys, so the split falls inside a bucket), then a restore at other long
    split points: every item lands once, reads and queries work."""
    split = ["1" + "t" * 300, "2" + "t" * 250 + "00050"]
    items = make_table(eng, "Ranged", partitions=3, partitioning="range", split_points=split)
    assert len(eng.table("Ranged").partitions) == 3
    backup_id = backup_of(eng, "Ranged")
    eng.restore_table(backup_id, "Restored",
                      split_points=["0" + "t" * 250 + "00060", "1" + "t" * 260, "2" + "u" * 300])
    assert eng.wait_for_table("Restored", timeout=60)["status"] == "ACTIVE"
    assert len(eng.table("Restored").partitions) == 4
    check_restored(eng, "Restored", items)


def test_split_points_in_key_order_sharing_a_long_prefix_are_accepted(eng):
    """Split points are partition-key values in ascending order; two that share their
    first 200+ bytes are ascending as values, whatever their stored (compacted) forms."""
    split = sorted(["s" * 300 + "a", "s" * 300 + "b", "s" * 300 + "c", "s" * 300 + "d"])
    eng.create_table("Split", ("pk", "S"), partitions=5, partitioning="range",
                     split_points=split)
    table = eng.table("Split")
    keys = ["s" * 300 + c * 700 for c in "abcde"]
    table.batch_write(puts=[{"pk": k} for k in keys])
    assert sorted(i["pk"] for i in table.iter_items()) == keys
    assert all(table.get_item({"pk": k}) == {"pk": k} for k in keys)
