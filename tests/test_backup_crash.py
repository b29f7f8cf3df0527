"""kill -9 during a backup, at several points: on reopen the backup is resumed to AVAILABLE
(or FAILED), never left CREATING, and the store never holds a half-backup that lists."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from backup_helpers import read_backup_items

from engine import Engine
from engine.store import LocalStore

CHILD = Path(__file__).with_name("backup_crash_child.py")
REACH_POINT_TIMEOUT = 120  # seconds; a child that never reaches its point is killed, not waited on


def run_until(data_dir, store_dir, point):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    child = subprocess.Popen([sys.executable, str(CHILD), str(data_dir), str(store_dir), point],
                             stdout=subprocess.PIPE, text=True, env=env)
    backup_id = None
    watchdog = threading.Timer(REACH_POINT_TIMEOUT, child.kill)
    watchdog.start()
    try:
        for line in child.stdout:
            if line.startswith("started "):
                backup_id = line.split()[1]
            if line.strip() == f"at {point}":
                break
        else:
            pytest.fail(f"child exited or timed out before reaching {point}")
    finally:
        watchdog.cancel()
        child.send_signal(signal.SIGKILL)
        child.wait()
    return backup_id


@pytest.mark.parametrize("point", ["export", "package", "upload", "manifest", "committed"])
def test_kill_during_backup(tmp_path, point):
    data_dir, store_dir = tmp_path / "data", tmp_path / "store"
    run_until(data_dir, store_dir, point)
    store = LocalStore(store_dir)
    with Engine.open(data_dir, backup_store=store) as engine:
        (backup,) = engine.list_backups()[0]
        assert backup["status"] in ("CREATING", "AVAILABLE")  # resumed, or found committed
        done = engine.wait_for_backup(backup["backup_id"], timeout=60)
        assert done["status"] == "AVAILABLE", done["failure_reason"]
        items = read_backup_items(store, backup["backup_id"])
        assert len(items) == 3000
        # Nothing but this backup's objects in the store, and no scratch files left.
        keys = [info.key for info in store.list("")]
        assert all(key.startswith(backup["backup_id"] + "/") for key in keys)
        assert len(keys) == 4
    assert not (data_dir / "backup-work").exists() or not any((data_dir / "backup-work").iterdir())


def test_kill_then_table_dropped_marks_failed(tmp_path):
    data_dir, store_dir = tmp_path / "data", tmp_path / "store"
    backup_id = run_until(data_dir, store_dir, "package")
    from engine.catalog import Catalog

    catalog = Catalog(data_dir / "system")  # drop the table record behind the engine's back
    record = catalog.get_table("Music")
    catalog.delete_table("Music")
    catalog.close()
    assert record is not None
    with Engine.open(data_dir, backup_store=LocalStore(store_dir)) as engine:
        description = engine.describe_backup(backup_id)
        assert description["status"] == "FAILED" and "dropped" in description["failure_reason"]
        assert list(LocalStore(store_dir).list("")) == []
