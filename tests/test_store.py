"""The object-store conformance suite (SPEC §9), run against every backend, plus faults.

``store`` is parametrized over a local directory, ``rclone serve s3`` and moto (see
``s3_servers.py``); every test gets an empty prefix.
"""

from __future__ import annotations

import hashlib
import io
import os
import random

import google_crc32c
import pytest
from s3_servers import (
    ACCESS_KEY,
    SECRET_KEY,
    TEST_PART_SIZE_BYTES,
    RcloneS3Server,
    s3_client,
)

from engine.errors import ChecksumMismatchError, ObjectNotFoundError, StoreError
from engine.store import LocalStore, ObjectStore, open_store
from engine.store.base import crc32c_to_base64
from engine.store.s3 import S3RetryPolicy, S3Store, is_aws_endpoint

MiB = 1024 * 1024
#: Three 5 MiB parts, the last one short.
MULTIPART_BYTES = 2 * TEST_PART_SIZE_BYTES + 1234567


def payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(scope="module")
def big() -> bytes:
    return payload(MULTIPART_BYTES)


class Progress:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, increment: int) -> None:
        assert increment > 0
        self.calls.append(increment)

    @property
    def total(self) -> int:
        return sum(self.calls)


# -- conformance: every backend ------------------------------------------------------


def test_small_round_trip(store: ObjectStore) -> None:
    data = b"hello, tessera\n" * 100
    info = store.put("a/small.bin", data)
    assert info.key == "a/small.bin"
    assert info.size == len(data)
    assert info.crc32c == google_crc32c.value(data)
    assert store.get("a/small.bin") == data

    head = store.head("a/small.bin")
    assert head.size == len(data)
    assert head.crc32c == google_crc32c.value(data)
    assert head.md5 == hashlib.md5(data).hexdigest()
    assert head.last_modified is not None


def test_round_trip_from_stream_and_empty_object(store: ObjectStore) -> None:
    data = payload(300_000)
    store.put("s/stream", io.BytesIO(data), size=len(data), crc32c=google_crc32c.value(data))
    assert store.get("s/stream") == data
    store.put("s/empty", b"")
    assert store.get("s/empty") == b""
    assert store.head("s/empty").size == 0
    assert store.head("s/empty").crc32c == 0


def test_overwrite_replaces_object(store: ObjectStore) -> None:
    store.put("k", b"first version")
    store.put("k", b"second")
    assert store.get("k") == b"second"
    assert store.head("k").crc32c == google_crc32c.value(b"second")


