"""Replicas (SPEC §10): made by copy + catch-up, follow the WAL, survive restarts and
crashes (WAL held for them), removed cleanly, dropped by a split."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from engine import Engine
from engine.errors import ResourceNotFoundException, ValidationException

OPTIONS = {"wal_segment_bytes": 1 << 16, "map_size_bytes": 1 << 30}


def replica_items(engine, table_name, replica_id) -> list[tuple[bytes, bytes]]:
    replica = engine.replica(table_name, replica_id)
    with replica.env.begin(db=replica.items_db) as txn:
        return list(txn.cursor())


def wait_caught_up(engine, table_name, replica_id) -> None:
    replica = engine.replica(table_name, replica_id)
    assert replica.wait_for(replica.partition.applied_lsn, timeout=30), replica.describe()


def make_table(engine, name="Replicated", items=500):
    engine.create_table(name, partition_key=("pk", "S"), sort_key=("sk", "N"), partitions=1)
    table = engine.table(name)
    table.batch_write(puts=[{"pk": f"k{n % 7}", "sk": n, "v": "x" * 40} for n in range(items)])
    return table


def test_replica_follows_concurrent_writes(engine, tmp_path):
    table = make_table(engine)
    stop, writing = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def write():
        n = 0
        try:
            while not stop.is_set():
                table.put_item({"pk": f"w{n % 5}", "sk": n, "v": n})
                if n % 3 == 0:
                    table.delete_item({"pk": f"k{n % 7}", "sk": n % 500})
                writing.set()
                n += 1
        except BaseException as err:  # noqa: BLE001 - re-raised by the test
            errors.append(err)
            writing.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        # The writer is in its loop before the replica's copy starts.
        assert writing.wait(30) and not errors, errors
        info = engine.add_replica("Replicated", "p0000", tmp_path / "volume")
    finally:
        stop.set()
        writer.join()
    assert not errors, errors
    replica_id = info["replica_id"]
    assert info["status"] == "ACTIVE"
    assert Path(info["dir"]).is_relative_to((tmp_path / "volume").resolve())
    wait_caught_up(engine, "Replicated", replica_id)
    partition = table.partitions[0]
    assert replica_items(engine, "Replicated", replica_id) == list(partition.iter_range(b"", None))
    (described,) = engine.describe_replicas("Replicated")
    assert described["applied_lsn"] == partition.applied_lsn and described["lag_records"] == 0
    record = engine.catalog.get_table("Replicated")
    assert record["replicas"] == [{"partition_id": "p0000", "replica_id": replica_id,
                                   "dir": info["dir"]}]


CRASH_CHILD = textwrap.dedent("""
    import os, signal, sys
    from engine import Engine
    engine = Engine.open(sys.argv[1], wal_segment_bytes=1 << 16, map_size_bytes=1 << 30)
    replica = engine.replica("Replicated", sys.argv[2])
    replica._stop.set()          # the replica falls behind ...
    replica._thread.join()
    table = engine.table("Replicated")
    for n in range(3000):        # ... while the WAL rolls over many 64 KiB segments
        table.put_item({"pk": "c", "sk": n, "v": "y" * 100})
    print(engine.table("Replicated").partitions[0].applied_lsn, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_replica_catches_up_after_restart_and_sigkill(tmp_path):
    data_dir = tmp_path / "data"
    with Engine.open(data_dir, **OPTIONS) as engine:
        make_table(engine)
        replica_id = engine.add_replica("Replicated", "p0000", tmp_path / "volume")["replica_id"]
    with Engine.open(data_dir, **OPTIONS) as engine:  # a clean restart
        (described,) = engine.describe_replicas("Replicated")
        assert described["replica_id"] == replica_id and described["status"] == "ACTIVE"
        engine.table("Replicated").put_item({"pk": "after", "sk": 1})
        wait_caught_up(engine, "Replicated", replica_id)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    child = subprocess.run([sys.executable, "-c", CRASH_CHILD, str(data_dir), replica_id],
                           capture_output=True, text=True, env=env, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    crashed_lsn = int(child.stdout.split()[0])
    with Engine.open(data_dir, **OPTIONS) as engine:
        partition = engine.table("Replicated").partitions[0]
        assert partition.applied_lsn == crashed_lsn
        wait_caught_up(engine, "Replicated", replica_id)
        assert replica_items(engine, "Replicated", replica_id) == list(
            partition.iter_range(b"", None))
        described = engine.describe_replicas("Replicated")[0]
        assert described["status"] == "ACTIVE"
        # Caught up from the WAL the partition kept for it (not rebuilt by a new copy).
        assert described["records_applied"] >= 3000


def test_remove_replica_releases_everything(engine, tmp_path):
    table = make_table(engine)
    info = engine.add_replica("Replicated", "p0000", tmp_path / "volume")
    partition = table.partitions[0]
    assert partition._holds
    engine.remove_replica("Replicated", info["replica_id"])
    assert not partition._holds
    assert not Path(info["dir"]).exists()
    assert engine.describe_replicas("Replicated") == []
    assert engine.catalog.get_table("Replicated")["replicas"] == []
    with pytest.raises(ResourceNotFoundException):
        engine.remove_replica("Replicated", info["replica_id"])


def test_bad_replica_calls(engine, tmp_path):
    make_table(engine)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValidationException):
        engine.add_replica("Replicated", "p0009", tmp_path / "volume")
    with pytest.raises(ValidationException, match="not writable"):
        engine.add_replica("Replicated", "p0000", blocker / "volume")
    assert engine.describe_replicas("Replicated") == []
    assert engine.catalog.get_table("Replicated").get("pending_dirs", []) == []


def test_split_drops_the_partitions_replicas(engine, tmp_path):
    make_table(engine)
    info = engine.add_replica("Replicated", "p0000", tmp_path / "volume")
    engine.split_partition("Replicated", "p0000")
    assert engine.describe_replicas("Replicated") == []
    assert not Path(info["dir"]).exists()
    assert engine.catalog.get_table("Replicated")["replicas"] == []


def test_backup_sourced_from_a_replica(engine, tmp_path, monkeypatch):
    from backup_helpers import read_backup_items

    from engine.partition import open_environment
    from engine.replica import ReplicaSnapshot

    engine.create_table("Replicated", partition_key=("pk", "S"), sort_key=("sk", "N"),
                        partitions=2)
    table = engine.table("Replicated")
    table.batch_write(puts=[{"pk": f"k{n % 7}", "sk": n, "v": n} for n in range(400)])
    info = engine.add_replica("Replicated", "p0000", tmp_path / "volume")
    replica = engine.replica("Replicated", info["replica_id"])
    replica.stop(release_hold=False)  # behind the partition: the backup must catch up
    table.batch_write(puts=[{"pk": f"k{n % 7}", "sk": n, "v": -n} for n in range(400, 600)])
    copies = []
    real_copy = ReplicaSnapshot.export_copy

    def counting_copy(self, dest, **kwargs):
        copies.append(self.lsn)
        return real_copy(self, dest, **kwargs)

    monkeypatch.setattr(ReplicaSnapshot, "export_copy", counting_copy)
    # Reopen the stopped replica without its follower, so it stays behind.
    replica.env, replica.items_db, replica.meta_db = open_environment(
        replica.directory / "lmdb", map_size=1 << 30)
    replica.status = "ACTIVE"
    with pytest.raises(ValidationException):
        engine.create_backup("Replicated", "bad-source", source="mirror")
    backup_lsn = table.partitions[0].applied_lsn
    backup = engine.create_backup("Replicated", "from-replica", source="replica")
    table.put_item({"pk": "late", "sk": 1})  # after the backup's snapshots: not in it
    done = engine.wait_for_backup(backup["backup_id"], timeout=60)
    assert done["status"] == "AVAILABLE", done
    assert len(copies) == 1  # p0000 from its replica, p0001 from the partition
    assert copies[0] < backup_lsn  # the replica was behind: caught up from the WAL
    backed_up = sorted((item["pk"], int(item["sk"]), int(item["v"]))
                       for item in read_backup_items(engine.backup_store, backup["backup_id"]))
    expected = sorted((item["pk"], int(item["sk"]), int(item["v"]))
                      for item in table.iter_items() if item["pk"] != "late")
    assert backed_up == expected
