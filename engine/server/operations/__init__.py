"""One function per DynamoDB operation: request JSON -> engine call -> response JSON, split
by resource: :mod:`.tables`, :mod:`.items`, :mod:`.queries` (Query, Scan),
:mod:`.batches`, :mod:`.backups`; :mod:`.common` validates members, keys and expressions,
:mod:`.capacity` computes ReturnConsumedCapacity.

Every function takes the :class:`ServerContext` and the decoded request body (a dict) and
returns the response body (a dict). They block (the engine is synchronous); the app runs
them on a worker thread. Errors are raised as ``engine.errors`` exceptions; the app turns
them into DynamoDB's error body, translating each to a code the operation can return
(:func:`error_code`) — e.g. a missing table is ``ResourceNotFoundException`` for GetItem
but ``TableNotFoundException`` for CreateBackup, as in DynamoDB. An exception carrying
``response_fields`` (a dict) asks for those members in the error body next to
``message``: a ConditionalCheckFailedException's ``Item`` under
ReturnValuesOnConditionCheckFailure ALL_OLD.
"""

from __future__ import annotations

from collections.abc import Callable

from .backups import (
    create_backup,
    delete_backup,
    describe_backup,
    list_backups,
    restore_table_from_backup,
)
from .batches import batch_get_item, batch_write_item
from .common import ServerContext
from .items import delete_item, get_item, put_item, update_item
from .queries import query, scan
from .tables import create_table, delete_table, describe_table, list_tables, update_table

__all__ = ["ServerContext", "OPERATIONS", "error_code"]

_COMMON = frozenset({"ValidationException", "InternalServerError", "LimitExceededException"})
_TABLE_CODES = _COMMON | {"ResourceNotFoundException", "ResourceInUseException"}
_ITEM_CODES = _COMMON | {
    "ResourceNotFoundException", "ConditionalCheckFailedException", "SerializationException",
    "ItemCollectionSizeLimitExceededException",
}
_BACKUP_CODES = _COMMON | {
    "TableNotFoundException",
    "TableInUseException",
    "TableAlreadyExistsException",
    "BackupNotFoundException",
    "BackupInUseException",
    "ResourceNotFoundException",
    "ResourceInUseException",
}

#: operation name -> (function, the error codes DynamoDB documents for it)
OPERATIONS: dict[str, tuple[Callable[[ServerContext, dict], dict], frozenset[str]]] = {
    "CreateTable": (create_table, _TABLE_CODES),
    "DescribeTable": (describe_table, _TABLE_CODES),
    "ListTables": (list_tables, _TABLE_CODES),
    "DeleteTable": (delete_table, _TABLE_CODES),
    "UpdateTable": (update_table, _TABLE_CODES),
    "PutItem": (put_item, _ITEM_CODES),
    "GetItem": (get_item, _ITEM_CODES),
    "DeleteItem": (delete_item, _ITEM_CODES),
    "UpdateItem": (update_item, _ITEM_CODES),
    "Query": (query, _ITEM_CODES),
    "Scan": (scan, _ITEM_CODES),
    "BatchWriteItem": (batch_write_item, _ITEM_CODES),
    "BatchGetItem": (batch_get_item, _ITEM_CODES),
    "CreateBackup": (create_backup, _BACKUP_CODES),
    "DescribeBackup": (describe_backup, _BACKUP_CODES),
    "ListBackups": (list_backups, _BACKUP_CODES),
    "DeleteBackup": (delete_backup, _BACKUP_CODES),
    "RestoreTableFromBackup": (restore_table_from_backup, _BACKUP_CODES),
}


def error_code(exc: Exception, allowed: frozenset[str]) -> str:
    """The most specific code of ``exc``'s class hierarchy that the operation can return.

    Engine errors are finer than some operations' documented errors: TableNotFoundException
    becomes ResourceNotFoundException for item operations, TableAlreadyExistsException
    becomes ResourceInUseException for CreateTable.
    """
    own = getattr(exc, "code", "InternalServerError")
    if own in allowed:
        return own
    for cls in type(exc).__mro__:
        code = cls.__dict__.get("code")
        if code in allowed:
            return code
    return own