def test_multipart_round_trip(store: ObjectStore, big: bytes, tmp_path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(big)
    progress = Progress()
    with open(source, "rb") as handle:
        info = store.put("m/big.bin", handle, progress=progress)
    assert info.size == len(big)
    assert info.crc32c == google_crc32c.value(big)
    assert progress.total == len(big)
    head = store.head("m/big.bin")
    assert (head.size, head.crc32c) == (len(big), google_crc32c.value(big))
    assert store.get("m/big.bin") == big


def test_multipart_from_unseekable_stream(store: ObjectStore, big: bytes) -> None:
    class Pipe(io.RawIOBase):
        """Short reads and no seeking, like a pipe."""

        def __init__(self, data: bytes) -> None:
            self._data = memoryview(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            count = min(len(buffer), 100_000, len(self._data))
            buffer[:count] = self._data[:count]
            self._data = self._data[count:]
            return count

    # Without crc32c= the S3 store spools first; with it, it streams.
    store.put("p/spooled", Pipe(big))
    store.put("p/streamed", Pipe(big), crc32c=google_crc32c.value(big))
    for key in ("p/spooled", "p/streamed"):
        head = store.head(key)
        assert (head.size, head.crc32c) == (len(big), google_crc32c.value(big))
    assert store.get("p/streamed") == big


def test_concurrent_puts_share_the_store(store: ObjectStore, big: bytes) -> None:
    """One store, several threads: the S3 store's part pool is shared by all calls."""
    from concurrent.futures import ThreadPoolExecutor

    def upload(n: int) -> int | None:
        data = big[n:] + big[:n]
        return store.put(f"conc/{n}", data).crc32c

    with ThreadPoolExecutor(3) as pool:
        crcs = list(pool.map(upload, range(3)))
    for n, crc in enumerate(crcs):
        assert store.head(f"conc/{n}").crc32c == crc == google_crc32c.value(big[n:] + big[:n])


def test_byte_ranges(store: ObjectStore, big: bytes) -> None:
    store.put("r/obj", big, crc32c=google_crc32c.value(big))
    n = len(big)
    cases = [
        (0, 10),
        (5, 6),
        (TEST_PART_SIZE_BYTES - 3, TEST_PART_SIZE_BYTES + 3),  # across a part boundary
        (n - 100, None),
        (n - 100, n + 1000),  # clipped to the end
        (1000, None),
        (0, None),
        (n, None),  # at the end: empty
        (n + 5, n + 10),  # past the end: empty
        (10, 10),  # empty range
    ]
    for start, end in cases:
        assert store.get("r/obj", start=start, end=end) == big[start:end], (start, end)
    with pytest.raises(ValueError):
        store.get("r/obj", start=-1)


def test_open_reader_streams_and_verifies(store: ObjectStore, big: bytes) -> None:
    store.put("o/obj", big)
    with store.open_reader("o/obj") as reader:
        chunks = []
        while chunk := reader.read(1 * MiB + 7):
            chunks.append(chunk)
    assert b"".join(chunks) == big


def test_list_by_prefix_sorted(store: ObjectStore) -> None:
    keys = ["b/2", "b/10", "b/1", "b-sibling", "b/sub/x", "ba", "a/1", "c", "b/é"]
    for key in keys:
        store.put(key, key.encode())
    listed = list(store.list("b/"))
    assert [info.key for info in listed] == ["b/1", "b/10", "b/2", "b/sub/x", "b/é"]
    assert [info.size for info in listed] == [len(k.encode()) for k in [i.key for i in listed]]
    assert [i.key for i in store.list("b")] == sorted(
        ["b/1", "b/10", "b/2", "b/sub/x", "b/é", "b-sibling", "ba"]
    )
    assert [i.key for i in store.list("b/1")] == ["b/1", "b/10"]
    assert [i.key for i in store.list("")] == sorted(keys)
    assert list(store.list("zzz/")) == []


def test_delete_and_delete_prefix(store: ObjectStore) -> None:
    for key in ["d/1", "d/2", "d/sub/3", "dx/keep", "keep"]:
        store.put(key, b"x")
    store.delete("d/1")
    store.delete("d/1")  # missing: not an error
    store.delete("never/existed")
    assert not store.exists("d/1")
    assert store.exists("d/2")
    assert store.delete_prefix("d/") == 2
    assert [i.key for i in store.list("")] == ["dx/keep", "keep"]
    with pytest.raises(ValueError):
        store.delete_prefix("")


def test_missing_key_contract(store: ObjectStore, tmp_path) -> None:
    store.put("present", b"x")
    for call in (
        lambda: store.get("absent"),
        lambda: store.get("absent", start=1, end=2),
        lambda: store.get("absent", start=3, end=3),
        lambda: store.head("absent"),
        lambda: store.open_reader("absent"),
        lambda: store.download("absent", str(tmp_path / "out")),
        lambda: store.copy("absent", "elsewhere"),
    ):
        with pytest.raises(ObjectNotFoundError) as caught:
            call()
        assert "absent" in str(caught.value)
        assert isinstance(caught.value, KeyError) and isinstance(caught.value, StoreError)
    assert not store.exists("absent")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", [1000, MULTIPART_BYTES])
def test_put_checksum_mismatch_leaves_nothing(store: ObjectStore, big: bytes, size: int) -> None:
    data = big[:size]
    wrong = google_crc32c.value(data) ^ 1
    with pytest.raises(ChecksumMismatchError, match="CRC32C"):
        store.put("bad/obj", data, crc32c=wrong)
    assert not store.exists("bad/obj")
    assert list(store.list("")) == []
    # An existing object under the key survives a failed overwrite.
    store.put("bad/obj", b"old")
    with pytest.raises(ChecksumMismatchError):
        store.put("bad/obj", data, crc32c=wrong)
    assert store.get("bad/obj") == b"old"


def test_put_size_mismatch(store: ObjectStore) -> None:
    with pytest.raises(ChecksumMismatchError, match="size"):
        store.put("s", b"12345", size=4)
    assert not store.exists("s")


def test_copy_keeps_checksum(store: ObjectStore, big: bytes) -> None:
    store.put("src/obj", big)
    info = store.copy("src/obj", "dst/obj")
    assert (info.size, info.crc32c) == (len(big), google_crc32c.value(big))
    assert store.get("dst/obj") == big
    assert store.exists("src/obj")


@pytest.mark.parametrize("size", [1000, MULTIPART_BYTES])
def test_download(store: ObjectStore, big: bytes, tmp_path, size: int) -> None:
    data = big[:size]
    store.put("dl/obj", data)
    progress = Progress()
    dest = tmp_path / "restore" / "obj.bin"
    info = store.download("dl/obj", str(dest), progress=progress)
    assert dest.read_bytes() == data
    assert info.crc32c == google_crc32c.value(data)
    assert progress.total == size
    assert os.listdir(dest.parent) == ["obj.bin"]  # no temp file left


def test_keys_are_validated(store: ObjectStore) -> None:
    for bad in ["../x", "a/../../x", "/abs", "a//b", "a/./b", "", "a/", ".tessera-tmp-1", "a\\b"]:
        with pytest.raises(ValueError):
            store.put(bad, b"x")
        with pytest.raises(ValueError):
            store.get(bad)
    assert list(store.list("")) == []


def test_closed_store_refuses(store: ObjectStore) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.put("k", b"x")


def test_url_round_trips_through_open_store(store: ObjectStore) -> None:
    if isinstance(store, LocalStore):
        assert store.url.startswith("file:///")
        reopened = open_store(store.url)
    else:
        assert store.url.startswith("s3://tessera/t-")
        reopened = open_store(
            store.url,
            endpoint_url=store.client.meta.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
    with reopened:
        store.put("shared", b"seen by both")
        assert reopened.get("shared") == b"seen by both"
        assert reopened.url == store.url


# -- verification on our side -------------------------------------------------------


def _corrupt_in_place(path: str) -> None:
    """Flip one byte and keep the mtime, as bit rot would."""
    st = os.stat(path)
    with open(path, "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_local_corruption_detected_on_read(local_store: LocalStore, big: bytes, tmp_path) -> None:
    local_store.put("c/obj", big)
    _corrupt_in_place(os.path.join(local_store.root, "c", "obj"))
    with pytest.raises(ChecksumMismatchError):
        local_store.get("c/obj")
    with pytest.raises(ChecksumMismatchError):
        local_store.download("c/obj", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_rclone_corruption_detected_on_download(
    rclone_server: RcloneS3Server, rclone_store: S3Store, big: bytes, tmp_path
) -> None:
    rclone_store.put("c/obj", big)
    _corrupt_in_place(str(rclone_server.data_dir / "tessera" / rclone_store.prefix / "c" / "obj"))
    with pytest.raises(ChecksumMismatchError):
        rclone_store.download("c/obj", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ChecksumMismatchError):
        rclone_store.get("c/obj")


def test_local_store_layout(local_store: LocalStore) -> None:
    local_store.put("x/y/z", b"data")
    root = local_store.root
    assert open(os.path.join(root, "x", "y", "z"), "rb").read() == b"data"
    # A stale temp file from a crashed put and a lost sidecar do not confuse the store.
    open(os.path.join(root, "x", "y", ".tessera-tmp-deadbeef"), "wb").write(b"partial")
    os.unlink(os.path.join(root, "x", "y", ".tessera-meta-z.json"))
    assert [i.key for i in local_store.list("")] == ["x/y/z"]
    assert local_store.head("x/y/z").crc32c == google_crc32c.value(b"data")
    local_store.delete_prefix("x/")
    assert os.listdir(root) == []
    with pytest.raises(ValueError):
        local_store.put("../escape", b"x")
    assert not os.path.exists(os.path.join(os.path.dirname(root), "escape"))


def test_open_store_parses_urls(tmp_path) -> None:
    with open_store(str(tmp_path / "plain")) as plain:
        assert isinstance(plain, LocalStore) and plain.url == f"file://{tmp_path}/plain"
    with open_store(f"file://{tmp_path}/viaurl") as via_url:
        assert isinstance(via_url, LocalStore) and via_url.root == str(tmp_path / "viaurl")
    with open_store("s3://bucket/some/prefix/", endpoint_url="http://127.0.0.1:1") as s3:
        assert isinstance(s3, S3Store)
        assert (s3.bucket, s3.prefix, s3.url) == (
            "bucket",
            "some/prefix",
            "s3://bucket/some/prefix",
        )
    for bad in ["s3://", "gs://bucket/x", "", "file://"]:
        with pytest.raises(ValueError):
            open_store(bad)
    with pytest.raises(ValueError):
        open_store(str(tmp_path), endpoint_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="5 MiB"):
        S3Store("bucket", part_size_bytes=1 * MiB)


# -- faults --------------------------------------------------------------------------


def test_wrong_content_md5_is_rejected_retried_then_fails(make_s3_store, big: bytes) -> None:
    attempts: list[tuple[int, int]] = []

    def corrupt_part_two(part_number: int, attempt: int, content_md5: str) -> str:
        if part_number == 2:
            attempts.append((part_number, attempt))
            return "AAAAAAAAAAAAAAAAAAAAAA=="  # 16 zero bytes: a well-formed, wrong digest
        return content_md5

    s3 = make_s3_store("rclone", part_request_hook=corrupt_part_two,
                       retry=S3RetryPolicy(integrity_attempts=3, base_delay_seconds=0.02))
    with pytest.raises(StoreError) as caught:
        s3.put("md5/obj", big)
    message = str(caught.value)
    assert "part 2/3" in message and "md5/obj" in message and "BadDigest" in message
    # Every send of part 2 carries the wrong digest: at most three (integrity_attempts).
    # rclone may forget the upload after a BadDigest part (when is up to it), and then a
    # resend gets NoSuchUpload, which put() cannot recover from.
    assert attempts[:2] == [(2, 1), (2, 2)] and len(attempts) <= 3
    assert "failed after 3 attempt(s)" in message or "NoSuchUpload" in message
    assert not s3.exists("md5/obj")
    assert list(s3.list("")) == []


@pytest.mark.parametrize("via", ["put", "put_file"])
def test_an_upload_dropped_after_a_damaged_part(make_fault_proxy, make_s3_store, big: bytes,
                                                tmp_path, via: str) -> None:
    """A server may forget a multipart upload once a part arrived damaged (rclone has been
    seen to; here the proxy plays it): the resend of that part gets NoSuchUpload.
    ``put_file`` can read the file again and starts a fresh upload, each part's sends
    still counting against integrity_attempts; ``put`` has consumed its stream and fails,
    naming both errors."""
    proxy = make_fault_proxy("moto")
    s3 = make_s3_store(proxy, retry=S3RetryPolicy(base_delay_seconds=0.02))

    def part(number: int):
        return lambda request: request.method == "PUT" and request.part_number == number

    proxy.fail(part(2), "bad_digest", "no_such_upload")
    if via == "put":
        with pytest.raises(StoreError) as caught:
            s3.put("dropped/obj", big)
        message = str(caught.value)
        assert "part 2/3" in message and "dropped the upload after a damaged part" in message
        assert "BadDigest" in message and "NoSuchUpload" in message
        assert not s3.exists("dropped/obj")
        return
    (tmp_path / "obj").write_bytes(big)
    info = s3.put_file("dropped/obj", tmp_path / "obj", size=len(big),
                       crc32c=google_crc32c.value(big))
    # Part 2: damaged, resent into the forgotten upload, sent again in a fresh one.
    assert proxy.count(part(2)) == 3
    assert proxy.count(lambda request: request.method == "POST" and "uploads" in request.query
                       ) == 2  # CreateMultipartUpload twice
    assert info.crc32c == google_crc32c.value(big) and s3.get("dropped/obj") == big


@pytest.mark.parametrize("server", ["rclone", "moto"])
def test_parts_without_content_md5(make_s3_store, big: bytes, server: str) -> None:
    """``part_content_md5=False``: parts carry only their CRC32C, the object is intact."""
    sent: list[tuple[int, str | None]] = []

    def record(part_number: int, attempt: int, content_md5: str | None) -> str | None:
        sent.append((part_number, content_md5))
        return content_md5

    s3 = make_s3_store(server, part_request_hook=record, part_content_md5=False)
    info = s3.put("nomd5/obj", big)
    assert sorted(sent) == [(1, None), (2, None), (3, None)]
    assert s3.get("nomd5/obj") == big and info.crc32c == s3.head("nomd5/obj").crc32c


@pytest.mark.parametrize("endpoint_url, aws", [
    (None, True),
    ("https://s3.eu-west-1.amazonaws.com", True),
    ("https://s3.cn-north-1.amazonaws.com.cn/", True),
    ("http://127.0.0.1:9000", False),
    ("https://minio.example.com", False),
    ("https://amazonaws.com.example.net", False),
    ("https://notamazonaws.com", False),
])
def test_checksum_defaults_follow_the_endpoint(endpoint_url, aws: bool) -> None:
    """AWS S3 checks the parts' CRC32C and can check the whole object's: no MD5 there.
    Other servers get the MD5 (rclone checks only that) and no FULL_OBJECT request."""
    store = S3Store("bucket", endpoint_url=endpoint_url, aws_access_key_id="k",
                    aws_secret_access_key="s")
    try:
        assert is_aws_endpoint(endpoint_url) is aws
        assert store.part_content_md5 is not aws and store.full_object_checksum is aws
    finally:
        store.close()
    overridden = S3Store("bucket", endpoint_url=endpoint_url, part_content_md5=True,
                         full_object_checksum=False, aws_access_key_id="k",
                         aws_secret_access_key="s")
    assert overridden.part_content_md5 and not overridden.full_object_checksum
    overridden.close()


@pytest.mark.parametrize("server", ["rclone", "moto"])
@pytest.mark.parametrize("via", ["put", "put_file"])
def test_full_object_checksum_requests(make_s3_store, big: bytes, server: str, via: str,
                                       tmp_path) -> None:
    """``full_object_checksum=True`` asks for FULL_OBJECT and completes with the whole
    object's CRC32C (as sent on the wire, seen through botocore's own events). Neither
    loopback server checks it (measured), so this shows the requests, not AWS's check."""
    s3 = make_s3_store(server, full_object_checksum=True)
    sent: dict[str, dict[str, str]] = {}

    def record(request, event_name: str, **_) -> None:
        sent[event_name.rsplit(".", 1)[1]] = {k.lower(): v.decode() if isinstance(v, bytes) else v
                                for k, v in request.headers.items()}

    s3.client.meta.events.register("before-send.s3.*", record)
    whole = crc32c_to_base64(google_crc32c.value(big))
    if via == "put":
        s3.put("full/obj", big)
    else:
        (tmp_path / "obj").write_bytes(big)
        s3.put_file("full/obj", tmp_path / "obj", size=len(big),
                    crc32c=google_crc32c.value(big))
    assert sent["CreateMultipartUpload"]["x-amz-checksum-type"] == "FULL_OBJECT"
    assert sent["CompleteMultipartUpload"]["x-amz-checksum-type"] == "FULL_OBJECT"
    assert sent["CompleteMultipartUpload"]["x-amz-checksum-crc32c"] == whole
    assert sent["UploadPart"]["x-amz-checksum-crc32c"]  # the parts keep theirs
    assert s3.get("full/obj") == big


def test_wrong_content_md5_on_single_put(make_s3_store) -> None:
    s3 = make_s3_store(
        "rclone", part_request_hook=lambda n, a, md5: "AAAAAAAAAAAAAAAAAAAAAA==",
        retry=S3RetryPolicy(integrity_attempts=2, base_delay_seconds=0.02),
    )
    with pytest.raises(StoreError, match="after 2 attempt.*BadDigest"):
        s3.put("md5/small", b"x" * 1000)
    assert not s3.exists("md5/small")


@pytest.mark.parametrize("server", ["rclone", "moto"])
def test_transient_part_failure_is_retried(make_fault_proxy, make_s3_store, big: bytes,
                                           server: str) -> None:
    """A dropped connection and a 500 on the wire: botocore sends the part again."""
    proxy = make_fault_proxy(server)
    s3 = make_s3_store(proxy)
    proxy.fail(lambda r: r.method == "PUT" and r.part_number == 1, "reset")
    proxy.fail(lambda r: r.method == "PUT" and r.part_number == 3, "500")
    info = s3.put("flaky/obj", big)
    sends = {n: proxy.count(lambda r, n=n: r.method == "PUT" and r.part_number == n)
             for n in (1, 2, 3)}
    assert sends == {1: 2, 2: 1, 3: 2}
    assert info.crc32c == google_crc32c.value(big)
    assert s3.get("flaky/obj") == big


def test_server_killed_mid_upload(tmp_path, make_s3_store, big: bytes) -> None:
    server = RcloneS3Server(tmp_path / "data").start()
    try:
        server.create_bucket("tessera")
        s3 = make_s3_store(server, max_concurrency=1)  # botocore: 3 attempts per request

        def kill_after_first_part(increment: int) -> None:
            server.kill()

        with pytest.raises(StoreError) as caught:
            s3.put("crash/obj", big, progress=kill_after_first_part)
        message = str(caught.value)
        assert "crash/obj" in message and "part 2" in message
        assert "after 3 attempt(s)" in message and "Connect" in message

        server.start()
        assert not s3.exists("crash/obj")
        assert list(s3.list("")) == []
        # No object file: only rclone's own staging file for the dead upload (hidden from
        # S3; our abort could not reach the killed server) may remain.
        files = [name for _, _, names in os.walk(server.data_dir) for name in names]
        assert [name for name in files if not name.startswith(".rclone_temp")] == []
        # The store is still usable once the server is back.
        s3.put("crash/obj", big)
        assert s3.head("crash/obj").crc32c == google_crc32c.value(big)
    finally:
        server.stop()


def test_boto3_can_read_what_we_wrote(rclone_server, rclone_store: S3Store, big: bytes) -> None:
    """Objects are plain S3 objects: any client reads them, metadata included."""
    rclone_store.put("interop/obj", big)
    client = s3_client(rclone_server.endpoint_url)
    response = client.get_object(Bucket="tessera", Key=f"{rclone_store.prefix}/interop/obj")
    assert response["Body"].read() == big
    metadata = {k.lower(): v for k, v in response["Metadata"].items()}
    assert int(metadata["crc32c"], 16) == google_crc32c.value(big)
