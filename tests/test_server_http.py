"""The DynamoDB-compatible endpoint end to end: a real uvicorn server on loopback, an engine
on a tmp data directory, and unmodified boto3 clients (SPEC §12)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
import time
from decimal import Decimal
from unittest import mock

import boto3
import pytest
import requests
import uvicorn
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from engine import Engine
from engine.server import create_app

ACCESS_KEY, SECRET = "AKIDTESSERA", "tessera-secret"
REGION = "us-east-1"
_names = itertools.count()


class RunningServer:
    """uvicorn serving ``app`` on a free loopback port, in a thread of this process."""

    def __init__(self, app) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="tessera-server", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    backups = tmp_path_factory.mktemp("backups")
    opened = Engine.open(data, region=REGION, backup_store=f"file://{backups}")
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def app(engine):
    return create_app(engine, credentials={ACCESS_KEY: SECRET, "local": "local"}, region=REGION)


@pytest.fixture(scope="module")
def server(app):
    running = RunningServer(app)
    yield running
    running.stop()


def make_client(endpoint: str, access_key: str = ACCESS_KEY, secret: str = SECRET):
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def client(server):
    return make_client(server.endpoint)


def error_code(caught: pytest.ExceptionInfo) -> str:
    return caught.value.response["Error"]["Code"]


def new_table(
    client, *, sort_type: str | None = "N", hash_type: str = "S", partitions: int = 4
) -> str:
    name = f"table-{next(_names)}"
    key_schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    definitions = [{"AttributeName": "pk", "AttributeType": hash_type}]
    if sort_type:
        key_schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
        definitions.append({"AttributeName": "sk", "AttributeType": sort_type})
    client.create_table(
        TableName=name,
        KeySchema=key_schema,
        AttributeDefinitions=definitions,
        BillingMode="PAY_PER_REQUEST",
        Tags=[{"Key": "tessera:partitions", "Value": str(partitions)}],
    )
    return name


# --- tables -----------------------------------------------------------------------------


def test_table_lifecycle(client):
    name = f"lifecycle-{next(_names)}"
    created = client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "user", "KeyType": "HASH"},
            {"AttributeName": "ts", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "user", "AttributeType": "S"},
            {"AttributeName": "ts", "AttributeType": "N"},
        ],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )["TableDescription"]
    assert created["TableName"] == name
    assert created["TableStatus"] == "ACTIVE"
    assert created["KeySchema"] == [
        {"AttributeName": "user", "KeyType": "HASH"},
        {"AttributeName": "ts", "KeyType": "RANGE"},
    ]
    assert {"AttributeName": "ts", "AttributeType": "N"} in created["AttributeDefinitions"]
    assert created["TableArn"] == f"arn:aws:dynamodb:{REGION}:000000000000:table/{name}"
    assert isinstance(created["CreationDateTime"], dt.datetime)
    client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5}
    )

    client.put_item(TableName=name, Item={"user": {"S": "u"}, "ts": {"N": "1"}})
    described = client.describe_table(TableName=name)["Table"]
    assert described["ItemCount"] == 1
    assert described["TableId"] == created["TableId"]

    with pytest.raises(ClientError) as caught:
        client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "user", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "user", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    assert error_code(caught) == "ResourceInUseException"

    deleted = client.delete_table(TableName=name)["TableDescription"]
    assert deleted["TableStatus"] == "DELETING"
    assert name not in client.list_tables()["TableNames"]
    with pytest.raises(ClientError) as caught:
        client.describe_table(TableName=name)
    assert error_code(caught) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:
        client.delete_table(TableName=name)
    assert error_code(caught) == "ResourceNotFoundException"


def test_list_tables_paginates(client):
    names = sorted(new_table(client) for _ in range(3))
    seen, start = [], None
    while True:
        kwargs = {"Limit": 2, **({"ExclusiveStartTableName": start} if start else {})}
        page = client.list_tables(**kwargs)
        assert len(page["TableNames"]) <= 2
        seen.extend(page["TableNames"])
        start = page.get("LastEvaluatedTableName")
        if start is None:
            break
    assert seen == sorted(seen)
    assert set(names) <= set(seen)
    paginated = [
        n
        for page in client.get_paginator("list_tables").paginate(PaginationConfig={"PageSize": 1})
        for n in page["TableNames"]
    ]
    assert paginated == seen


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (
            {
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "other", "AttributeType": "S"}],
            },
            "not defined in AttributeDefinitions",
        ),
        (
            {
                "KeySchema": [{"AttributeName": "pk", "KeyType": "RANGE"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            },
            "HASH",
        ),
        (
            {
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "extra", "AttributeType": "S"},
                ],
            },
            "does not exactly match",
        ),
    ],
)
def test_create_table_validation(client, kwargs, fragment):
    with pytest.raises(ClientError) as caught:
        client.create_table(
            TableName=f"bad-{next(_names)}", BillingMode="PAY_PER_REQUEST", **kwargs
        )
    assert error_code(caught) == "ValidationException"
    assert fragment in caught.value.response["Error"]["Message"]


# --- items ------------------------------------------------------------------------------

EVERY_TYPE = {
    "pk": {"S": "every-type"},
    "sk": {"N": "1"},
    "s": {"S": "héllo ✓"},
    "empty": {"S": ""},
    "n_int": {"N": "12345678901234567890123456789012345678"},
    "n_dec": {"N": "-0.000123"},
    "b": {"B": b"\x00\x01\xff"},
    "t": {"BOOL": True},
    "f": {"BOOL": False},
    "null": {"NULL": True},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"x", b"y"]},
    "l": {"L": [{"S": "x"}, {"N": "1"}, {"L": []}, {"M": {}}]},
    "m": {"M": {"inner": {"M": {"deep": {"BOOL": False}}}, "n": {"N": "7"}}},
}


def normalise(item: dict) -> dict:
    """Sets come back in any order; compare them as sets."""
    out = {}
    for name, value in item.items():
        ((tag, body),) = value.items()
        out[name] = (tag, frozenset(body)) if tag in ("SS", "NS", "BS") else value
    return out


def test_put_get_every_type(client):
    name = new_table(client)
    client.put_item(TableName=name, Item=EVERY_TYPE)
    got = client.get_item(TableName=name, Key={"pk": EVERY_TYPE["pk"], "sk": EVERY_TYPE["sk"]})[
        "Item"
    ]
    assert normalise(got) == normalise(EVERY_TYPE)
    projected = client.get_item(
        TableName=name,
        Key={"pk": EVERY_TYPE["pk"], "sk": EVERY_TYPE["sk"]},
        ProjectionExpression="#s, b, absent_attribute",
        ExpressionAttributeNames={"#s": "s"},
    )["Item"]
    assert projected == {"s": EVERY_TYPE["s"], "b": EVERY_TYPE["b"]}
    legacy = client.get_item(
        TableName=name, Key={"pk": EVERY_TYPE["pk"], "sk": EVERY_TYPE["sk"]}, AttributesToGet=["t"]
    )["Item"]
    assert legacy == {"t": {"BOOL": True}}
    assert "Item" not in client.get_item(
        TableName=name, Key={"pk": {"S": "nope"}, "sk": {"N": "1"}}
    )


def test_numbers_are_exact_and_canonical(client):
    name = new_table(client, sort_type=None)
    client.put_item(TableName=name, Item={"pk": {"S": "n"}, "x": {"N": "1.50"}, "y": {"N": "1E+3"}})
    item = client.get_item(TableName=name, Key={"pk": {"S": "n"}})["Item"]
    assert item["x"] == {"N": "1.5"} and item["y"] == {"N": "1000"}
    with pytest.raises(ClientError) as caught:
        client.put_item(TableName=name, Item={"pk": {"S": "n"}, "x": {"N": "1" * 39}})
    assert error_code(caught) == "ValidationException"


def test_resource_client_round_trip(server):
    """boto3's resource layer (TypeSerializer, Decimal) over the same wire."""
    resource = boto3.resource(
        "dynamodb",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    name = new_table(resource.meta.client)
    table = resource.Table(name)
    item = {
        "pk": "r",
        "sk": Decimal("2"),
        "price": Decimal("19.99"),
        "tags": {"a", "b"},
        "doc": {"x": [1, "y"]},
    }
    table.put_item(Item=item)
    assert table.get_item(Key={"pk": "r", "sk": 2})["Item"] == item
    with table.batch_writer() as batch:
        for index in range(30):
            batch.put_item(Item={"pk": "batch", "sk": index})
    assert (
        table.query(KeyConditionExpression=boto3.dynamodb.conditions.Key("pk").eq("batch"))["Count"]
        == 30
    )


def test_key_validation(client):
    name = new_table(client)
    for key in (
        {"pk": {"S": "a"}},
        {"pk": {"S": "a"}, "sk": {"S": "1"}},
        {"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"S": "1"}},
    ):
        with pytest.raises(ClientError) as caught:
            client.get_item(TableName=name, Key=key)
        assert error_code(caught) == "ValidationException"
    with pytest.raises(ClientError) as caught:
        client.put_item(TableName=name, Item={"pk": {"S": "a"}})
    assert error_code(caught) == "ValidationException"


def test_missing_table_is_resource_not_found(client):
    calls = [
        lambda: client.get_item(TableName="no-such-table", Key={"pk": {"S": "a"}}),
        lambda: client.put_item(TableName="no-such-table", Item={"pk": {"S": "a"}}),
        lambda: client.delete_item(TableName="no-such-table", Key={"pk": {"S": "a"}}),
        lambda: client.update_item(
            TableName="no-such-table", Key={"pk": {"S": "a"}}, UpdateExpression="REMOVE a"
        ),
        lambda: client.query(
            TableName="no-such-table",
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "a"}},
        ),
        lambda: client.scan(TableName="no-such-table"),
        lambda: client.batch_get_item(
            RequestItems={"no-such-table": {"Keys": [{"pk": {"S": "a"}}]}}
        ),
        lambda: client.batch_write_item(
            RequestItems={"no-such-table": [{"PutRequest": {"Item": {"pk": {"S": "a"}}}}]}
        ),
    ]
    for call in calls:
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == "ResourceNotFoundException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_put_and_delete_return_values_and_conditions(client):
    name = new_table(client, sort_type=None)
    key = {"pk": {"S": "c"}}
    assert "Attributes" not in client.put_item(
        TableName=name, Item={**key, "v": {"N": "1"}}, ReturnValues="ALL_OLD"
    )
    old = client.put_item(TableName=name, Item={**key, "v": {"N": "2"}}, ReturnValues="ALL_OLD")[
        "Attributes"
    ]
    assert old == {**key, "v": {"N": "1"}}

    with pytest.raises(ClientError) as caught:
        client.put_item(
            TableName=name,
            Item={**key, "v": {"N": "3"}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    assert error_code(caught) == "ConditionalCheckFailedException"
    client.put_item(
        TableName=name,
        Item={**key, "v": {"N": "3"}},
        ConditionExpression="#v = :two AND attribute_exists(pk)",
        ExpressionAttributeNames={"#v": "v"},
        ExpressionAttributeValues={":two": {"N": "2"}},
    )
    with pytest.raises(ClientError) as caught:
        client.delete_item(
            TableName=name,
            Key=key,
            ConditionExpression="v <> :three",
            ExpressionAttributeValues={":three": {"N": "3"}},
        )
    assert error_code(caught) == "ConditionalCheckFailedException"
    deleted = client.delete_item(TableName=name, Key=key, ReturnValues="ALL_OLD")["Attributes"]
    assert deleted["v"] == {"N": "3"}
    assert "Item" not in client.get_item(TableName=name, Key=key)

    with pytest.raises(ClientError) as caught:
        client.put_item(TableName=name, Item=key, ReturnValues="ALL_NEW")
    assert error_code(caught) == "ValidationException"


def test_update_item(client):
    name = new_table(client, sort_type=None)
    key = {"pk": {"S": "u"}}
    new = client.update_item(
        TableName=name,
        Key=key,
        UpdateExpression="SET a = :one, #c = if_not_exists(#c, :zero) ADD tags :t, n :one",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={
            ":one": {"N": "1"},
            ":zero": {"N": "0"},
            ":t": {"SS": ["x", "y"]},
        },
        ReturnValues="ALL_NEW",
    )["Attributes"]
    assert normalise(new) == normalise(
        {**key, "a": {"N": "1"}, "count": {"N": "0"}, "tags": {"SS": ["x", "y"]}, "n": {"N": "1"}}
    )
    updated = client.update_item(
        TableName=name,
        Key=key,
        UpdateExpression="SET a = a + :two, #c = if_not_exists(#c, :two) REMOVE n DELETE tags :x",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":two": {"N": "2.5"}, ":x": {"SS": ["x"]}},
        ReturnValues="UPDATED_NEW",
    )["Attributes"]
    assert updated == {"a": {"N": "3.5"}, "count": {"N": "0"}, "tags": {"SS": ["y"]}}
    old = client.update_item(
        TableName=name,
        Key=key,
        UpdateExpression="SET a = a - :one",
        ConditionExpression="attribute_exists(a)",
        ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="UPDATED_OLD",
    )["Attributes"]
    assert old == {"a": {"N": "3.5"}}
    with pytest.raises(ClientError) as caught:
        client.update_item(
            TableName=name,
            Key=key,
            UpdateExpression="SET a = :v",
            ConditionExpression="a = :v",
            ExpressionAttributeValues={":v": {"S": "nope"}},
        )
    assert error_code(caught) == "ConditionalCheckFailedException"
    for expression, values in (
        ("SET pk = :v", {":v": {"S": "x"}}),
        ("SET a = b", None),
        ("SET a = :v", {":v": {"S": "x"}, ":unused": {"S": "y"}}),
        ("SET a.b = :v", {":v": {"S": "x"}}),
        ("SET missing = missing + :v", {":v": {"N": "1"}}),
    ):
        kwargs = {"ExpressionAttributeValues": values} if values else {}
        with pytest.raises(ClientError) as caught:
            client.update_item(TableName=name, Key=key, UpdateExpression=expression, **kwargs)
        assert error_code(caught) == "ValidationException", expression
    # No UpdateExpression: creates the key-only item, leaves an existing one alone.
    client.update_item(TableName=name, Key={"pk": {"S": "bare"}})
    assert client.get_item(TableName=name, Key={"pk": {"S": "bare"}})["Item"] == {
        "pk": {"S": "bare"}
    }
    client.update_item(TableName=name, Key=key)
    assert client.get_item(TableName=name, Key=key)["Item"]["a"] == {"N": "2.5"}


# --- query and scan ---------------------------------------------------------------------


def fill(client, name, partition_values=("a", "b"), count=20):
    requests_ = [
        {
            "PutRequest": {
                "Item": {"pk": {"S": pv}, "sk": {"N": str(i)}, "odd": {"BOOL": i % 2 == 1}}
            }
        }
        for pv in partition_values
        for i in range(count)
    ]
    for start in range(0, len(requests_), 25):
        assert client.batch_write_item(RequestItems={name: requests_[start : start + 25]}) == {
            "UnprocessedItems": {},
            "ResponseMetadata": mock.ANY,
        }


def query_all(client, **kwargs):
    items, pages, start = [], 0, None
    while True:
        page = client.query(**kwargs, **({"ExclusiveStartKey": start} if start else {}))
        items.extend(page["Items"])
        pages += 1
        start = page.get("LastEvaluatedKey")
        if not start:
            return items, pages


def test_query(client):
    name = new_table(client)
    fill(client, name)
    values = {":p": {"S": "a"}}
    sort_keys = lambda items: [int(item["sk"]["N"]) for item in items]  # noqa: E731

    items, pages = query_all(
        client,
        TableName=name,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues=values,
        Limit=7,
    )
    assert sort_keys(items) == list(range(20))
    assert pages >= 3
    items, _ = query_all(
        client,
        TableName=name,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues=values,
        ScanIndexForward=False,
        Limit=6,
    )
    assert sort_keys(items) == list(range(19, -1, -1))

    def sorted_by(condition, extra):
        return sort_keys(
            client.query(
                TableName=name,
                KeyConditionExpression=f"pk = :p AND {condition}",
                ExpressionAttributeValues={**values, **extra},
            )["Items"]
        )

    assert sorted_by("sk BETWEEN :lo AND :hi", {":lo": {"N": "3"}, ":hi": {"N": "6"}}) == [
        3,
        4,
        5,
        6,
    ]
    assert sorted_by("sk < :v", {":v": {"N": "3"}}) == [0, 1, 2]
    assert sorted_by("sk <= :v", {":v": {"N": "3"}}) == [0, 1, 2, 3]
    assert sorted_by("sk > :v", {":v": {"N": "17"}}) == [18, 19]
    assert sorted_by(":v <= sk", {":v": {"N": "18"}}) == [18, 19]
    assert sorted_by("sk = :v", {":v": {"N": "5"}}) == [5]

    counted = client.query(
        TableName=name,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues=values,
        Select="COUNT",
    )
    assert counted["Count"] == 20 and "Items" not in counted
    filtered = client.query(
        TableName=name,
        KeyConditionExpression="pk = :p",
        FilterExpression="odd = :t",
        ProjectionExpression="sk",
        ExpressionAttributeValues={**values, ":t": {"BOOL": True}},
    )
    assert filtered["Count"] == 10 and filtered["ScannedCount"] == 20
    assert all(set(item) == {"sk"} for item in filtered["Items"])

    with pytest.raises(ClientError) as caught:
        client.query(
            TableName=name,
            KeyConditionExpression="sk = :v",
            ExpressionAttributeValues={":v": {"N": "1"}},
        )
    assert error_code(caught) == "ValidationException"
    with pytest.raises(ClientError) as caught:
        client.query(
            TableName=name,
            KeyConditionExpression="pk = :v",
            ExpressionAttributeValues={":v": {"N": "1"}},
        )
    assert error_code(caught) == "ValidationException"


def test_query_begins_with_on_string_sort_key(client):
    name = new_table(client, sort_type="S")
    for sk in ("2024-01-01", "2024-01-02", "2024-02-01", "2025-01-01"):
        client.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"S": sk}})
    items = client.query(
        TableName=name,
        KeyConditionExpression="pk = :p AND begins_with(sk, :prefix)",
        ExpressionAttributeValues={":p": {"S": "p"}, ":prefix": {"S": "2024-01"}},
    )["Items"]
    assert [item["sk"]["S"] for item in items] == ["2024-01-01", "2024-01-02"]


