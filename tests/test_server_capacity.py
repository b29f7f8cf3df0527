"""ReturnConsumedCapacity through a real server, from the Developer Guide's formulas
("Read/write capacity units", "Item sizes"): reads in 4 KB units (half for eventually
consistent), Query/Scan on the evaluated items' total size rounded up once, writes in
1 KB units of the larger of the old and new item, batches per table."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from test_server_http import (  # noqa: F401  (module-scoped fixtures: engine, app, server, client)
    app,
    client,
    engine,
    error_code,
    new_table,
    server,
)

from engine.itemsize import item_size

KB = 1024


def units(response: dict) -> float:
    return response["ConsumedCapacity"]["CapacityUnits"]


@pytest.fixture(scope="module")
def table(client):  # noqa: F811
    return new_table(client, sort_type=None)


def padded(key: str, total_bytes: int) -> dict:
    """An item of exactly ``total_bytes`` by DynamoDB's size formula."""
    base = {"pk": key, "pad": ""}
    filler = total_bytes - item_size(base)
    assert filler >= 0
    return {"pk": {"S": key}, "pad": {"S": "x" * filler}}


def test_get_item_units(client, table):  # noqa: F811
    client.put_item(TableName=table, Item=padded("g4k", 4 * KB))
    client.put_item(TableName=table, Item=padded("g4k1", 4 * KB + 1))
    for key, consistent, expected in [
        ("g4k", True, 1), ("g4k", False, 0.5), ("g4k1", True, 2), ("g4k1", False, 1),
        ("absent", True, 1), ("absent", False, 0.5),
    ]:
        response = client.get_item(TableName=table, Key={"pk": {"S": key}},
                                   ConsistentRead=consistent, ReturnConsumedCapacity="TOTAL")
        assert units(response) == expected, (key, consistent)
        assert response["ConsumedCapacity"]["TableName"] == table


def test_projection_does_not_reduce_read_units(client, table):  # noqa: F811
    client.put_item(TableName=table, Item=padded("proj", 4 * KB + 1))
    response = client.get_item(TableName=table, Key={"pk": {"S": "proj"}}, ConsistentRead=True,
                               ProjectionExpression="pk", ReturnConsumedCapacity="TOTAL")
    assert response["Item"] == {"pk": {"S": "proj"}}
    assert units(response) == 2


def test_put_item_units_count_the_larger_item(client, table):  # noqa: F811
    response = client.put_item(TableName=table, Item=padded("w", KB),
                               ReturnConsumedCapacity="TOTAL")
    assert units(response) == 1
    response = client.put_item(TableName=table, Item=padded("w", KB + 1),
                               ReturnConsumedCapacity="TOTAL")
    assert units(response) == 2
    response = client.put_item(TableName=table, Item=padded("w", 2 * KB + 1),
                               ReturnConsumedCapacity="TOTAL")
    assert units(response) == 3
    # Replacing a 2 KB+1 item with a small one still costs the old item's size.
    response = client.put_item(TableName=table, Item={"pk": {"S": "w"}},
                               ReturnConsumedCapacity="TOTAL")
    assert units(response) == 3
    assert "Attributes" not in response


def test_update_and_delete_units(client, table):  # noqa: F811
    client.put_item(TableName=table, Item=padded("u", 2 * KB + 1))
    response = client.update_item(TableName=table, Key={"pk": {"S": "u"}},
                                  UpdateExpression="SET #pad = :s",
                                  ExpressionAttributeNames={"#pad": "pad"},
                                  ExpressionAttributeValues={":s": {"S": "short"}},
                                  ReturnConsumedCapacity="TOTAL")
    assert units(response) == 3  # the old item was larger
    response = client.update_item(TableName=table, Key={"pk": {"S": "u"}},
                                  UpdateExpression="SET #pad = :s",
                                  ExpressionAttributeNames={"#pad": "pad"},
                                  ExpressionAttributeValues={":s": {"S": "x" * (3 * KB)}},
                                  ReturnConsumedCapacity="TOTAL")
    assert units(response) == 4  # the new item is larger
    response = client.delete_item(TableName=table, Key={"pk": {"S": "u"}},
                                  ReturnConsumedCapacity="TOTAL")
    assert units(response) == 4
    response = client.delete_item(TableName=table, Key={"pk": {"S": "u"}},
                                  ReturnConsumedCapacity="TOTAL")
    assert units(response) == 1  # nothing there: the minimum
    response = client.update_item(TableName=table, Key={"pk": {"S": "new"}},
                                  UpdateExpression="SET a = :v",
                                  ExpressionAttributeValues={":v": {"S": "x"}},
                                  ReturnConsumedCapacity="TOTAL")
    assert units(response) == 1


