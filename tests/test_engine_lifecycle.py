"""Open and close: a failed open releases everything it opened, and a closed engine (and
every table handle taken from it) answers every call with the one EngineClosedError."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from engine import CorruptionError, DataDirectoryInUseError, Engine, EngineClosedError


def _open(path):
    return Engine.open(path, wal_segment_bytes=1 << 20, map_size_bytes=1 << 28)


def _segment(path):
    return sorted((path / "tables").glob("*/p0001/wal/*.wal"))[-1]


def test_a_failed_open_can_be_followed_by_a_good_one_in_the_same_process(tmp_path):
    with _open(tmp_path) as engine:
        engine.create_table("Music", partition_key=("pk", "S"), partitions=3)
        table = engine.table("Music")
        for n in range(60):
            table.put_item({"pk": f"k{n}", "v": "x" * 50})
    segment = _segment(tmp_path)
    original = segment.read_bytes()
    damaged = bytearray(original)
    damaged[200] ^= 0x10
    segment.write_bytes(bytes(damaged))
    for _ in range(2):  # the same failure each time, never "already open in this process"
        with pytest.raises(CorruptionError, match="p0001"):
            _open(tmp_path)
    segment.write_bytes(original)  # repaired
    with _open(tmp_path) as engine:
        keys = sorted(item["pk"] for item in engine.table("Music").iter_items())
    assert keys == sorted(f"k{n}" for n in range(60))


def _arguments(method_name: str) -> tuple:
    """Plausible arguments for each public method: the closed check must come first."""
    return {
        "create_table": ("Tbl",), "describe_table": ("Tbl",), "table": ("Tbl",),
        "table_directory": ("Tbl",), "delete_table": ("Tbl",),
        "create_backup": ("Tbl", "b"), "describe_backup": ("b",), "delete_backup": ("b",),
        "wait_for_backup": ("b",), "restore_table": ("b", "Tbl2"), "wait_for_table": ("Tbl",),
        "copy_backup": ("b", "file:///nowhere"), "wait_for_copies": ("b",),
        "split_partition": ("Tbl", "p0000"), "merge_partitions": ("Tbl", "p0000", "p0001"),
        "move_partition": ("Tbl", "p0000", "/tmp"), "add_replica": ("Tbl", "p0000", "/tmp"),
        "remove_replica": ("Tbl", "r"), "describe_replicas": ("Tbl",), "replica": ("Tbl", "r"),
        "set_billing": ("Tbl", {"BillingMode": "PAY_PER_REQUEST"}),
        "index": ("Tbl", "ix"), "create_global_index": ("Tbl", {}),
        "delete_global_index": ("Tbl", "ix"), "wait_for_index": ("Tbl", "ix"),
        "wait_for_index_catch_up": ("Tbl",),
        "split_index_partition": ("Tbl", "ix", "p0000"),
        "merge_index_partitions": ("Tbl", "ix", "p0000", "p0001"),
        "move_index_partition": ("Tbl", "ix", "p0000", "/tmp"),
    }.get(method_name, ())


PUBLIC_METHODS = sorted(
    name for name, member in inspect.getmembers(Engine, inspect.isfunction)
    if not name.startswith("_") and name not in ("close", "open")
)


def test_the_method_list_is_not_empty():
    assert {"create_table", "table", "create_backup", "restore_table", "list_tables"} <= set(
        PUBLIC_METHODS)


@pytest.mark.parametrize("method_name", PUBLIC_METHODS)
def test_every_public_call_on_a_closed_engine_raises_the_closed_error(tmp_path, method_name):
    engine = _open(tmp_path)
    engine.create_table("Tbl", partitions=2)
    engine.close()
    with pytest.raises(EngineClosedError):
        getattr(engine, method_name)(*_arguments(method_name))
    engine.close()  # idempotent


TABLE_CALLS = {
    "put_item": lambda t: t.put_item({"pk": "a"}),
    "get_item": lambda t: t.get_item({"pk": "a"}),
    "delete_item": lambda t: t.delete_item({"pk": "a"}),
    "update_item": lambda t: t.update_item({"pk": "a"}, [("SET", "v", 1)]),
    "batch_write": lambda t: t.batch_write(puts=[{"pk": "a"}, {"pk": "b"}]),
    "batch_get": lambda t: t.batch_get([{"pk": "a"}]),
    "query": lambda t: t.query("a"),
    "scan": lambda t: t.scan(),
    "iter_items": lambda t: list(t.iter_items()),
    "stats": lambda t: t.stats(),
}


@pytest.mark.parametrize("call", sorted(TABLE_CALLS))
def test_a_table_handle_of_a_closed_engine_raises_the_closed_error(tmp_path, call):
    engine = _open(tmp_path)
    engine.create_table("Tbl", partitions=2)
    table = engine.table("Tbl")
    table.put_item({"pk": "a", "v": 0})
    table.get_item({"pk": "a"})  # a cached read transaction, aborted by close
    engine.close()
    with pytest.raises(EngineClosedError, match="closed"):
        TABLE_CALLS[call](table)


def test_the_closed_error_is_a_retryable_service_error():
    error = EngineClosedError()
    assert error.code == "ServiceUnavailable" and error.http_status == 503


def test_a_second_engine_on_the_same_directory_is_refused(tmp_path):
    with _open(tmp_path / "data") as engine:
        engine.create_table("Music", partitions=1)
        with pytest.raises(DataDirectoryInUseError, match="another Engine of this process"):
            _open(tmp_path / "data")
        engine.table("Music").put_item({"pk": "still-served"})
    with _open(tmp_path / "data") as engine:  # free again once the first one closed
        assert engine.table("Music").get_item({"pk": "still-served"}) == {"pk": "still-served"}


def test_another_process_holding_the_directory_is_named(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from engine import Engine\n"
         "engine = Engine.open(sys.argv[1], map_size_bytes=1 << 26)\n"
         "engine.create_table('Music', partitions=1)\n"
         "print('ready', flush=True); sys.stdin.read(); engine.close()",
         str(tmp_path / "data")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(DataDirectoryInUseError) as caught:
            _open(tmp_path / "data")
        assert caught.value.pid == child.pid and str(child.pid) in str(caught.value)
    finally:
        child.communicate("", timeout=60)
    assert child.returncode == 0
    with _open(tmp_path / "data") as engine:
        assert engine.list_tables() == ["Music"]