def test_scan_pagination_and_segments(client):
    name = new_table(client)
    fill(client, name, partition_values=("a", "b", "c"), count=15)
    seen, start = [], None
    while True:
        page = client.scan(
            TableName=name, Limit=8, **({"ExclusiveStartKey": start} if start else {})
        )
        assert page["Count"] == len(page["Items"]) <= 8
        seen.extend((item["pk"]["S"], item["sk"]["N"]) for item in page["Items"])
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert len(seen) == len(set(seen)) == 45

    segments = []
    for segment in range(3):
        pages = client.get_paginator("scan").paginate(
            TableName=name, Segment=segment, TotalSegments=3
        )
        segments.append(
            {(item["pk"]["S"], item["sk"]["N"]) for page in pages for item in page["Items"]}
        )
    assert set().union(*segments) == set(seen)
    assert sum(len(segment) for segment in segments) == 45

    filtered = client.scan(
        TableName=name,
        FilterExpression="attribute_exists(odd) AND odd = :f",
        ExpressionAttributeValues={":f": {"BOOL": False}},
    )
    assert filtered["Count"] == 24 and filtered["ScannedCount"] == 45

    with pytest.raises(ClientError) as caught:
        client.scan(TableName=name, Segment=3, TotalSegments=3)
    assert error_code(caught) == "ValidationException"