def test_failed_condition_reports_no_capacity_but_fails(client, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.put_item(TableName=table, Item={"pk": {"S": "c"}},
                        ConditionExpression="attribute_exists(pk)",
                        ReturnConsumedCapacity="TOTAL")
    assert error_code(caught) == "ConditionalCheckFailedException"


def test_query_and_scan_round_the_page_once(client):  # noqa: F811
    name = new_table(client, sort_type="N", partitions=1)
    for sk in range(10):  # 10 items of 1 KB: 10 KB -> 3 units, not 10
        item = padded("q", KB)
        item["sk"] = {"N": str(sk)}
        item["pad"] = {"S": item["pad"]["S"][: -(len("sk") + 2)]}
        client.put_item(TableName=name, Item=item)
    query = client.query(TableName=name, KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": "q"}}, ConsistentRead=True,
                         ReturnConsumedCapacity="TOTAL")
    assert units(query) == 3
    eventually = client.query(TableName=name, KeyConditionExpression="pk = :p",
                              ExpressionAttributeValues={":p": {"S": "q"}},
                              ReturnConsumedCapacity="TOTAL")
    assert units(eventually) == 1.5
    # A filter does not reduce what was read; COUNT does not either.
    filtered = client.scan(TableName=name, FilterExpression="sk = :one",
                           ExpressionAttributeValues={":one": {"N": "1"}}, Select="COUNT",
                           ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
    assert filtered["Count"] == 1 and units(filtered) == 3
    empty = client.query(TableName=name, KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": "none"}},
                         ReturnConsumedCapacity="TOTAL")
    assert units(empty) == 0.5


def test_batch_get_units_per_table(client):  # noqa: F811
    first = new_table(client, sort_type=None)
    second = new_table(client, sort_type=None)
    for index in range(5):
        client.put_item(TableName=first, Item={"pk": {"S": f"k{index}"}})
    for index in range(3):
        client.put_item(TableName=second, Item={"pk": {"S": f"k{index}"}})
    response = client.batch_get_item(RequestItems={
        first: {"Keys": [{"pk": {"S": f"k{i}"}} for i in range(5)], "ConsistentRead": True},
        second: {"Keys": [{"pk": {"S": f"k{i}"}} for i in range(3)]},
    }, ReturnConsumedCapacity="TOTAL")
    by_table = {entry["TableName"]: entry["CapacityUnits"]
                for entry in response["ConsumedCapacity"]}
    assert by_table == {first: 5, second: 1.5}


def test_batch_write_units_per_table(client):  # noqa: F811
    first = new_table(client, sort_type=None)
    second = new_table(client, sort_type=None)
    client.put_item(TableName=second, Item={"pk": {"S": "old"}})
    response = client.batch_write_item(RequestItems={
        first: [{"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "a": {"S": "hi"}}}}
                for i in range(3)]
        + [{"PutRequest": {"Item": padded("big", KB + 1)}}],
        second: [{"PutRequest": {"Item": {"pk": {"S": "n"}}}},
                 {"DeleteRequest": {"Key": {"pk": {"S": "old"}}}}],
    }, ReturnConsumedCapacity="TOTAL")
    by_table = {entry["TableName"]: entry["CapacityUnits"]
                for entry in response["ConsumedCapacity"]}
    assert by_table == {first: 5, second: 2}
    assert response["UnprocessedItems"] == {}


def test_indexes_mode_adds_the_table_breakdown(client, table):  # noqa: F811
    response = client.get_item(TableName=table, Key={"pk": {"S": "x"}}, ConsistentRead=True,
                               ReturnConsumedCapacity="INDEXES")
    assert response["ConsumedCapacity"]["Table"]["CapacityUnits"] == 1
    assert "GlobalSecondaryIndexes" not in response["ConsumedCapacity"]


def test_none_mode_and_absent_mode_report_nothing(client, table):  # noqa: F811
    for extra in ({}, {"ReturnConsumedCapacity": "NONE"}):
        assert "ConsumedCapacity" not in client.get_item(
            TableName=table, Key={"pk": {"S": "x"}}, **extra)
        assert "ConsumedCapacity" not in client.scan(TableName=table, Limit=1, **extra)
        assert "ConsumedCapacity" not in client.batch_write_item(
            RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": "n"}}}}]}, **extra)


@pytest.mark.parametrize("operation", ["get_item", "put_item", "scan", "query",
                                       "batch_get_item", "batch_write_item"])
def test_invalid_mode_is_an_enum_error(server, table, operation):  # noqa: F811
    from test_server_items import raw_client

    arguments = {
        "get_item": {"TableName": table, "Key": {"pk": {"S": "x"}}},
        "put_item": {"TableName": table, "Item": {"pk": {"S": "x"}}},
        "scan": {"TableName": table},
        "query": {"TableName": table, "KeyConditionExpression": "pk = :p",
                  "ExpressionAttributeValues": {":p": {"S": "x"}}},
        "batch_get_item": {"RequestItems": {table: {"Keys": [{"pk": {"S": "x"}}]}}},
        "batch_write_item": {"RequestItems": {table: [
            {"PutRequest": {"Item": {"pk": {"S": "x"}}}}]}},
    }[operation]
    with pytest.raises(ClientError) as caught:
        getattr(raw_client(server), operation)(ReturnConsumedCapacity="DUMMY", **arguments)
    assert error_code(caught) == "ValidationException"
    assert caught.value.response["Error"]["Message"] == (
        "1 validation error detected: Value 'DUMMY' at 'returnConsumedCapacity' failed to "
        "satisfy constraint: Member must satisfy enum value set: [INDEXES, TOTAL, NONE]"
    )
