"""Long keys (key format 2, ``engine.longkeys``) against short keys and raw py-lmdb.

Run: .venv/bin/python -m pytest bench/bench_long_keys.py --benchmark-only

One partition key holding ``ROWS`` items, queried whole (``QUERIES`` times per round):

- ``short``: 8-byte sort keys — the common case; a format-2 table only checks each row's
  length (the ``raw`` baseline reads the same stored keys and values with a cursor);
- ``long-distinct``: 1024-byte sort keys that differ within their first 165 bytes, so
  they are compacted but in no shared bucket (stored order is already DynamoDB's);
- ``long-bucket``: 1024-byte sort keys sharing their first 900 bytes — one bucket, the
  worst case: every row's full key is decoded and the page is sorted in Python.

Writes: ``put_item`` of items with a 2048-byte partition key against 8-byte ones (the
compaction hashes the key with BLAKE2b).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import lmdb
import pytest

from engine import Engine

ROWS = 100
QUERIES = 200
PUTS = 2000


def sort_keys(kind: str) -> list[bytes]:
    if kind == "short":
        return [b"k%07d" % n for n in range(ROWS)]
    if kind == "long-distinct":
        return [b"%05d" % n + b"x" * 1019 for n in range(ROWS)]
    return [b"x" * 900 + b"%05d" % n + b"y" * 119 for n in range(ROWS)]


@pytest.fixture(scope="module")
def loaded():
    path = Path(tempfile.mkdtemp(prefix="tessera-bench-longkeys-"))
    engine = Engine.open(path / "data")
    for kind in ("short", "long-distinct", "long-bucket"):
        name = "Bench-" + kind
        engine.create_table(name, partition_key=("pk", "S"), sort_key=("sk", "B"),
                            partitions=1, sync="none")
        engine.table(name).batch_write(
            puts=[{"pk": "user", "sk": sk, "v": "x" * 40} for sk in sort_keys(kind)])
    # The raw baseline: the short table's stored keys and values, one environment.
    env = lmdb.open(str(path / "raw"), map_size=1 << 28, sync=False)
    [partition] = engine.table("Bench-short").partitions
    with partition.reader() as source, env.begin(write=True) as txn:
        for key, value in source.cursor():
            txn.put(key, value)
    yield engine, env
    engine.close()
    env.close()
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.benchmark(group="query-100")
@pytest.mark.parametrize("kind", ["short", "long-distinct", "long-bucket"])
def test_query_tessera(benchmark, loaded, kind):
    engine, _ = loaded
    table = engine.table("Bench-" + kind)
    want = sorted(sort_keys(kind))

    def run():
        for _ in range(QUERIES):
            items = table.query_page("user").items
        assert [item["sk"] for item in items] == want

    benchmark.pedantic(run, rounds=5, iterations=1)
    benchmark.extra_info["queries_per_s"] = QUERIES / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="query-100")
def test_query_raw_lmdb(benchmark, loaded):
    _, env = loaded

    def run():
        for _ in range(QUERIES):
            with env.begin() as txn:
                rows = list(txn.cursor().iternext())
        assert len(rows) == ROWS

    benchmark.pedantic(run, rounds=5, iterations=1)
    benchmark.extra_info["queries_per_s"] = QUERIES / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="put")
@pytest.mark.parametrize("pk_bytes", [8, 2048])
def test_put_item(benchmark, tmp_path, pk_bytes):
    counter = iter(range(100))

    def run():
        with Engine.open(tmp_path / f"d{next(counter)}") as engine:
            engine.create_table("Puts", partition_key=("pk", "S"), partitions=1, sync="none")
            put = engine.table("Puts").put_item
            for n in range(PUTS):
                name = f"{n:08d}"
                put({"pk": name + "p" * (pk_bytes - len(name)), "v": 1})

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["puts_per_s"] = PUTS / benchmark.stats.stats.mean
