"""Secondary-index speed (issue 14), each against a baseline measured in the same run.

Run: .venv/bin/python -m pytest bench/bench_indexes.py --benchmark-only
(TESSERA_BENCH_INDEX_ITEMS sets the item count; default 100,000 items of ~100 bytes.)

- write throughput with 0 (the baseline), 1 and 2 GSIs: ``batch_write`` of 100 items at a
  time (sync="batch") into an empty table, the follower applying the outbox beside it in
  the same process; ``catch_up_s`` is the extra time until the GSIs hold everything;
- GSI lag under a sustained write load: ``put_item`` from two threads for
  LAG_SECONDS, then the follower's write-to-index delay percentiles (p50, p99);
  the baseline is the same load with no GSI (its put latency percentiles);
- backfill items/s of an online ``create_global_index`` (unpaced) against a bulk load of
  the same items into a table of the same shape as the index (keyed by the index key
  and the base key).
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

ITEMS = int(os.environ.get("TESSERA_BENCH_INDEX_ITEMS", "100000"))
BATCH = 100
LAG_SECONDS = 3.0
GSI_GROUP = {"name": "byGroup", "key_schema": [("grp", "S"), ("score", "N")],
             "projection": "KEYS_ONLY"}
GSI_CITY = {"name": "byCity", "key_schema": [("city", "S")], "projection": "ALL"}


def make_items(count: int) -> list[dict]:
    rng = random.Random(7)
    return [{"id": f"{rng.getrandbits(64):016x}", "grp": f"g{rng.randrange(500)}",
             "score": rng.randrange(10**6), "city": f"c{rng.randrange(2000)}",
             "payload": rng.randbytes(rng.randint(30, 60))} for _ in range(count)]


@pytest.fixture(scope="module")
def items():
    return make_items(ITEMS)


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="tessera-bench-idx-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def open_engine(path: Path, **options) -> Engine:
    return Engine.open(path, map_size_bytes=4 << 30, **options)


def bulk_load(table, items: list[dict]) -> None:
    for start in range(0, len(items), BATCH):
        table.batch_write(puts=items[start:start + BATCH])


@pytest.mark.benchmark(group="index-write")
@pytest.mark.parametrize("gsis", [0, 1, 2])
def test_write_throughput_with_gsis(benchmark, items, workdir, gsis):
    engine = open_engine(workdir / "w")
    engine.create_table("Bench", ("id", "S"), partitions=4,
                        global_indexes=[GSI_GROUP, GSI_CITY][:gsis])

    def run():
        bulk_load(engine.table("Bench"), items)

    benchmark.pedantic(run, rounds=1, iterations=1)
    started = time.perf_counter()
    engine.wait_for_index_catch_up("Bench")
    catch_up = time.perf_counter() - started
    engine.close()
    benchmark.extra_info["items_per_s"] = ITEMS / benchmark.stats.stats.mean
    benchmark.extra_info["catch_up_s"] = catch_up


def _sustained_puts(engine, items: list[dict], seconds: float) -> list[float]:
    """Two threads putting items one by one for ``seconds``; returns put latencies (s)."""
    table = engine.table("Bench")
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    def writer(offset: int) -> None:
        local = []
        index = offset
        while time.perf_counter() < stop:
            started = time.perf_counter()
            table.put_item(items[index % len(items)])
            local.append(time.perf_counter() - started)
            index += 2
        latencies.extend(local)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(latencies)


@pytest.mark.benchmark(group="index-lag")
@pytest.mark.parametrize("gsis", [0, 1])
def test_gsi_lag_under_sustained_writes(benchmark, items, workdir, gsis):
    engine = open_engine(workdir / "lag")
    engine.create_table("Bench", ("id", "S"), partitions=4,
                        global_indexes=[GSI_GROUP][:gsis])
    result: dict = {}

    def run():
        engine.reset_index_lag()
        latencies = _sustained_puts(engine, items, LAG_SECONDS)
        engine.wait_for_index_catch_up("Bench")
        result["puts"] = len(latencies)
        result["put_p50_ms"] = latencies[len(latencies) // 2] * 1e3
        result["put_p99_ms"] = latencies[int(len(latencies) * 0.99)] * 1e3
        result.update({f"lag_{k}_ms" if k != "samples" else "lag_samples":
                       (v * 1e3 if k != "samples" else v)
                       for k, v in engine.index_lag().items()})

    benchmark.pedantic(run, rounds=1, iterations=1)
    engine.close()
    benchmark.extra_info.update(result)
    benchmark.extra_info["puts_per_s"] = result["puts"] / LAG_SECONDS


@pytest.mark.benchmark(group="index-backfill")
def test_backfill_online(benchmark, items, workdir):
    engine = open_engine(workdir / "bf", index_backfill_pace=0)
    engine.create_table("Bench", ("id", "S"), partitions=4)
    bulk_load(engine.table("Bench"), items)
    counter = iter(range(100))

    def run():
        name = f"byGroup{next(counter)}"
        engine.create_global_index("Bench", {**GSI_GROUP, "name": name})
        assert engine.wait_for_index("Bench", name)["item_count"] == ITEMS

    benchmark.pedantic(run, rounds=1, iterations=1)
    engine.close()
    benchmark.extra_info["items_per_s"] = ITEMS / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="index-backfill")
def test_bulk_load_into_a_table_shaped_like_the_index(benchmark, items, workdir):
    shaped = [{"grp": item["grp"], "key": f"{item['score']:07d}#{item['id']}",
               "score": item["score"], "id": item["id"]} for item in items]
    engine = open_engine(workdir / "b")
    engine.create_table("Shaped", ("grp", "S"), ("key", "S"), partitions=2)

    def run():
        bulk_load(engine.table("Shaped"), shaped)

    benchmark.pedantic(run, rounds=1, iterations=1)
    engine.close()
    benchmark.extra_info["items_per_s"] = ITEMS / benchmark.stats.stats.mean
