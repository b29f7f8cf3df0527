"""Secondary indexes on the wire: CreateTable's ``LocalSecondaryIndexes`` /
``GlobalSecondaryIndexes`` turned into engine definitions, the index parts of a
TableDescription, UpdateTable's ``GlobalSecondaryIndexUpdates``, and the index handles
Query and Scan read through.

DynamoDB's rules (API Reference: CreateTable, UpdateTable, LocalSecondaryIndex,
GlobalSecondaryIndex, Projection; Developer Guide: "Improving data access with secondary
indexes"): every key attribute of the table and of its indexes is declared once in
``AttributeDefinitions`` and every declared attribute is used by some key schema; an
index needs ``IndexName``, ``KeySchema`` (HASH, then optional RANGE) and ``Projection``;
``NonKeyAttributes`` only with ``INCLUDE``. The limits (5 LSIs, 20 GSIs, 100 projected
non-key attributes, the LSI's hash key equal to the table's, names unique) are checked
by the engine (:mod:`engine.indexes.definitions`), which says so in DynamoDB's words.

GSI throughput is not metered: ``ProvisionedThroughput`` of an index is accepted and
described as zero, and UpdateTable's ``Update`` of an existing GSI is a no-op.
"""

from __future__ import annotations

from typing import Any

from engine.errors import LimitExceededException, ResourceNotFoundException, ValidationException

from .common import ServerContext, constraint_error, get, table_must_exist, table_name_problems

__all__ = [
    "parse_index_list", "index_attributes", "attribute_definitions", "index_descriptions",
    "update_table", "open_index", "projection_json", "backup_features", "restore_overrides",
]

_PROJECTION_TYPES = ("ALL", "KEYS_ONLY", "INCLUDE")


def _where(member: str, position: int, field: str) -> str:
    return f"{member}.{position}.member.{field}"


def _index_name(value: Any, where: str) -> str:
    if value is None:
        raise constraint_error(None, where, "Member must not be null")
    if not isinstance(value, str):
        raise ValidationException(f"{where} must be a string, got {type(value).__name__}")
    problems = table_name_problems(value)
    if problems:
        count = len(problems)
        raise ValidationException(
            f"{count} validation error{'s' if count > 1 else ''} detected: "
            + "; ".join(f"Value '{value}' at '{where}' failed to satisfy constraint: {p}"
                        for p in problems))
    return value


