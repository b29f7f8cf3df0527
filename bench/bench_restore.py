"""Restore throughput against the backup throughput of the same table, in the same run.

Run: ``.venv/bin/pytest bench/bench_restore.py`` (not part of the normal test run; set
``TESSERA_BENCH_MIB`` to change the ~256 MiB of LMDB data, ``TESSERA_BENCH_PARTITIONS``
the partition count, default 4). One fixed-seed table (JSON-like string attributes,
~150-byte items) and, for the local store and a loopback ``rclone serve s3``:

* ``backup_<store>``           create_backup → AVAILABLE (export, package, verify, upload)
* ``restore_<store>``          restore_table → ACTIVE, same layout (the direct import)
* ``restore_split_<store>``    restore_table into twice the partitions (rewrites items)

MB/s is the table's LMDB data bytes (pages in use, 1 MB = 10^6 bytes) per second; the
last test prints every row and each restore's ratio to its store's backup (target ≥ 1.0).
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import time
from pathlib import Path

import pytest

from engine import Engine

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from s3_servers import ACCESS_KEY, SECRET_KEY, RcloneS3Server, find_rclone  # noqa: E402

SEED = 20241122
TARGET_MIB = int(os.environ.get("TESSERA_BENCH_MIB", "256"))
PARTITIONS = int(os.environ.get("TESSERA_BENCH_PARTITIONS", "4"))
ROUNDS = 2
GROUP = f"restore-{TARGET_MIB}MiB"
RESULTS: dict[str, float] = {}  # name -> MB/s (best round)
_names = itertools.count()


def _fill(engine: Engine) -> int:
    rnd = random.Random(SEED)
    words = ["".join(rnd.choices("abcdefghijklmnopqrstuvwxyz", k=rnd.randint(3, 9)))
             for _ in range(2000)]
    engine.create_table("Bench", partition_key=("user", "S"), sort_key=("seq", "N"),
                        partitions=PARTITIONS, sync="none")
    table = engine.table("Bench")
    n = 0
    while engine.describe_table("Bench")["size_bytes"] < TARGET_MIB << 20:
        table.batch_write(puts=[{
            "user": f"user-{rnd.randrange(10**6):06d}", "seq": n + i,
            "name": " ".join(rnd.choices(words, k=3)), "city": rnd.choice(words),
            "tags": " ".join(rnd.choices(words, k=rnd.randint(2, 8))),
            "score": rnd.randrange(10**6),
        } for i in range(5000)])
        n += 5000
    return engine.describe_table("Bench")["size_bytes"]


@pytest.fixture(scope="module")
def rclone(tmp_path_factory):
    if find_rclone() is None:
        pytest.skip("rclone not installed")
    server = RcloneS3Server(tmp_path_factory.mktemp("rclone") / "data").start()
    server.create_bucket("bench")
    yield server
    server.stop()


def _open_store(kind: str, root: Path, rclone) -> object:
    if kind == "local":
        return str(root / "backups")
    from engine.store.s3 import S3Store

    return S3Store("bench", "tessera", endpoint_url=rclone.endpoint_url,
                   aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


@pytest.fixture(scope="module", params=["local", "rclone"])
def setup(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"bench-restore-{request.param}")
    rclone = request.getfixturevalue("rclone") if request.param == "rclone" else None
    engine = Engine.open(root / "data", backup_store=_open_store(request.param, root, rclone),
                         backup_parallelism=2)
    data_bytes = _fill(engine)
    state = {"kind": request.param, "engine": engine, "data_bytes": data_bytes,
             "backup_id": None}
    yield state
    engine.close()


def _record(benchmark, name: str, data_bytes: int) -> None:
    RESULTS[name] = data_bytes / benchmark.stats.stats.min / 1e6
    benchmark.extra_info["MB_per_s"] = round(RESULTS[name], 1)
    benchmark.extra_info["lmdb_data_bytes"] = data_bytes


@pytest.mark.benchmark(group=GROUP)
def test_backup(benchmark, setup):
    engine = setup["engine"]

    def backup() -> None:
        backup_id = engine.create_backup("Bench", f"bench-{next(_names)}")["backup_id"]
        assert engine.wait_for_backup(backup_id)["status"] == "AVAILABLE"
        setup["backup_id"] = backup_id

    benchmark.pedantic(backup, rounds=ROUNDS, iterations=1)
    _record(benchmark, f"backup_{setup['kind']}", setup["data_bytes"])


def _restore(setup, partitions: int | None) -> None:
    engine = setup["engine"]
    name = f"Restored-{next(_names)}"
    engine.restore_table(setup["backup_id"], name, partitions=partitions)
    done = engine.wait_for_table(name, timeout=3600)
    assert done["status"] == "ACTIVE", done.get("failure_reason")
    setup["last"] = name


def _drop_last(setup) -> None:
    if setup.get("last"):
        setup["engine"].delete_table(setup.pop("last"))


@pytest.mark.benchmark(group=GROUP)
def test_restore(benchmark, setup):
    benchmark.pedantic(_restore, args=(setup, None), setup=lambda: _drop_last(setup),
                       rounds=ROUNDS, iterations=1)
    _drop_last(setup)
    _record(benchmark, f"restore_{setup['kind']}", setup["data_bytes"])


@pytest.mark.benchmark(group=GROUP)
def test_restore_split(benchmark, setup):
    benchmark.pedantic(_restore, args=(setup, PARTITIONS * 2), setup=lambda: _drop_last(setup),
                       rounds=ROUNDS, iterations=1)
    _drop_last(setup)
    _record(benchmark, f"restore_split_{setup['kind']}", setup["data_bytes"])


def test_report():
    time.sleep(0)
    print(f"\nrestore vs backup, {TARGET_MIB} MiB of LMDB data, {PARTITIONS} partitions")
    for name, rate in RESULTS.items():
        kind = name.rsplit("_", 1)[1]
        base = RESULTS.get(f"backup_{kind}")
        ratio = f"{rate / base:5.2f}x backup" if base and not name.startswith("backup") else ""
        print(f"  {name:<24} {rate:8.1f} MB/s  {ratio}")
