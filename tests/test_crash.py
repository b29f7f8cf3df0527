"""Crash safety: SIGKILL a writer at random points; every acknowledged write survives and no
WAL record (batch) is ever partly applied."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from crash_writer import batch_of, batch_size

from engine import Engine

WRITER = Path(__file__).with_name("crash_writer.py")
ROUNDS = 24


def run_and_kill(data_dir: Path, first_batch: int, rng: random.Random) -> tuple[list[int], list[int]]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    child = subprocess.Popen(
        [sys.executable, str(WRITER), str(data_dir), str(first_batch)],
        stdout=subprocess.PIPE, env=env, text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    time.sleep(rng.uniform(0.01, 0.3))
    child.send_signal(signal.SIGKILL)
    output = child.stdout.read()
    child.wait()
    acked, deleted = [], []
    for line in output.splitlines():
        kind, _, number = line.partition(" ")
        if kind == "ack" and number.isdigit():
            acked.append(int(number))
        elif kind == "del" and number.isdigit():
            deleted.append(int(number))
    return acked, deleted


def test_sigkill_never_loses_acknowledged_writes(tmp_path):
    rng = random.Random(1234)
    data_dir = tmp_path / "data"
    acknowledged: set[int] = set()
    deleted: set[int] = set()
    next_batch = 0
    for _ in range(ROUNDS):
        acked, dels = run_and_kill(data_dir, next_batch, rng)
        acknowledged.update(acked)
        deleted.update(dels)
        with Engine.open(data_dir) as engine:
            table = engine.table("Crash")
            present: dict[int, set[int]] = {}
            for item in table.iter_items():
                present.setdefault(batch_of(item["pk"]), set()).add(int(item["sk"]))
            for batch, sks in present.items():
                full = set(range(batch_size(batch)))
                allowed = [full]
                if (batch + 1) % 7 == 0:  # the writer deletes sk 0 of this batch later
                    allowed.append(full - {0})
                if batch % 5 == 0 and batch not in acknowledged:
                    allowed.append({0})  # put_item done, batch_write not yet: two records
                assert sks in allowed, f"batch {batch} partly applied: {sorted(sks)}"
            for batch in acknowledged:
                only_item_deleted = batch_size(batch) == 1 and (batch + 1) % 7 == 0
                assert batch in present or only_item_deleted, f"acknowledged batch {batch} lost"
                if batch in deleted:
                    assert 0 not in present.get(batch, ()), f"acknowledged delete in batch {batch} lost"
            next_batch = max([*present, *acknowledged], default=-1) + 1
    assert len(acknowledged) > ROUNDS  # the writer made progress in most rounds
    assert any(batch % 3 == 0 for batch in acknowledged)  # long keys were written
