"""Secondary indexes through a real server and unmodified boto3 (client and resource API),
checked against DynamoDB's documented behaviour (API Reference: CreateTable, UpdateTable,
DescribeTable, Query, Scan, ConsumedCapacity, ItemCollectionMetrics; Developer Guide:
"Improving data access with secondary indexes").

GSIs are eventually consistent as in DynamoDB: a test that reads one after writing waits
with ``engine.wait_for_index_catch_up`` (every acknowledged write applied), never sleeps.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.config import Config
from botocore.exceptions import ClientError
from test_server_http import (  # noqa: F401  (module-scoped fixtures: engine, app, server, client)
    ACCESS_KEY,
    REGION,
    SECRET,
    app,
    client,
    engine,
    error_code,
    server,
)

from engine.indexes import maintain

_names = itertools.count()
GAMES = ("chess", "go", "shogi")


def message(caught: pytest.ExceptionInfo) -> str:
    return caught.value.response["Error"]["Message"]


def fresh_name(prefix: str = "idx") -> str:
    return f"{prefix}-{next(_names)}"


@pytest.fixture(scope="module")
def raw_client(server):  # noqa: F811
    """A client that does not validate parameters itself, so the server's checks show
    (boto3 would refuse a 2-character index name or a missing Projection first)."""
    return boto3.client("dynamodb", endpoint_url=server.endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
                        config=Config(parameter_validation=False,
                                      retries={"max_attempts": 1}))


def scores_table(client, name: str, partitions: int = 3) -> None:  # noqa: F811
    """user (S) / game (S); LSI byScore (user, score N, KEYS_ONLY); GSI byGame (game,
    score, INCLUDE level); GSI byLevel (level N, ALL)."""
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "user", "KeyType": "HASH"},
                   {"AttributeName": "game", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "user", "AttributeType": "S"},
            {"AttributeName": "game", "AttributeType": "S"},
            {"AttributeName": "score", "AttributeType": "N"},
            {"AttributeName": "level", "AttributeType": "N"},
        ],
        LocalSecondaryIndexes=[{
            "IndexName": "byScore",
            "KeySchema": [{"AttributeName": "user", "KeyType": "HASH"},
                          {"AttributeName": "score", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }],
        GlobalSecondaryIndexes=[
            {"IndexName": "byGame",
             "KeySchema": [{"AttributeName": "game", "KeyType": "HASH"},
                           {"AttributeName": "score", "KeyType": "RANGE"}],
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["level"]}},
            {"IndexName": "byLevel",
             "KeySchema": [{"AttributeName": "level", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "ALL"}},
        ],
        Tags=[{"Key": "tessera:partitions", "Value": str(partitions)}],
    )


def score_items() -> list[dict]:
    """30 users x 3 games; every 7th item has no score (sparse in byScore and byGame)."""
    items = []
    for number in range(30):
        for position, game in enumerate(GAMES):
            item = {"user": f"u{number:02d}", "game": game, "level": (number + position) % 4,
                    "note": f"note {number} {game}"}
            if (number * 3 + position) % 7:
                item["score"] = (number * 37 + position * 11) % 50
            items.append(item)
    return items


def to_wire(item: dict) -> dict:
    return {name: {"N": str(value)} if isinstance(value, int) else {"S": value}
            for name, value in item.items()}


def from_wire(item: dict) -> dict:
    return {name: int(value["N"]) if "N" in value else value["S"]
            for name, value in item.items()}


@pytest.fixture(scope="module")
def scores(client, engine):  # noqa: F811
    name = fresh_name("scores")
    scores_table(client, name)
    for item in score_items():
        client.put_item(TableName=name, Item=to_wire(item))
    engine.wait_for_index_catch_up(name)
    return name


def query_all(client, **request) -> tuple[list[dict], int]:  # noqa: F811
    """Every page of a Query or Scan: (items, pages)."""
    operation = client.scan if "KeyConditionExpression" not in request else client.query
    items, pages = [], 0
    while True:
        page = operation(**request)
        pages += 1
        items.extend(from_wire(item) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return items, pages
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def project(item: dict, names: set[str]) -> dict:
    return {name: value for name, value in item.items() if name in names}


# --- CreateTable and DescribeTable ---------------------------------------------------------


def test_describe_table_lists_every_index(client, scores):  # noqa: F811
    table = client.describe_table(TableName=scores)["Table"]
    assert table["AttributeDefinitions"] == [
        {"AttributeName": "user", "AttributeType": "S"},
        {"AttributeName": "game", "AttributeType": "S"},
        {"AttributeName": "score", "AttributeType": "N"},
        {"AttributeName": "level", "AttributeType": "N"},
    ]
    (local,) = table["LocalSecondaryIndexes"]
    assert local["IndexName"] == "byScore"
    assert local["KeySchema"] == [{"AttributeName": "user", "KeyType": "HASH"},
                                  {"AttributeName": "score", "KeyType": "RANGE"}]
    assert local["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert local["IndexArn"] == f"{table['TableArn']}/index/byScore"
    scored = sum(1 for item in score_items() if "score" in item)
    assert local["ItemCount"] == scored
    assert local["IndexSizeBytes"] > 0
    by_name = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
    assert set(by_name) == {"byGame", "byLevel"}
    game = by_name["byGame"]
    assert game["IndexStatus"] == "ACTIVE"
    assert "Backfilling" not in game
    assert game["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["level"]}
    assert game["ItemCount"] == scored
    assert game["IndexArn"] == f"{table['TableArn']}/index/byGame"
    assert game["ProvisionedThroughput"]["ReadCapacityUnits"] == 0
    assert by_name["byLevel"]["ItemCount"] == len(score_items())
    assert by_name["byLevel"]["KeySchema"] == [{"AttributeName": "level", "KeyType": "HASH"}]


def test_create_table_answer_describes_the_indexes(client):  # noqa: F811
    name = fresh_name()
    scores_table(client, name)
    created = client.describe_table(TableName=name)["Table"]
    assert {index["IndexName"] for index in created["GlobalSecondaryIndexes"]} == {
        "byGame", "byLevel"}
    assert [index["IndexName"] for index in created["LocalSecondaryIndexes"]] == ["byScore"]
    client.delete_table(TableName=name)


def _index(name: str, hash_key: str, range_key: str | None = None,
           projection: dict | None = None) -> dict:
    keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return {"IndexName": name, "KeySchema": keys,
            "Projection": projection or {"ProjectionType": "ALL"}}


def _definitions(*names: str) -> list[dict]:
    return [{"AttributeName": name, "AttributeType": "S"} for name in names]


BASE = {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                      {"AttributeName": "sk", "KeyType": "RANGE"}]}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk"),
          "GlobalSecondaryIndexes": [_index("byA", "a")]},
         "Some index key attributes are not defined in AttributeDefinitions. Keys: [a]"),
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk", "a", "b"),
          "GlobalSecondaryIndexes": [_index("byA", "a")]},
         "Number of attributes in KeySchema does not exactly match number of attributes "
         "defined in AttributeDefinitions"),
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk", "a"),
          "GlobalSecondaryIndexes": [_index("dup", "a")],
          "LocalSecondaryIndexes": [_index("dup", "pk", "a")]},
         "Duplicate index name: dup"),
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk", "a"),
          "GlobalSecondaryIndexes": [_index("same", "a"), _index("same", "a")]},
         "Duplicate index name: same"),
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk", "a"),
          "LocalSecondaryIndexes": [_index("byA", "a", "sk")]},
         "Index KeySchema does not have the same leading hash key as table KeySchema"),
        ({"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
          "AttributeDefinitions": _definitions("pk", "a"),
          "LocalSecondaryIndexes": [_index("byA", "pk", "a")]},
         "Table KeySchema does not have a range key, which is required when specifying a "
         "LocalSecondaryIndex"),
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk"),
          "LocalSecondaryIndexes": [_index("byA", "pk")]},
         "must have a range key"),
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk", *"abcdef"),
          "LocalSecondaryIndexes": [_index(f"by{c}", "pk", c) for c in "abcdef"]},
         "Number of LocalSecondaryIndexes exceeds per-table limit of 5"),
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk", "a"),
          "GlobalSecondaryIndexes": [
              _index("byA", "a", projection={"ProjectionType": "INCLUDE",
                                             "NonKeyAttributes": [f"x{i}" for i in range(60)]}),
              _index("byA2", "a", projection={"ProjectionType": "INCLUDE",
                                              "NonKeyAttributes": [f"y{i}" for i in range(41)]}),
          ]},
         "NonKeyAttributes across all secondary indexes (101) exceeds the limit of 100"),
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk", "a"),
          "GlobalSecondaryIndexes": [_index("byA", "a", projection={
              "ProjectionType": "ALL", "NonKeyAttributes": ["x"]})]},
         "ProjectionType is ALL, but NonKeyAttributes is specified"),
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk", "a"),
          "GlobalSecondaryIndexes": [_index("ab", "a")]},
         "Member must have length greater than or equal to 3"),
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk", "a"),
          "GlobalSecondaryIndexes": [{"IndexName": "byA",
                                      "KeySchema": [{"AttributeName": "a",
                                                     "KeyType": "RANGE"}],
                                      "Projection": {"ProjectionType": "ALL"}}]},
         "The first KeySchemaElement is not a HASH key type"),
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk"),
          "GlobalSecondaryIndexes": []},
         "List of GlobalSecondaryIndexes is empty"),
        ({**BASE, "AttributeDefinitions": _definitions("pk", "sk", "a"),
          "GlobalSecondaryIndexes": [_index("byA", "a")],
          "BillingMode": "PAY_PER_REQUEST"} | {"GlobalSecondaryIndexes": [{
              **_index("byA", "a"),
              "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}}]},
         "ProvisionedThroughput should not be specified"),
    ],
    ids=["key-not-defined", "unused-definition", "duplicate-across-kinds", "duplicate-gsi",
         "lsi-hash-key", "lsi-needs-table-range", "lsi-needs-range", "six-lsis",
         "non-key-attributes", "nonkey-with-all", "short-name", "hash-first", "empty-list",
         "gsi-throughput-on-demand"],
)
def test_create_table_index_errors(raw_client, kwargs, fragment):
    kwargs = dict(kwargs)
    kwargs.setdefault("BillingMode", "PAY_PER_REQUEST")
    with pytest.raises(ClientError) as caught:
        raw_client.create_table(TableName=fresh_name("bad"), **kwargs)
    assert error_code(caught) == "ValidationException"
    assert fragment in message(caught)


def test_more_than_twenty_gsis_is_refused(client):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.create_table(
            TableName=fresh_name("bad"), BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=_definitions("pk", "a"),
            GlobalSecondaryIndexes=[_index(f"byA{i:02d}", "a") for i in range(21)])
    assert error_code(caught) in ("ValidationException", "LimitExceededException")
    assert "exceeds per-table limit of 20" in message(caught)


def test_missing_projection_is_refused(raw_client):
    with pytest.raises(ClientError) as caught:
        raw_client.create_table(
            TableName=fresh_name("bad"), BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=_definitions("pk", "a"),
            GlobalSecondaryIndexes=[{"IndexName": "byA", "KeySchema": [
                {"AttributeName": "a", "KeyType": "HASH"}]}])
    assert error_code(caught) == "ValidationException"
    assert "projection" in message(caught)


# --- Query on indexes ----------------------------------------------------------------------


def test_query_gsi_with_key_condition_filter_and_pages(client, scores):  # noqa: F811
    expected = sorted(
        (item for item in score_items()
         if item["game"] == "go" and "score" in item and 10 <= item["score"] <= 40),
        key=lambda item: (item["score"], item["user"]))
    items, pages = query_all(
        client, TableName=scores, IndexName="byGame", Limit=4,
        KeyConditionExpression="game = :g AND score BETWEEN :lo AND :hi",
        ExpressionAttributeValues={":g": {"S": "go"}, ":lo": {"N": "10"}, ":hi": {"N": "40"}})
    keys_and_level = {"user", "game", "score", "level"}
    assert items == [project(item, keys_and_level) for item in expected]
    assert pages >= len(expected) // 4
    filtered, _ = query_all(
        client, TableName=scores, IndexName="byGame", Limit=3,
        KeyConditionExpression="game = :g", FilterExpression="#l = :one",
        ExpressionAttributeNames={"#l": "level"},
        ExpressionAttributeValues={":g": {"S": "go"}, ":one": {"N": "1"}})
    assert filtered == [project(item, keys_and_level) for item in sorted(
        (item for item in score_items()
         if item["game"] == "go" and "score" in item and item["level"] == 1),
        key=lambda item: (item["score"], item["user"]))]


def test_query_gsi_descending_and_last_evaluated_key_shape(client, scores):  # noqa: F811
    page = client.query(TableName=scores, IndexName="byGame", Limit=2, ScanIndexForward=False,
                        KeyConditionExpression="game = :g",
                        ExpressionAttributeValues={":g": {"S": "chess"}})
    assert set(page["LastEvaluatedKey"]) == {"user", "game", "score"}
    scores_seen = [int(item["score"]["N"]) for item in page["Items"]]
    assert scores_seen == sorted(scores_seen, reverse=True)
    best = max(item["score"] for item in score_items()
               if item["game"] == "chess" and "score" in item)
    assert scores_seen[0] == best


def test_query_gsi_hash_only_index_of_all_projection(client, scores):  # noqa: F811
    items, _ = query_all(client, TableName=scores, IndexName="byLevel", Limit=7,
                         KeyConditionExpression="#l = :two",
                         ExpressionAttributeNames={"#l": "level"},
                         ExpressionAttributeValues={":two": {"N": "2"}})
    expected = [item for item in score_items() if item["level"] == 2]
    key = lambda item: (item["user"], item["game"])  # noqa: E731
    assert sorted(items, key=key) == sorted(expected, key=key)


def test_query_gsi_consistent_read_is_refused(client, scores):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.query(TableName=scores, IndexName="byGame", ConsistentRead=True,
                     KeyConditionExpression="game = :g",
                     ExpressionAttributeValues={":g": {"S": "go"}})
    assert error_code(caught) == "ValidationException"
    assert "Consistent reads are not supported on global secondary indexes" in message(caught)


def test_gsi_projection_limits(client, scores):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.query(TableName=scores, IndexName="byGame", Select="ALL_ATTRIBUTES",
                     KeyConditionExpression="game = :g",
                     ExpressionAttributeValues={":g": {"S": "go"}})
    assert error_code(caught) == "ValidationException"
    # A projection naming attributes the GSI does not hold finds them absent.
    page = client.query(TableName=scores, IndexName="byGame", Limit=3,
                        KeyConditionExpression="game = :g", ProjectionExpression="note, #l",
                        ExpressionAttributeNames={"#l": "level"},
                        ExpressionAttributeValues={":g": {"S": "go"}})
    assert page["Items"] and all(set(item) == {"level"} for item in page["Items"])
    projected = client.query(TableName=scores, IndexName="byGame", Limit=3,
                             Select="ALL_PROJECTED_ATTRIBUTES",
                             KeyConditionExpression="game = :g",
                             ExpressionAttributeValues={":g": {"S": "go"}})
    assert all(set(item) == {"user", "game", "score", "level"} for item in projected["Items"])
    counted = client.query(TableName=scores, IndexName="byGame", Select="COUNT",
                           KeyConditionExpression="game = :g",
                           ExpressionAttributeValues={":g": {"S": "go"}})
    assert "Items" not in counted
    assert counted["Count"] == sum(1 for item in score_items()
                                   if item["game"] == "go" and "score" in item)


def test_query_lsi_consistent_and_fetching_unprojected(client, scores):  # noqa: F811
    user_items = sorted((item for item in score_items()
                         if item["user"] == "u05" and "score" in item),
                        key=lambda item: (item["score"], item["game"]))
    page = client.query(TableName=scores, IndexName="byScore", ConsistentRead=True,
                        KeyConditionExpression="#u = :u AND score >= :zero",
                        ExpressionAttributeNames={"#u": "user"},
                        ExpressionAttributeValues={":u": {"S": "u05"}, ":zero": {"N": "0"}})
    assert [from_wire(item) for item in page["Items"]] == [
        project(item, {"user", "game", "score"}) for item in user_items]
    every = client.query(TableName=scores, IndexName="byScore", Select="ALL_ATTRIBUTES",
                         KeyConditionExpression="#u = :u",
                         ExpressionAttributeNames={"#u": "user"},
                         ExpressionAttributeValues={":u": {"S": "u05"}})
    assert [from_wire(item) for item in every["Items"]] == user_items
    named = client.query(TableName=scores, IndexName="byScore", ProjectionExpression="note",
                         KeyConditionExpression="#u = :u",
                         ExpressionAttributeNames={"#u": "user"},
                         ExpressionAttributeValues={":u": {"S": "u05"}})
    assert [from_wire(item) for item in named["Items"]] == [
        {"note": item["note"]} for item in user_items]


def test_query_filter_may_not_name_index_keys(client, scores):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.query(TableName=scores, IndexName="byGame",
                     KeyConditionExpression="game = :g", FilterExpression="score > :s",
                     ExpressionAttributeValues={":g": {"S": "go"}, ":s": {"N": "3"}})
    assert "Filter Expression can only contain non-primary key attributes" in message(caught)
    # the table's own keys are not keys of this index: a filter may use them
    page = client.query(TableName=scores, IndexName="byGame", KeyConditionExpression="game = :g",
                        FilterExpression="#u = :u", ExpressionAttributeNames={"#u": "user"},
                        ExpressionAttributeValues={":g": {"S": "go"}, ":u": {"S": "u01"}})
    assert [item["user"]["S"] for item in page["Items"]] in ([], ["u01"])


def test_query_index_key_condition_errors(client, scores):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.query(TableName=scores, IndexName="byGame", KeyConditionExpression="#u = :u",
                     ExpressionAttributeNames={"#u": "user"},
                     ExpressionAttributeValues={":u": {"S": "u01"}})
    assert "Query condition missed key schema element: game" in message(caught)
    with pytest.raises(ClientError) as caught:
        client.query(TableName=scores, IndexName="byGame", KeyConditionExpression="game = :g",
                     ExpressionAttributeValues={":g": {"N": "1"}})
    assert error_code(caught) == "ValidationException"
    with pytest.raises(ClientError) as caught:
        client.query(TableName=scores, IndexName="nothere", KeyConditionExpression="game = :g",
                     ExpressionAttributeValues={":g": {"S": "go"}})
    assert "The table does not have the specified index: nothere" in message(caught)


def test_exclusive_start_key_needs_index_and_table_keys(client, scores):  # noqa: F811
    request = {"TableName": scores, "IndexName": "byGame", "KeyConditionExpression": "game = :g",
               "ExpressionAttributeValues": {":g": {"S": "go"}}}
    with pytest.raises(ClientError) as caught:
        client.query(**request, ExclusiveStartKey={"user": {"S": "u01"}, "game": {"S": "go"}})
    assert "The provided starting key is invalid" in message(caught)
    with pytest.raises(ClientError) as caught:
        client.query(**request, ExclusiveStartKey={
            "user": {"S": "u01"}, "game": {"S": "chess"}, "score": {"N": "3"}})
    assert "The provided starting key is invalid" in message(caught)
    with pytest.raises(ClientError) as caught:
        client.query(**{**request, "KeyConditionExpression": "game = :g AND score < :s",
                        "ExpressionAttributeValues": {":g": {"S": "go"}, ":s": {"N": "10"}}},
                     ExclusiveStartKey={"user": {"S": "u01"}, "game": {"S": "go"},
                                        "score": {"N": "30"}})
    assert "outside query boundaries" in message(caught)


def test_select_all_projected_needs_an_index(client, scores):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.query(TableName=scores, Select="ALL_PROJECTED_ATTRIBUTES",
                     KeyConditionExpression="#u = :u", ExpressionAttributeNames={"#u": "user"},
                     ExpressionAttributeValues={":u": {"S": "u01"}})
    assert error_code(caught) == "ValidationException"


# --- Scan on indexes -----------------------------------------------------------------------


def test_scan_gsi_paginated_and_in_parallel_segments(client, scores):  # noqa: F811
    wanted = {(item["user"], item["game"]) for item in score_items() if "score" in item}
    items, pages = query_all(client, TableName=scores, IndexName="byGame", Limit=10)
    assert pages > 1
    assert {(item["user"], item["game"]) for item in items} == wanted
    assert len(items) == len(wanted)
    segments = []
    for segment in range(3):
        part, _ = query_all(client, TableName=scores, IndexName="byGame", Limit=5,
                            Segment=segment, TotalSegments=3)
        segments.append({(item["user"], item["game"]) for item in part})
    assert set().union(*segments) == wanted
    assert sum(len(part) for part in segments) == len(wanted)


def test_scan_lsi_and_filter(client, scores):  # noqa: F811
    items, _ = query_all(client, TableName=scores, IndexName="byScore", Limit=9,
                         FilterExpression="score < :ten",
                         ExpressionAttributeValues={":ten": {"N": "10"}})
    wanted = {(item["user"], item["game"]) for item in score_items()
              if item.get("score", 99) < 10}
    assert {(item["user"], item["game"]) for item in items} == wanted
    segments = [query_all(client, TableName=scores, IndexName="byScore", Segment=s,
                          TotalSegments=2)[0] for s in range(2)]
    assert sum(len(part) for part in segments) == sum(
        1 for item in score_items() if "score" in item)


def test_scan_gsi_consistent_read_is_refused(client, scores):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.scan(TableName=scores, IndexName="byLevel", ConsistentRead=True)
    assert "Consistent reads are not supported on global secondary indexes" in message(caught)


# --- writes: index key types, capacity, item collections ----------------------------------


def test_index_key_of_the_wrong_type_is_refused(client, scores):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.put_item(TableName=scores, Item={"user": {"S": "x"}, "game": {"S": "go"},
                                                "score": {"S": "high"}})
    assert error_code(caught) == "ValidationException"
    assert "Type mismatch for Index Key score" in message(caught)
    assert "Item" not in client.get_item(TableName=scores,
                                         Key={"user": {"S": "x"}, "game": {"S": "go"}})


def test_consumed_capacity_per_index(client, scores):  # noqa: F811
    read = client.query(TableName=scores, IndexName="byGame", Limit=2,
                        KeyConditionExpression="game = :g", ReturnConsumedCapacity="INDEXES",
                        ExpressionAttributeValues={":g": {"S": "go"}})["ConsumedCapacity"]
    assert read["TableName"] == scores
    assert read["Table"]["CapacityUnits"] == 0
    assert read["GlobalSecondaryIndexes"] == {"byGame": {"CapacityUnits": 0.5,
                                                         "ReadCapacityUnits": 0.5}}
    assert read["CapacityUnits"] == 0.5
    lsi = client.query(TableName=scores, IndexName="byScore", ConsistentRead=True,
                       KeyConditionExpression="#u = :u", ExpressionAttributeNames={"#u": "user"},
                       ExpressionAttributeValues={":u": {"S": "u01"}},
                       ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert lsi["LocalSecondaryIndexes"]["byScore"]["CapacityUnits"] == 1
    item = {"user": "cap", "game": "go", "score": 7, "level": 1}
    put = client.put_item(TableName=scores, Item=to_wire(item),
                          ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert put["Table"]["CapacityUnits"] == 1
    assert put["LocalSecondaryIndexes"] == {"byScore": {"CapacityUnits": 1,
                                                        "WriteCapacityUnits": 1}}
    assert set(put["GlobalSecondaryIndexes"]) == {"byGame", "byLevel"}
    assert put["CapacityUnits"] == 4
    # Changing the GSI key (score) moves the entries: a delete and a put on each index
    # keyed by score; byLevel's entry changes (ALL projection) in place: one write.
    moved = client.put_item(TableName=scores, Item=to_wire({**item, "score": 8}),
                            ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert moved["GlobalSecondaryIndexes"]["byGame"]["CapacityUnits"] == 2
    assert moved["LocalSecondaryIndexes"]["byScore"]["CapacityUnits"] == 2
    assert moved["GlobalSecondaryIndexes"]["byLevel"]["CapacityUnits"] == 1
    # An attribute no KEYS_ONLY / INCLUDE index projects changes only the ALL index.
    noted = client.update_item(TableName=scores, Key=to_wire({"user": "cap", "game": "go"}),
                               UpdateExpression="SET note = :n",
                               ExpressionAttributeValues={":n": {"S": "hello"}},
                               ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert "LocalSecondaryIndexes" not in noted
    assert noted["GlobalSecondaryIndexes"] == {"byLevel": {"CapacityUnits": 1,
                                                           "WriteCapacityUnits": 1}}
    total = client.delete_item(TableName=scores, Key=to_wire({"user": "cap", "game": "go"}),
                               ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]
    assert total == {"TableName": scores, "CapacityUnits": 4, "WriteCapacityUnits": 4}


def test_item_collection_metrics(client, scores):  # noqa: F811
    response = client.put_item(TableName=scores, ReturnItemCollectionMetrics="SIZE",
                               Item=to_wire({"user": "icm", "game": "go", "score": 1}))
    assert response["ItemCollectionMetrics"] == {
        "ItemCollectionKey": {"user": {"S": "icm"}}, "SizeEstimateRangeGB": [0.0, 1.0]}
    updated = client.update_item(TableName=scores, Key=to_wire({"user": "icm", "game": "go"}),
                                 UpdateExpression="SET score = :s", ReturnItemCollectionMetrics="SIZE",
                                 ExpressionAttributeValues={":s": {"N": "2"}})
    assert updated["ItemCollectionMetrics"]["ItemCollectionKey"] == {"user": {"S": "icm"}}
    deleted = client.delete_item(TableName=scores, Key=to_wire({"user": "icm", "game": "go"}),
                                 ReturnItemCollectionMetrics="SIZE")
    assert deleted["ItemCollectionMetrics"]["ItemCollectionKey"] == {"user": {"S": "icm"}}
    assert "ItemCollectionMetrics" not in client.put_item(
        TableName=scores, Item=to_wire({"user": "icm", "game": "go"}))


def test_no_item_collection_metrics_without_lsis(client):  # noqa: F811
    name = fresh_name()
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=_definitions("pk", "a"),
        GlobalSecondaryIndexes=[_index("byA", "a")])
    response = client.put_item(TableName=name, Item={"pk": {"S": "1"}, "a": {"S": "x"}},
                               ReturnItemCollectionMetrics="SIZE")
    assert "ItemCollectionMetrics" not in response
    client.delete_table(TableName=name)


def test_item_collection_size_limit(client, monkeypatch):  # noqa: F811
    name = fresh_name()
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=BASE["KeySchema"],
        AttributeDefinitions=_definitions("pk", "sk", "a"),
        LocalSecondaryIndexes=[_index("byA", "pk", "a")])
    monkeypatch.setattr(maintain, "ITEM_COLLECTION_LIMIT_BYTES", 2000)
    client.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": "1"},
                                          "a": {"S": "x"}, "pad": {"S": "x" * 300}})
    with pytest.raises(ClientError) as caught:
        client.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": "2"},
                                              "a": {"S": "y"}, "pad": {"S": "y" * 900}})
    assert error_code(caught) == "ItemCollectionSizeLimitExceededException"
    assert "Item" not in client.get_item(TableName=name, Key={"pk": {"S": "p"},
                                                              "sk": {"S": "2"}})
    # another partition key is another collection
    client.put_item(TableName=name, Item={"pk": {"S": "q"}, "sk": {"S": "2"},
                                          "a": {"S": "y"}, "pad": {"S": "y" * 900}})
    monkeypatch.undo()
    client.delete_table(TableName=name)


# --- UpdateTable -------------------------------------------------------------------------


def wait_for_index_status(client, table: str, index: str, status: str = "ACTIVE",  # noqa: F811
                          engine=None) -> dict:  # noqa: F811
    """Poll DescribeTable as an application would, waiting on the engine (not on a clock)
    between polls."""
    for _ in range(100):
        described = client.describe_table(TableName=table)["Table"]
        found = {i["IndexName"]: i for i in described.get("GlobalSecondaryIndexes", [])}
        if found.get(index, {}).get("IndexStatus") == status:
            return found[index]
        if engine is not None:
            engine.wait_for_index(table, index)
    raise AssertionError(f"index {index} of {table} never became {status}")


def test_update_table_creates_and_deletes_a_gsi(client, engine):  # noqa: F811
    name = fresh_name()
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        KeySchema=BASE["KeySchema"], AttributeDefinitions=_definitions("pk", "sk"))
    for number in range(40):
        item = {"pk": {"S": f"p{number % 5}"}, "sk": {"S": f"s{number:02d}"}}
        if number % 3:
            item["colour"] = {"S": ("red", "blue")[number % 2]}
        client.put_item(TableName=name, Item=item)
    answer = client.update_table(
        TableName=name,
        AttributeDefinitions=_definitions("pk", "sk", "colour"),  # the table's keys may repeat
        GlobalSecondaryIndexUpdates=[{"Create": {
            "IndexName": "byColour",
            "KeySchema": [{"AttributeName": "colour", "KeyType": "HASH"},
                          {"AttributeName": "sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"}}}])["TableDescription"]
    (created,) = answer["GlobalSecondaryIndexes"]
    assert created["IndexName"] == "byColour"
    assert created["IndexStatus"] in ("CREATING", "ACTIVE")
    if created["IndexStatus"] == "CREATING":
        assert "Backfilling" in created
    assert {"AttributeName": "colour", "AttributeType": "S"} in answer["AttributeDefinitions"]
    wait_for_index_status(client, name, "byColour", engine=engine)
    client.put_item(TableName=name, Item={"pk": {"S": "late"}, "sk": {"S": "s99"},
                                          "colour": {"S": "red"}})
    engine.wait_for_index_catch_up(name)
    items, _ = query_all(client, TableName=name, IndexName="byColour", Limit=4,
                         KeyConditionExpression="colour = :c",
                         ExpressionAttributeValues={":c": {"S": "red"}})
    expected = sorted(f"s{n:02d}" for n in range(40) if n % 3 and n % 2 == 0) + ["s99"]
    assert [item["sk"] for item in items] == expected
    assert all(set(item) == {"pk", "sk", "colour"} for item in items)
    # Update (throughput) of an existing index is accepted and changes nothing.
    client.update_table(TableName=name, GlobalSecondaryIndexUpdates=[{"Update": {
        "IndexName": "byColour",
        "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}}}])
    deleted = client.update_table(TableName=name, GlobalSecondaryIndexUpdates=[
        {"Delete": {"IndexName": "byColour"}}])["TableDescription"]
    assert deleted["GlobalSecondaryIndexes"][0]["IndexStatus"] == "DELETING"
    assert "GlobalSecondaryIndexes" not in client.describe_table(TableName=name)["Table"]
    with pytest.raises(ClientError) as caught:
        client.query(TableName=name, IndexName="byColour", KeyConditionExpression="colour = :c",
                     ExpressionAttributeValues={":c": {"S": "red"}})
    assert "does not have the specified index" in message(caught)
    client.delete_table(TableName=name)


@pytest.mark.parametrize(
    ("updates", "definitions", "code", "fragment"),
    [
        ([{"Create": _index("byGame", "game")}], _definitions("game"), "ValidationException",
         "Attempting to create an index which already exists"),
        ([{"Delete": {"IndexName": "nothere"}}], None, "ResourceNotFoundException",
         "nothere"),
        ([{"Update": {"IndexName": "nothere", "ProvisionedThroughput": {
            "ReadCapacityUnits": 1, "WriteCapacityUnits": 1}}}], None,
         "ResourceNotFoundException", "nothere"),
        ([{"Create": _index("byNote", "note")}, {"Delete": {"IndexName": "byLevel"}}],
         _definitions("note"), "LimitExceededException",
         "Only 1 online index can be created or deleted"),
        ([{"Create": _index("byNote", "note")}], None, "ValidationException",
         "Some index key attributes are not defined in AttributeDefinitions"),
        ([{"Create": _index("byNote", "note")}], _definitions("note", "other"),
         "ValidationException", "Number of attributes in KeySchema does not exactly match"),
        ([{"Create": _index("byNote", "note")}],
         [{"AttributeName": "note", "AttributeType": "S"},
          {"AttributeName": "score", "AttributeType": "S"}], "ValidationException",
         "score"),
    ],
    ids=["exists", "delete-missing", "update-missing", "two-online", "undefined-key",
         "unused-definition", "type-conflict"],
)
def test_update_table_errors(client, scores, updates, definitions, code, fragment):  # noqa: F811
    extra = {"AttributeDefinitions": definitions} if definitions else {}
    with pytest.raises(ClientError) as caught:
        client.update_table(TableName=scores, GlobalSecondaryIndexUpdates=updates, **extra)
    assert error_code(caught) == code
    assert fragment in message(caught)


def test_update_table_needs_something_to_do(client, scores):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.update_table(TableName=scores)
    assert error_code(caught) == "ValidationException"
    with pytest.raises(ClientError) as caught:
        client.update_table(TableName="no-such-table", GlobalSecondaryIndexUpdates=[
            {"Delete": {"IndexName": "byGame"}}])
    assert error_code(caught) == "ResourceNotFoundException"


# --- the boto3 resource API ----------------------------------------------------------------


def test_resource_api_end_to_end(server, engine):  # noqa: F811
    dynamodb = boto3.resource("dynamodb", endpoint_url=server.endpoint, region_name=REGION,
                              aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET)
    name = fresh_name("orders")
    table = dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "customer", "KeyType": "HASH"},
                   {"AttributeName": "order_id", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "customer", "AttributeType": "S"},
            {"AttributeName": "order_id", "AttributeType": "S"},
            {"AttributeName": "placed", "AttributeType": "N"},
            {"AttributeName": "status", "AttributeType": "S"},
        ],
        LocalSecondaryIndexes=[{
            "IndexName": "byPlaced",
            "KeySchema": [{"AttributeName": "customer", "KeyType": "HASH"},
                          {"AttributeName": "placed", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"}}],
        GlobalSecondaryIndexes=[{
            "IndexName": "byStatus",
            "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"},
                          {"AttributeName": "placed", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["total"]}}],
    )
    table.wait_until_exists()
    orders = [{"customer": f"c{n % 4}", "order_id": f"o{n:03d}", "placed": 1000 + n * 7 % 50,
               "status": ("open", "shipped", "closed")[n % 3], "total": Decimal(n) / 4,
               "region": ("eu", "us")[n % 2]} for n in range(60)]
    with table.batch_writer() as batch:
        for order in orders:
            batch.put_item(Item=order)
    engine.wait_for_index_catch_up(name)

    def query_pages(**kwargs) -> list[dict]:
        found = []
        while True:
            page = table.query(**kwargs)
            found.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    shipped = query_pages(IndexName="byStatus", Limit=6,
                          KeyConditionExpression=Key("status").eq("shipped")
                          & Key("placed").gte(1010),
                          FilterExpression=Attr("total").gt(2))
    expected = sorted(
        ({k: o[k] for k in ("customer", "order_id", "placed", "status", "total")}
         for o in orders if o["status"] == "shipped" and o["placed"] >= 1010 and o["total"] > 2),
        key=lambda o: (o["placed"], o["customer"], o["order_id"]))
    assert shipped == expected
    recent = query_pages(IndexName="byPlaced", Limit=4, ScanIndexForward=False,
                         KeyConditionExpression=Key("customer").eq("c1")
                         & Key("placed").between(1000, 1030))
    assert recent == sorted((o for o in orders if o["customer"] == "c1"
                             and 1000 <= o["placed"] <= 1030),
                            key=lambda o: (o["placed"], o["order_id"]), reverse=True)

    table.update(
        AttributeDefinitions=[{"AttributeName": "region", "AttributeType": "S"},
                              {"AttributeName": "order_id", "AttributeType": "S"}],
        GlobalSecondaryIndexUpdates=[{"Create": {
            "IndexName": "byRegion",
            "KeySchema": [{"AttributeName": "region", "KeyType": "HASH"},
                          {"AttributeName": "order_id", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"}}}])
    for _ in range(100):
        table.reload()
        statuses = {i["IndexName"]: i["IndexStatus"] for i in table.global_secondary_indexes}
        if statuses.get("byRegion") == "ACTIVE":
            break
        engine.wait_for_index(name, "byRegion")
    assert statuses == {"byStatus": "ACTIVE", "byRegion": "ACTIVE"}
    eu = query_pages(IndexName="byRegion", KeyConditionExpression=Key("region").eq("eu"))
    assert [o["order_id"] for o in eu] == sorted(o["order_id"] for o in orders
                                                 if o["region"] == "eu")
    table.delete()


def test_legacy_parameters_on_an_index(client, scores):  # noqa: F811
    """KeyConditions / QueryFilter / AttributesToGet work on an index as on a table."""
    page = client.query(
        TableName=scores, IndexName="byGame",
        KeyConditions={"game": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "go"}]},
                       "score": {"ComparisonOperator": "LT",
                                 "AttributeValueList": [{"N": "10"}]}},
        QueryFilter={"level": {"ComparisonOperator": "EQ", "AttributeValueList": [{"N": "0"}]}},
        AttributesToGet=["user", "score"])
    expected = sorted((item["score"], item["user"]) for item in score_items()
                       if item["game"] == "go" and item.get("score", 99) < 10
                       and item["level"] == 0)
    assert [(int(item["score"]["N"]), item["user"]["S"]) for item in page["Items"]] == expected
    assert all(set(item) == {"user", "score"} for item in page["Items"])
    with pytest.raises(ClientError) as caught:
        client.query(TableName=scores, IndexName="byGame", KeyConditions={
            "game": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "go"}]}},
            QueryFilter={"score": {"ComparisonOperator": "GT",
                                   "AttributeValueList": [{"N": "1"}]}})
    assert error_code(caught) == "ValidationException"
