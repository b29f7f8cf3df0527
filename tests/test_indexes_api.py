"""The engine's secondary-index API (issue 14): definitions and DynamoDB's validation
rules, writes refused for index key type mismatches, sparse indexes, projections, LSI
and GSI queries (conditions, order, pagination, segments), online create and delete,
persistence across reopen, and repartitioning with indexes."""

from __future__ import annotations

import pytest
from index_reference import check_query_order, expected_entries, index_entries

from engine import Engine, LimitExceededException, ValidationException
from engine.errors import ResourceNotFoundException

TABLE_KEYS = [("pk", "S"), ("sk", "N")]
LSI = {"name": "byRank", "key_schema": [("pk", "S"), ("rank", "N")],
       "projection": {"type": "INCLUDE", "non_key_attributes": ["note"]}}
GSI = {"name": "byGroup", "key_schema": [("grp", "S"), ("rank", "N")], "projection": "KEYS_ONLY"}
GSI_HASH_ONLY = {"name": "byTag", "key_schema": [("tag", "B")], "projection": "ALL"}


@pytest.fixture
def eng(tmp_path):
    engine = Engine.open(tmp_path / "data", wal_segment_bytes=1 << 16, map_size_bytes=1 << 28)
    yield engine
    engine.close()


def indexed(engine, name: str = "Items", **options) -> object:
    engine.create_table(name, ("pk", "S"), ("sk", "N"), partitions=3,
                        local_indexes=[LSI], global_indexes=[GSI, GSI_HASH_ONLY], **options)
    return engine.table(name)


def fill(table, count: int = 120) -> list[dict]:
    items = []
    for n in range(count):
        item = {"pk": f"p{n % 6}", "sk": n, "rank": (n * 7) % 10, "note": f"n{n}", "big": "x"}
        if n % 5:
            item["grp"] = f"g{n % 3}"
        if n % 2:
            item["tag"] = bytes([n % 4])
        items.append(item)
    table.batch_write(puts=items)
    return items


# ---------------------------------------------------------------------- definitions
@pytest.mark.parametrize("local, global_, message", [
    ([{**LSI, "key_schema": [("other", "S"), ("rank", "N")]}], [], "same leading hash key"),
    ([{**LSI, "key_schema": [("pk", "S")]}], [], "must have a range key"),
    ([], [GSI, GSI], "Duplicate index name: byGroup"),
    ([], [{**GSI, "name": "ab"}], "invalid index name"),
    ([], [{**GSI, "projection": {"type": "INCLUDE"}}], "non_key_attributes"),
    ([], [{**GSI, "projection": {"type": "ALL", "non_key_attributes": ["a"]}}],
     "NonKeyAttributes is specified"),
    ([], [{**GSI, "key_schema": [("grp", "BOOL")]}], "must be of type S, N or B"),
    ([], [{**GSI, "key_schema": [("sk", "S")]}], "used as a key with type N and with type S"),
    ([{**LSI, "name": f"l{i:02d}"} for i in range(6)], [], "LocalSecondaryIndexes exceeds"),
    ([], [{"name": "big", "key_schema": [("a", "S")], "projection": {
        "type": "INCLUDE", "non_key_attributes": [f"a{i}" for i in range(101)]}}],
     "NonKeyAttributes across all secondary indexes"),
])
def test_definitions_are_checked_as_dynamodb_checks_them(eng, local, global_, message):
    with pytest.raises(ValidationException, match=message):
        eng.create_table("Bad", ("pk", "S"), ("sk", "N"), local_indexes=local,
                         global_indexes=global_)
    assert "Bad" not in eng.list_tables()


def test_lsi_needs_a_table_sort_key_and_gsis_are_limited(eng):
    with pytest.raises(ValidationException, match="does not have a range key"):
        eng.create_table("Bad", ("pk", "S"), local_indexes=[LSI])
    with pytest.raises(LimitExceededException, match="GlobalSecondaryIndexes exceeds"):
        eng.create_table("Bad", ("pk", "S"), global_indexes=[
            {"name": f"g{i:02d}", "key_schema": [("a", "S")]} for i in range(21)])


# ---------------------------------------------------------------------- writes
def test_index_key_of_the_wrong_type_refuses_the_write(eng):
    table = indexed(eng)
    with pytest.raises(ValidationException,
                       match="Type mismatch for Index Key grp Expected: S Actual: N "
                             "IndexName: byGroup"):
        table.put_item({"pk": "a", "sk": 1, "grp": 5})
    with pytest.raises(ValidationException, match="Type mismatch for Index Key rank"):
        table.update_item({"pk": "a", "sk": 1}, "SET #r = :r", names={"#r": "rank"},
                          values={":r": "high"})
    with pytest.raises(ValidationException, match="empty binary value. IndexName: byTag"):
        table.put_item({"pk": "a", "sk": 1, "tag": b""})
    assert table.get_item({"pk": "a", "sk": 1}) is None


