"""RestoreTableFromBackup with GlobalSecondaryIndexOverride / LocalSecondaryIndexOverride
through a real server and boto3: a backup of a table with two GSIs and an LSI restored
with one GSI dropped, one added and one projection changed; every query and scan of the
restored indexes returns exactly what a freshly built table with those indexes returns.

Waits are on the engine (backup, restore, GSI catch-up), never on a clock.
"""

from __future__ import annotations

import itertools
import json

import pytest
from botocore.exceptions import ClientError
from test_server_http import (  # noqa: F401  (module-scoped fixtures: engine, app, server, client)
    app,
    client,
    engine,
    error_code,
    server,
)

from engine import Engine
from engine.cli.main import main

_names = itertools.count()
GAMES = ("chess", "go", "shogi")
KEYS = [{"AttributeName": "user", "KeyType": "HASH"},
        {"AttributeName": "game", "KeyType": "RANGE"}]


def key_schema(hash_key: str, range_key: str | None = None) -> list[dict]:
    keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return keys


BY_GAME_INCLUDE = {"IndexName": "byGame", "KeySchema": key_schema("game", "score"),
                   "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["level"]}}
BY_GAME_ALL = {**BY_GAME_INCLUDE, "Projection": {"ProjectionType": "ALL"}}
BY_LEVEL = {"IndexName": "byLevel", "KeySchema": key_schema("level"),
            "Projection": {"ProjectionType": "ALL"}}
BY_SCORE_GLOBAL = {"IndexName": "byScoreLevel", "KeySchema": key_schema("score", "level"),
                   "Projection": {"ProjectionType": "KEYS_ONLY"}}
BY_SCORE_LOCAL = {"IndexName": "byScore", "KeySchema": key_schema("user", "score"),
                  "Projection": {"ProjectionType": "KEYS_ONLY"}}
BY_SCORE_LOCAL_INCLUDE = {**BY_SCORE_LOCAL, "Projection": {
    "ProjectionType": "INCLUDE", "NonKeyAttributes": ["note"]}}
DEFINITIONS = [{"AttributeName": name, "AttributeType": kind}
               for name, kind in (("user", "S"), ("game", "S"), ("score", "N"), ("level", "N"))]


def items() -> list[dict]:
    found = []
    for number in range(24):
        for position, game in enumerate(GAMES):
            item = {"user": {"S": f"u{number:02d}"}, "game": {"S": game},
                    "level": {"N": str((number + position) % 3)},
                    "note": {"S": f"n{number}{game}"}}
            if (number + position) % 5:
                item["score"] = {"N": str((number * 13 + position * 7) % 20)}
            found.append(item)
    return found


def create(client, name: str, local: list[dict], global_: list[dict]) -> None:  # noqa: F811
    used = {element["AttributeName"] for index in [*local, *global_]
            for element in index["KeySchema"]} | {"user", "game"}
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=KEYS,
        AttributeDefinitions=[d for d in DEFINITIONS if d["AttributeName"] in used],
        **({"LocalSecondaryIndexes": local} if local else {}),
        **({"GlobalSecondaryIndexes": global_} if global_ else {}),
        Tags=[{"Key": "tessera:partitions", "Value": "3"}])
    for item in items():
        client.put_item(TableName=name, Item=item)


@pytest.fixture(scope="module")
def backup_arn(client, engine):  # noqa: F811
    name = f"restore-src-{next(_names)}"
    create(client, name, [BY_SCORE_LOCAL], [BY_GAME_INCLUDE, BY_LEVEL])
    engine.wait_for_index_catch_up(name)
    arn = client.create_backup(TableName=name, BackupName="with-indexes")["BackupDetails"][
        "BackupArn"]
    engine.wait_for_backup(arn.rsplit("/backup/", 1)[1])
    assert client.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"][
        "BackupStatus"] == "AVAILABLE"
    # Written after the backup: in neither restored table nor its indexes.
    client.put_item(TableName=name, Item={"user": {"S": "late"}, "game": {"S": "go"},
                                          "score": {"N": "1"}, "level": {"N": "1"}})
    return arn


