"""Backups and restores of tables with secondary indexes (issue 14): a backup carries
the index definitions; a restore rebuilds every index before the table is ACTIVE, and
honours overrides (drop, keep, add, change a projection) — queries on the restored
indexes return exactly what a fresh build over the same items returns."""

from __future__ import annotations

import pytest
from index_reference import check_query_order, expected_entries, index_entries
from restore_helpers import backup_of

from engine import Engine, ValidationException

TABLE_KEYS = [("pk", "S"), ("sk", "N")]
LSI = {"name": "byRank", "key_schema": [("pk", "S"), ("rank", "N")], "projection": "KEYS_ONLY"}
BY_GROUP = {"name": "byGroup", "key_schema": [("grp", "S"), ("rank", "N")], "projection": "ALL"}
BY_TAG = {"name": "byTag", "key_schema": [("tag", "S")], "projection": "KEYS_ONLY"}
BY_DROPPED = {"name": "byDropped", "key_schema": [("grp", "S")], "projection": "ALL"}
BY_TAG_INCLUDE = {"name": "byTag", "key_schema": [("tag", "S")],
                  "projection": {"type": "INCLUDE", "non_key_attributes": ["note"]}}
BY_NOTE = {"name": "byNote", "key_schema": [("note", "S"), ("sk", "N")], "projection": "ALL"}


@pytest.fixture
def eng(tmp_path):
    engine = Engine.open(tmp_path / "data", wal_segment_bytes=1 << 16, map_size_bytes=1 << 28)
    yield engine
    engine.close()


def items(count: int = 300) -> list[dict]:
    result = []
    for n in range(count):
        item = {"pk": f"u{n % 23}", "sk": n, "rank": n % 13, "note": f"n{n % 5}"}
        if n % 3:
            item["grp"] = f"g{n % 4}"
        if n % 4:
            item["tag"] = ("x", "y", "z")[n % 3]
        result.append(item)
    return result


def make_table(engine, name: str, local: list[dict], global_: list[dict], *,
               partitions: int = 3) -> None:
    engine.create_table(name, ("pk", "S"), ("sk", "N"), partitions=partitions,
                        local_indexes=local, global_indexes=global_)
    table = engine.table(name)
    table.batch_write(puts=items())
    for n in range(0, 300, 7):  # some updates and deletes, so the backup is not a bulk load
        table.update_item({"pk": f"u{n % 23}", "sk": n}, "SET #t = :t",
                          names={"#t": "tag"}, values={":t": "w"})
    for n in range(0, 300, 11):
        table.delete_item({"pk": f"u{n % 23}", "sk": n})
    engine.wait_for_index_catch_up(name)


def query_everything(engine, table: str, definition: dict) -> dict:
    """Every query result of the index, one per index partition-key value, paged."""
    handle = engine.index(table, definition["name"])
    hash_name = definition["key_schema"][0][0]
    values = sorted({entry[hash_name] for entry in handle.iter_entries()})
    result = {}
    for value in values:
        got, start = [], None
        while True:
            page = handle.query_page(value, limit=7, exclusive_start_key=start)
            got.extend(page.items)
            start = page.last_evaluated_key
            if start is None:
                break
        result[value] = got
    return result


def assert_indexes_as_fresh_build(engine, restored: str, local: list[dict],
                                  global_: list[dict]) -> None:
    fresh = f"{restored}-fresh"
    engine.create_table(fresh, ("pk", "S"), ("sk", "N"), partitions=2,
                        local_indexes=local, global_indexes=global_)
    engine.table(fresh).batch_write(puts=list(engine.table(restored).iter_items()))
    engine.wait_for_index_catch_up(fresh)
    engine.wait_for_index_catch_up(restored)
    items_now = list(engine.table(restored).iter_items())
    description = engine.describe_table(restored)
    assert sorted(i["name"] for i in description.get("global_indexes", [])) == \
        sorted(d["name"] for d in global_)
    assert sorted(i["name"] for i in description.get("local_indexes", [])) == \
        sorted(d["name"] for d in local)
    for definition in [*local, *global_]:
        assert index_entries(engine, restored, definition["name"]) == \
            expected_entries(items_now, TABLE_KEYS, definition)
        assert query_everything(engine, restored, definition) == \
            query_everything(engine, fresh, definition), definition["name"]
        check_query_order(engine, restored, definition, TABLE_KEYS)
    for described in description.get("global_indexes", []):
        assert described["status"] == "ACTIVE" and not described["backfilling"]
        definition = next(d for d in global_ if d["name"] == described["name"])
        assert described["item_count"] == len(expected_entries(items_now, TABLE_KEYS,
                                                               definition))