def test_sparse_indexes_and_projections(eng):
    table = indexed(eng)
    items = fill(table)
    eng.wait_for_index_catch_up("Items")
    for definition in (LSI, GSI, GSI_HASH_ONLY):
        assert index_entries(eng, "Items", definition["name"]) == \
            expected_entries(items, TABLE_KEYS, definition)
    entry = eng.index("Items", "byGroup").query("g1", limit=1)[0][0]
    assert set(entry) == {"pk", "sk", "grp", "rank"}  # KEYS_ONLY
    entry = eng.index("Items", "byRank").query("p1", limit=1)[0][0]
    assert set(entry) == {"pk", "sk", "rank", "note"}  # INCLUDE
    description = eng.describe_table("Items")
    counts = {d["name"]: d["item_count"] for d in
              description["global_indexes"] + description["local_indexes"]}
    assert counts == {"byRank": 120, "byGroup": 96, "byTag": 60}


def test_lsi_is_consistent_at_once_and_fetches_unprojected_attributes(eng):
    table = indexed(eng)
    table.put_item({"pk": "a", "sk": 1, "rank": 3, "note": "n", "big": "B"})
    handle = eng.index("Items", "byRank")
    assert handle.query("a", consistent_read=True)[0] == [
        {"pk": "a", "sk": 1, "rank": 3, "note": "n"}]
    assert handle.query("a", select_all=True)[0] == [
        {"pk": "a", "sk": 1, "rank": 3, "note": "n", "big": "B"}]
    assert handle.query("a", projection=["big", "rank"])[0] == [{"big": "B", "rank": 3}]
    table.update_item({"pk": "a", "sk": 1}, "REMOVE #r", names={"#r": "rank"})
    assert handle.query("a")[0] == []


# ---------------------------------------------------------------------- queries
def test_gsi_rules(eng):
    indexed(eng)
    with pytest.raises(ValidationException,
                       match="Consistent reads are not supported on global secondary indexes"):
        eng.index("Items", "byGroup").query("g1", consistent_read=True)
    with pytest.raises(ValidationException, match="Select type ALL_ATTRIBUTES is not supported"):
        eng.index("Items", "byGroup").query("g1", select_all=True)
    with pytest.raises(ValidationException,
                       match="The table does not have the specified index: nope"):
        eng.index("Items", "nope")
    with pytest.raises(ValidationException, match="has no sort key"):
        eng.index("Items", "byTag").query(b"\x01", ("=", 1))
    with pytest.raises(ValidationException, match="does not match schema type"):
        eng.index("Items", "byGroup").query(5)


@pytest.mark.parametrize("condition, keep", [
    (("=", 4), lambda r: r == 4), (("<", 4), lambda r: r < 4), (("<=", 4), lambda r: r <= 4),
    ((">", 4), lambda r: r > 4), ((">=", 4), lambda r: r >= 4),
    (("between", 2, 6), lambda r: 2 <= r <= 6),
])
@pytest.mark.parametrize("index_name, hash_value", [("byRank", "p2"), ("byGroup", "g2")])
def test_sort_key_conditions_in_both_directions(eng, condition, keep, index_name, hash_value):
    table = indexed(eng)
    items = fill(table)
    eng.wait_for_index_catch_up("Items")
    hash_name = "pk" if index_name == "byRank" else "grp"
    want = sorted([(i["rank"], i["pk"], i["sk"]) for i in items
                   if i.get(hash_name) == hash_value and keep(i["rank"])])
    handle = eng.index("Items", index_name)
    for forward in (True, False):
        got, start = [], None
        while True:
            page = handle.query_page(hash_value, condition, forward=forward, limit=4,
                                     exclusive_start_key=start)
            got.extend((i["rank"], i["pk"], i["sk"]) for i in page.items)
            start = page.last_evaluated_key
            if start is None:
                break
        assert got == (want if forward else want[::-1])


