"""PutItem, GetItem, UpdateItem, DeleteItem through a real server and boto3, parameter by
parameter, from the API Reference: ReturnValues (and which operations refuse which),
ReturnValuesOnConditionCheckFailure, ReturnItemCollectionMetrics, table names, keys,
SerializationException vs ValidationException."""

from __future__ import annotations

import json

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from test_server_http import (  # noqa: F401  (module-scoped fixtures: engine, app, server, client)
    REGION,
    app,
    client,
    engine,
    error_code,
    make_client,
    new_table,
    server,
    signed_post,
)


def raw_client(server_):  # noqa: F811
    """A client that sends what it is given: no client-side parameter validation, so
    malformed requests reach the server (Alternator's client_no_transform)."""
    import boto3
    from test_server_http import ACCESS_KEY, SECRET

    return boto3.client(
        "dynamodb", endpoint_url=server_.endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}, parameter_validation=False),
    )


def message(caught: pytest.ExceptionInfo) -> str:
    return caught.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def table(client):  # noqa: F811
    return new_table(client, sort_type=None)


# --- ReturnValues -----------------------------------------------------------------------


def test_put_return_values(client, table):  # noqa: F811
    first = client.put_item(TableName=table, Item={"pk": {"S": "rv"}, "a": {"N": "1"}},
                            ReturnValues="ALL_OLD")
    assert "Attributes" not in first
    second = client.put_item(TableName=table, Item={"pk": {"S": "rv"}, "a": {"N": "2"}},
                             ReturnValues="ALL_OLD")
    assert second["Attributes"] == {"pk": {"S": "rv"}, "a": {"N": "1"}}
    assert "Attributes" not in client.put_item(
        TableName=table, Item={"pk": {"S": "rv"}, "a": {"N": "3"}}, ReturnValues="NONE")


@pytest.mark.parametrize("value", ["ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"])
@pytest.mark.parametrize("operation", ["put_item", "delete_item"])
def test_put_and_delete_refuse_other_return_values(client, table, operation, value):  # noqa: F811
    arguments = ({"Item": {"pk": {"S": "x"}}} if operation == "put_item"
                 else {"Key": {"pk": {"S": "x"}}})
    with pytest.raises(ClientError) as caught:
        getattr(client, operation)(TableName=table, ReturnValues=value, **arguments)
    assert error_code(caught) == "ValidationException"
    assert message(caught) == "ReturnValues can only be ALL_OLD or NONE"


