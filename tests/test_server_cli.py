"""`python -m engine.server` as a process, driven by the AWS CLI (SIGTERM: test_server_shutdown).

The AWS CLI vendors its own botocore and would shadow boto3's if imported here, so it runs
as a subprocess, exactly as a user would run it: from ``.venv-awscli`` beside the project's
virtualenv if there is one, else ``aws`` on PATH; the tests that need it are skipped without.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from server_process import ACCESS_KEY, REGION, SECRET, start_server


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The server as a child process with a credentials file; yields (endpoint, process, log)."""
    server = start_server(tmp_path_factory.mktemp("serve"))
    yield server.endpoint, server.process, server.log_path
    server.kill()


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


# One item with every attribute type. AWS CLI v1 sends blob arguments as raw bytes (v2 as
# base64), so the B/BS strings here are the bytes stored; answers carry them base64-encoded.
MUSIC_ALL_TYPES = {
    "Artist": {"S": "No One You Know"},
    "SongTitle": {"S": "Call Me Today"},
    "AlbumTitle": {"S": "Somewhat Famous"},
    "Year": {"N": "2015"},
    "Price": {"N": "1.5"},
    "Cover": {"B": "cover-art"},
    "Explicit": {"BOOL": False},
    "Producer": {"NULL": True},
    "Details": {"M": {"Label": {"S": "Indie"}, "Length": {"N": "215"}}},
    "Credits": {"L": [{"S": "vocals"}, {"N": "2"}, {"BOOL": True}]},
    "Tags": {"SS": ["pop", "indie"]},
    "Ratings": {"NS": ["4", "5"]},
    "Clips": {"BS": ["intro", "outro"]},
}
MUSIC_SONGS = [
    ("No One You Know", "My Dog Spot"),
    ("No One You Know", "Somewhat Famous"),
    ("Acme Band", "Happy Day"),
    ("Acme Band", "PartiQL Rocks"),
]


def as_returned(item: dict) -> dict:
    """``item`` as the CLI prints it back: blobs base64-encoded, sets in any order (sorted
    here; compare with :func:`sorted_sets` of the answer)."""

    def convert(value: dict) -> dict:
        ((kind, inner),) = value.items()
        if kind == "B":
            return {"B": base64.b64encode(inner.encode()).decode()}
        if kind == "BS":
            return {"BS": sorted(base64.b64encode(v.encode()).decode() for v in inner)}
        if kind in ("SS", "NS"):
            return {kind: sorted(inner)}
        if kind == "M":
            return {"M": {k: convert(v) for k, v in inner.items()}}
        if kind == "L":
            return {"L": [convert(v) for v in inner]}
        return value

    return {name: convert(value) for name, value in item.items()}


def sorted_sets(item: dict) -> dict:
    return {
        name: {kind: sorted(inner)} if kind in ("SS", "NS", "BS") else {kind: inner}
        for name, value in item.items()
        for kind, inner in value.items()
    }


def test_aws_cli_music_backup_restore(served, aws_cli):
    """The flow of issue #6 with the CLI: Music table, every type, paginated query and scan,
    create/describe/list backups, restore and read the restored table, delete the backup."""
    endpoint, _, _ = served

    def cli(*args: str) -> dict:
        return ok(aws(aws_cli, endpoint, *args))

    created = cli(
        "create-table",
        "--table-name",
        "Music",
        "--attribute-definitions",
        "AttributeName=Artist,AttributeType=S",
        "AttributeName=SongTitle,AttributeType=S",
        "--key-schema",
        "AttributeName=Artist,KeyType=HASH",
        "AttributeName=SongTitle,KeyType=RANGE",
        "--billing-mode",
        "PAY_PER_REQUEST",
    )
    assert created["TableDescription"]["TableName"] == "Music"
    cli("put-item", "--table-name", "Music", "--item", json.dumps(MUSIC_ALL_TYPES))
    cli(
        "batch-write-item",
        "--request-items",
        json.dumps(
            {
                "Music": [
                    {"PutRequest": {"Item": {"Artist": {"S": a}, "SongTitle": {"S": s}}}}
                    for a, s in MUSIC_SONGS
                ]
            }
        ),
    )
    key = json.dumps(
        {"Artist": MUSIC_ALL_TYPES["Artist"], "SongTitle": MUSIC_ALL_TYPES["SongTitle"]}
    )
    got = cli("get-item", "--table-name", "Music", "--key", key, "--consistent-read")
    assert sorted_sets(got["Item"]) == as_returned(MUSIC_ALL_TYPES)

    query = (
        "query",
        "--table-name",
        "Music",
        "--key-condition-expression",
        "Artist = :a",
        "--expression-attribute-values",
        json.dumps({":a": {"S": "No One You Know"}}),
        "--projection-expression",
        "SongTitle",
    )
    # --page-size 1: the CLI follows LastEvaluatedKey request by request and merges the pages.
    titles = [item["SongTitle"]["S"] for item in cli(*query, "--page-size", "1")["Items"]]
    assert titles == ["Call Me Today", "My Dog Spot", "Somewhat Famous"]
    first = cli(*query, "--max-items", "2")
    assert [item["SongTitle"]["S"] for item in first["Items"]] == titles[:2]
    rest = cli(*query, "--max-items", "2", "--starting-token", first["NextToken"])
    assert [item["SongTitle"]["S"] for item in rest["Items"]] == titles[2:]
    scanned = cli("scan", "--table-name", "Music", "--page-size", "2")
    assert scanned["Count"] == 5 and len(scanned["Items"]) == 5

    arn = cli("create-backup", "--table-name", "Music", "--backup-name", "MusicBackup1")[
        "BackupDetails"
    ]["BackupArn"]
    deadline = time.monotonic() + 60
    while True:
        described = cli("describe-backup", "--backup-arn", arn)["BackupDescription"]
        if described["BackupDetails"]["BackupStatus"] == "AVAILABLE":
            break
        assert described["BackupDetails"]["BackupStatus"] == "CREATING", described
        assert time.monotonic() < deadline, "backup not AVAILABLE after 60 s"
        time.sleep(0.5)
    assert described["SourceTableDetails"]["ItemCount"] == 5
    listed = cli("list-backups", "--table-name", "Music")["BackupSummaries"]
    assert [(s["BackupArn"], s["BackupName"]) for s in listed] == [(arn, "MusicBackup1")]

    restored = cli(
        "restore-table-from-backup", "--target-table-name", "MusicRestored", "--backup-arn", arn
    )
    assert restored["TableDescription"]["TableName"] == "MusicRestored"
    cli("wait", "table-exists", "--table-name", "MusicRestored")  # polls until ACTIVE
    got = cli("get-item", "--table-name", "MusicRestored", "--key", key, "--consistent-read")
    assert sorted_sets(got["Item"]) == as_returned(MUSIC_ALL_TYPES)
    restored_items = cli("scan", "--table-name", "MusicRestored")["Items"]
    assert sorted((i["Artist"]["S"], i["SongTitle"]["S"]) for i in restored_items) == sorted(
        [*MUSIC_SONGS, ("No One You Know", "Call Me Today")]
    )

    cli("delete-backup", "--backup-arn", arn)
    assert cli("list-backups", "--table-name", "Music")["BackupSummaries"] == []
    missing = aws(
        aws_cli, endpoint, "create-backup", "--table-name", "NoSuchTable", "--backup-name", "nope"
    )
    assert missing.returncode != 0 and "TableNotFoundException" in missing.stderr
    cli("delete-table", "--table-name", "MusicRestored")
    cli("delete-table", "--table-name", "Music")
