"""S3Store.put against boto3's own ``upload_file``, side by side in one run.

Run: .venv/bin/python -m pytest bench/bench_store.py --benchmark-only
(TESSERA_BENCH_STORE_MIB sets the file size; default 256 MiB.)

Both upload the same file from disk to the same loopback ``rclone serve s3`` with the same
part size (16 MiB) and concurrency (4 threads), path-style addressing and
``request_checksum_calculation="when_required"``. The difference is the work per part:
ours computes MD5 (sent as Content-MD5, which rclone checks) and CRC32C for every part and
the whole object, and records the CRC32C as metadata; boto3 sends the bytes alone.

- ``ours_crc_known``: the caller passes ``crc32c=`` (what the backup packager does);
- ``ours_crc_computed``: no ``crc32c=``, so put makes one extra CRC32C pass first;
- ``ours_crc32c_only``: ``part_content_md5=False``, parts carry only their CRC32C (the
  setting for AWS S3, which validates it; rclone does not, so nothing checks the parts
  on the server here);
- ``boto3_upload_file``: ``client.upload_file`` with a matching ``TransferConfig``.

Content-MD5 costs an MD5 pass on each side: measured here on 256 MiB, client CPU 0.95 s
against boto3's 0.43 s and rclone's CPU 2.2 s against 1.7 s, on the same two cores.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import google_crc32c
import pytest
from boto3.s3.transfer import TransferConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from s3_servers import ACCESS_KEY, SECRET_KEY, RcloneS3Server, find_rclone  # noqa: E402

from engine.store.s3 import S3Store  # noqa: E402

MiB = 1024 * 1024
SIZE_BYTES = int(os.environ.get("TESSERA_BENCH_STORE_MIB", "256")) * MiB
PART_SIZE_BYTES = 16 * MiB
CONCURRENCY = 4
ROUNDS = 3
GROUP = f"upload-{SIZE_BYTES // MiB}MiB-to-rclone"

pytestmark = pytest.mark.skipif(find_rclone() is None, reason="rclone binary not available")


@pytest.fixture(scope="module")
def source_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("bench-store") / "source.bin"
    rng = random.Random(7)
    crc = google_crc32c.Checksum()
    with open(path, "wb") as handle:
        remaining = SIZE_BYTES
        while remaining:
            chunk = rng.randbytes(min(remaining, 8 * MiB))
            crc.update(chunk)
            handle.write(chunk)
            remaining -= len(chunk)
    return path, int.from_bytes(crc.digest(), "big")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    rclone = RcloneS3Server(tmp_path_factory.mktemp("bench-rclone") / "data").start()
    rclone.create_bucket("bench")
    yield rclone
    rclone.stop()


def _store(server: RcloneS3Server, **options) -> S3Store:
    return S3Store(
        "bench",
        "store",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        part_size_bytes=PART_SIZE_BYTES,
        max_concurrency=CONCURRENCY,
        **options,
    )


@pytest.fixture
def s3(server: RcloneS3Server):
    store = _store(server)
    yield store
    store.close()


def _run(benchmark, upload, cleanup) -> None:
    benchmark.group = GROUP
    benchmark.pedantic(upload, setup=cleanup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    mean = benchmark.stats.stats.mean
    benchmark.extra_info["MB_per_s"] = round(SIZE_BYTES / MiB / mean, 1)


def test_ours_crc_known(benchmark, s3: S3Store, source_file) -> None:
    path, crc = source_file

    def upload() -> None:
        with open(path, "rb") as handle:
            info = s3.put("obj", handle, crc32c=crc)
        assert info.size == SIZE_BYTES

    _run(benchmark, upload, lambda: s3.delete("obj"))
    assert s3.head("obj").crc32c == crc


def test_ours_crc_computed(benchmark, s3: S3Store, source_file) -> None:
    path, crc = source_file

    def upload() -> None:
        with open(path, "rb") as handle:
            s3.put("obj", handle)

    _run(benchmark, upload, lambda: s3.delete("obj"))
    assert s3.head("obj").crc32c == crc


def test_ours_crc32c_only(benchmark, server: RcloneS3Server, source_file) -> None:
    path, crc = source_file
    store = _store(server, part_content_md5=False)

    def upload() -> None:
        with open(path, "rb") as handle:
            store.put("obj", handle, crc32c=crc)

    try:
        _run(benchmark, upload, lambda: store.delete("obj"))
        assert store.head("obj").crc32c == crc
    finally:
        store.close()


def test_boto3_upload_file(benchmark, s3: S3Store, source_file) -> None:
    path, _ = source_file
    client = s3.client  # same endpoint, credentials and botocore Config as ours
    transfer = TransferConfig(
        multipart_threshold=PART_SIZE_BYTES,
        multipart_chunksize=PART_SIZE_BYTES,
        max_concurrency=CONCURRENCY,
        use_threads=True,
    )

    def upload() -> None:
        client.upload_file(str(path), "bench", "store/obj", Config=transfer)

    _run(benchmark, upload, lambda: s3.delete("obj"))
    assert s3.head("obj").size == SIZE_BYTES