def restore(client, engine, arn: str, **overrides) -> str:  # noqa: F811
    target = f"restored-{next(_names)}"
    answer = client.restore_table_from_backup(TargetTableName=target, BackupArn=arn,
                                              **overrides)["TableDescription"]
    assert answer["TableName"] == target
    engine.wait_for_table(target)
    assert client.describe_table(TableName=target)["Table"]["TableStatus"] == "ACTIVE"
    return target


def every_page(client, **request) -> list[dict]:  # noqa: F811
    operation = client.query if "KeyConditionExpression" in request else client.scan
    found = []
    while True:
        page = operation(**request)
        found.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return found
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def index_reads(client, table: str, index: dict) -> list:  # noqa: F811
    """Every query (each hash value, forward and backward, paged) and a paged scan of
    ``index``, in order."""
    hash_key = index["KeySchema"][0]["AttributeName"]
    values = sorted({item[hash_key][next(iter(item[hash_key]))] for item in items()
                     if hash_key in item})
    kind = "N" if hash_key in ("score", "level") else "S"
    reads = []
    for value in values:
        for forward in (True, False):
            reads.append(every_page(
                client, TableName=table, IndexName=index["IndexName"], Limit=4,
                ScanIndexForward=forward, KeyConditionExpression="#h = :v",
                ExpressionAttributeNames={"#h": hash_key},
                ExpressionAttributeValues={":v": {kind: value}}))
    reads.append(every_page(client, TableName=table, IndexName=index["IndexName"], Limit=7))
    return reads


def described_indexes(client, table: str) -> dict:  # noqa: F811
    described = client.describe_table(TableName=table)["Table"]
    return {index["IndexName"]: (index["KeySchema"], index["Projection"])
            for index in [*described.get("LocalSecondaryIndexes", []),
                          *described.get("GlobalSecondaryIndexes", [])]}


def test_restore_with_overrides_equals_a_fresh_build(client, engine, backup_arn):  # noqa: F811
    local, global_ = [BY_SCORE_LOCAL_INCLUDE], [BY_GAME_ALL, BY_SCORE_GLOBAL]
    restored = restore(client, engine, backup_arn,
                       GlobalSecondaryIndexOverride=global_, LocalSecondaryIndexOverride=local)
    fresh = f"fresh-{next(_names)}"
    create(client, fresh, local, global_)
    engine.wait_for_index_catch_up(fresh)
    assert described_indexes(client, restored) == described_indexes(client, fresh) == {
        index["IndexName"]: (index["KeySchema"], index["Projection"])
        for index in [*local, *global_]}
    for index in [*local, *global_]:
        got, want = index_reads(client, restored, index), index_reads(client, fresh, index)
        assert got == want, index["IndexName"]
        assert any(got)
    with pytest.raises(ClientError) as caught:
        client.query(TableName=restored, IndexName="byLevel", KeyConditionExpression="#l = :l",
                     ExpressionAttributeNames={"#l": "level"},
                     ExpressionAttributeValues={":l": {"N": "1"}})
    assert "does not have the specified index: byLevel" in caught.value.response["Error"][
        "Message"]
    # The projection change shows: byGame now returns every attribute.
    page = client.query(TableName=restored, IndexName="byGame", Limit=1,
                        KeyConditionExpression="game = :g",
                        ExpressionAttributeValues={":g": {"S": "go"}})
    assert "note" in page["Items"][0]


def test_restore_without_overrides_keeps_the_indexes(client, engine, backup_arn):  # noqa: F811
    restored = restore(client, engine, backup_arn)
    assert set(described_indexes(client, restored)) == {"byScore", "byGame", "byLevel"}
    fresh = f"fresh-{next(_names)}"
    create(client, fresh, [BY_SCORE_LOCAL], [BY_GAME_INCLUDE, BY_LEVEL])
    engine.wait_for_index_catch_up(fresh)
    for index in (BY_SCORE_LOCAL, BY_GAME_INCLUDE, BY_LEVEL):
        assert index_reads(client, restored, index) == index_reads(client, fresh, index)