# --- batches ----------------------------------------------------------------------------


def test_batch_write_and_get(client):
    first = new_table(client, sort_type=None)
    second = new_table(client, sort_type=None)
    response = client.batch_write_item(
        RequestItems={
            first: [
                {"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "v": {"N": str(i)}}}}
                for i in range(20)
            ],
            second: [{"PutRequest": {"Item": {"pk": {"S": "only"}}}}],
        }
    )
    assert response["UnprocessedItems"] == {}
    client.batch_write_item(RequestItems={first: [{"DeleteRequest": {"Key": {"pk": {"S": "k0"}}}}]})

    got = client.batch_get_item(
        RequestItems={
            first: {
                "Keys": [{"pk": {"S": f"k{i}"}} for i in range(3)],
                "ProjectionExpression": "v",
            },
            second: {"Keys": [{"pk": {"S": "only"}}, {"pk": {"S": "missing"}}]},
        }
    )
    assert got["UnprocessedKeys"] == {}
    assert sorted(item["v"]["N"] for item in got["Responses"][first]) == ["1", "2"]
    assert got["Responses"][second] == [{"pk": {"S": "only"}}]

    too_many = [{"PutRequest": {"Item": {"pk": {"S": f"x{i}"}}}} for i in range(26)]
    duplicates = [{"PutRequest": {"Item": {"pk": {"S": "same"}}}}] * 2
    for items in (too_many, duplicates):
        with pytest.raises(ClientError) as caught:
            client.batch_write_item(RequestItems={first: items})
        assert error_code(caught) == "ValidationException"
    assert "Item" not in client.get_item(TableName=first, Key={"pk": {"S": "x0"}})

    with pytest.raises(ClientError) as caught:
        client.batch_get_item(
            RequestItems={first: {"Keys": [{"pk": {"S": f"k{i}"}} for i in range(101)]}}
        )
    assert error_code(caught) == "ValidationException"
    with pytest.raises(ClientError) as caught:
        client.batch_get_item(
            RequestItems={first: {"Keys": [{"pk": {"S": "k1"}}, {"pk": {"S": "k1"}}]}}
        )
    assert error_code(caught) == "ValidationException"


# --- backups ----------------------------------------------------------------------------


def test_backup_create_describe_list_delete(client, engine):
    name = new_table(client)
    fill(client, name, partition_values=("a",), count=10)
    details = client.create_backup(TableName=name, BackupName="nightly")["BackupDetails"]
    arn = details["BackupArn"]
    assert arn.startswith(f"arn:aws:dynamodb:{REGION}:000000000000:table/{name}/backup/")
    assert details["BackupName"] == "nightly" and details["BackupType"] == "USER"
    assert details["BackupStatus"] in ("CREATING", "AVAILABLE")

    description = wait_for_backup(client, arn)
    source = description["SourceTableDetails"]
    assert source["TableName"] == name and source["ItemCount"] == 10
    wait_for_backup(
        client,
        client.create_backup(TableName=name, BackupName="second")["BackupDetails"]["BackupArn"],
    )

    summaries = client.list_backups(TableName=name)["BackupSummaries"]
    assert arn in [summary["BackupArn"] for summary in summaries]
    paged, start = [], None
    while True:
        page = client.list_backups(
            TableName=name, Limit=1, **({"ExclusiveStartBackupArn": start} if start else {})
        )
        paged.extend(summary["BackupArn"] for summary in page["BackupSummaries"])
        start = page.get("LastEvaluatedBackupArn")
        if not start:
            break
    assert paged == [summary["BackupArn"] for summary in summaries]

    deleted = client.delete_backup(BackupArn=arn)["BackupDescription"]
    assert deleted["BackupDetails"]["BackupArn"] == arn
    deadline = time.monotonic() + 30
    while True:
        try:
            client.describe_backup(BackupArn=arn)
        except ClientError as err:
            assert err.response["Error"]["Code"] == "BackupNotFoundException"
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_restore_table_from_backup(client, engine):
    name = new_table(client)
    fill(client, name, partition_values=("a",), count=10)
    arn = client.create_backup(TableName=name, BackupName="for-restore")["BackupDetails"][
        "BackupArn"
    ]
    wait_for_backup(client, arn)
    client.put_item(TableName=name, Item={"pk": {"S": "a"}, "sk": {"N": "100"}})  # after the backup
    target = f"{name}-restored"
    restored = client.restore_table_from_backup(TargetTableName=target, BackupArn=arn)[
        "TableDescription"
    ]
    assert restored["TableName"] == target and restored["RestoreSummary"]["SourceBackupArn"] == arn
    deadline = time.monotonic() + 60
    while client.describe_table(TableName=target)["Table"]["TableStatus"] != "ACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    items, _ = query_all(
        client,
        TableName=target,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "a"}},
    )
    assert len(items) == 10
    with pytest.raises(ClientError) as caught:
        client.restore_table_from_backup(TargetTableName=target, BackupArn=arn)
    assert error_code(caught) == "TableAlreadyExistsException"