def test_invalid_return_values_is_an_enum_error(server, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        raw_client(server).put_item(TableName=table, Item={"pk": {"S": "x"}},
                                    ReturnValues="EVERYTHING")
    assert error_code(caught) == "ValidationException"
    assert "Member must satisfy enum value set" in message(caught)
    assert "returnValues" in message(caught)


def test_delete_return_values(client, table):  # noqa: F811
    client.put_item(TableName=table, Item={"pk": {"S": "del"}, "a": {"S": "x"}})
    gone = client.delete_item(TableName=table, Key={"pk": {"S": "del"}}, ReturnValues="ALL_OLD")
    assert gone["Attributes"] == {"pk": {"S": "del"}, "a": {"S": "x"}}
    again = client.delete_item(TableName=table, Key={"pk": {"S": "del"}},
                               ReturnValues="ALL_OLD")
    assert "Attributes" not in again


def test_update_return_values_every_variant(client, table):  # noqa: F811
    key = {"pk": {"S": "upd"}}
    client.put_item(TableName=table, Item={**key, "a": {"N": "1"}, "b": {"S": "keep"}})
    expected = {
        "ALL_OLD": {**key, "a": {"N": "1"}, "b": {"S": "keep"}},
        "UPDATED_OLD": {"a": {"N": "1"}},
        "ALL_NEW": {**key, "a": {"N": "2"}, "b": {"S": "keep"}, "c": {"S": "new"}},
        "UPDATED_NEW": {"a": {"N": "2"}, "c": {"S": "new"}},
    }
    for variant, attributes in expected.items():
        client.put_item(TableName=table, Item={**key, "a": {"N": "1"}, "b": {"S": "keep"}})
        result = client.update_item(
            TableName=table, Key=key, UpdateExpression="SET a = a + :one, c = :c",
            ExpressionAttributeValues={":one": {"N": "1"}, ":c": {"S": "new"}},
            ReturnValues=variant,
        )
        assert result["Attributes"] == attributes, variant
    none = client.update_item(TableName=table, Key=key, UpdateExpression="SET a = :v",
                              ExpressionAttributeValues={":v": {"N": "5"}})
    assert "Attributes" not in none


def test_update_nested_updated_new(client, table):  # noqa: F811
    key = {"pk": {"S": "nested"}}
    client.put_item(TableName=table, Item={**key, "m": {"M": {"x": {"N": "1"}, "y": {"N": "2"}}}})
    result = client.update_item(TableName=table, Key=key, UpdateExpression="SET m.x = :v",
                                ExpressionAttributeValues={":v": {"N": "9"}},
                                ReturnValues="UPDATED_NEW")
    assert result["Attributes"] == {"m": {"M": {"x": {"N": "9"}}}}


# --- ReturnValuesOnConditionCheckFailure ------------------------------------------------


def test_condition_failure_returns_the_item_when_asked(client, table):  # noqa: F811
    key = {"pk": {"S": "ccf"}}
    client.put_item(TableName=table, Item={**key, "a": {"N": "1"}})
    for operation, arguments in [
        ("put_item", {"Item": {**key, "a": {"N": "2"}}}),
        ("delete_item", {"Key": key}),
        ("update_item", {"Key": key, "UpdateExpression": "SET b = :v",
                         "ExpressionAttributeValues": {":v": {"N": "1"}, ":two": {"N": "2"}}}),
    ]:
        values = arguments.pop("ExpressionAttributeValues", {})
        with pytest.raises(ClientError) as caught:
            getattr(client, operation)(
                TableName=table, ConditionExpression="a = :two",
                ExpressionAttributeValues={**values, ":two": {"N": "2"}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD", **arguments,
            )
        assert error_code(caught) == "ConditionalCheckFailedException"
        assert caught.value.response.get("Item") == {**key, "a": {"N": "1"}}, operation
        with pytest.raises(ClientError) as caught:
            getattr(client, operation)(
                TableName=table, ConditionExpression="a = :two",
                ExpressionAttributeValues={**values, ":two": {"N": "2"}}, **arguments,
            )
        assert "Item" not in caught.value.response


def test_condition_failure_on_missing_item_has_no_item(client, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.put_item(TableName=table, Item={"pk": {"S": "never"}},
                        ConditionExpression="attribute_exists(pk)",
                        ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert error_code(caught) == "ConditionalCheckFailedException"
    assert "Item" not in caught.value.response


def test_return_values_on_condition_check_failure_enum(server, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        raw_client(server).put_item(TableName=table, Item={"pk": {"S": "x"}},
                                    ReturnValuesOnConditionCheckFailure="ALL_NEW")
    assert error_code(caught) == "ValidationException"
    assert "[ALL_OLD, NONE]" in message(caught)


# --- ReturnItemCollectionMetrics --------------------------------------------------------


def test_item_collection_metrics_absent_without_local_indexes(client, table):  # noqa: F811
    # A table without local secondary indexes has no item collections: DynamoDB accepts
    # SIZE and returns no ItemCollectionMetrics.
    put = client.put_item(TableName=table, Item={"pk": {"S": "icm"}},
                          ReturnItemCollectionMetrics="SIZE")
    assert "ItemCollectionMetrics" not in put
    update = client.update_item(TableName=table, Key={"pk": {"S": "icm"}},
                                UpdateExpression="SET a = :v",
                                ExpressionAttributeValues={":v": {"N": "1"}},
                                ReturnItemCollectionMetrics="SIZE")
    assert "ItemCollectionMetrics" not in update


def test_item_collection_metrics_enum(server, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        raw_client(server).delete_item(TableName=table, Key={"pk": {"S": "x"}},
                                       ReturnItemCollectionMetrics="ALL")
    assert error_code(caught) == "ValidationException"
    assert "[SIZE, NONE]" in message(caught)


# --- table names and keys ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["ab", "x" * 256, "bad name", "sp@ce", "ünï"])
def test_invalid_table_names_are_validation_errors(server, name):  # noqa: F811
    # DynamoDB checks a name's form (3..255 characters of [a-zA-Z0-9_.-]) before looking
    # the table up: ValidationException, not ResourceNotFoundException.
    client_ = raw_client(server)
    for call in (
        lambda: client_.get_item(TableName=name, Key={"pk": {"S": "x"}}),
        lambda: client_.put_item(TableName=name, Item={"pk": {"S": "x"}}),
        lambda: client_.query(TableName=name, KeyConditionExpression="pk = :p",
                              ExpressionAttributeValues={":p": {"S": "x"}}),
        lambda: client_.scan(TableName=name),
        lambda: client_.describe_table(TableName=name),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == "ValidationException"
        assert "tableName" in message(caught)


def test_missing_table_with_a_valid_name(client):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.get_item(TableName="no-such-table", Key={"pk": {"S": "x"}})
    assert error_code(caught) == "ResourceNotFoundException"


def test_key_must_match_the_schema(client):  # noqa: F811
    name = new_table(client, sort_type="N")
    for key in (
        {"pk": {"S": "x"}},
        {"pk": {"S": "x"}, "sk": {"S": "1"}},
        {"pk": {"S": "x"}, "sk": {"N": "1"}, "extra": {"S": "y"}},
        {"pk": {"N": "1"}, "sk": {"N": "1"}},
    ):
        with pytest.raises(ClientError) as caught:
            client.get_item(TableName=name, Key=key)
        assert error_code(caught) == "ValidationException"
        assert message(caught) == "The provided key element does not match the schema"


def test_put_item_key_errors(client, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.put_item(TableName=table, Item={"a": {"S": "x"}})
    assert "Missing the key pk in the item" in message(caught)
    with pytest.raises(ClientError) as caught:
        client.put_item(TableName=table, Item={"pk": {"N": "1"}})
    assert "Type mismatch for key pk expected: S actual: N" in message(caught)
    with pytest.raises(ClientError) as caught:
        client.put_item(TableName=table, Item={"pk": {"S": ""}})
    assert error_code(caught) == "ValidationException"
    assert "empty string value. Key: pk" in message(caught)


def test_update_of_a_key_attribute_refused(client, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.update_item(TableName=table, Key={"pk": {"S": "k"}},
                           UpdateExpression="SET pk = :v",
                           ExpressionAttributeValues={":v": {"S": "other"}})
    assert error_code(caught) == "ValidationException"
    assert "This attribute is part of the key" in message(caught)


# --- SerializationException vs ValidationException --------------------------------------


def post(server_, operation: str, body: dict):  # noqa: F811
    """A signed request with exactly this JSON body (boto3 would re-encode some values)."""
    response = signed_post(server_.endpoint, f"DynamoDB_20120810.{operation}",
                           json.dumps(body).encode())
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "value",
    [{"N": 123}, {"N": 1.5}, {"S": 5}, {"B": "not base64!"}, {"B": "abc"}, {"BOOL": "yes"},
     {"L": {"a": {"N": "1"}}}, {"M": [1]}, {"SS": "a"}, "plain"],
)
def test_wrong_json_types_are_serialization_errors(server, table, value):  # noqa: F811
    status, body = post(server, "PutItem",
                        {"TableName": table, "Item": {"pk": {"S": "ser"}, "a": value}})
    assert status == 400
    assert body["__type"].endswith("#SerializationException")
    status, body = post(server, "UpdateItem", {
        "TableName": table, "Key": {"pk": {"S": "ser"}}, "UpdateExpression": "SET a = :v",
        "ExpressionAttributeValues": {":v": value},
    })
    assert body["__type"].endswith("#SerializationException")
    status, body = post(server, "UpdateItem", {
        "TableName": table, "Key": {"pk": {"S": "ser"}}, "UpdateExpression": "SET a = :good",
        "ConditionExpression": "a < :bad",
        "ExpressionAttributeValues": {":good": {"N": "1"}, ":bad": value},
    })
    assert body["__type"].endswith("#SerializationException")


@pytest.mark.parametrize("text", [" 1", "1 ", "NaN", "Infinity", "dog"])
def test_invalid_numbers_are_validation_errors(server, table, text):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        raw_client(server).update_item(TableName=table, Key={"pk": {"S": "num"}},
                                       UpdateExpression="SET a = :v",
                                       ExpressionAttributeValues={":v": {"N": text}})
    assert error_code(caught) == "ValidationException"
    assert "numeric" in message(caught)


def test_empty_attribute_value_is_a_validation_error(server, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        raw_client(server).put_item(TableName=table, Item={"pk": {"S": "e"}, "a": {}})
    assert error_code(caught) == "ValidationException"
    assert "Supplied AttributeValue is empty" in message(caught)


# --- behaviour --------------------------------------------------------------------------


def test_update_without_actions_creates_the_key_only_item(client, table):  # noqa: F811
    key = {"pk": {"S": "touched"}}
    client.update_item(TableName=table, Key=key)
    assert client.get_item(TableName=table, Key=key)["Item"] == key


def test_remove_only_update_of_a_missing_item_creates_nothing(client, table):  # noqa: F811
    key = {"pk": {"S": "remove-only"}}
    client.update_item(TableName=table, Key=key, UpdateExpression="REMOVE a")
    assert "Item" not in client.get_item(TableName=table, Key=key)


def test_get_item_nested_projection(client, table):  # noqa: F811
    key = {"pk": {"S": "proj"}}
    client.put_item(TableName=table, Item={
        **key, "a": {"M": {"b": {"L": [{"N": "0"}, {"N": "1"}, {"N": "2"}]}, "c": {"S": "x"}}},
        "z": {"S": "dropped"},
    })
    item = client.get_item(TableName=table, Key=key, ProjectionExpression="a.b[1], #c",
                           ExpressionAttributeNames={"#c": "pk"})["Item"]
    assert item == {**key, "a": {"M": {"b": {"L": [{"N": "1"}]}}}}


def test_consistent_read_must_be_boolean(server, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        raw_client(server).get_item(TableName=table, Key={"pk": {"S": "x"}},
                                    ConsistentRead="yes")
    assert error_code(caught) == "SerializationException"


def test_unused_placeholders_refused(client, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.put_item(TableName=table, Item={"pk": {"S": "u"}},
                        ConditionExpression="attribute_not_exists(pk)",
                        ExpressionAttributeValues={":unused": {"S": "x"}})
    assert error_code(caught) == "ValidationException"
    assert "unused in expressions: keys: {:unused}" in message(caught)


def test_placeholders_without_expressions_refused(client, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.get_item(TableName=table, Key={"pk": {"S": "u"}},
                        ExpressionAttributeNames={"#a": "a"})
    assert message(caught) == (
        "ExpressionAttributeNames can only be specified when using expressions"
    )


# --- BatchWriteItem / BatchGetItem ------------------------------------------------------


def test_batch_limits(client, table):  # noqa: F811
    other = new_table(client, sort_type=None)
    with pytest.raises(ClientError) as caught:
        client.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {"pk": {"S": f"b{i}"}}}} for i in range(26)]})
    assert error_code(caught) == "ValidationException"
    assert "length less than or equal to 25" in message(caught)
    with pytest.raises(ClientError) as caught:
        client.batch_write_item(RequestItems={
            name: [{"PutRequest": {"Item": {"pk": {"S": f"b{i}"}}}} for i in range(13)]
            for name in (table, other)})
    assert message(caught) == "Too many items requested for the BatchWriteItem call"
    with pytest.raises(ClientError) as caught:
        client.batch_get_item(RequestItems={
            name: {"Keys": [{"pk": {"S": f"b{i}"}} for i in range(51)]}
            for name in (table, other)})
    assert message(caught) == "Too many items requested for the BatchGetItem call"
    with pytest.raises(ClientError) as caught:
        client.batch_get_item(RequestItems={table: {
            "Keys": [{"pk": {"S": f"b{i}"}} for i in range(101)]}})
    assert "length less than or equal to 100" in message(caught)
    # Nothing was written by the refused batches.
    assert "Item" not in client.get_item(TableName=table, Key={"pk": {"S": "b0"}})


@pytest.mark.parametrize(
    "requests",
    [
        [{"PutRequest": {"Item": {"pk": {"S": "d"}}}},
         {"PutRequest": {"Item": {"pk": {"S": "d"}}}}],
        [{"DeleteRequest": {"Key": {"pk": {"S": "d"}}}},
         {"PutRequest": {"Item": {"pk": {"S": "d"}, "a": {"N": "1"}}}}],
    ],
)
def test_batch_write_duplicates(client, table, requests):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.batch_write_item(RequestItems={table: requests})
    assert error_code(caught) == "ValidationException"
    assert "duplicates" in message(caught)


def test_batch_get_duplicates(client, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.batch_get_item(RequestItems={table: {"Keys": [{"pk": {"S": "x"}}] * 2}})
    assert "duplicates" in message(caught)


def test_batch_write_is_validated_before_anything_is_written(client, table):  # noqa: F811
    with pytest.raises(ClientError):
        client.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {"pk": {"S": "v1"}}}},
            {"PutRequest": {"Item": {"pk": {"N": "3"}}}},
        ]})
    assert "Item" not in client.get_item(TableName=table, Key={"pk": {"S": "v1"}})


def test_batch_empty_and_unprocessed(server, client, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        raw_client(server).batch_write_item(RequestItems={})
    assert error_code(caught) == "ValidationException"
    written = client.batch_write_item(RequestItems={table: [
        {"PutRequest": {"Item": {"pk": {"S": "u1"}, "a": {"S": "hi"}}}}]})
    assert written["UnprocessedItems"] == {}
    read = client.batch_get_item(RequestItems={table: {
        "Keys": [{"pk": {"S": "u1"}}, {"pk": {"S": "never"}}], "ProjectionExpression": "a",
        "ConsistentRead": True}})
    assert read["UnprocessedKeys"] == {}
    assert read["Responses"] == {table: [{"a": {"S": "hi"}}]}


def test_batch_invalid_table_name(server):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        raw_client(server).batch_get_item(RequestItems={"x": {"Keys": [{"pk": {"S": "a"}}]}})
    assert error_code(caught) == "ValidationException"
    with pytest.raises(ClientError) as caught:
        raw_client(server).batch_write_item(RequestItems={"missing-table": [
            {"PutRequest": {"Item": {"pk": {"S": "a"}}}}]})
    assert error_code(caught) == "ResourceNotFoundException"


def test_projection_of_nothing_returns_an_empty_item(client, table):  # noqa: F811
    # The item exists, none of the projected paths do: DynamoDB answers "Item": {}.
    key = {"pk": {"S": "empty-projection"}}
    client.put_item(TableName=table, Item={**key, "a": {"M": {"b": {"N": "1"}}}})
    for expression in ("x", "a.x", "a[0]", "a.b.c"):
        response = client.get_item(TableName=table, Key=key, ProjectionExpression=expression)
        assert response["Item"] == {}, expression
    response = client.get_item(TableName=table, Key=key, AttributesToGet=["nothing"])
    assert response["Item"] == {}
    assert "Item" not in client.get_item(TableName=table, Key={"pk": {"S": "absent"}},
                                         ProjectionExpression="x")