def test_begins_with_on_a_string_index_sort_key(eng):
    eng.create_table("Words", ("pk", "S"), ("sk", "N"), global_indexes=[
        {"name": "byWord", "key_schema": [("lang", "S"), ("word", "S")]}])
    table = eng.table("Words")
    words = ["ab", "abc", "abd", "b", "a", "abz\u00e9"]
    table.batch_write(puts=[{"pk": "p", "sk": n, "lang": "en", "word": w}
                            for n, w in enumerate(words)])
    eng.wait_for_index_catch_up("Words")
    got = [i["word"] for i in eng.index("Words", "byWord").query("en", ("begins_with", "ab"))[0]]
    assert got == sorted(w for w in words if w.startswith("ab"))


def test_filter_and_projection_expressions_on_an_index(eng):
    table = indexed(eng)
    fill(table)
    eng.wait_for_index_catch_up("Items")
    page = eng.index("Items", "byGroup").query_page(
        "g1", filter="#r > :r", names={"#r": "rank"}, values={":r": 5}, projection="pk, #r")
    assert page.items and all(set(i) == {"pk", "rank"} and i["rank"] > 5 for i in page.items)
    assert page.scanned_count > len(page.items)


def test_parallel_scan_segments_cover_each_entry_once(eng):
    table = indexed(eng)
    fill(table)
    eng.wait_for_index_catch_up("Items")
    for name in ("byRank", "byGroup", "byTag"):
        handle = eng.index("Items", name)
        whole = sorted(map(repr, handle.iter_entries()))
        parts = []
        for segment in range(4):
            start = None
            while True:
                page = handle.scan_page(segment=segment, total_segments=4, limit=9,
                                        exclusive_start_key=start)
                parts.extend(map(repr, page.items))
                start = page.last_evaluated_key
                if start is None:
                    break
        assert sorted(parts) == whole


# ---------------------------------------------------------------------- online changes
def test_online_create_backfills_then_writes_follow(eng):
    table = eng.create_table("Online", ("pk", "S"), ("sk", "N"), partitions=2) and \
        eng.table("Online")
    items = fill(table, 500)
    started = eng.create_global_index("Online", GSI)
    assert started["status"] in ("CREATING", "ACTIVE")
    table.put_item({"pk": "late", "sk": 1, "grp": "g1", "rank": 1})
    table.delete_item({"pk": "p1", "sk": 1})
    done = eng.wait_for_index("Online", "byGroup")
    assert done["status"] == "ACTIVE" and done["backfilling"] is False
    eng.wait_for_index_catch_up("Online")
    assert index_entries(eng, "Online", "byGroup") == expected_entries(
        list(table.iter_items()), TABLE_KEYS, GSI)
    assert len(items) == 500
    check_query_order(eng, "Online", GSI, TABLE_KEYS)
    with pytest.raises(ValidationException, match="Duplicate index name"):
        eng.create_global_index("Online", GSI)


def test_delete_removes_the_index_and_its_files(eng, tmp_path):
    table = indexed(eng)
    fill(table)
    directory = eng.table_directory("Items")
    deleted = eng.delete_global_index("Items", "byGroup")
    assert deleted["status"] == "DELETING"
    names = [d["name"] for d in eng.describe_table("Items")["global_indexes"]]
    assert names == ["byTag"]
    assert not (directory.with_name(directory.name + ".gsi") / deleted["index_id"]).exists()
    with pytest.raises(ResourceNotFoundException):
        eng.delete_global_index("Items", "byGroup")
    table.put_item({"pk": "z", "sk": 1, "grp": 5})  # no longer an index key: accepted
    eng.delete_table("Items")
    assert not directory.with_name(directory.name + ".gsi").exists()


def test_indexes_survive_reopen(tmp_path):
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as engine:
        items = fill(indexed(engine))
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as engine:
        engine.wait_for_index_catch_up("Items")
        for definition in (LSI, GSI, GSI_HASH_ONLY):
            assert index_entries(engine, "Items", definition["name"]) == \
                expected_entries(items, TABLE_KEYS, definition)


@pytest.mark.parametrize("operation", ["split", "merge", "move"])
def test_repartitioning_keeps_indexes_exact(eng, tmp_path, operation):
    table = indexed(eng)
    fill(table)
    ids = table.partition_map.partition_ids()
    if operation == "split":
        eng.split_partition("Items", ids[0])
    elif operation == "merge":
        eng.merge_partitions("Items", ids[0], ids[1])
    else:
        eng.move_partition("Items", ids[0], tmp_path / "volume")
    table.put_item({"pk": "p1", "sk": 1000, "rank": 1, "grp": "g1", "tag": b"\x01"})
    table.delete_item({"pk": "p2", "sk": 2})
    eng.wait_for_index_catch_up("Items")
    items = list(table.iter_items())
    for definition in (LSI, GSI, GSI_HASH_ONLY):
        assert index_entries(eng, "Items", definition["name"]) == \
            expected_entries(items, TABLE_KEYS, definition)
        check_query_order(eng, "Items", definition, TABLE_KEYS)