def wait_for_backup(client, arn: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        description = client.describe_backup(BackupArn=arn)["BackupDescription"]
        status = description["BackupDetails"]["BackupStatus"]
        if status == "AVAILABLE":
            return description
        assert status == "CREATING", description
        assert time.monotonic() < deadline, "backup never became AVAILABLE"
        time.sleep(0.2)


def test_backup_errors(client, engine):
    with pytest.raises(ClientError) as caught:
        client.create_backup(TableName="no-such-table", BackupName="nightly")
    assert error_code(caught) == "TableNotFoundException"
    missing = f"arn:aws:dynamodb:{REGION}:000000000000:table/t/backup/01234567890123-deadbeef"
    for call in (client.describe_backup, client.delete_backup):
        with pytest.raises(ClientError) as caught:
            call(BackupArn=missing)
        assert error_code(caught) == "BackupNotFoundException"
    with pytest.raises(ClientError) as caught:
        client.restore_table_from_backup(TargetTableName="whatever", BackupArn=missing)
    assert error_code(caught) == "BackupNotFoundException"


# --- protocol and authentication --------------------------------------------------------


def signed_post(
    endpoint,
    target,
    body: bytes,
    *,
    access_key=ACCESS_KEY,
    secret=SECRET,
    when=None,
    send_body=None,
):
    request = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
    )
    signer = SigV4Auth(Credentials(access_key, secret), "dynamodb", REGION)
    if when is None:
        signer.add_auth(request)
    else:
        with mock.patch(
            "botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)
        ):
            signer.add_auth(request)
    headers = dict(request.headers.items())
    return requests.post(
        endpoint + "/",
        data=send_body if send_body is not None else body,
        headers=headers,
        timeout=10,
    )


