"""CreateTable, DescribeTable, ListTables, DeleteTable, and the TableDescription shape.

Tessera extensions, invisible to clients that do not use them: CreateTable reads the
partition count and scheme from the tags ``tessera:partitions`` and
``tessera:partitioning`` (``hash`` or ``range``).
"""

from __future__ import annotations

import uuid
from typing import Any

from engine.billing import PAY_PER_REQUEST, billing_of, check_billing
from engine.errors import ResourceInUseException, TableAlreadyExistsException, ValidationException

from .common import ServerContext, get, table_must_exist, table_name
from .common import limit as limit_member
from .indexes import attribute_definitions, index_attributes, index_descriptions, parse_index_list
from .indexes import update_table as _update_table

__all__ = [
    "create_table", "describe_table", "list_tables", "delete_table", "table_description",
    "update_table",
    "table_arn", "key_schema_json", "table_id_json", "provisioned_units", "billing_request",
    "changed_billing",
    "MAX_LIST_TABLES_LIMIT",
]

MAX_LIST_TABLES_LIMIT = 100


def table_arn(ctx: ServerContext, name: str, region: str | None = None) -> str:
    return f"arn:aws:dynamodb:{region or ctx.region}:{ctx.account_id}:table/{name}"



def table_id_json(table_id: Any) -> Any:
    """DynamoDB's TableId is a UUID (``8-4-4-4-12``); the engine keeps a uuid4's 32 hex
    digits. Anything else is passed through as it is."""
    try:
        return str(uuid.UUID(hex=table_id))
    except (TypeError, ValueError, AttributeError):
        return table_id


def provisioned_units(billing: dict) -> dict:
    """``ReadCapacityUnits`` / ``WriteCapacityUnits`` of a stored billing (engine.billing):
    0 and 0 for PAY_PER_REQUEST, as DynamoDB describes an on-demand table."""
    return {"ReadCapacityUnits": billing.get("read_capacity_units") or 0,
            "WriteCapacityUnits": billing.get("write_capacity_units") or 0}


def billing_request(request: dict) -> dict:
    """The stored billing (engine.billing) of a CreateTable request's ``BillingMode`` and
    ``ProvisionedThroughput``. DynamoDB's rules: PROVISIONED (the default) needs both units,
    PAY_PER_REQUEST takes none (CreateTable refuses a request with neither member before
    it gets here: "No provisioned throughput specified for the table")."""
    mode = request.get("BillingMode")
    if mode is not None and mode not in ("PROVISIONED", PAY_PER_REQUEST):
        raise ValidationException(
            f"1 validation error detected: Value '{mode}' at 'billingMode' failed to satisfy "
            "constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]")
    throughput = request.get("ProvisionedThroughput")
    if throughput is not None and not isinstance(throughput, dict):
        raise ValidationException("ProvisionedThroughput must be an object")
    if mode is None:
        mode = "PROVISIONED"  # DynamoDB's default: then the units are required
    billing: dict[str, Any] = {"mode": mode}
    if throughput is not None:
        billing["read_capacity_units"] = throughput.get("ReadCapacityUnits")
        billing["write_capacity_units"] = throughput.get("WriteCapacityUnits")
    return check_billing(billing)


def billing_json(billing: dict, created_at: float) -> tuple[dict, dict]:
    """(ProvisionedThroughput, BillingModeSummary) of a TableDescription."""
    throughput = {"NumberOfDecreasesToday": 0, **provisioned_units(billing)}
    summary: dict[str, Any] = {"BillingMode": billing["mode"]}
    if billing["mode"] == PAY_PER_REQUEST:
        summary["LastUpdateToPayPerRequestDateTime"] = (
            billing.get("switched_to_pay_per_request_at") or created_at)
    return throughput, summary


def billing_update(ctx: ServerContext, request: dict) -> dict | None:
    """The billing an UpdateTable request's ``BillingMode`` / ``ProvisionedThroughput``
    asks for (checked before anything changes), or None when it asks for no change.
    DynamoDB's rules: PROVISIONED needs units (the table's current ones when it already is
    PROVISIONED), PAY_PER_REQUEST takes none."""
    mode, throughput = request.get("BillingMode"), request.get("ProvisionedThroughput")
    if mode is None and throughput is None:
        return None
    name = table_name(request)
    with table_must_exist(name):
        current = billing_of(ctx.engine.describe_table(name))
    wanted = changed_billing(current, mode, throughput)
    unchanged = {key: value for key, value in current.items()
                 if key != "switched_to_pay_per_request_at"} == wanted
    return None if unchanged else wanted