# ---------------------------------------------------------------------- durability, limits
def test_a_write_not_yet_durable_never_reaches_a_gsi(eng):
    """The follower applies only deltas of durable records: a write a crash could still
    roll back (committed in LMDB, its WAL record not yet synced) stays out of the GSI."""
    table = indexed(eng)
    item = {"pk": "a", "sk": 1, "grp": "g1", "rank": 1}
    storage_key = table.schema.key_of_item(item)
    partition = table.partitions[table.partition_map.index_for(storage_key)]
    from engine import _itemcodec

    encoded = _itemcodec.encode_item(item, storage_key)
    _, lsn, rolled = partition.write_nowait(lambda get: ([(1, storage_key, encoded)], None))
    assert lsn > partition.durable_lsn
    eng.wait_for_index_catch_up("Items")  # applies what is durable: not this one
    assert eng.index("Items", "byGroup").query("g1")[0] == []
    assert eng.index("Items", "byRank").query("a")[0] != []  # the LSI is in the same txn
    partition.finish_write(lsn, rolled)
    eng.wait_for_index_catch_up("Items")
    assert eng.index("Items", "byGroup").query("g1")[0] == [
        {"pk": "a", "sk": 1, "grp": "g1", "rank": 1}]


def test_item_collection_limit_applies_to_lsi_tables_only(eng, monkeypatch):
    from engine.errors import ItemCollectionSizeLimitExceededException
    from engine.indexes import maintain

    monkeypatch.setattr(maintain, "ITEM_COLLECTION_LIMIT_BYTES", 4000)
    table = indexed(eng)
    for sk in range(10):
        table.put_item({"pk": "big", "sk": sk, "rank": sk, "note": "x" * 100})
    with pytest.raises(ItemCollectionSizeLimitExceededException,
                       match="Item collection size limit exceeded"):
        for sk in range(10, 30):
            table.put_item({"pk": "big", "sk": sk, "rank": sk, "note": "x" * 100})
    table.put_item({"pk": "other", "sk": 1, "rank": 1})  # another collection: fine
    table.delete_item({"pk": "big", "sk": 0})  # shrinking is always allowed
    table.put_item({"pk": "big", "sk": 0, "rank": 0})
    eng.create_table("NoLsi", ("pk", "S"), ("sk", "N"), global_indexes=[GSI])
    for sk in range(40):
        eng.table("NoLsi").put_item({"pk": "big", "sk": sk, "note": "x" * 100})


def test_replicas_of_indexed_partitions_follow(eng, tmp_path):
    table = indexed(eng)
    fill(table)
    pid = table.partition_map.partition_ids()[0]
    replica = eng.add_replica("Items", pid, tmp_path / "replica")
    fill(table, 150)
    eng.wait_for_index_catch_up("Items")
    assert eng.describe_replicas("Items")[0]["status"] == "ACTIVE"
    assert replica is not None


@pytest.fixture
def held_backfill(monkeypatch):
    """Backfills wait for ``release.set()`` (or their cancellation) before their first
    partition."""
    import threading

    from engine.indexes import manager

    release = threading.Event()
    original = manager.backfill_partition

    def held(*args, cancelled, **kwargs):
        while not release.is_set() and not cancelled():
            release.wait(0.005)
        return original(*args, cancelled=cancelled, **kwargs)

    monkeypatch.setattr(manager, "backfill_partition", held)
    yield release
    release.set()


def test_while_backfilling(eng, held_backfill):
    from engine import ResourceInUseException

    table = eng.create_table("Online", ("pk", "S"), ("sk", "N")) and eng.table("Online")
    items = fill(table, 50)
    started = eng.create_global_index("Online", GSI)
    assert (started["status"], started["backfilling"]) == ("CREATING", True)
    with pytest.raises(ValidationException,
                       match="Cannot read from backfilling global secondary index: byGroup"):
        eng.index("Online", "byGroup").query("g1")
    with pytest.raises(ResourceInUseException, match="is being backfilled"):
        eng.delete_table("Online")
    table.put_item({"pk": "new", "sk": 1, "grp": "g1", "rank": 3})  # writes go on
    assert eng.describe_table("Online")["global_indexes"][0]["lag_records"] >= 1
    held_backfill.set()
    assert eng.wait_for_index("Online", "byGroup")["status"] == "ACTIVE"
    eng.wait_for_index_catch_up("Online")
    assert index_entries(eng, "Online", "byGroup") == expected_entries(
        [*items, {"pk": "new", "sk": 1, "grp": "g1", "rank": 3}], TABLE_KEYS, GSI)


