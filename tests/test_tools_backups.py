"""``tessera backups``: every action straight from a store, exit codes, --json, --help."""

from __future__ import annotations

import json
import time

import pytest
from restore_helpers import backup_of, every_type_item, fill_table, load_manifest

from engine import Engine
from engine.attrvalue import deserialize_item
from engine.cli.main import main


@pytest.fixture
def backed_up(tmp_path):
    """(store URL, backup id, items in scan order) of a 3-partition table; engine closed."""
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28) as eng:
        fill_table(eng, "Music", partitions=3)
        backup_id = backup_of(eng, "Music")
        items = list(eng.table("Music").iter_items())
        backup_of(eng, "Music", "second")
    return str(tmp_path / "backups"), backup_id, items


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["backups", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_describe_and_filters(backed_up, capsys):
    store, backup_id, _ = backed_up
    code, out, _ = run(capsys, "ls", "--store", store)
    assert code == 0 and backup_id in out and "Music" in out and "AVAILABLE" in out
    code, out, _ = run(capsys, "ls", "--store", store, "--json")
    listed = json.loads(out)
    assert code == 0 and len(listed) == 2 and listed[0]["backup_id"] == backup_id
    assert json.loads(run(capsys, "ls", "--store", store, "--json", "--table", "Other")[1]) == []
    future = time.time() + 3600
    assert json.loads(run(capsys, "ls", "--store", store, "--json", "--since", str(future))[1]) == []
    until = run(capsys, "ls", "--store", store, "--json", "--until", "2000-01-01T00:00:00")[1]
    assert json.loads(until) == []
    code, out, _ = run(capsys, "describe", backup_id, "--store", f"file://{store}", "--json")
    described = json.loads(out)
    assert code == 0 and described["item_count"] == 240 and len(described["partition_details"]) == 3
    code, out, _ = run(capsys, "describe", backup_id, "--store", store)
    assert code == 0 and "p0002" in out and "pk (S), sk (N)" in out
    code, _, err = run(capsys, "describe", "01234567890123-deadbeef-local", "--store", store)
    assert code == 1 and "BackupNotFoundException" in err


def test_verify_reports_every_bad_partition(backed_up, capsys, tmp_path):
    store, backup_id, _ = backed_up
    code, out, _ = run(capsys, "verify", backup_id, "--store", store)
    assert code == 0 and "OK: all 3 partitions verified" in out
    entries = load_manifest(_local(store), backup_id).partitions
    path = tmp_path / "backups" / entries[0].object_key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    (tmp_path / "backups" / entries[2].object_key).unlink()
    code, out, _ = run(capsys, "verify", backup_id, "--store", store, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    statuses = {p["partition_id"]: p["status"] for p in report["partitions"]}
    assert statuses == {"p0000": "checksum_mismatch", "p0001": "ok", "p0002": "missing"}
    code, out, _ = run(capsys, "verify", backup_id, "--store", store)
    assert code == 1 and "FAILED: 2 of 3 partitions: p0000, p0002" in out


def _local(url):
    from engine.store import open_store

    return open_store(url)


def test_restore_export_copy_delete(backed_up, capsys, tmp_path):
    store, backup_id, items = backed_up
    code, out, _ = run(capsys, "restore", backup_id, "--store", store, "--data",
                       str(tmp_path / "restored"), "--table", "Music2", "--partitions", "5")
    assert code == 0 and "240 items in 5 partitions" in out
    with Engine.open(tmp_path / "restored") as eng:
        assert list(eng.table("Music2").iter_items()) == items
    code, _, err = run(capsys, "restore", backup_id, "--store", store, "--data",
                       str(tmp_path / "restored"), "--table", "Music2")
    assert code == 1 and "TableAlreadyExistsException" in err

    output = tmp_path / "music.jsonl"
    code, out, _ = run(capsys, "export", backup_id, "--store", store, "--format", "jsonl",
                       "--output", str(output))
    assert code == 0 and "240 items" in out
    lines = output.read_text().splitlines()
    exported = [deserialize_item(json.loads(line)) for line in lines]
    assert exported == items  # the table's scan order, every type round-tripped
    assert set(json.loads(lines[0])["n_dec"]) == {"N"}  # numbers as DynamoDB strings
    assert every_type_item("x", 1).keys() == exported[0].keys()

    code, out, _ = run(capsys, "copy", backup_id, "--store", store, "--to",
                       str(tmp_path / "dr"), "--json")
    assert code == 0 and json.loads(out)["status"] == "AVAILABLE"
    assert run(capsys, "verify", backup_id, "--store", str(tmp_path / "dr"))[0] == 0

    code, out, _ = run(capsys, "delete", backup_id, "--store", store, "--json")
    assert code == 0 and json.loads(out)["deleted_objects"] == 4
    assert backup_id not in run(capsys, "ls", "--store", store)[1]
    assert run(capsys, "delete", backup_id, "--store", store)[0] == 1


def test_export_to_stdout(backed_up, capsys):
    store, backup_id, items = backed_up
    code, out, _ = run(capsys, "export", backup_id, "--store", store, "--no-progress")
    assert code == 0 and len(out.splitlines()) == len(items)


def test_usage_errors_exit_2_and_help(capsys, tmp_path):
    with pytest.raises(SystemExit) as caught:
        main(["backups", "restore", "some-id", "--store", str(tmp_path)])  # no --data/--table
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        main(["backups", "export", "some-id", "--format", "csv"])
    assert caught.value.code == 2
    assert run(capsys, "ls", "--store", "ftp://nowhere/x")[0] == 2
    with pytest.raises(SystemExit) as caught:
        main(["backups", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes: 0 ok, 1" in out and "verify" in out and "export" in out
    with pytest.raises(SystemExit):
        main(["backups", "verify", "--help"])
    assert "logical checksum" in capsys.readouterr().out


def test_ls_and_restore_from_rclone_s3(tmp_path, rclone_store, rclone_server, capsys,
                                       monkeypatch):
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 28, backup_store=rclone_store) as eng:
        fill_table(eng, "Music", partitions=2)
        backup_id = backup_of(eng, "Music")
        items = list(eng.table("Music").iter_items())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "tessera-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "tessera-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = ["--store", rclone_store.url, "--endpoint-url", rclone_server.endpoint_url]
    code, out, _ = run(capsys, "ls", *s3)
    assert code == 0 and backup_id in out
    assert run(capsys, "verify", backup_id, *s3)[0] == 0
    code, _, _ = run(capsys, "restore", backup_id, *s3, "--data", str(tmp_path / "r"),
                     "--table", "Music")
    assert code == 0
    with Engine.open(tmp_path / "r") as eng:
        assert list(eng.table("Music").iter_items()) == items
    code, _, _ = run(capsys, "copy", backup_id, *s3, "--to", str(tmp_path / "local-copy"))
    assert code == 0
    assert run(capsys, "verify", backup_id, "--store", str(tmp_path / "local-copy"))[0] == 0
