"""``tessera backup create`` in a subprocess: progress on stderr, JSON on stdout, exit 0/1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from s3_servers import ACCESS_KEY, SECRET_KEY

from engine import Engine
from engine.cli.backup_cmd import partition_fraction

REPO = Path(__file__).resolve().parent.parent


def tessera(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], cwd=REPO, capture_output=True, text=True,
        timeout=300, env={**os.environ, **(env or {})},
    )


def make_table(data: Path, count: int = 3000) -> None:
    with Engine.open(data) as engine:
        engine.create_table("Music", partition_key=("pk", "S"), sort_key=("sk", "N"),
                            partitions=4)
        engine.table("Music").batch_write(
            puts=[{"pk": f"u{n % 50}", "sk": n, "v": "x" * (n % 40)} for n in range(count)])


def test_backup_create_shows_progress_and_exits_0(tmp_path):
    make_table(tmp_path / "data")
    store = tmp_path / "store"
    result = tessera("backup", "create", "Music", "FromCli", "--data", str(tmp_path / "data"),
                     "--store", str(store))
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout)
    assert final["status"] == "AVAILABLE" and final["item_count"] == 3000
    assert "partitions" in result.stderr and "AVAILABLE: 3000 items" in result.stderr
    # The bar's last frame is complete: 4/4 partitions, all done (no "1 uploading").
    last_frame = result.stderr.replace("\r", "\n").split("AVAILABLE: ")[0].strip().splitlines()[-1]
    assert "4.0/4 partitions" in last_frame and "4 done" in last_frame, last_frame
    assert "uploading" not in last_frame
    assert (store / final["backup_id"] / "manifest.json").is_file()
    with Engine.open(tmp_path / "data", backup_store=str(store)) as engine:
        assert engine.describe_backup(final["backup_id"])["status"] == "AVAILABLE"


def test_backup_create_exits_1_when_the_backup_fails(tmp_path, rclone_server):
    make_table(tmp_path / "data", count=200)
    result = tessera(
        "backup", "create", "Music", "NoBucket", "--data", str(tmp_path / "data"),
        "--store", "s3://no-such-bucket/backups", "--endpoint-url", rclone_server.endpoint_url,
        env={"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
             "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert result.returncode == 1, result.stderr
    final = json.loads(result.stdout)
    assert final["status"] == "FAILED"
    assert "partition Music/" in final["failure_reason"] and "NoSuchBucket" in final["failure_reason"]
    assert "FAILED: " in result.stderr


def test_backup_create_of_missing_table_exits_1(tmp_path):
    make_table(tmp_path / "data", count=10)
    result = tessera("backup", "create", "Nope", "Backup1", "--data", str(tmp_path / "data"))
    assert result.returncode == 1
    assert "TableNotFoundException: Table not found: Nope" in result.stderr
    assert result.stdout == ""


def test_backup_create_beside_another_owner_exits_3(tmp_path):
    make_table(tmp_path / "data", count=10)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from engine.dirlock import DirectoryLock; "
         "DirectoryLock(sys.argv[1]).acquire(); print('locked', flush=True); sys.stdin.read()",
         str(tmp_path / "data")],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = tessera("backup", "create", "Music", "Busy1", "--data", str(tmp_path / "data"))
        assert result.returncode == 3
        assert "Traceback" not in result.stderr
        assert f"stop the process with PID {holder.pid}" in result.stderr
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_partition_fraction_grows_through_the_phases():
    phases = ["pending", "exporting", "packaging", "verifying", "uploading", "done"]
    fractions = [partition_fraction({"phase": phase}) for phase in phases]
    assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] == 1
    half = partition_fraction({"phase": "uploading", "bytes_done": 5, "bytes_total": 10})
    assert fractions[4] < half < 1