def error_type(response) -> str:
    return response.json()["__type"]


def test_unsigned_request_rejected(server):
    response = requests.post(
        server.endpoint + "/",
        data=b"{}",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
        },
        timeout=10,
    )
    assert response.status_code == 400
    assert (
        error_type(response)
        == "com.amazonaws.dynamodb.v20120810#MissingAuthenticationTokenException"
    )
    assert "TableNames" not in response.text


def test_signed_raw_request_accepted(server):
    response = signed_post(server.endpoint, "DynamoDB_20120810.ListTables", b"{}")
    assert response.status_code == 200
    assert "TableNames" in response.json()
    assert response.headers["content-type"] == "application/x-amz-json-1.0"
    assert response.headers["x-amzn-requestid"]


def test_wrong_secret_and_unknown_key(server):
    for access_key, secret, expected in (
        (ACCESS_KEY, "wrong", "InvalidSignatureException"),
        ("NOBODY", "whatever", "UnrecognizedClientException"),
    ):
        with pytest.raises(ClientError) as caught:
            make_client(server.endpoint, access_key, secret).list_tables()
        assert error_code(caught) == expected
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_tampered_body_rejected(server):
    response = signed_post(
        server.endpoint,
        "DynamoDB_20120810.DeleteTable",
        b'{"TableName": "harmless"}',
        send_body=b'{"TableName": "precious"}',
    )
    assert response.status_code == 400
    assert error_type(response).endswith("#InvalidSignatureException")


