"""Engine speed against raw py-lmdb doing the same work, side by side in one run.

Run: .venv/bin/python -m pytest bench/bench_engine.py --benchmark-only
(TESSERA_BENCH_ITEMS sets the item count; default 1,000,000 items of ~100-200 bytes.)

Baselines (same keys in the same random arrival order, values of the same size,
pre-encoded bytes, one LMDB environment, same batch size per write transaction):
- bulk load: Tessera ``batch_write`` (sync="batch") vs raw ``txn.put``;
- point reads: ``get_item`` with decode vs raw ``txn.get``;
- full scan: ``iter_items`` (decoded) vs a raw cursor walk.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import lmdb
import pytest

from engine import Engine
from engine.table import encode_item

ITEMS = int(os.environ.get("TESSERA_BENCH_ITEMS", "1000000"))
BATCH = 1000
GETS = min(ITEMS, 200_000)
PARTITIONS = 4


def make_items(count: int) -> list[dict]:
    rng = random.Random(7)
    return [
        {
            "id": f"{rng.getrandbits(64):016x}",
            "name": f"user {n}",
            "score": rng.randint(0, 10**9),
            "payload": rng.randbytes(rng.randint(40, 120)),
            "active": bool(n & 1),
        }
        for n in range(count)
    ]


@pytest.fixture(scope="module")
def items():
    return make_items(ITEMS)


@pytest.fixture(scope="module")
def raw_pairs(items):
    # The raw baseline gets the same keys (as bytes) and equally sized, pre-encoded values.
    return [(key, encode_item(item, table="bench", key=key))
            for key, item in ((item["id"].encode(), item) for item in items)]


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def load_tessera(path: Path, items: list[dict]) -> Engine:
    engine = Engine.open(path)
    engine.create_table("Bench", partition_key=("id", "S"), partitions=PARTITIONS, sync="batch")
    table = engine.table("Bench")
    for start in range(0, len(items), BATCH):
        table.batch_write(puts=items[start:start + BATCH])
    return engine


def load_raw(path: Path, pairs) -> lmdb.Environment:
    env = lmdb.open(str(path), map_size=16 << 30, sync=False, metasync=False)
    for start in range(0, len(pairs), BATCH):
        with env.begin(write=True) as txn:
            for key, value in pairs[start:start + BATCH]:
                txn.put(key, value)
    return env


@pytest.mark.benchmark(group="bulk-load")
def test_bulk_load_tessera(benchmark, items, workdir):
    counter = iter(range(100))

    def run():
        engine = load_tessera(workdir / f"t{next(counter)}", items)
        engine.close()

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["items_per_s"] = ITEMS / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="bulk-load")
def test_bulk_load_raw_lmdb(benchmark, raw_pairs, workdir):
    counter = iter(range(100))

    def run():
        env = load_raw(workdir / f"r{next(counter)}", raw_pairs)
        env.close()

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["items_per_s"] = ITEMS / benchmark.stats.stats.mean


@pytest.fixture(scope="module")
def loaded(items, raw_pairs):
    path = Path(tempfile.mkdtemp(prefix="tessera-bench-read-"))
    engine = load_tessera(path / "t", items)
    env = load_raw(path / "r", raw_pairs)
    rng = random.Random(11)
    picks = [rng.randrange(ITEMS) for _ in range(GETS)]
    yield engine, env, picks
    engine.close()
    env.close()
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.benchmark(group="point-get")
def test_get_item_tessera(benchmark, loaded, items):
    engine, _, picks = loaded
    table = engine.table("Bench")
    keys = [{"id": items[i]["id"]} for i in picks]

    def run():
        get = table.get_item
        for key in keys:
            get(key)

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["items_per_s"] = GETS / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="point-get")
def test_get_raw_lmdb(benchmark, loaded, raw_pairs):
    _, env, picks = loaded
    keys = [raw_pairs[i][0] for i in picks]

    def run():
        with env.begin() as txn:
            get = txn.get
            for key in keys:
                get(key)

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["items_per_s"] = GETS / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="point-get")
def test_get_raw_lmdb_txn_per_get(benchmark, loaded, raw_pairs):
    """Raw py-lmdb with one read transaction per get, as independent requests need: the
    gap to ``test_get_raw_lmdb`` is LMDB's own per-request cost (for orientation; the
    target stays against the one-transaction loop)."""
    _, env, picks = loaded
    keys = [raw_pairs[i][0] for i in picks]

    def run():
        begin = env.begin
        for key in keys:
            with begin() as txn:
                txn.get(key)

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["items_per_s"] = GETS / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="scan")
def test_scan_tessera(benchmark, loaded):
    engine, _, _ = loaded
    table = engine.table("Bench")

    def run():
        count = 0
        for _ in table.iter_items():
            count += 1
        assert count == ITEMS

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["items_per_s"] = ITEMS / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="scan")
def test_scan_raw_lmdb(benchmark, loaded):
    _, env, _ = loaded

    def run():
        count = 0
        with env.begin() as txn:
            for _ in txn.cursor().iternext():
                count += 1
        assert count == ITEMS

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["items_per_s"] = ITEMS / benchmark.stats.stats.mean