def test_empty_overrides_drop_every_index(client, engine, backup_arn):  # noqa: F811
    restored = restore(client, engine, backup_arn, GlobalSecondaryIndexOverride=[],
                       LocalSecondaryIndexOverride=[])
    described = client.describe_table(TableName=restored)["Table"]
    assert "GlobalSecondaryIndexes" not in described
    assert "LocalSecondaryIndexes" not in described
    assert described["ItemCount"] == len(items())


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"GlobalSecondaryIndexOverride": [{
            "IndexName": "byNote", "KeySchema": key_schema("note"),
            "Projection": {"ProjectionType": "ALL"}}]},
         "key attribute note is not a key attribute of the backed-up table"),
        ({"LocalSecondaryIndexOverride": [{
            "IndexName": "byGameLocal", "KeySchema": key_schema("game", "score"),
            "Projection": {"ProjectionType": "ALL"}}]},
         "Index KeySchema does not have the same leading hash key as table KeySchema"),
        ({"GlobalSecondaryIndexOverride": [BY_LEVEL, BY_LEVEL]},
         "Duplicate index name: byLevel"),
    ],
    ids=["unknown-attribute", "lsi-hash-key", "duplicate"],
)
def test_override_errors(client, backup_arn, overrides, fragment):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.restore_table_from_backup(TargetTableName=f"bad-{next(_names)}",
                                         BackupArn=backup_arn, **overrides)
    assert error_code(caught) == "ValidationException"
    assert fragment in caught.value.response["Error"]["Message"]


def test_describe_backup_lists_the_backed_up_indexes(client, backup_arn):  # noqa: F811
    features = client.describe_backup(BackupArn=backup_arn)["BackupDescription"][
        "SourceTableFeatureDetails"]
    assert [index["IndexName"] for index in features["LocalSecondaryIndexes"]] == ["byScore"]
    assert {index["IndexName"] for index in features["GlobalSecondaryIndexes"]} == {
        "byGame", "byLevel"}


def test_offline_restore_with_index_overrides(engine, backup_arn, tmp_path):  # noqa: F811
    """``tessera backups restore --global-indexes JSON --local-indexes JSON``: the same
    overrides offline; a bad definition is a usage error before --data is touched."""
    backup_id = backup_arn.rsplit("/backup/", 1)[1]
    store = engine.backup_store.url
    data = tmp_path / "offline" / "data"
    by_score = [{"name": "byScoreLevel", "key_schema": [["score", "N"], ["level", "N"]],
                 "projection": "KEYS_ONLY"}]
    definitions = tmp_path / "global.json"
    definitions.write_text(json.dumps(by_score))
    code = main(["backups", "restore", backup_id, "--store", store, "--data", str(data),
                 "--table", "offline", "--global-indexes", f"@{definitions}",
                 "--local-indexes", "[]"])
    assert code == 0
    with Engine.open(data) as restored:
        described = restored.describe_table("offline")
        assert [index["name"] for index in described["global_indexes"]] == ["byScoreLevel"]
        assert described["local_indexes"] == []
        entries = list(restored.index("offline", "byScoreLevel").iter_entries())
    scored = [item for item in items() if "score" in item]
    assert len(entries) == len(scored)
    assert all(set(entry) == {"user", "game", "score", "level"} for entry in entries)
    never = tmp_path / "never" / "data"
    for bad in ('[{"name": "x"}]', "not json", '{"name": "byScoreLevel"}',
                '[{"name": "byNote", "key_schema": [["game", "S"], ["score", "N"]]}]'):
        option = "--local-indexes" if "byNote" in bad else "--global-indexes"
        code = main(["backups", "restore", backup_id, "--store", store, "--data", str(never),
                     "--table", "offline", option, bad])
        assert code == 2, bad
    assert not never.exists()
