"""Packaging a partition, side by side with the shell pipelines it replaces.

Run: ``.venv/bin/pytest bench/bench_package.py`` (not part of the normal test run; set
``TESSERA_BENCH_MIB`` to change the ~256 MiB environment). One fixed-seed LMDB export
(JSON-like values, 100-200 bytes, compressible ~3x like real items) and, in one run:

* ``tessera_package``           package_partition_to_file (logical checksum, CRC32C,
                                tar, zstd -3 with 2 threads, fsync)
* ``tessera_verify``            verify_packaged_file (CRC32C, re-inflate, reopen with
                                py-lmdb, recount and re-hash every item)
* ``tessera_package_verify``    both, as a backup does before upload
* ``mdb_copy_zstd``             ``mdb_copy -c ENV | zstd -3 -T2 > file`` (lmdb-utils)
* ``zstd_data_mdb``             ``zstd -3 -T2`` of data.mdb alone: the floor

MB/s is data.mdb bytes / second (1 MB = 10^6 bytes); each row carries it in
``extra_info``, and the last test prints the table with ratios to the zstd floor.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import lmdb
import pytest

from engine.backup.manifest import PartitionManifest
from engine.backup.package import package_partition_to_file
from engine.backup.verify import verify_packaged_file

SEED = 20240601
TARGET_MIB = int(os.environ.get("TESSERA_BENCH_MIB", "256"))
ROUNDS = 3
GROUP = f"package-{TARGET_MIB}MiB"
BACKUP_LSN = 7
RESULTS: dict[str, float] = {}  # name -> MB/s (best round)


def _build_export(directory: Path) -> Path:
    rnd = random.Random(SEED)
    words = ["".join(rnd.choices("abcdefghijklmnopqrstuvwxyz", k=rnd.randint(3, 9)))
             for _ in range(2000)]
    live = directory / "live"
    env = lmdb.open(str(live), subdir=True, max_dbs=4, map_size=4 * TARGET_MIB << 20)
    items_db, meta_db = env.open_db(b"items"), env.open_db(b"meta")
    def used_bytes() -> int:  # what the compacted copy will hold (free pages dropped)
        with env.begin() as txn:
            stat = txn.stat(items_db)
        pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        return pages * stat["psize"]

    while used_bytes() < TARGET_MIB << 20:
        with env.begin(write=True) as txn:
            for _ in range(50_000):
                key = rnd.getrandbits(64).to_bytes(8, "big") + b"user#%08d" % rnd.randrange(
                    10**8)
                value = json.dumps({
                    "name": " ".join(rnd.choices(words, k=3)),
                    "n": rnd.randrange(10**6), "city": rnd.choice(words),
                    "tags": rnd.choices(words, k=rnd.randint(2, 8)),
                    "ok": rnd.random() < 0.5,
                }).encode()
                txn.put(key, value, db=items_db)
            txn.put(b"applied_lsn", BACKUP_LSN.to_bytes(8, "big"), db=meta_db)
    export = directory / "export"
    export.mkdir()
    env.copy(str(export), compact=True)  # what Partition.export_copy hands over
    env.close()
    shutil.rmtree(live)
    return export


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return _build_export(tmp_path_factory.mktemp("bench-package"))


@pytest.fixture(scope="module")
def data_bytes(export) -> int:
    return (export / "data.mdb").stat().st_size


def _manifest() -> PartitionManifest:
    return PartitionManifest(
        backup_id="bench", table_name="Bench", table_id="t", partition_id="p0",
        interval_start="", interval_end=None, key_schema=[["pk", "S"]],
        partitioning="hash", backup_lsn=BACKUP_LSN, object_key="bench/partitions/p0.tar.zst")


def _record(benchmark, name: str, data_bytes: int) -> None:
    best = benchmark.stats.stats.min
    RESULTS[name] = data_bytes / best / 1e6
    benchmark.extra_info["MB_per_s"] = round(RESULTS[name], 1)
    benchmark.extra_info["data_mdb_bytes"] = data_bytes


@pytest.mark.benchmark(group=GROUP)
def test_tessera_package(benchmark, export, data_bytes, tmp_path):
    out = tmp_path / "p0.tar.zst"
    result = benchmark.pedantic(package_partition_to_file, args=(export, _manifest(), out),
                                rounds=ROUNDS, iterations=1)
    benchmark.extra_info["ratio"] = round(result.object_size_bytes / data_bytes, 3)
    benchmark.extra_info["items"] = result.item_count
    _record(benchmark, "tessera_package", data_bytes)


@pytest.mark.benchmark(group=GROUP)
def test_tessera_verify(benchmark, export, data_bytes, tmp_path):
    out = tmp_path / "p0.tar.zst"
    manifest = package_partition_to_file(export, _manifest(), out).manifest
    verdict = benchmark.pedantic(verify_packaged_file, args=(out, manifest),
                                 rounds=ROUNDS, iterations=1)
    assert verdict.ok, verdict.message
    _record(benchmark, "tessera_verify", data_bytes)
    # The logical checksum alone, items/s, for the record.
    from engine.backup.logical import logical_checksum
    started = time.perf_counter()
    count, _ = logical_checksum(export)
    RESULTS["logical_checksum_items_per_s"] = count / (time.perf_counter() - started)


@pytest.mark.benchmark(group=GROUP)
def test_tessera_package_verify(benchmark, export, data_bytes, tmp_path):
    out = tmp_path / "p0.tar.zst"

    def package_and_verify():
        result = package_partition_to_file(export, _manifest(), out)
        verdict = verify_packaged_file(out, result.manifest)
        assert verdict.ok, verdict.message

    benchmark.pedantic(package_and_verify, rounds=ROUNDS, iterations=1)
    _record(benchmark, "tessera_package_verify", data_bytes)


@pytest.mark.benchmark(group=GROUP)
def test_mdb_copy_zstd(benchmark, export, data_bytes, tmp_path):
    if shutil.which("mdb_copy") is None or shutil.which("zstd") is None:
        pytest.skip("baseline needs mdb_copy (apt-get install lmdb-utils) and zstd on PATH")
    out = tmp_path / "copy.mdb.zst"
    command = f"mdb_copy -c {export} | zstd -3 -T2 -q -f -o {out}"
    benchmark.pedantic(subprocess.run, args=(command,), kwargs={"shell": True, "check": True},
                       rounds=ROUNDS, iterations=1)
    _record(benchmark, "mdb_copy_zstd", data_bytes)


@pytest.mark.benchmark(group=GROUP)
def test_zstd_data_mdb(benchmark, export, data_bytes, tmp_path):
    if shutil.which("zstd") is None:
        pytest.skip("baseline needs the zstd command on PATH")
    command = ["zstd", "-3", "-T2", "-q", "-f", str(export / "data.mdb"), "-o",
               str(tmp_path / "data.mdb.zst")]
    benchmark.pedantic(subprocess.run, args=(command,), kwargs={"check": True},
                       rounds=ROUNDS, iterations=1)
    _record(benchmark, "zstd_data_mdb", data_bytes)


def test_report(capsys, data_bytes):
    """Print the side-by-side table (runs last: pytest keeps file order)."""
    floor = RESULTS.get("zstd_data_mdb")
    lines = [f"\npackaging {data_bytes / 1e6:.0f} MB data.mdb, best of {ROUNDS}, "
             f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"]
    for name, value in RESULTS.items():
        if name == "logical_checksum_items_per_s":
            lines.append(f"  {'logical_checksum':28s} {value / 1e6:8.2f} M items/s")
            continue
        ratio = f"  x{value / floor:.2f} of zstd alone" if floor else ""
        lines.append(f"  {name:28s} {value:8.1f} MB/s{ratio}")
    with capsys.disabled():
        print("\n".join(lines))