@pytest.mark.parametrize("partitions", [None, 5])
def test_restore_with_overrides_drops_adds_and_changes_projection(eng, partitions):
    make_table(eng, "Source", [LSI], [BY_GROUP, BY_TAG, BY_DROPPED])
    backup_id = backup_of(eng, "Source")
    eng.restore_table(backup_id, "Restored", partitions=partitions,
                      global_indexes=[BY_GROUP, BY_TAG_INCLUDE, BY_NOTE])
    assert eng.wait_for_table("Restored", timeout=60)["status"] == "ACTIVE"
    assert_indexes_as_fresh_build(eng, "Restored", [LSI], [BY_GROUP, BY_TAG_INCLUDE, BY_NOTE])
    # the restored table keeps maintaining them
    eng.table("Restored").put_item({"pk": "new", "sk": 1, "rank": 2, "grp": "g9",
                                    "tag": "q", "note": "nn"})
    eng.wait_for_index_catch_up("Restored")
    assert eng.index("Restored", "byNote").query("nn")[0][0]["pk"] == "new"
    assert eng.index("Restored", "byRank").query("new")[0] == [
        {"pk": "new", "sk": 1, "rank": 2}]


@pytest.mark.parametrize("partitions", [None, 2])
def test_restore_as_backed_up_keeps_every_index(eng, partitions):
    make_table(eng, "Source", [LSI], [BY_GROUP, BY_TAG])
    backup_id = backup_of(eng, "Source")
    eng.restore_table(backup_id, "Restored", partitions=partitions)
    assert eng.wait_for_table("Restored", timeout=60)["status"] == "ACTIVE"
    assert_indexes_as_fresh_build(eng, "Restored", [LSI], [BY_GROUP, BY_TAG])


def test_restore_can_drop_every_index_and_add_an_lsi(eng):
    make_table(eng, "Source", [], [BY_GROUP])
    backup_id = backup_of(eng, "Source")
    eng.restore_table(backup_id, "Restored", global_indexes=[], local_indexes=[LSI])
    assert eng.wait_for_table("Restored", timeout=60)["status"] == "ACTIVE"
    assert_indexes_as_fresh_build(eng, "Restored", [LSI], [])
    with pytest.raises(ValidationException, match="does not have the specified index"):
        eng.index("Restored", "byGroup")


def test_restore_refuses_bad_overrides_before_starting(eng):
    make_table(eng, "Source", [], [BY_GROUP])
    backup_id = backup_of(eng, "Source")
    with pytest.raises(ValidationException, match="Duplicate index name"):
        eng.restore_table(backup_id, "Restored", global_indexes=[BY_GROUP, BY_GROUP])
    with pytest.raises(ValidationException, match="projection type"):
        eng.restore_table(backup_id, "Restored",
                          global_indexes=[{**BY_GROUP, "projection": "SOME"}])
    assert "Restored" not in eng.list_tables()


def test_restore_survives_reopen(tmp_path):
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as engine:
        make_table(engine, "Source", [LSI], [BY_GROUP, BY_TAG])
        backup_id = backup_of(engine, "Source")
        engine.restore_table(backup_id, "Restored", global_indexes=[BY_TAG_INCLUDE])
        assert engine.wait_for_table("Restored", timeout=60)["status"] == "ACTIVE"
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as engine:
        assert_indexes_as_fresh_build(engine, "Restored", [LSI], [BY_TAG_INCLUDE])


def test_a_restore_describes_its_indexes_while_and_after_restoring(eng):
    make_table(eng, "Source", [LSI], [BY_GROUP])
    backup_id = backup_of(eng, "Source")
    eng.restore_table(backup_id, "Restored", global_indexes=[BY_TAG])
    done = eng.wait_for_table("Restored", timeout=60)
    assert [i["name"] for i in done["global_indexes"]] == ["byTag"]
    assert [i["name"] for i in done["local_indexes"]] == ["byRank"]
    assert done["global_indexes"][0]["status"] == "ACTIVE"
