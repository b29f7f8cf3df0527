"""``tessera backups``: every action straight from a store, exit codes, --json, --help."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import google_crc32c
import pytest
import zstandard
from restore_helpers import (
    backup_of,
    every_type_item,
    fill_table,
    load_manifest,
    object_members,
    replace_partition_object,
)

from engine import Engine
from engine.attrvalue import deserialize_item
from engine.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


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
    assert "key format 2" in out and described["settings"]["key_format"] == 2
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


# ------------------------------------------------------------ failures: one line, exit code


def _manifest_path(store: str, backup_id: str) -> Path:
    return Path(store) / backup_id / "manifest.json"


def _edit_manifest(store: str, backup_id: str, edit) -> None:
    path = _manifest_path(store, backup_id)
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("action", ["ls", "describe", "verify"])
def test_missing_store_is_usage_error_and_creates_nothing(action, capsys, tmp_path):
    missing = tmp_path / "no" / "such" / "store"
    argv = [action] + ([] if action == "ls" else ["some-id"])
    code, out, err = run(capsys, *argv, "--store", str(missing))
    assert code == 2
    assert f"no backup store at {missing}" in _one_line(err)
    assert not (tmp_path / "no").exists()
    code, out, err = run(capsys, *argv, "--store", f"file://{missing}", "--json")
    assert code == 2
    error = json.loads(out)["error"]
    assert error["exit_code"] == 2 and error["type"] == "UsageError"
    assert str(missing) in error["message"]
    assert not (tmp_path / "no").exists()


def test_store_that_is_a_file_is_usage_error(capsys, tmp_path):
    path = tmp_path / "store-file"
    path.write_text("x")
    code, _, err = run(capsys, "ls", "--store", str(path))
    assert code == 2 and "is not a directory" in _one_line(err)


def test_backup_not_found_under_json_is_a_json_error(backed_up, capsys):
    store, _, _ = backed_up
    code, out, err = run(capsys, "describe", "01234567890123-deadbeef-local", "--store", store,
                         "--json")
    assert code == 1
    _one_line(err)
    assert json.loads(out)["error"]["type"] == "BackupNotFoundException"


def test_manifest_nested_100k_levels_is_corruption_not_traceback(backed_up, capsys, tmp_path):
    store, backup_id, _ = backed_up
    depth = 100_000
    _manifest_path(store, backup_id).write_text('{"a": ' + "[" * depth + "]" * depth + "}")
    for argv in (["verify", backup_id], ["restore", backup_id, "--data", str(tmp_path / "r"),
                                         "--table", "T"], ["describe", backup_id]):
        code, _, err = run(capsys, *argv, "--store", store)
        assert code == 1
        line = _one_line(err)
        assert "CorruptionError" in line and "nests deeper than" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("object_key", ["../../etc/passwd", "/etc/passwd", "a/./b",
                                        "a//b", "a\\b", "x/\x00"])
def test_object_key_that_escapes_the_store_is_corruption(object_key, backed_up, capsys,
                                                         tmp_path):
    store, backup_id, _ = backed_up

    def edit(document):
        document["partitions"][0]["object_key"] = object_key

    _edit_manifest(store, backup_id, edit)
    code, _, err = run(capsys, "verify", backup_id, "--store", store)
    assert code == 1
    line = _one_line(err)
    assert "CorruptionError" in line and "object_key" in line and "relative store key" in line


def test_declared_size_beyond_what_the_object_can_inflate_to(backed_up, capsys, tmp_path):
    store, backup_id, _ = backed_up

    def edit(document):
        entry = document["partitions"][0]
        entry["data_size_bytes"] = entry["object_size_bytes"] * 32768 + 1

    _edit_manifest(store, backup_id, edit)
    code, _, err = run(capsys, "restore", backup_id, "--store", store, "--data",
                       str(tmp_path / "r"), "--table", "T")
    assert code == 1
    line = _one_line(err)
    assert "data_size_bytes" in line and "could inflate to" in line
    assert not (tmp_path / "r").exists()


def test_restore_refuses_what_does_not_fit_the_volume(backed_up, capsys, tmp_path,
                                                      monkeypatch):
    from engine import volumes
    from engine.backup import offline

    store, backup_id, _ = backed_up
    monkeypatch.setattr(volumes, "free_bytes", lambda directory: 32 << 20)  # 32 MiB free
    code, _, err = run(capsys, "restore", backup_id, "--store", store, "--data",
                       str(tmp_path / "r"), "--table", "T")
    assert code == 1
    line = _one_line(err)
    assert "ValidationException" in line and "32 MiB" not in line
    assert "nothing was written" in line and f"{32 << 20:,} free" in line
    assert not (tmp_path / "r").exists()
    # The library call refuses too, before Engine.open creates the directory.
    with pytest.raises(Exception, match="free"):
        offline.restore_backup(_local(store), backup_id, tmp_path / "r2", "T")
    assert not (tmp_path / "r2").exists()


def test_restore_into_a_directory_held_by_another_process(backed_up, capsys, tmp_path):
    store, backup_id, _ = backed_up
    data = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from engine.dirlock import DirectoryLock; "
         "DirectoryLock(sys.argv[1]).acquire(); print('locked', flush=True); sys.stdin.read()",
         str(data)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run(capsys, "restore", backup_id, "--store", store, "--data", str(data),
                           "--table", "T")
        assert code == 3
        line = _one_line(err)
        assert f"stop the process with PID {holder.pid}" in line
        assert sorted(p.name for p in data.iterdir()) == ["LOCK"]  # nothing else written
    finally:
        holder.kill()
        holder.wait(timeout=10)


# ------------------------------------------------------------------------ progress bars


class _RecordingBar:
    """Stands in for tqdm: records where each bar ended."""

    ended: list[tuple[str, float, float]] = []

    def __init__(self, total=None, desc="", **_):
        self.total, self.desc, self.n = total, desc, 0

    def update(self, count=1):
        self.n += count

    def set_postfix_str(self, *_, **__):
        pass

    def refresh(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *_):
        _RecordingBar.ended.append((self.desc, self.n, self.total))


def test_verify_and_restore_bars_reach_100_percent(backed_up, capsys, tmp_path, monkeypatch):
    from engine.cli import backups

    store, backup_id, _ = backed_up
    monkeypatch.setattr(backups, "tqdm", _RecordingBar)
    _RecordingBar.ended.clear()
    assert run(capsys, "verify", backup_id, "--store", store)[0] == 0
    code, _, err = run(capsys, "restore", backup_id, "--store", store, "--data",
                       str(tmp_path / "r"), "--table", "Tab", "--partitions", "5")
    assert code == 0, err
    (verify_desc, verify_n, verify_total), (restore_desc, restore_n, restore_total) = \
        _RecordingBar.ended
    assert verify_desc.startswith("verifying") and verify_n == verify_total
    described = json.loads(run(capsys, "describe", backup_id, "--store", store, "--json")[1])
    data_bytes = sum(p["data_size_bytes"] for p in described["partition_details"])
    assert verify_total == described["size_bytes"] + data_bytes  # download + check
    assert restore_desc == "restoring" and restore_n == restore_total == 100


def test_restore_fraction_counts_phases():
    from engine.cli.backups import restore_fraction

    state = {"phase": "downloading", "bytes_done": 50, "bytes_total": 100,
             "partitions_done": 0, "partitions_total": 4}
    assert restore_fraction(state, False) == pytest.approx(0.25)
    state.update(bytes_done=100, partitions_done=4)
    assert restore_fraction(state, False) == pytest.approx(0.99)  # 100% only when done
    state.update(phase="repartitioning")
    assert restore_fraction(state, True) == pytest.approx(0.6)  # the range copy remains
    state.update(phase="done")
    assert restore_fraction(state, True) == 1.0


def test_bomb_object_is_refused_on_its_first_page(backed_up, capsys, tmp_path):
    """A small object whose data.mdb inflates to 256 MiB of zeros, with manifests that agree
    on that size and the object's checksum: refused from data.mdb's first page (no LMDB
    meta page), before anything is inflated to disk."""
    from engine.backup.manifest import PartitionManifest, crc32c_hex, manifest_key

    store_url, backup_id, _ = backed_up
    store = _local(store_url)
    declared = 256 << 20
    zeros_crc = 0
    chunk = bytes(1 << 20)
    for _ in range(declared >> 20):
        zeros_crc = google_crc32c.extend(zeros_crc, chunk)
    entry = load_manifest(store, backup_id).partitions[0]
    inner, _ = object_members(store, entry.object_key)
    inner_manifest = dataclasses.replace(
        PartitionManifest.from_json(inner, "inner", mode="in_archive"),
        data_size_bytes=declared, data_crc32c=crc32c_hex(zeros_crc))

    class Zeros:  # streamed into the tar: the member without a buffer of its size
        def __init__(self):
            self.left = declared

        def read(self, size=-1):
            size = self.left if size < 0 else min(size, self.left)
            self.left -= size
            return bytes(size)

    raw = io.BytesIO()
    with zstandard.ZstdCompressor(level=3, write_checksum=True).stream_writer(
            raw, closefd=False) as compressed, \
            tarfile.open(fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, size, source in (("partition.json", len(inner_manifest.to_json()),
                                    io.BytesIO(inner_manifest.to_json())),
                                   ("data.mdb", declared, Zeros())):
            info = tarfile.TarInfo(name)
            info.size, info.mode = size, 0o644
            tar.addfile(info, source)
    bomb = raw.getvalue()
    assert len(bomb) < 2 << 20  # a small object ...
    replace_partition_object(store, backup_id, 0, bomb)
    manifest = load_manifest(store, backup_id)
    parts = list(manifest.partitions)
    parts[0] = dataclasses.replace(parts[0], data_size_bytes=declared,
                                   data_crc32c=crc32c_hex(zeros_crc))
    store.put(manifest_key("", backup_id), dataclasses.replace(manifest, partitions=parts)
              .to_json())

    code, _, err = run(capsys, "restore", backup_id, "--store", store_url, "--data",
                       str(tmp_path / "r"), "--table", "Tab")
    assert code == 1
    line = _one_line(err)
    assert "does not start with an LMDB meta page" in line and "p0000" in line
    assert not (tmp_path / "r").exists()
    code, out, _ = run(capsys, "verify", backup_id, "--store", store_url, "--json")
    assert code == 1
    statuses = {p["partition_id"]: p["status"] for p in json.loads(out)["partitions"]}
    assert statuses == {"p0000": "corrupt", "p0001": "ok", "p0002": "ok"}


def test_oversized_manifest_is_refused_from_its_size(backed_up, capsys, monkeypatch):
    from engine.backup import manifest as manifest_module
    from engine.backup import offline

    store, backup_id, _ = backed_up
    size = _manifest_path(store, backup_id).stat().st_size
    monkeypatch.setattr(offline, "MAX_MANIFEST_BYTES", size - 1)
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", size - 1)
    code, _, err = run(capsys, "describe", backup_id, "--store", store)
    assert code == 1
    assert f"manifest is {size} bytes, more than the {size - 1}" in _one_line(err)
    code, out, _ = run(capsys, "ls", "--store", store, "--json")
    assert code == 0
    listed = {b["backup_id"]: b for b in json.loads(out)}
    assert listed[backup_id]["status"] == "CORRUPT"


def test_s3_bucket_that_does_not_exist_is_usage_error(rclone_server, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "tessera-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "tessera-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    code, out, err = run(capsys, "ls", "--store", "s3://no-such-bucket/tessera",
                         "--endpoint-url", rclone_server.endpoint_url, "--json")
    assert code == 2
    assert "no backup store at s3://no-such-bucket/tessera" in _one_line(err)
    assert json.loads(out)["error"]["exit_code"] == 2