def test_old_signature_rejected(server):
    twenty_minutes_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=20)
    response = signed_post(
        server.endpoint, "DynamoDB_20120810.ListTables", b"{}", when=twenty_minutes_ago
    )
    assert response.status_code == 400
    assert error_type(response).endswith("#InvalidSignatureException")
    assert response.json()["message"].startswith("Signature expired")


def test_unknown_operation_and_bad_json(server):
    response = signed_post(server.endpoint, "DynamoDB_20120810.TransactWriteItems", b"{}")
    assert response.status_code == 400
    assert error_type(response).endswith("#UnknownOperationException")
    response = signed_post(server.endpoint, "DynamoDB_20120810.ListTables", b"{not json")
    assert response.status_code == 400
    assert error_type(response).endswith("#SerializationException")


def test_body_limit(server, app):
    limit = app.max_body_bytes
    app.max_body_bytes = 1024
    try:
        response = signed_post(server.endpoint, "DynamoDB_20120810.ListTables", b" " * 2048 + b"{}")
        assert response.status_code == 413
        assert error_type(response).endswith("#ValidationException")
    finally:
        app.max_body_bytes = limit


def test_health_check(server):
    response = requests.get(server.endpoint + "/", timeout=10)
    assert response.status_code == 200
    assert response.text.startswith(f"healthy: dynamodb.{REGION}.amazonaws.com")


