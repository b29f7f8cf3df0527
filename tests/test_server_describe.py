"""DescribeTable, DescribeBackup and RestoreSummary as DynamoDB fills them, through a real
server and boto3 (API Reference: TableDescription, SourceTableDetails, RestoreSummary,
ProvisionedThroughputDescription, BillingModeSummary); a PROVISIONED table keeps its mode
and units through DescribeTable, UpdateTable, backups and restores;
ReturnValuesOnConditionCheckFailure with the legacy Expected parameter."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import uuid

import boto3
import pytest
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

from engine.backup.restore_manager import RestoreJob

_names = itertools.count()
KEY_SCHEMA = [{"AttributeName": "pk", "KeyType": "HASH"}]
DEFINITIONS = [{"AttributeName": "pk", "AttributeType": "S"}]


def unique(prefix: str) -> str:
    return f"describe-{prefix}-{next(_names)}"


def raw_client(server_):  # noqa: F811
    """No client-side validation: out-of-range units reach the server."""
    return boto3.client(
        "dynamodb", endpoint_url=server_.endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}, parameter_validation=False),
    )


def create(client, name: str, **billing) -> dict:  # noqa: F811
    return client.create_table(TableName=name, KeySchema=KEY_SCHEMA,
                               AttributeDefinitions=DEFINITIONS, **billing)["TableDescription"]


def fill(client, name: str, count: int) -> None:  # noqa: F811
    for index in range(count):
        client.put_item(TableName=name,
                        Item={"pk": {"S": f"item-{index:04d}"}, "body": {"S": "x" * 200}})


def backup_id(arn: str) -> str:
    return arn.rsplit("/backup/", 1)[1]


def backed_up(client, engine, name: str) -> str:  # noqa: F811
    """Back ``name`` up and wait until it is AVAILABLE; returns its ARN."""
    arn = client.create_backup(TableName=name, BackupName="describe")["BackupDetails"][
        "BackupArn"]
    assert engine.wait_for_backup(backup_id(arn), timeout=60)["status"] == "AVAILABLE"
    return arn


# --- DescribeTable ----------------------------------------------------------------------


def test_table_id_is_a_uuid_and_stays_the_tables(client):  # noqa: F811
    name = unique("uuid")
    created = create(client, name, BillingMode="PAY_PER_REQUEST")
    table_id = created["TableId"]
    assert str(uuid.UUID(table_id)) == table_id  # 8-4-4-4-12, lower case
    assert uuid.UUID(table_id).version == 4
    assert client.describe_table(TableName=name)["Table"]["TableId"] == table_id
    other = create(client, unique("uuid"), BillingMode="PAY_PER_REQUEST")
    assert other["TableId"] != table_id


def test_pay_per_request_table_description(client):  # noqa: F811
    name = unique("ondemand")
    created = create(client, name, BillingMode="PAY_PER_REQUEST")
    fill(client, name, 3)
    table = client.describe_table(TableName=name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["TableArn"] == f"arn:aws:dynamodb:{REGION}:000000000000:table/{name}"
    assert table["CreationDateTime"] == created["CreationDateTime"]
    assert isinstance(table["CreationDateTime"], dt.datetime)
    assert table["ItemCount"] == 3
    assert isinstance(table["TableSizeBytes"], int) and table["TableSizeBytes"] > 0
    assert table["ProvisionedThroughput"] == {
        "NumberOfDecreasesToday": 0, "ReadCapacityUnits": 0, "WriteCapacityUnits": 0}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["BillingModeSummary"]["LastUpdateToPayPerRequestDateTime"] == \
        table["CreationDateTime"]
    assert "RestoreSummary" not in table


def test_create_table_without_billing_mode_or_throughput_is_refused(client):  # noqa: F811
    """BillingMode defaults to PROVISIONED, which needs ProvisionedThroughput: DynamoDB
    refuses a CreateTable with neither, and so does this server (nothing is created)."""
    name = unique("default")
    with pytest.raises(ClientError) as caught:
        create(client, name)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert error["Message"] == "No provisioned throughput specified for the table"
    assert name not in client.list_tables()["TableNames"]
    with pytest.raises(ClientError, match="No provisioned throughput"):
        create(client, name, BillingMode="PROVISIONED")


@pytest.mark.parametrize("billing", [
    {"ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 7}},
    {"BillingMode": "PROVISIONED",
     "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 7}},
])
def test_provisioned_table_keeps_its_mode_and_units(client, billing):  # noqa: F811
    name = unique("provisioned")
    created = create(client, name, **billing)
    for table in (created, client.describe_table(TableName=name)["Table"]):
        assert table["ProvisionedThroughput"] == {
            "NumberOfDecreasesToday": 0, "ReadCapacityUnits": 5, "WriteCapacityUnits": 7}
        assert table["BillingModeSummary"] == {"BillingMode": "PROVISIONED"}
    assert "ProvisionedThroughput" in client.describe_table(TableName=name)["Table"]


@pytest.mark.parametrize(("billing", "fragment"), [
    ({"BillingMode": "PAY_PER_REQUEST",
      "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}},
     "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is "
     "PAY_PER_REQUEST"),
    ({"BillingMode": "PROVISIONED"}, "No provisioned throughput specified for the table"),
    ({"BillingMode": "PROVISIONED", "ProvisionedThroughput": {"ReadCapacityUnits": 1}},
     "must both be specified"),
    ({"ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 1}},
     "Value '0' at 'provisionedThroughput.readCapacityUnits' failed to satisfy constraint: "
     "Member must have value greater than or equal to 1"),
    ({"BillingMode": "ON_DEMAND"}, "Member must satisfy enum value set"),
    ({"BillingMode": "PAY_PER_REQUEST", "DeletionProtectionEnabled": True},
     "Deletion protection is not supported"),
])
def test_create_table_billing_rules(server, billing, fragment):  # noqa: F811
    name = unique("refused")
    with pytest.raises(ClientError) as caught:
        create(raw_client(server), name, **billing)
    assert error_code(caught) == "ValidationException"
    assert fragment in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        raw_client(server).describe_table(TableName=name)
    assert error_code(caught) == "ResourceNotFoundException"


def test_update_table_changes_billing_mode_and_units(client, engine):  # noqa: F811
    name = unique("update-billing")
    created = create(client, name, BillingMode="PAY_PER_REQUEST")
    answer = client.update_table(TableName=name, BillingMode="PROVISIONED",
                                 ProvisionedThroughput={"ReadCapacityUnits": 4,
                                                        "WriteCapacityUnits": 6})
    for table in (answer["TableDescription"], client.describe_table(TableName=name)["Table"]):
        assert table["BillingModeSummary"] == {"BillingMode": "PROVISIONED"}
        assert table["ProvisionedThroughput"] == {
            "NumberOfDecreasesToday": 0, "ReadCapacityUnits": 4, "WriteCapacityUnits": 6}
    # Units alone on a PROVISIONED table; the mode stays.
    client.update_table(TableName=name, ProvisionedThroughput={"ReadCapacityUnits": 8,
                                                               "WriteCapacityUnits": 8})
    table = client.describe_table(TableName=name)["Table"]
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 8
    assert table["BillingModeSummary"] == {"BillingMode": "PROVISIONED"}
    # Back to on demand: 0/0 and the time of the switch.
    client.update_table(TableName=name, BillingMode="PAY_PER_REQUEST")
    table = client.describe_table(TableName=name)["Table"]
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 0
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["BillingModeSummary"]["LastUpdateToPayPerRequestDateTime"] >= \
        created["CreationDateTime"]
    source = client.describe_backup(BackupArn=backed_up(client, engine, name))[
        "BackupDescription"]["SourceTableDetails"]
    assert source["BillingMode"] == "PAY_PER_REQUEST"


@pytest.mark.parametrize(("update", "fragment"), [
    ({"BillingMode": "PROVISIONED"}, "must both be specified"),
    ({"ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}},
     "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified"),
    ({"BillingMode": "PROVISIONED",
      "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 1}},
     "greater than or equal to 1"),
])
def test_update_table_billing_rules(server, client, update, fragment):  # noqa: F811
    name = unique("update-refused")
    create(client, name, BillingMode="PAY_PER_REQUEST")
    before = client.describe_table(TableName=name)["Table"]
    with pytest.raises(ClientError) as caught:
        raw_client(server).update_table(TableName=name, **update)
    assert error_code(caught) == "ValidationException"
    assert fragment in caught.value.response["Error"]["Message"]
    after = client.describe_table(TableName=name)["Table"]
    assert after["BillingModeSummary"] == before["BillingModeSummary"]
    assert after["ProvisionedThroughput"] == before["ProvisionedThroughput"]


def test_update_table_billing_of_a_missing_table(client):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.update_table(TableName=unique("missing"), BillingMode="PAY_PER_REQUEST")
    assert error_code(caught) == "ResourceNotFoundException"


# --- DescribeBackup ---------------------------------------------------------------------


def test_describe_backup_source_table_details_describe_the_table(client, engine):  # noqa: F811
    name = unique("source")
    create(client, name, ProvisionedThroughput={"ReadCapacityUnits": 3, "WriteCapacityUnits": 4})
    fill(client, name, 40)
    table = client.describe_table(TableName=name)["Table"]
    arn = backed_up(client, engine, name)
    description = client.describe_backup(BackupArn=arn)["BackupDescription"]
    details, source = description["BackupDetails"], description["SourceTableDetails"]
    assert details["BackupArn"] == arn and details["BackupStatus"] == "AVAILABLE"
    assert details["BackupType"] == "USER"
    assert source["TableName"] == name
    assert source["TableId"] == table["TableId"]
    assert source["TableArn"] == table["TableArn"]
    assert source["KeySchema"] == KEY_SCHEMA
    # The source table's creation time, not the backup's.
    assert source["TableCreationDateTime"] == table["CreationDateTime"]
    assert details["BackupCreationDateTime"] >= table["CreationDateTime"]
    # The table's size when the backup was taken (nothing was written since), not the
    # compressed backup's (that is BackupSizeBytes).
    assert source["TableSizeBytes"] == table["TableSizeBytes"]
    assert details["BackupSizeBytes"] > 0
    assert source["ItemCount"] == 40
    assert source["BillingMode"] == "PROVISIONED"
    assert source["ProvisionedThroughput"] == {"ReadCapacityUnits": 3, "WriteCapacityUnits": 4}
    assert "SourceTableFeatureDetails" in description
    summary = next(s for s in client.list_backups(TableName=name)["BackupSummaries"]
                   if s["BackupArn"] == arn)
    assert summary["TableId"] == table["TableId"]


def test_describe_backup_of_an_on_demand_table(client, engine):  # noqa: F811
    name = unique("source-ondemand")
    create(client, name, BillingMode="PAY_PER_REQUEST")
    source = client.describe_backup(BackupArn=backed_up(client, engine, name))[
        "BackupDescription"]["SourceTableDetails"]
    assert source["BillingMode"] == "PAY_PER_REQUEST"
    assert source["ProvisionedThroughput"] == {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0}
    assert source["ItemCount"] == 0


# --- RestoreSummary ---------------------------------------------------------------------


@pytest.fixture
def held_restores(monkeypatch):
    """Restores wait (before their first download) until the test sets the event, so a
    test sees a restore in progress without racing it."""
    release = threading.Event()
    run = RestoreJob.run

    def held(job, *args, **kwargs):
        release.wait(timeout=60)
        return run(job, *args, **kwargs)

    monkeypatch.setattr(RestoreJob, "run", held)
    yield release
    release.set()


def test_restore_summary_while_restoring_and_after(client, engine, held_restores):  # noqa: F811
    name = unique("restore-source")
    create(client, name, ProvisionedThroughput={"ReadCapacityUnits": 2, "WriteCapacityUnits": 9})
    fill(client, name, 5)
    source_table = client.describe_table(TableName=name)["Table"]
    arn = backed_up(client, engine, name)
    backup_time = client.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"][
        "BackupCreationDateTime"]
    target = unique("restored")
    expected = {"SourceBackupArn": arn, "SourceTableArn": source_table["TableArn"],
                "RestoreDateTime": backup_time}

    restoring = client.restore_table_from_backup(TargetTableName=target, BackupArn=arn)[
        "TableDescription"]
    during = client.describe_table(TableName=target)["Table"]
    for table in (restoring, during):
        assert table["TableStatus"] == "CREATING"
        assert table["RestoreSummary"] == {**expected, "RestoreInProgress": True}
    held_restores.set()
    assert engine.wait_for_table(target, timeout=60)["status"] == "ACTIVE"

    after = client.describe_table(TableName=target)["Table"]
    assert after["TableStatus"] == "ACTIVE"
    assert after["RestoreSummary"] == {**expected, "RestoreInProgress": False}
    assert after["ItemCount"] == 5
    assert after["TableId"] != source_table["TableId"]
    assert str(uuid.UUID(after["TableId"])) == after["TableId"]
    # A restored PROVISIONED table keeps its mode and units.
    assert after["BillingModeSummary"] == {"BillingMode": "PROVISIONED"}
    assert after["ProvisionedThroughput"] == {
        "NumberOfDecreasesToday": 0, "ReadCapacityUnits": 2, "WriteCapacityUnits": 9}

    # The summary outlives the backup it names.
    client.delete_backup(BackupArn=arn)
    assert client.describe_table(TableName=target)["Table"]["RestoreSummary"] == {
        **expected, "RestoreInProgress": False}

    # A backup of the restored table records the restored billing too.
    again = client.describe_backup(BackupArn=backed_up(client, engine, target))[
        "BackupDescription"]["SourceTableDetails"]
    assert again["BillingMode"] == "PROVISIONED"
    assert again["ProvisionedThroughput"] == {"ReadCapacityUnits": 2, "WriteCapacityUnits": 9}


def test_restore_of_an_on_demand_table_stays_on_demand(client, engine):  # noqa: F811
    name = unique("restore-ondemand")
    create(client, name, BillingMode="PAY_PER_REQUEST")
    arn = backed_up(client, engine, name)
    target = unique("restored-ondemand")
    client.restore_table_from_backup(TargetTableName=target, BackupArn=arn)
    engine.wait_for_table(target, timeout=60)
    table = client.describe_table(TableName=target)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 0
    assert table["RestoreSummary"]["RestoreInProgress"] is False


@pytest.mark.parametrize(("source", "override", "expected"), [
    ({"ProvisionedThroughput": {"ReadCapacityUnits": 2, "WriteCapacityUnits": 3}},
     {"BillingModeOverride": "PAY_PER_REQUEST"}, ("PAY_PER_REQUEST", 0, 0)),
    ({"BillingMode": "PAY_PER_REQUEST"},
     {"BillingModeOverride": "PROVISIONED",
      "ProvisionedThroughputOverride": {"ReadCapacityUnits": 7, "WriteCapacityUnits": 1}},
     ("PROVISIONED", 7, 1)),
    ({"ProvisionedThroughput": {"ReadCapacityUnits": 2, "WriteCapacityUnits": 3}},
     {"ProvisionedThroughputOverride": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}},
     ("PROVISIONED", 5, 5)),
])
def test_restore_billing_overrides(client, engine, source, override, expected):  # noqa: F811
    name = unique("override-source")
    create(client, name, **source)
    arn = backed_up(client, engine, name)
    target = unique("override-target")
    answer = client.restore_table_from_backup(TargetTableName=target, BackupArn=arn,
                                              **override)["TableDescription"]
    engine.wait_for_table(target, timeout=60)
    mode, read, write = expected
    for table in (answer, client.describe_table(TableName=target)["Table"]):
        assert table["BillingModeSummary"]["BillingMode"] == mode
        assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == read
        assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == write


def test_restore_billing_override_rules(server, client, engine):  # noqa: F811
    name = unique("override-refused")
    create(client, name, BillingMode="PAY_PER_REQUEST")
    arn = backed_up(client, engine, name)
    target = unique("never-restored")
    for override, fragment in [
        ({"BillingModeOverride": "PROVISIONED"}, "must both be specified"),
        ({"ProvisionedThroughputOverride": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}},
         "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified"),
    ]:
        with pytest.raises(ClientError) as caught:
            raw_client(server).restore_table_from_backup(TargetTableName=target,
                                                         BackupArn=arn, **override)
        assert error_code(caught) == "ValidationException"
        assert fragment in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        client.describe_table(TableName=target)
    assert error_code(caught) == "ResourceNotFoundException"


# --- ReturnValuesOnConditionCheckFailure ------------------------------------------------


def test_condition_failure_returns_the_old_item_with_legacy_expected(client):  # noqa: F811
    """tests/test_server_items.py covers ConditionExpression; the legacy Expected
    parameter is a condition too, and a failed one returns the item when asked."""
    name = unique("ccf")
    create(client, name, BillingMode="PAY_PER_REQUEST")
    item = {"pk": {"S": "k"}, "a": {"N": "1"}}
    client.put_item(TableName=name, Item=item)
    with pytest.raises(ClientError) as caught:
        client.put_item(TableName=name, Item={"pk": {"S": "k"}, "a": {"N": "2"}},
                        Expected={"a": {"Value": {"N": "5"}}},
                        ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert error_code(caught) == "ConditionalCheckFailedException"
    assert caught.value.response.get("Item") == item
    table = boto3.resource(
        "dynamodb", endpoint_url=client.meta.endpoint_url, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
    ).Table(name)
    with pytest.raises(ClientError) as caught:
        table.delete_item(Key={"pk": "k"}, ConditionExpression="a = :v",
                          ExpressionAttributeValues={":v": 9},
                          ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert caught.value.response.get("Item") == item
    assert client.get_item(TableName=name, Key={"pk": {"S": "k"}})["Item"] == item