def changed_billing(current: dict, mode: Any, throughput: Any) -> dict:
    """``current`` billing with a request's BillingMode and ProvisionedThroughput applied
    (UpdateTable; RestoreTableFromBackup's overrides): a missing mode keeps the current
    one, missing units keep the current ones of a PROVISIONED table."""
    asked = {"BillingMode": mode or current["mode"]}
    if throughput is not None:
        asked["ProvisionedThroughput"] = throughput
    elif asked["BillingMode"] == "PROVISIONED" and current["mode"] == "PROVISIONED":
        asked["ProvisionedThroughput"] = {
            "ReadCapacityUnits": current["read_capacity_units"],
            "WriteCapacityUnits": current["write_capacity_units"]}
    return billing_request(asked)


def restore_summary(ctx: ServerContext, description: dict) -> dict | None:
    """DynamoDB's RestoreSummary of a table restored from a backup: present while the
    restore runs (RestoreInProgress true) and after it (false). RestoreDateTime is the
    source backup's time ("point in time or source backup time", API Reference)."""
    restore = description.get("restore")
    if not isinstance(restore, dict) or "backup_id" not in restore:
        return None
    backup_id = restore["backup_id"]
    source_name, region = restore.get("source_table_name"), restore.get("source_region")
    backup_time = restore.get("backup_created_at")
    if source_name is None:  # restored before the record kept its source: ask the backup
        try:
            backup = ctx.engine.describe_backup(backup_id)
        except Exception:  # noqa: BLE001 - the backup may be gone; the summary stays
            backup = {}
        source_name, region = backup.get("table_name"), backup.get("region")
        backup_time = backup.get("created_at")
    summary: dict[str, Any] = {
        "RestoreDateTime": backup_time or restore.get("started_at") or 0,
        "RestoreInProgress": description["status"] == "CREATING",
    }
    if source_name is not None:
        source_arn = table_arn(ctx, source_name, region)
        summary["SourceBackupArn"] = f"{source_arn}/backup/{backup_id}"
        summary["SourceTableArn"] = source_arn
    return summary


def key_schema_json(key_schema: Any) -> list[dict]:
    return [
        {"AttributeName": name, "KeyType": "HASH" if position == 0 else "RANGE"}
        for position, (name, _kind) in enumerate(key_schema)
    ]



def table_description(ctx: ServerContext, description: dict) -> dict:
    name = description["name"]
    created_at = description.get("created_at") or 0
    throughput, billing_summary = billing_json(billing_of(description), created_at)
    table = {
        "TableName": name,
        "TableStatus": description["status"],
        "KeySchema": key_schema_json(description["key_schema"]),
        "AttributeDefinitions": attribute_definitions(description),
        "CreationDateTime": created_at,
        "ItemCount": description.get("item_count") or 0,
        "TableSizeBytes": description.get("size_bytes") or 0,
        "TableArn": table_arn(ctx, name),
        "TableId": table_id_json(description.get("table_id")),
        "ProvisionedThroughput": throughput,
        "BillingModeSummary": billing_summary,
        "DeletionProtectionEnabled": False,
    }
    table.update(index_descriptions(table["TableArn"], description))
    restored = restore_summary(ctx, description)
    if restored is not None:
        table["RestoreSummary"] = restored
    return table