def _key_schema(value: Any, where: str) -> list[str]:
    """An index KeySchema: the attribute names, HASH first then an optional RANGE."""
    if value is None:
        raise constraint_error(None, where, "Member must not be null")
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        raise ValidationException(
            f"1 validation error detected: Value at '{where}' failed to satisfy constraint: "
            "Member must have length less than or equal to 2 and greater than or equal to 1")
    names = []
    for element, role in zip(value, ("HASH", "RANGE"), strict=False):
        if not isinstance(element, dict) or element.get("KeyType") != role:
            raise ValidationException(
                "Invalid KeySchema: The first KeySchemaElement is not a HASH key type"
                if role == "HASH"
                else "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type")
        attribute = element.get("AttributeName")
        if not isinstance(attribute, str) or not attribute:
            raise constraint_error(None, f"{where}.member.attributeName",
                                   "Member must not be null")
        names.append(attribute)
    if len(names) == 2 and names[0] == names[1]:
        raise ValidationException(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name")
    return names


def _projection(value: Any, where: str) -> Any:
    """A DynamoDB Projection as the engine's projection (``"ALL"`` / ``"KEYS_ONLY"`` /
    ``{"type": "INCLUDE", "non_key_attributes": [...]}``)."""
    if value is None:
        raise constraint_error(None, where, "Member must not be null")
    if not isinstance(value, dict):
        raise ValidationException(f"{where} must be a Projection object")
    kind = value.get("ProjectionType")
    non_key = value.get("NonKeyAttributes")
    if kind is None:
        kind = "INCLUDE" if non_key else "ALL"  # DynamoDB's default is ALL
    if kind not in _PROJECTION_TYPES:
        raise constraint_error(kind, f"{where}.projectionType",
                               f"Member must satisfy enum value set: [{', '.join(_PROJECTION_TYPES)}]")
    if non_key is not None and kind != "INCLUDE":
        raise ValidationException(
            f"One or more parameter values were invalid: ProjectionType is {kind}, but "
            "NonKeyAttributes is specified")
    if kind != "INCLUDE":
        return kind
    if not isinstance(non_key, list) or not non_key:
        raise ValidationException(
            "One or more parameter values were invalid: ProjectionType is INCLUDE, but "
            "NonKeyAttributes is not specified")
    return {"type": "INCLUDE", "non_key_attributes": non_key}


def _throughput(value: Any, where: str, billing_mode: str | None) -> None:
    """A GSI's ProvisionedThroughput: not metered here; refused with PAY_PER_REQUEST as
    DynamoDB refuses it."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise ValidationException(f"{where} must be a ProvisionedThroughput object")
    if billing_mode == "PAY_PER_REQUEST" and (value.get("ReadCapacityUnits")
                                              or value.get("WriteCapacityUnits")):
        raise ValidationException(
            "One or more parameter values were invalid: ProvisionedThroughput should not be "
            "specified for index: "
            f"{where.split('.')[0]} when BillingMode is PAY_PER_REQUEST")


def parse_index_list(request: dict, member: str, types: dict[str, str],
                     billing_mode: str | None = None) -> list[dict] | None:
    """``LocalSecondaryIndexes`` / ``GlobalSecondaryIndexes`` (``member``) of a request as
    engine definitions, key types from ``types`` (the AttributeDefinitions); None when
    absent."""
    value = request.get(member)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValidationException(f"{member} must be a list")
    if not value:
        raise ValidationException(
            f"One or more parameter values were invalid: List of {member} is empty")
    lower = member[0].lower() + member[1:]
    return [parse_index(data, lower, position, types, billing_mode)
            for position, data in enumerate(value, start=1)]


def parse_index(data: Any, member: str, position: int, types: dict[str, str],
                billing_mode: str | None = None) -> dict:
    """One LocalSecondaryIndex / GlobalSecondaryIndex / CreateGlobalSecondaryIndexAction as
    an engine definition."""
    if not isinstance(data, dict):
        raise ValidationException(f"{member} entries must be objects")
    name = _index_name(data.get("IndexName"), _where(member, position, "indexName"))
    keys = _key_schema(data.get("KeySchema"), _where(member, position, "keySchema"))
    projection = _projection(data.get("Projection"), _where(member, position, "projection"))
    _throughput(data.get("ProvisionedThroughput"), name, billing_mode)
    missing = [key for key in keys if key not in types]
    if missing:
        raise ValidationException(
            "One or more parameter values were invalid: Some index key attributes are not "
            f"defined in AttributeDefinitions. Keys: [{', '.join(missing)}], "
            f"AttributeDefinitions: [{', '.join(types)}]")
    return {"name": name, "key_schema": [(key, types[key]) for key in keys],
            "projection": projection}


def index_attributes(*definition_lists: list[dict] | None) -> set[str]:
    """Every key attribute named by the definitions."""
    return {name for definitions in definition_lists for definition in definitions or ()
            for name, _ in definition["key_schema"]}


def projection_json(projection: dict) -> dict:
    """The engine's projection (``{"type", "non_key_attributes"?}``) as DynamoDB's."""
    result: dict[str, Any] = {"ProjectionType": projection["type"]}
    if projection["type"] == "INCLUDE":
        result["NonKeyAttributes"] = list(projection.get("non_key_attributes") or [])
    return result


def _key_schema_json(key_schema: Any) -> list[dict]:
    return [{"AttributeName": name, "KeyType": "HASH" if position == 0 else "RANGE"}
            for position, (name, _kind) in enumerate(key_schema)]


def attribute_definitions(description: dict) -> list[dict]:
    """AttributeDefinitions of a described table: its key attributes, then each index's
    (each attribute once, as DynamoDB lists what CreateTable declared)."""
    types: dict[str, str] = {}
    for name, kind in description["key_schema"]:
        types.setdefault(name, kind)
    for index in [*description.get("local_indexes", ()), *description.get("global_indexes", ())]:
        for name, kind in index["key_schema"]:
            types.setdefault(name, kind)
    return [{"AttributeName": name, "AttributeType": kind} for name, kind in types.items()]


def index_descriptions(table_arn: str, description: dict) -> dict:
    """``LocalSecondaryIndexes`` / ``GlobalSecondaryIndexes`` of a TableDescription (only
    the kinds the table has, as DynamoDB leaves them out otherwise)."""
    result: dict[str, Any] = {}
    local = description.get("local_indexes") or []
    if local:
        result["LocalSecondaryIndexes"] = [{
            "IndexName": index["name"],
            "KeySchema": _key_schema_json(index["key_schema"]),
            "Projection": projection_json(index["projection"]),
            "IndexSizeBytes": index.get("size_bytes") or 0,
            "ItemCount": index.get("item_count") or 0,
            "IndexArn": f"{table_arn}/index/{index['name']}",
        } for index in local]
    global_ = description.get("global_indexes") or []
    if global_:
        described = []
        for index in global_:
            entry: dict[str, Any] = {
                "IndexName": index["name"],
                "KeySchema": _key_schema_json(index["key_schema"]),
                "Projection": projection_json(index["projection"]),
                "IndexStatus": index["status"],
                "ProvisionedThroughput": {
                    "NumberOfDecreasesToday": 0, "ReadCapacityUnits": 0,
                    "WriteCapacityUnits": 0,
                },
                "IndexSizeBytes": index.get("size_bytes") or 0,
                "ItemCount": index.get("item_count") or 0,
                "IndexArn": f"{table_arn}/index/{index['name']}",
            }
            if index["status"] == "CREATING":
                entry["Backfilling"] = bool(index.get("backfilling"))
            described.append(entry)
        result["GlobalSecondaryIndexes"] = described
    return result


def open_index(ctx: ServerContext, table: str, request: dict) -> Any:
    """The engine's handle on the request's ``IndexName`` (None when absent); an unknown
    index is DynamoDB's "The table does not have the specified index"."""
    name = request.get("IndexName")
    if name is None:
        return None
    _index_name(name, "indexName")
    with table_must_exist(table):
        return ctx.engine.index(table, name)


# --- UpdateTable --------------------------------------------------------------------------

_NOTHING_TO_UPDATE = (
    "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, "
    "GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required")


def _attribute_types(request: dict) -> dict[str, str]:
    types: dict[str, str] = {}
    for definition in get(request, "AttributeDefinitions", list) or []:
        if not isinstance(definition, dict) or not isinstance(
                definition.get("AttributeName"), str):
            raise ValidationException(
                "Each AttributeDefinition needs an AttributeName and an AttributeType")
        kind = definition.get("AttributeType")
        if kind not in ("S", "N", "B"):
            raise constraint_error(kind, "attributeDefinitions.member.attributeType",
                                   "Member must satisfy enum value set: [B, N, S]")
        types[definition["AttributeName"]] = kind
    return types


def _actions(request: dict) -> list[tuple[str, Any]]:
    """GlobalSecondaryIndexUpdates as (Create|Update|Delete, action); one action each."""
    updates = get(request, "GlobalSecondaryIndexUpdates", list)
    if updates is None:
        return []
    if not updates:
        raise ValidationException(
            "One or more parameter values were invalid: List of GlobalSecondaryIndexUpdates "
            "is empty")
    actions = []
    for update in updates:
        given = [kind for kind in ("Create", "Update", "Delete")
                 if isinstance(update, dict) and update.get(kind) is not None]
        if len(given) != 1:
            raise ValidationException(
                "One or more parameter values were invalid: One of GlobalSecondaryIndexUpdate"
                ".Create, GlobalSecondaryIndexUpdate.Update or GlobalSecondaryIndexUpdate."
                "Delete must be specified, and only one")
        actions.append((given[0], update[given[0]]))
    online = [kind for kind, _ in actions if kind in ("Create", "Delete")]
    if len(online) > 1:
        raise LimitExceededException(
            "Subscriber limit exceeded: Only 1 online index can be created or deleted "
            "simultaneously per table")
    return actions


def update_table(ctx: ServerContext, request: dict, describe: Any) -> dict:
    """UpdateTable: create or delete one GSI online (GlobalSecondaryIndexUpdates), accept
    a GSI's throughput Update, BillingMode and ProvisionedThroughput as no-ops (capacity is
    not metered). ``describe(description) -> TableDescription`` shapes the answer."""
    from .common import table_name

    name = table_name(request)
    types = _attribute_types(request)
    actions = _actions(request)
    stream = request.get("StreamSpecification")
    if isinstance(stream, dict) and stream.get("StreamEnabled"):
        raise ValidationException("Streams (StreamSpecification) are not supported by this server")
    if request.get("ReplicaUpdates") is not None:
        raise ValidationException("The parameter ReplicaUpdates is not supported by this server")
    if not actions and all(request.get(field) is None for field in (
            "ProvisionedThroughput", "BillingMode", "StreamSpecification", "SSESpecification",
            "TableClass", "DeletionProtectionEnabled", "OnDemandThroughput")):
        raise ValidationException(_NOTHING_TO_UPDATE)
    if request.get("DeletionProtectionEnabled"):
        raise ValidationException("Deletion protection is not supported by this server")
    with table_must_exist(name):
        current = ctx.engine.describe_table(name)
    if types:
        # Declared types must agree with the keys the table already has.
        known = known_types(current)
        for attribute, kind in types.items():
            if attribute in known and known[attribute] != kind:
                raise ValidationException(
                    "One or more parameter values were invalid: Type of attribute "
                    f"{attribute} in AttributeDefinitions ({kind}) does not match its type in "
                    f"the table's key schemas ({known[attribute]})")
    existing = {index["name"]: index for index in current.get("global_indexes", ())}
    local_names = {index["name"] for index in current.get("local_indexes", ())}
    changed: dict[str, dict] = {}
    for position, (kind, action) in enumerate(actions, start=1):
        if not isinstance(action, dict):
            raise ValidationException(f"GlobalSecondaryIndexUpdate.{kind} must be an object")
        if kind == "Create":
            definition = parse_index(action, "globalSecondaryIndexUpdates", position, types,
                                     _billing_mode(current))
            if definition["name"] in existing or definition["name"] in local_names:
                raise ValidationException(
                    "One or more parameter values were invalid: Attempting to create an index "
                    f"which already exists: {definition['name']}")
            # Definitions of the keys the table and its indexes already have may be
            # repeated (tools send the whole list); any other must be the new index's.
            unused = set(types) - index_attributes([definition]) - set(known_types(current))
            if unused:
                raise ValidationException(
                    "One or more parameter values were invalid: Number of attributes in "
                    "KeySchema does not exactly match number of attributes defined in "
                    f"AttributeDefinitions (unused: {', '.join(sorted(unused))})")
            with table_must_exist(name):
                changed[definition["name"]] = ctx.engine.create_global_index(name, definition)
            continue
        index_name = _index_name(action.get("IndexName"), _where(
            "globalSecondaryIndexUpdates", position, f"{kind.lower()}.indexName"))
        if index_name not in existing:
            raise ResourceNotFoundException(
                f"Requested resource not found: Index: {index_name} not found in table {name}")
        if kind == "Delete":
            changed[index_name] = ctx.engine.delete_global_index(name, index_name)
    description = ctx.engine.describe_table(name)
    if changed:
        # The answer shows the index being created or deleted (a deleted one is gone from
        # the catalog already), and the table UPDATING, as DynamoDB answers.
        global_ = [changed.pop(index["name"], index)
                   for index in description.get("global_indexes", [])]
        global_.extend(changed.values())
        description = {**description, "global_indexes": global_, "status": "UPDATING"}
    return {"TableDescription": describe(description)}


def known_types(description: dict) -> dict[str, str]:
    """Key attribute types of a described table and of its indexes."""
    return {item["AttributeName"]: item["AttributeType"]
            for item in attribute_definitions(description)}


def _billing_mode(description: dict) -> str | None:
    billing = description.get("billing")
    return billing.get("mode") if isinstance(billing, dict) else "PAY_PER_REQUEST"


# --- backups: the backed-up indexes, restore overrides ----------------------------------


def backed_up_indexes(ctx: ServerContext, backup: dict) -> dict | None:
    """The index definitions a backup recorded (the table record's ``indexes``: in the
    backup's record or its manifest's settings), or None if it recorded none."""
    recorded = backup.get("indexes")
    if isinstance(recorded, dict):
        return recorded
    if backup.get("status") != "AVAILABLE":
        return None
    try:
        manifest = ctx.engine.backups.load_manifest(backup["backup_id"], missing_ok=True)
    except Exception:  # noqa: BLE001 - a damaged manifest shows in restore and verify
        return None
    settings = getattr(manifest, "settings", None) or {}
    recorded = settings.get("indexes")
    return recorded if isinstance(recorded, dict) else None


def backup_features(ctx: ServerContext, backup: dict) -> dict:
    """DescribeBackup's SourceTableFeatureDetails: the backed-up table's secondary indexes
    (empty when the backup recorded none)."""
    recorded = backed_up_indexes(ctx, backup) or {}
    features: dict[str, Any] = {}
    if recorded.get("local"):
        features["LocalSecondaryIndexes"] = [{
            "IndexName": data["name"], "KeySchema": _key_schema_json(data["key_schema"]),
            "Projection": projection_json(data.get("projection") or {"type": "ALL"}),
        } for data in recorded["local"]]
    global_ = [data for data in recorded.get("global") or () if data.get("status") != "DELETING"]
    if global_:
        features["GlobalSecondaryIndexes"] = [{
            "IndexName": data["name"], "KeySchema": _key_schema_json(data["key_schema"]),
            "Projection": projection_json(data.get("projection") or {"type": "ALL"}),
            "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0},
        } for data in global_]
    return features


def _known_types(ctx: ServerContext, backup: dict) -> dict[str, str]:
    """Types of the attributes an override may use as keys: RestoreTableFromBackup has no
    AttributeDefinitions, so they are the backed-up table's keys and its indexes' keys —
    from the backup's recorded definitions, else from the source table while it still
    exists (same table id)."""
    types = {name: kind for name, kind in backup.get("key_schema") or ()}
    recorded = backed_up_indexes(ctx, backup)
    definitions: list = []
    if recorded is not None:
        definitions = [*recorded.get("local", ()), *recorded.get("global", ())]
    else:
        try:
            source = ctx.engine.describe_table(backup["table_name"])
        except Exception:  # noqa: BLE001 - the source table is gone: its keys only
            source = None
        if source is not None and source.get("table_id") == backup.get("table_id"):
            definitions = [*source.get("local_indexes", ()), *source.get("global_indexes", ())]
    for data in definitions:
        for name, kind in data["key_schema"]:
            types.setdefault(name, kind)
    return types


def restore_overrides(ctx: ServerContext, backup_id: str, request: dict) -> dict:
    """RestoreTableFromBackup's GlobalSecondaryIndexOverride / LocalSecondaryIndexOverride
    as ``Engine.restore_table`` keyword arguments (``{}`` when neither is given). A list is
    exactly the restored table's indexes of that kind: leave one out to drop it, list one
    with another projection to change it, list a new one to add it (its keys must be
    attributes the backed-up table or its indexes used as keys, whose types are known)."""
    members = {"global_indexes": "GlobalSecondaryIndexOverride",
               "local_indexes": "LocalSecondaryIndexOverride"}
    if all(request.get(member) is None for member in members.values()):
        return {}
    backup = ctx.engine.describe_backup(backup_id)
    types = _known_types(ctx, backup)
    overrides: dict[str, list[dict]] = {}
    for argument, member in members.items():
        value = get(request, member, list)
        if value is None:
            continue
        lower = member[0].lower() + member[1:]
        parsed = []
        for position, data in enumerate(value, start=1):
            keys = data.get("KeySchema") if isinstance(data, dict) else None
            unknown = [element.get("AttributeName") for element in keys or ()
                       if isinstance(element, dict)
                       and element.get("AttributeName") not in types]
            if unknown:
                raise ValidationException(
                    f"One or more parameter values were invalid: {member} index "
                    f"{data.get('IndexName')}: key attribute {unknown[0]} is not a key "
                    "attribute of the backed-up table or of its indexes, so its type is "
                    f"unknown (known: {', '.join(sorted(types))})")
            parsed.append(parse_index(data, lower, position, types))
        overrides[argument] = parsed
    return overrides
