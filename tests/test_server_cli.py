"""`python -m engine.server` as a process: the AWS CLI against it, and a clean SIGTERM.

The AWS CLI vendors its own botocore and would shadow boto3's if imported here, so it lives
in a separate virtualenv (``.venv-awscli`` beside the project's, created on first use) and
runs as a subprocess, exactly as a user would run it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
AWSCLI_VENV = ROOT / ".venv-awscli"
ACCESS_KEY, SECRET, REGION = "AKIDCLI", "cli-secret", "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The server as a child process with a credentials file; yields (endpoint, process)."""
    base = tmp_path_factory.mktemp("serve")
    credentials = base / "credentials.json"
    credentials.write_text(json.dumps({ACCESS_KEY: SECRET}))
    port = free_port()
    log = (base / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.server.main",
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
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"server did not start: {(base / 'server.log').read_text()}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", process, base / "server.log"
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    log.close()


@pytest.fixture(scope="session")
def aws_cli() -> Path:
    executable = AWSCLI_VENV / "bin" / "aws"
    if not executable.exists():
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", str(AWSCLI_VENV)], check=True, timeout=120
            )
            subprocess.run(
                [str(AWSCLI_VENV / "bin" / "pip"), "install", "--quiet", "awscli"],
                check=True,
                timeout=600,
            )
        except (subprocess.SubprocessError, OSError) as err:
            pytest.skip(f"could not install the AWS CLI into {AWSCLI_VENV}: {err}")
    return executable


def aws(cli: Path, endpoint: str, *args: str, secret: str = SECRET) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_PAGER": "",
        "AWS_MAX_ATTEMPTS": "1",
    }
    return subprocess.run(
        [str(cli), "dynamodb", *args, "--endpoint-url", endpoint, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else {}


def test_aws_cli(served, aws_cli):
    endpoint, _, _ = served
    created = ok(
        aws(
            aws_cli,
            endpoint,
            "create-table",
            "--table-name",
            "cli-orders",
            "--attribute-definitions",
            "AttributeName=pk,AttributeType=S",
            "AttributeName=sk,AttributeType=N",
            "--key-schema",
            "AttributeName=pk,KeyType=HASH",
            "AttributeName=sk,KeyType=RANGE",
            "--billing-mode",
            "PAY_PER_REQUEST",
        )
    )
    assert created["TableDescription"]["TableStatus"] == "ACTIVE"
    ok(aws(aws_cli, endpoint, "wait", "table-exists", "--table-name", "cli-orders"))
    assert "cli-orders" in ok(aws(aws_cli, endpoint, "list-tables"))["TableNames"]
    for sk in range(3):
        item = {"pk": {"S": "c1"}, "sk": {"N": str(sk)}, "price": {"N": "9.99"}, "b": {"B": "AAE="}}
        ok(
            aws(
                aws_cli,
                endpoint,
                "put-item",
                "--table-name",
                "cli-orders",
                "--item",
                json.dumps(item),
            )
        )
    got = ok(
        aws(
            aws_cli,
            endpoint,
            "get-item",
            "--table-name",
            "cli-orders",
            "--key",
            json.dumps({"pk": {"S": "c1"}, "sk": {"N": "1"}}),
        )
    )
    assert got["Item"]["price"] == {"N": "9.99"}
    # AWS CLI v1 takes blob arguments as raw bytes (v2 as base64): it sent the 4 bytes "AAE=".
    assert base64.b64decode(got["Item"]["b"]["B"]) == b"AAE="
    updated = ok(
        aws(
            aws_cli,
            endpoint,
            "update-item",
            "--table-name",
            "cli-orders",
            "--key",
            json.dumps({"pk": {"S": "c1"}, "sk": {"N": "1"}}),
            "--update-expression",
            "SET price = price + :d REMOVE b",
            "--expression-attribute-values",
            json.dumps({":d": {"N": "0.01"}}),
            "--return-values",
            "ALL_NEW",
        )
    )
    assert updated["Attributes"]["price"] == {"N": "10"} and "b" not in updated["Attributes"]
    queried = ok(
        aws(
            aws_cli,
            endpoint,
            "query",
            "--table-name",
            "cli-orders",
            "--key-condition-expression",
            "pk = :p AND sk >= :s",
            "--expression-attribute-values",
            json.dumps({":p": {"S": "c1"}, ":s": {"N": "1"}}),
        )
    )
    assert [item["sk"]["N"] for item in queried["Items"]] == ["1", "2"]
    # The CLI paginates scans itself (--page-size) and merges the pages.
    scanned = ok(aws(aws_cli, endpoint, "scan", "--table-name", "cli-orders", "--page-size", "1"))
    assert scanned["Count"] == 3
    failed = aws(
        aws_cli,
        endpoint,
        "put-item",
        "--table-name",
        "cli-orders",
        "--item",
        json.dumps({"pk": {"S": "c1"}, "sk": {"N": "0"}}),
        "--condition-expression",
        "attribute_not_exists(pk)",
    )
    assert failed.returncode != 0 and "ConditionalCheckFailedException" in failed.stderr
    missing = aws(aws_cli, endpoint, "describe-table", "--table-name", "no-such-table")
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr
    denied = aws(aws_cli, endpoint, "list-tables", secret="wrong")
    assert denied.returncode != 0 and "InvalidSignatureException" in denied.stderr
    ok(aws(aws_cli, endpoint, "delete-table", "--table-name", "cli-orders"))


def test_aws_cli_backups(served, aws_cli):
    from engine import Engine

    if not hasattr(Engine, "create_backup"):
        pytest.skip("the engine has no backups yet")
    endpoint, _, _ = served
    ok(
        aws(
            aws_cli,
            endpoint,
            "create-table",
            "--table-name",
            "cli-backed",
            "--attribute-definitions",
            "AttributeName=pk,AttributeType=S",
            "--key-schema",
            "AttributeName=pk,KeyType=HASH",
            "--billing-mode",
            "PAY_PER_REQUEST",
        )
    )
    ok(
        aws(
            aws_cli,
            endpoint,
            "put-item",
            "--table-name",
            "cli-backed",
            "--item",
            '{"pk": {"S": "x"}}',
        )
    )
    arn = ok(
        aws(
            aws_cli,
            endpoint,
            "create-backup",
            "--table-name",
            "cli-backed",
            "--backup-name",
            "cli-nightly",
        )
    )["BackupDetails"]["BackupArn"]
    deadline = time.monotonic() + 60
    while (
        ok(aws(aws_cli, endpoint, "describe-backup", "--backup-arn", arn))["BackupDescription"][
            "BackupDetails"
        ]["BackupStatus"]
        != "AVAILABLE"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    listed = ok(aws(aws_cli, endpoint, "list-backups", "--table-name", "cli-backed"))
    assert arn in [summary["BackupArn"] for summary in listed["BackupSummaries"]]
    if hasattr(Engine, "restore_table"):
        restored = ok(
            aws(
                aws_cli,
                endpoint,
                "restore-table-from-backup",
                "--target-table-name",
                "cli-restored",
                "--backup-arn",
                arn,
            )
        )
        assert restored["TableDescription"]["TableName"] == "cli-restored"
    ok(aws(aws_cli, endpoint, "delete-backup", "--backup-arn", arn))


def test_sigterm_stops_cleanly(served):
    """Runs last in this module: SIGTERM -> graceful stop, engine closed, exit status 0."""
    endpoint, process, log = served
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )
    client.list_tables()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()
