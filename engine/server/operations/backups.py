"""CreateBackup, DescribeBackup, ListBackups, DeleteBackup, RestoreTableFromBackup, and
the backup response shapes."""

from __future__ import annotations

from typing import Any

from engine.billing import billing_of
from engine.errors import ValidationException

from .common import ServerContext, get
from .common import limit as limit_member
from .indexes import backup_features, restore_overrides
from .tables import (
    changed_billing,
    key_schema_json,
    provisioned_units,
    table_arn,
    table_description,
    table_id_json,
)

__all__ = [
    "create_backup", "describe_backup", "list_backups", "delete_backup",
    "restore_table_from_backup", "MAX_LIST_BACKUPS_LIMIT",
]

MAX_LIST_BACKUPS_LIMIT = 100


def backup_arn(
    ctx: ServerContext, table_name: str, backup_id: str, region: str | None = None
) -> str:
    return f"{table_arn(ctx, table_name, region)}/backup/{backup_id}"


def parse_backup_id(request: dict) -> str:
    arn = get(request, "BackupArn", str, required=True)
    if "/backup/" in arn:
        return arn.rsplit("/backup/", 1)[1]
    if arn.startswith("arn:") or not arn:
        raise ValidationException(f"Invalid BackupArn: {arn!r}")
    return arn  # a bare backup id, accepted for convenience



def backup_details(ctx: ServerContext, backup: dict) -> dict:
    details = {
        "BackupArn": backup_arn(
            ctx, backup["table_name"], backup["backup_id"], backup.get("region")
        ),
        "BackupName": backup["backup_name"],
        "BackupSizeBytes": backup.get("size_bytes") or 0,
        "BackupStatus": backup["status"],
        "BackupType": "USER",
        "BackupCreationDateTime": backup["created_at"],
    }
    if backup.get("failure_reason"):
        # Not a DynamoDB field (clients ignore it); says why a FAILED backup failed.
        details["TesseraFailureReason"] = backup["failure_reason"]
    return details


def backup_description(ctx: ServerContext, backup: dict) -> dict:
    """DescribeBackup's BackupDescription. SourceTableDetails describe the table when the
    backup was taken (API Reference): its own creation time, its approximate size then
    (not the compressed backup's, which is BackupSizeBytes), its item count (the backup's
    exact count once AVAILABLE), its billing mode and units."""
    billing = billing_of(backup)
    item_count = backup.get("item_count")
    if item_count is None:
        item_count = backup.get("table_item_count") or 0
    source = {
        "TableName": backup["table_name"],
        "TableId": table_id_json(backup.get("table_id")),
        "TableArn": table_arn(ctx, backup["table_name"], backup.get("region")),
        "KeySchema": key_schema_json(backup.get("key_schema") or []),
        # Backups taken before the source's creation time was kept: the backup's time.
        "TableCreationDateTime": backup.get("table_created_at") or backup["created_at"],
        "ProvisionedThroughput": provisioned_units(billing),
        "ItemCount": item_count,
        "BillingMode": billing["mode"],
    }
    if backup.get("table_size_bytes") is not None:
        source["TableSizeBytes"] = backup["table_size_bytes"]
    return {
        "BackupDetails": backup_details(ctx, backup),
        "SourceTableDetails": source,
        "SourceTableFeatureDetails": backup_features(ctx, backup),
    }


def backup_summary(ctx: ServerContext, backup: dict) -> dict:
    return {
        "TableName": backup["table_name"],
        "TableId": table_id_json(backup.get("table_id")),
        "TableArn": table_arn(ctx, backup["table_name"], backup.get("region")),
        "BackupArn": backup_arn(
            ctx, backup["table_name"], backup["backup_id"], backup.get("region")
        ),
        "BackupName": backup["backup_name"],
        "BackupCreationDateTime": backup["created_at"],
        "BackupStatus": backup["status"],
        "BackupType": "USER",
        "BackupSizeBytes": backup.get("size_bytes") or 0,
    }



def create_backup(ctx: ServerContext, request: dict) -> dict:
    table_name = get(request, "TableName", str, required=True)
    backup_name = get(request, "BackupName", str, required=True)
    backup = ctx.engine.create_backup(table_name, backup_name)
    return {"BackupDetails": backup_details(ctx, backup)}


def describe_backup(ctx: ServerContext, request: dict) -> dict:
    backup = ctx.engine.describe_backup(parse_backup_id(request))
    return {"BackupDescription": backup_description(ctx, backup)}


def list_backups(ctx: ServerContext, request: dict) -> dict:
    table_name = get(request, "TableName", str)
    limit = limit_member(request, maximum=MAX_LIST_BACKUPS_LIMIT)
    lower = get(request, "TimeRangeLowerBound", (int, float))
    upper = get(request, "TimeRangeUpperBound", (int, float))
    backup_type = get(request, "BackupType", str) or "USER"
    if backup_type not in ("USER", "SYSTEM", "AWS_BACKUP", "ALL"):
        raise ValidationException(f"Invalid BackupType: {backup_type}")
    if backup_type in ("SYSTEM", "AWS_BACKUP"):
        return {"BackupSummaries": []}
    start_arn = get(request, "ExclusiveStartBackupArn", str)
    start_id = parse_backup_id({"BackupArn": start_arn}) if start_arn is not None else None
    backups, last_id = ctx.engine.list_backups(
        table=table_name, start=lower, end=upper, limit=limit, exclusive_start=start_id
    )
    response: dict[str, Any] = {
        "BackupSummaries": [backup_summary(ctx, backup) for backup in backups]
    }
    if last_id is not None:
        last = next((b for b in backups if b["backup_id"] == last_id), None)
        if last is None:
            last = ctx.engine.describe_backup(last_id)
        response["LastEvaluatedBackupArn"] = backup_arn(
            ctx, last["table_name"], last_id, last.get("region")
        )
    return response


def delete_backup(ctx: ServerContext, request: dict) -> dict:
    backup = ctx.engine.delete_backup(parse_backup_id(request))
    return {"BackupDescription": backup_description(ctx, backup)}


def restore_table_from_backup(ctx: ServerContext, request: dict) -> dict:
    target = get(request, "TargetTableName", str, required=True)
    backup_id = parse_backup_id(request)
    overrides = restore_overrides(ctx, backup_id, request)  # index overrides (indexes.py)
    mode, throughput = request.get("BillingModeOverride"), request.get(
        "ProvisionedThroughputOverride")
    if mode is not None or throughput is not None:  # else the backed-up billing
        backed_up = billing_of(ctx.engine.describe_backup(backup_id))
        overrides["billing"] = changed_billing(backed_up, mode, throughput)
    description = ctx.engine.restore_table(backup_id, target, **overrides)
    # RestoreSummary: table_description, from the restore the table's record keeps.
    return {"TableDescription": table_description(ctx, description)}

