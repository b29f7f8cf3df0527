"""Live repartitioning and replica speed (SPEC §10), each against a baseline in the same run.

Run: .venv/bin/python -m pytest bench/bench_repartition.py --benchmark-only -s
(TESSERA_BENCH_SPLIT_MIB sets the partition size; default 256 MiB, 1024 for 1 GiB.)

- split: time to split one partition of that size while a writer thread runs, and the
  writer's throughput during the split relative to the same writer with nothing else
  running (target ≥ 0.5×), in ``extra_info``;
- replica catch-up: a replica that fell behind by ``CATCH_UP_RECORDS`` WAL records
  catches up; rate in WAL records/s.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from engine import Engine

SPLIT_MIB = int(os.environ.get("TESSERA_BENCH_SPLIT_MIB", "256"))
ITEM_BYTES = 1024
BATCH = 1000
CATCH_UP_RECORDS = 50_000
BASELINE_SECONDS = 3.0


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def load(table, count: int) -> None:
    rng = random.Random(7)
    for start in range(0, count, BATCH):
        table.batch_write(puts=[
            {"pk": f"{rng.getrandbits(64):016x}", "payload": rng.randbytes(ITEM_BYTES)}
            for _ in range(min(BATCH, count - start))
        ])


class Writer:
    """One thread of single-item puts; counts acknowledged writes."""

    def __init__(self, table) -> None:
        self.table = table
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        rng = random.Random(11)
        while not self.stop.is_set():
            self.table.put_item({"pk": f"w{rng.getrandbits(48):012x}",
                                 "payload": rng.randbytes(200)})
            self.count += 1

    def measure(self, during) -> tuple[float, float]:
        """Run ``during()`` with the writer going; returns (seconds, writes per second)."""
        self.count = 0
        self.stop.clear()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()
        started = time.perf_counter()
        during()
        elapsed = time.perf_counter() - started
        self.stop.set()
        self.thread.join()
        return elapsed, self.count / elapsed


def test_split_large_partition(benchmark, workdir):
    engine = Engine.open(workdir / "data", map_size_bytes=8 << 30)
    try:
        engine.create_table("Bench", partitions=1)
        table = engine.table("Bench")
        load(table, (SPLIT_MIB << 20) // ITEM_BYTES)
        # Start both measurements from a clean page cache: the load leaves hundreds of MiB
        # dirty, whose writeback would otherwise land on whichever runs first.
        table.partitions[0].checkpoint()
        os.sync()
        writer = Writer(table)
        _, baseline_rate = writer.measure(lambda: time.sleep(BASELINE_SECONDS))
        os.sync()
        result = {}

        def split():
            result["seconds"], result["rate"] = writer.measure(
                lambda: engine.split_partition("Bench", "p0000"))

        benchmark.pedantic(split, rounds=1, iterations=1)
        benchmark.extra_info.update({
            "partition_mib": SPLIT_MIB,
            "split_seconds": round(result["seconds"], 2),
            "writes_per_s_baseline": round(baseline_rate),
            "writes_per_s_during_split": round(result["rate"]),
            "throughput_ratio": round(result["rate"] / baseline_rate, 2),
        })
        print(f"\nsplit {SPLIT_MIB} MiB: {result['seconds']:.2f} s; writes/s "
              f"{baseline_rate:.0f} alone, {result['rate']:.0f} during the split "
              f"({result['rate'] / baseline_rate:.2f}x)")
    finally:
        engine.close()


def test_replica_catch_up_rate(benchmark, workdir):
    engine = Engine.open(workdir / "data", map_size_bytes=2 << 30)
    try:
        engine.create_table("Bench", partitions=1, sync="none")
        table = engine.table("Bench")
        load(table, 10_000)
        info = engine.add_replica("Bench", "p0000", workdir / "volume")
        replica = engine.replica("Bench", info["replica_id"])
        replica.stop(release_hold=False)  # fall behind (the WAL stays held)
        rng = random.Random(3)
        for _ in range(CATCH_UP_RECORDS):
            table.put_item({"pk": f"{rng.getrandbits(64):016x}", "payload": rng.randbytes(200)})
        target = table.partitions[0].applied_lsn
        behind = target - replica.applied_lsn

        def catch_up():
            replica._stop.clear()
            replica.start()
            assert replica.wait_for(target, timeout=300)

        started = time.perf_counter()
        benchmark.pedantic(catch_up, rounds=1, iterations=1)
        elapsed = time.perf_counter() - started
        benchmark.extra_info.update({
            "records": behind, "records_per_s": round(behind / elapsed),
        })
        print(f"\nreplica caught up {behind} WAL records in {elapsed:.2f} s "
              f"({behind / elapsed:.0f} records/s)")
    finally:
        engine.close()
