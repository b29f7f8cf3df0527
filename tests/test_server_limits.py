"""`tessera serve` start-up and connection limits, against real server processes.

Start-up: the port is bound before the data directory is touched; a busy port, a data
directory that is a file or cannot be written, or one another process holds, is a one-line
message and a documented exit code (2 usage, 3 busy), never a traceback.

Limits: connections that send nothing, half a header, or idle after a response are closed
(--header-timeout, --idle-timeout); beyond --max-connections new ones get 503
ServiceUnavailable; the server keeps answering a real client throughout. Each wait below is
for an event (EOF, a response), bounded by a socket timeout, never a sleep.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from server_process import ROOT, start_server

MAX_CONNECTIONS = 12


def run_serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m engine.server ARGS`` expected to exit by itself (a start-up error)."""
    return subprocess.run(
        [sys.executable, "-m", "engine.server", "--log-level", "warning", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tessera serve: ")
    return lines[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("limits"), "--max-connections",
                          str(MAX_CONNECTIONS), "--header-timeout", "1", "--idle-timeout", "1")
    yield server
    server.kill()
    assert "Traceback" not in server.log(), server.log()


def connect(server) -> socket.socket:
    url = urlsplit(server.endpoint)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket timeout 30 s)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


# --------------------------------------------------------------------------- start-up


def test_busy_port_touches_no_data_directory(server, tmp_path: Path):
    port = str(urlsplit(server.endpoint).port)
    data = tmp_path / "never-created"
    result = run_serve("--port", port, "--data-dir", str(data))
    assert result.returncode == 3
    line = one_line_error(result)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line
    assert not data.exists()


def test_data_directory_that_is_a_file(tmp_path: Path):
    path = tmp_path / "a-file"
    path.write_text("not a directory")
    result = run_serve("--port", "0", "--data-dir", str(path))
    assert result.returncode == 2
    assert f"data directory {path} is not a directory" in one_line_error(result)
    assert path.read_text() == "not a directory"


@pytest.mark.parametrize("data_dir", ["/proc/tessera-data", "/proc"])
def test_data_directory_that_cannot_be_created_or_written(data_dir: str):
    # /proc refuses new files even to root (a chmod'ed directory would not stop root).
    result = run_serve("--port", "0", "--data-dir", data_dir)
    assert result.returncode == 2
    line = one_line_error(result)
    assert f"cannot use data directory {data_dir}" in line
    assert "must be a directory this user can write" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only-mode directory")
def test_read_only_data_directory(tmp_path: Path):
    data = tmp_path / "ro"
    data.mkdir()
    data.chmod(0o555)
    try:
        result = run_serve("--port", "0", "--data-dir", str(data))
    finally:
        data.chmod(0o755)
    assert result.returncode == 2
    assert "cannot use data directory" in one_line_error(result)


def test_data_directory_held_by_another_server(server):
    data = Path(server.log_path).parent / "data"
    result = run_serve("--port", "0", "--data-dir", str(data))
    assert result.returncode == 3
    line = one_line_error(result)
    assert f"stop the process with PID {server.process.pid}" in line
    assert server.client().list_tables()["TableNames"] is not None  # unharmed


def test_help_documents_limits_and_exit_codes():
    result = subprocess.run([sys.executable, "-m", "engine.server", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for text in ("--idle-timeout", "--header-timeout", "--max-connections", "exit codes",
                 "3 busy"):
        assert text in result.stdout


# --------------------------------------------------------------------------- limits


def test_connections_that_send_nothing_are_closed(server):
    silent = [connect(server) for _ in range(MAX_CONNECTIONS // 2)]
    try:
        for sock in silent:
            assert read_until_closed(sock) == b""
    finally:
        for sock in silent:
            sock.close()
    assert "TableNames" in server.client().list_tables()


def test_half_sent_headers_are_closed(server):
    with connect(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.List")
        assert read_until_closed(sock) == b""


def test_idle_keep_alive_connection_is_closed(server):
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = read_until_closed(sock)  # the health answer, then EOF at the idle timeout
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"healthy: dynamodb.us-east-1.amazonaws.com" in received


def test_connections_beyond_the_cap_get_503_and_the_server_keeps_answering(server):
    held = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        with connect(server) as extra:
            answer = read_until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503 ")
        body = json.loads(answer.partition(b"\r\n\r\n")[2])
        assert body["__type"].endswith("#ServiceUnavailable")
        # The held ones are closed by the header timeout; then a real client is served.
        for sock in held:
            read_until_closed(sock)
    finally:
        for sock in held:
            sock.close()
    assert "TableNames" in server.client().list_tables()
    assert server.process.poll() is None