def create_table(ctx: ServerContext, request: dict) -> dict:
    name = table_name(request)
    stream = request.get("StreamSpecification")
    if isinstance(stream, dict) and stream.get("StreamEnabled"):
        raise ValidationException("Streams (StreamSpecification) are not supported by this server")
    if request.get("BillingMode") in (None, "PROVISIONED") \
            and request.get("ProvisionedThroughput") is None:
        # CreateTable's mode defaults to PROVISIONED, whose units DynamoDB then requires.
        raise ValidationException("No provisioned throughput specified for the table")
    billing = billing_request(request)
    if request.get("DeletionProtectionEnabled"):  # as UpdateTable (operations/indexes.py)
        raise ValidationException("Deletion protection is not supported by this server")
    key_schema = get(request, "KeySchema", list, required=True)
    definitions = get(request, "AttributeDefinitions", list, required=True)
    types = {}
    for definition in definitions:
        if not isinstance(definition, dict) or not isinstance(definition.get("AttributeName"), str):
            raise ValidationException(
                "Each AttributeDefinition needs an AttributeName and an AttributeType"
            )
        kind = definition.get("AttributeType")
        if kind not in ("S", "N", "B"):
            raise ValidationException(
                f"1 validation error detected: Value '{kind}' at "
                "'attributeDefinitions.member.attributeType' "
                "failed to satisfy constraint: Member must satisfy enum value set: [B, N, S]"
            )
        types[definition["AttributeName"]] = kind
    if not 1 <= len(key_schema) <= 2:
        raise ValidationException("KeySchema must have one (HASH) or two (HASH, RANGE) elements")
    expected_roles = ["HASH", "RANGE"][: len(key_schema)]
    schema = []
    for element, role in zip(key_schema, expected_roles, strict=True):
        if not isinstance(element, dict) or element.get("KeyType") != role:
            raise ValidationException(
                "Invalid KeySchema: The first KeySchemaElement is not a HASH key type"
                if role == "HASH"
                else "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type"
            )
        attribute = element.get("AttributeName")
        if attribute not in types:
            raise ValidationException(
                "One or more parameter values were invalid: Some index key attributes are not "
                f"defined in AttributeDefinitions. Keys: [{attribute}], AttributeDefinitions: "
                f"[{', '.join(types)}]"
            )
        schema.append((attribute, types[attribute]))
    if len(schema) == 2 and schema[0][0] == schema[1][0]:
        raise ValidationException(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name"
        )
    local_indexes = parse_index_list(request, "LocalSecondaryIndexes", types)
    global_indexes = parse_index_list(request, "GlobalSecondaryIndexes", types,
                                      request.get("BillingMode"))
    used = {attribute for attribute, _ in schema} | index_attributes(local_indexes,
                                                                     global_indexes)
    if set(types) != used:
        raise ValidationException(
            "One or more parameter values were invalid: Number of attributes in KeySchema does "
            "not exactly "
            "match number of attributes defined in AttributeDefinitions"
        )

    partitions = ctx.default_partitions
    partitioning = "hash"
    for tag in request.get("Tags") or []:
        if not isinstance(tag, dict):
            continue
        if tag.get("Key") == "tessera:partitions":
            try:
                partitions = int(tag.get("Value"))
            except (TypeError, ValueError):
                raise ValidationException(
                    f"Tag tessera:partitions must be an integer, got {tag.get('Value')!r}"
                ) from None
        elif tag.get("Key") == "tessera:partitioning":
            partitioning = tag.get("Value")
            if partitioning not in ("hash", "range"):
                raise ValidationException(
                    f"Tag tessera:partitioning must be 'hash' or 'range', got {partitioning!r}"
                )
    try:
        description = ctx.engine.create_table(
            name,
            partition_key=schema[0],
            sort_key=schema[1] if len(schema) == 2 else None,
            partitions=partitions,
            partitioning=partitioning,
            billing=billing,
            local_indexes=local_indexes,
            global_indexes=global_indexes,
        )
        if local_indexes or global_indexes:  # the engine describes indexes on describe
            description = ctx.engine.describe_table(name)
    except TableAlreadyExistsException as err:
        raise ResourceInUseException(f"Table already exists: {name}") from err
    return {"TableDescription": table_description(ctx, description)}


def describe_table(ctx: ServerContext, request: dict) -> dict:
    name = table_name(request)
    with table_must_exist(name):
        description = ctx.engine.describe_table(name)
    return {"Table": table_description(ctx, description)}


def list_tables(ctx: ServerContext, request: dict) -> dict:
    start = get(request, "ExclusiveStartTableName", str)
    limit = limit_member(request, maximum=MAX_LIST_TABLES_LIMIT) or MAX_LIST_TABLES_LIMIT
    names = sorted(ctx.engine.list_tables())
    if start is not None:
        names = [name for name in names if name > start]
    response: dict[str, Any] = {"TableNames": names[:limit]}
    if len(names) > limit:
        response["LastEvaluatedTableName"] = names[limit - 1]
    return response


def delete_table(ctx: ServerContext, request: dict) -> dict:
    name = table_name(request)
    with table_must_exist(name):
        description = ctx.engine.delete_table(name)
    description = dict(description)
    description["status"] = "DELETING"
    return {"TableDescription": table_description(ctx, description)}


def update_table(ctx: ServerContext, request: dict) -> dict:
    """UpdateTable: secondary index changes (engine/server/operations/indexes.py); a
    BillingMode / ProvisionedThroughput change is stored (Engine.set_billing)."""
    billing = billing_update(ctx, request)  # checked before any index change
    answer = _update_table(ctx, request, lambda description: table_description(ctx, description))
    if billing is not None:
        description = ctx.engine.set_billing(table_name(request), billing)
        answer["TableDescription"] = table_description(ctx, description)
    return answer