def test_delete_stops_a_backfill(eng, held_backfill):
    table = eng.create_table("Online", ("pk", "S"), ("sk", "N")) and eng.table("Online")
    fill(table, 50)
    eng.create_global_index("Online", GSI)
    assert eng.delete_global_index("Online", "byGroup")["status"] == "DELETING"
    held_backfill.set()
    assert "global_indexes" not in eng.describe_table("Online") or \
        eng.describe_table("Online")["global_indexes"] == []
    eng.create_global_index("Online", GSI)  # the name is free again
    eng.wait_for_index("Online", "byGroup")
    eng.delete_table("Online")


def test_backed_up_definitions_prefer_the_manifest():
    from engine.indexes.restore import backed_up_definitions

    recorded = {"local": [{"name": "l1", "kind": "local", "key_schema": [["pk", "S"], ["r", "N"]],
                           "projection": {"type": "ALL"}, "index_id": "00" * 16}],
                "global": [{"name": "g1", "kind": "global", "key_schema": [["g", "S"]],
                            "projection": {"type": "ALL"}, "index_id": "11" * 16,
                            "status": "ACTIVE", "backfilling": False, "partition_map": [],
                            "created_at": 1.0},
                           {"name": "g2", "kind": "global", "key_schema": [["h", "S"]],
                            "projection": {"type": "ALL"}, "index_id": "22" * 16,
                            "status": "DELETING", "backfilling": False, "partition_map": [],
                            "created_at": 1.0}]}
    meta = backed_up_definitions({"indexes": recorded}, {"indexes": []})
    assert [d["name"] for d in meta["indexes"]] == ["l1", "g1"]
    assert backed_up_definitions({"sync": "batch"}, {"indexes": ["x"]}) == {"indexes": ["x"]}


def test_gsi_partitions_split_and_merge_while_serving(eng, tmp_path):
    table = indexed(eng)
    items = fill(table, 300)
    eng.wait_for_index_catch_up("Items")
    before = eng.describe_table("Items")["global_indexes"][0]
    assert before["name"] == "byGroup" and before["partition_ids"] == ["p0000", "p0001"]
    handle = eng.index("Items", "byGroup")  # a handle from before keeps working
    left, right = eng.split_index_partition("Items", "byGroup", "p0000")
    table.put_item({"pk": "late", "sk": 1, "grp": "g1", "rank": 1})
    eng.wait_for_index_catch_up("Items")
    merged = eng.merge_index_partitions("Items", "byGroup", right, "p0001")
    table.delete_item({"pk": "p1", "sk": 1})
    eng.wait_for_index_catch_up("Items")
    items = list(table.iter_items())
    assert eng.describe_table("Items")["global_indexes"][0]["partition_ids"] == [left, merged]
    assert sorted(map(repr, handle.iter_entries())) == sorted(
        map(repr, eng.index("Items", "byGroup").iter_entries()))
    assert index_entries(eng, "Items", "byGroup") == expected_entries(items, TABLE_KEYS, GSI)
    check_query_order(eng, "Items", GSI, TABLE_KEYS)
    eng.close()
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as engine:
        gsi_dir = engine.table_directory("Items")
        assert index_entries(engine, "Items", "byGroup") == expected_entries(
            items, TABLE_KEYS, GSI)
        index_id = engine.describe_table("Items")["global_indexes"][0]["index_id"]
        on_disk = sorted(p.name for p in (gsi_dir.with_name(gsi_dir.name + ".gsi") /
                                          index_id).iterdir())
        assert on_disk == sorted([left, merged])  # the replaced partitions' files are gone


def test_a_gsi_partition_moves_to_another_volume(eng, tmp_path):
    table = indexed(eng)
    fill(table)
    volume = tmp_path / "volume"
    moved = eng.move_index_partition("Items", "byGroup", "p0001", volume)
    table.put_item({"pk": "late", "sk": 1, "grp": "g2", "rank": 1})
    eng.wait_for_index_catch_up("Items")
    items = list(table.iter_items())
    assert index_entries(eng, "Items", "byGroup") == expected_entries(items, TABLE_KEYS, GSI)
    assert [p.name for p in volume.rglob(moved)] == [moved]
    eng.close()
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as engine:
        assert index_entries(engine, "Items", "byGroup") == expected_entries(
            items, TABLE_KEYS, GSI)
        engine.delete_table("Items")
    assert list(volume.rglob(moved)) == []