def test_crc32_header_matches(server):
    import zlib

    response = signed_post(server.endpoint, "DynamoDB_20120810.ListTables", b"{}")
    assert int(response.headers["x-amz-crc32"]) == zlib.crc32(response.content)


def test_concurrent_clients(server):
    """Several threads with their own clients: the worker pool serves them all."""
    name = new_table(make_client(server.endpoint), sort_type=None)
    errors = []

    def work(worker: int) -> None:
        try:
            thread_client = make_client(server.endpoint)
            for index in range(20):
                key = {"pk": {"S": f"w{worker}-{index}"}}
                thread_client.put_item(TableName=name, Item={**key, "v": {"N": str(index)}})
                assert thread_client.get_item(TableName=name, Key=key)["Item"]["v"] == {
                    "N": str(index)
                }
        except Exception as err:  # collected and re-raised in the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert make_client(server.endpoint).scan(TableName=name, Select="COUNT")["Count"] == 80


def test_json_numbers_never_become_floats(server):
    """A number with more digits than a float holds survives the JSON layer untouched."""
    client = make_client(server.endpoint)
    name = new_table(client, sort_type=None)
    raw = json.dumps(
        {
            "TableName": name,
            "Item": {"pk": {"S": "f"}, "n": {"N": "0.1000000000000000000000000000000000001"}},
        }
    )
    assert (
        signed_post(server.endpoint, "DynamoDB_20120810.PutItem", raw.encode()).status_code == 200
    )
    item = client.get_item(TableName=name, Key={"pk": {"S": "f"}})["Item"]
    assert item["n"] == {"N": "0.1000000000000000000000000000000000001"}
