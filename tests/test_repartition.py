"""Live split, merge and move (SPEC §10): exactly-once under concurrent writers, crash
safety at every step, bad calls refused, a racing backup restarts."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from backup_helpers import read_backup_items

import engine.backup.create as backup_create
from engine import Engine
from engine.errors import ResourceInUseException, ValidationException
from engine.repartition import CRASH_POINT_ENV

CHILD = Path(__file__).with_name("repartition_crash_child.py")
OPTIONS = {"wal_segment_bytes": 1 << 16, "map_size_bytes": 1 << 30}


def make_table(engine, name="Repart", partitions=2, items=600):
    engine.create_table(name, partition_key=("pk", "S"), sort_key=("sk", "N"),
                        partitions=partitions)
    table = engine.table(name)
    model = {}
    for sk in range(items):
        item = {"pk": f"k{sk % 13}", "sk": sk, "v": 0}
        model[(item["pk"], sk)] = item
    table.batch_write(puts=list(model.values()))
    return table, model


def check_table(table, model) -> None:
    """A full ordered scan equals the model: every acknowledged write exactly once, and
    every item lives in the partition whose interval owns its key."""
    items = list(table.iter_items())
    keys = [table.schema.key_of_item(item) for item in items]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert {(item["pk"], int(item["sk"])): int(item["v"]) for item in items} == {
        key: int(item["v"]) for key, item in model.items()
    }
    for interval, partition in zip(table.partition_map, table.partitions, strict=True):
        for key, _ in partition.iter_range(b"", None):
            assert interval.contains(key)


class Writers:
    """Threads writing (put, delete, batch) their own keys; the model is what was acked.

    Entering waits until every thread has finished a round (written or read once), and
    leaving waits for one more round of each, so the operations in between overlap real
    traffic; a thread's exception fails the test on exit.
    """

    def __init__(self, table, model, count=2):
        self.table = table
        self.model = model
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.writes = 0
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(count)]
        self.threads.append(threading.Thread(target=self.read))
        self.rounds = [0] * len(self.threads)  # loops finished, per thread
        self.progress = threading.Condition()

    def _round_done(self, index: int) -> None:
        with self.progress:
            self.rounds[index] += 1
            self.progress.notify_all()

    def _wait_for_rounds(self, targets: list[int]) -> None:
        with self.progress:
            reached = self.progress.wait_for(
                lambda: self.errors or all(
                    done >= target for done, target in zip(self.rounds, targets, strict=True)),
                timeout=60)
        assert reached and not self.errors, self.errors or f"threads stalled: {self.rounds}"

    def run(self, number: int) -> None:
        rng = random.Random(number)
        try:
            while not self.stop.is_set():
                sk = 10_000 + number * 100_000 + rng.randrange(3000)
                pk = f"k{rng.randrange(13)}"
                roll = rng.random()
                if roll < 0.6:
                    item = {"pk": pk, "sk": sk, "v": rng.randrange(1 << 30)}
                    self.table.put_item(item)
                    with self.lock:
                        self.model[(pk, sk)] = item
                elif roll < 0.8:
                    self.table.delete_item({"pk": pk, "sk": sk})
                    with self.lock:
                        self.model.pop((pk, sk), None)
                else:
                    puts = [{"pk": f"k{rng.randrange(13)}", "sk": 10_000 + number * 100_000 + s,
                             "v": rng.randrange(1 << 30)} for s in rng.sample(range(3000), 8)]
                    self.table.batch_write(puts=puts)
                    with self.lock:
                        for item in puts:
                            self.model[(item["pk"], item["sk"])] = item
                self.writes += 1
                self._round_done(number)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.errors.append(err)
            self._round_done(number)  # wakes a waiting test

    def read(self) -> None:
        try:
            while not self.stop.is_set():
                self.table.get_item({"pk": "k1", "sk": 1})
                page, _ = self.table.scan(limit=50)
                assert page
                self._round_done(len(self.threads) - 1)
        except BaseException as err:  # noqa: BLE001
            self.errors.append(err)
            self._round_done(len(self.threads) - 1)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        self._wait_for_rounds([1] * len(self.threads))
        return self

    def __exit__(self, *exc):
        try:
            with self.progress:
                targets = [rounds + 1 for rounds in self.rounds]
            self._wait_for_rounds(targets)
        finally:
            self.stop.set()
        for thread in self.threads:
            thread.join()
        assert not self.errors, self.errors


def test_split_merge_move_keep_every_acknowledged_write_once(engine, tmp_path):
    table, model = make_table(engine)
    with Writers(table, model) as writers:
        left, right = engine.split_partition("Repart", "p0000")
        assert table.partition_map.partition_ids() == [left, right, "p0001"]
        before = writers.writes
        a, b = engine.split_partition("Repart", right, at=table.partition_map.intervals[1].start
                                      + b"\x80")
        merged = engine.merge_partitions("Repart", left, a)
        moved = engine.move_partition("Repart", merged, tmp_path / "volume")
        assert writers.writes > before  # writes kept flowing during the operations
    assert table.partition_map.partition_ids() == [moved, b, "p0001"]
    check_table(table, model)
    record = engine.catalog.get_table("Repart")
    assert record["partition_dirs"][moved].startswith(str((tmp_path / "volume").resolve()))
    assert record["pending_dirs"] == []
    table_dir = engine.table_directory("Repart")
    assert sorted(os.listdir(table_dir)) == sorted([b, "p0001"])
    # And after a restart, from the catalog.
    engine.close()
    with Engine.open(tmp_path / "data", **OPTIONS) as reopened:
        reopened_table = reopened.table("Repart")
        assert reopened_table.partition_map.partition_ids() == [moved, b, "p0001"]
        check_table(reopened_table, model)
        reopened_table.put_item({"pk": "k0", "sk": 99, "v": 1})  # new partitions take writes


def test_split_at_key_dict_and_describe(engine):
    engine.create_table("Ranged", partition_key=("pk", "S"), sort_key=("sk", "N"),
                        partitions=1, partitioning="range")
    table = engine.table("Ranged")
    table.batch_write(puts=[{"pk": "hot", "sk": n} for n in range(100)])
    left, right = engine.split_partition("Ranged", "p0000", at={"pk": "hot", "sk": 50})
    assert len(list(table.partitions[0].iter_range(b"", None))) == 50
    assert len(list(table.partitions[1].iter_range(b"", None))) == 50
    assert engine.describe_table("Ranged")["partitions"] == 2
    assert [int(item["sk"]) for item in table.iter_items()] == list(range(100))


def test_bad_calls_change_nothing(engine, tmp_path):
    table, model = make_table(engine)
    record = engine.catalog.get_table("Repart")
    interval = table.partition_map.intervals[0]
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    bad_calls = [
        lambda: engine.split_partition("Repart", "p0000", at=interval.end),  # at its end
        lambda: engine.split_partition("Repart", "p0000", at=b""),  # at its start
        lambda: engine.split_partition("Repart", "p0001", at=b"\x00"),  # in another partition
        lambda: engine.split_partition("Repart", "p0009"),
        lambda: engine.merge_partitions("Repart", "p0001", "p0000"),  # wrong order
        lambda: engine.merge_partitions("Repart", "p0000", "p0000"),
        lambda: engine.move_partition("Repart", "p0000", not_a_dir / "volume"),
    ]
    for call in bad_calls:
        with pytest.raises(ValidationException):
            call()
    engine.split_partition("Repart", "p0000")
    ids = table.partition_map.partition_ids()
    with pytest.raises(ValidationException, match="not neighbours"):
        engine.merge_partitions("Repart", ids[0], ids[2])
    engine.create_table("Tiny", partitions=1)
    with pytest.raises(ValidationException, match="fewer than 2"):
        engine.split_partition("Tiny", "p0000")
    after = engine.catalog.get_table("Repart")
    assert after["next_partition_seq"] == record["next_partition_seq"] + 2
    assert after["pending_dirs"] == []
    assert sorted(os.listdir(engine.table_directory("Repart"))) == sorted(ids)
    check_table(table, model)


CRASHES = [
    ("split", "after_intent"), ("split", "after_copy"), ("split", "before_commit"),
    ("split", "after_commit"), ("merge", "locked"), ("merge", "after_swap"),
    ("move", "after_copy"), ("move", "after_commit"),
]


@pytest.mark.parametrize(("op", "point"), CRASHES)
def test_sigkill_during_repartition_gives_old_or_new_map(tmp_path, op, point):
    data_dir = tmp_path / "data"
    volume = tmp_path / "volume"
    with Engine.open(data_dir, **OPTIONS) as engine:
        _, model = make_table(engine)
        old_ids = engine.table("Repart").partition_map.partition_ids()
    args = {"split": ["p0000"], "merge": ["p0000", "p0001"], "move": ["p0001", str(volume)]}[op]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent),
               **{CRASH_POINT_ENV: point})
    child = subprocess.run(
        [sys.executable, str(CHILD), str(data_dir), op, *args],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert "finished" not in child.stdout
    acked: dict[tuple[str, int], int] = {}
    for line in child.stdout.splitlines():
        if line.startswith("ack "):
            _, pk, sk, version = line.split()
            acked[(pk, int(sk))] = int(version)
    with Engine.open(data_dir, **OPTIONS) as engine:
        table = engine.table("Repart")
        ids = table.partition_map.partition_ids()
        committed = point in ("after_commit", "after_swap")
        assert (ids != old_ids) == committed
        items = list(table.iter_items())
        keys = [table.schema.key_of_item(item) for item in items]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        found = {(item["pk"], int(item["sk"])): int(item["v"]) for item in items}
        assert set(found) == set(model)
        for key, version in acked.items():
            # Acknowledged is durable; at most one unacknowledged write more.
            assert version <= found[key] <= version + 1, key
        record = engine.catalog.get_table("Repart")
        assert record["pending_dirs"] == []
        table_dir = engine.table_directory("Repart")
        inside = [pid for pid in ids if pid not in record.get("partition_dirs", {})]
        assert sorted(os.listdir(table_dir)) == sorted(inside)
        if volume.exists():
            moved = [p for p in (volume / record["table_id"]).iterdir()] if (
                volume / record["table_id"]).exists() else []
            assert [str(p) for p in moved] == list(record.get("partition_dirs", {}).values())
        table.put_item({"pk": "k0", "sk": 0, "v": 12345})
        assert table.get_item({"pk": "k0", "sk": 0})["v"] == 12345


def test_split_during_backup_restarts_the_backup(engine, monkeypatch):
    table, model = make_table(engine, items=2000)
    split_done = threading.Event()
    real_export = backup_create.export_partition

    def slow_export(*args, **kwargs):
        split_done.wait(30)  # the first attempt exports only after the map changed
        return real_export(*args, **kwargs)

    monkeypatch.setattr(backup_create, "export_partition", slow_export)
    backup = engine.create_backup("Repart", "racing")
    new_ids = engine.split_partition("Repart", "p0000")
    split_done.set()
    done = engine.wait_for_backup(backup["backup_id"], timeout=60)
    assert done["status"] == "AVAILABLE", done
    run_items = read_backup_items(engine.backup_store, backup["backup_id"])
    assert len(run_items) == len(model)
    from engine.backup.manifest import BackupManifest, manifest_key

    key = manifest_key("", backup["backup_id"])
    manifest = BackupManifest.from_json(engine.backup_store.get(key), key)
    assert [p.partition_id for p in manifest.partitions] == [*new_ids, "p0001"]


def test_delete_table_is_refused_while_a_split_runs(engine, monkeypatch):
    table, model = make_table(engine)
    from engine.partition import Partition

    in_copy, release = threading.Event(), threading.Event()
    real_copy = Partition.export_copy

    def paused_copy(self, *args, **kwargs):
        in_copy.set()
        release.wait(30)
        return real_copy(self, *args, **kwargs)

    monkeypatch.setattr(Partition, "export_copy", paused_copy)
    result: list = []
    splitter = threading.Thread(
        target=lambda: result.append(engine.split_partition("Repart", "p0000")))
    splitter.start()
    try:
        assert in_copy.wait(30)
        with pytest.raises(ResourceInUseException, match="being repartitioned"):
            engine.delete_table("Repart")
    finally:
        release.set()
        splitter.join()
    assert len(result[0]) == 2
    check_table(table, model)  # the refused delete changed nothing
    engine.delete_table("Repart")
    assert "Repart" not in engine.list_tables()


def test_auto_split_past_a_size_threshold(tmp_path):
    with Engine.open(tmp_path / "data", auto_split_bytes=256 << 10, **OPTIONS) as engine:
        engine.auto_splitter.interval_seconds = 0.05
        table, model = make_table(engine, partitions=1, items=0)
        table.batch_write(puts=[{"pk": f"k{n % 13}", "sk": n, "v": "z" * 300}
                                for n in range(3000)])
        model.update({(f"k{n % 13}", n): {"v": "z" * 300} for n in range(3000)})
        deadline = time.monotonic() + 20
        while len(table.partition_map) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(table.partition_map) >= 4, engine.auto_splitter.last_error
        items = list(table.iter_items())
        assert len(items) == len(model) == 3000
    with Engine.open(tmp_path / "data", **OPTIONS) as engine:  # off by default
        assert engine.auto_splitter is None
