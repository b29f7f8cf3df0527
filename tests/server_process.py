"""`python -m engine.server.main` as a child process on a free loopback port, for the tests
that need a real server process (load, SIGTERM, restart)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
ACCESS_KEY, SECRET, REGION = "AKIDTEST", "test-secret", "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    endpoint: str
    process: subprocess.Popen
    log_path: Path

    def client(self, **config: object):
        """A boto3 DynamoDB client for this server; no retries, so every error shows."""
        return boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET,
            config=Config(retries={"max_attempts": 1}, **config),
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def start_server(base: Path, *extra_args: str, timeout: float = 30.0) -> ServerProcess:
    """Start a server with data in ``base/data`` and backups in ``base/backups`` (both kept
    across restarts) and wait until it accepts connections. Stop it with SIGTERM or kill()."""
    base.mkdir(parents=True, exist_ok=True)
    credentials = base / "credentials.json"
    credentials.write_text(json.dumps({ACCESS_KEY: SECRET}))
    port = free_port()
    log_path = base / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.server",
                "--data-dir",
                str(base / "data"),
                "--backups",
                f"file://{base / 'backups'}",
                "--port",
                str(port),
                "--credentials",
                str(credentials),
                "--log-level",
                "warning",
                *extra_args,
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
                ),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"server did not start:\n{server.log()}") from None
            time.sleep(0.05)


def wait_for_backup(client, arn: str, timeout: float = 60.0) -> dict:
    """Poll DescribeBackup until the backup is no longer CREATING; returns its details."""
    deadline = time.monotonic() + timeout
    while True:
        details = client.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"]
        if details["BackupStatus"] != "CREATING":
            return details
        if time.monotonic() > deadline:
            raise TimeoutError(f"backup {arn} still CREATING after {timeout} s")
        time.sleep(0.1)
