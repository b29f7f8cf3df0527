"""The whole exception hierarchy (SPEC §11).

Names follow DynamoDB so the server can report ``__type`` straight from the class name,
and so users of DynamoDB recognise them. Every message names what was wrong (table,
partition, attribute, file, offset) and, where it can, what to do.
"""

from __future__ import annotations


class TesseraError(Exception):
    """Base of every error this package raises on purpose."""

    #: DynamoDB's error code (the ``__type`` suffix) and the HTTP status the server uses.
    code = "InternalServerError"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationException(TesseraError):
    """Bad input: wrong types, missing keys, bad names, oversize items. Nothing was written."""

    code = "ValidationException"
    http_status = 400


class ResourceNotFoundException(TesseraError):
    code = "ResourceNotFoundException"
    http_status = 400


class TableNotFoundException(ResourceNotFoundException):
    code = "TableNotFoundException"


class BackupNotFoundException(ResourceNotFoundException):
    code = "BackupNotFoundException"


class ResourceInUseException(TesseraError):
    code = "ResourceInUseException"
    http_status = 400


class TableInUseException(ResourceInUseException):
    code = "TableInUseException"


class BackupInUseException(ResourceInUseException):
    code = "BackupInUseException"


class TableAlreadyExistsException(ResourceInUseException):
    code = "TableAlreadyExistsException"


class LimitExceededException(TesseraError):
    code = "LimitExceededException"
    http_status = 400


class ConditionalCheckFailedException(TesseraError):
    code = "ConditionalCheckFailedException"
    http_status = 400


class CorruptionError(TesseraError):
    """Stored data failed a checksum or a structural check.

    Raised on read, WAL replay, verify and restore; nothing is silently skipped. The
    message names the partition, the file (or object) and the byte offset.
    """

    code = "InternalServerError"
    http_status = 500

    def __init__(
        self,
        message: str,
        *,
        partition: str | None = None,
        path: str | None = None,
        offset: int | None = None,
    ) -> None:
        where = ", ".join(
            part
            for part in (
                f"partition {partition}" if partition is not None else "",
                f"file {path}" if path is not None else "",
                f"offset {offset}" if offset is not None else "",
            )
            if part
        )
        super().__init__(f"{message} ({where})" if where else message)
        self.partition = partition
        self.path = path
        self.offset = offset


class StoreError(TesseraError):
    """An object store operation failed after its retries."""

    code = "InternalServerError"
    http_status = 500


class ObjectNotFoundError(StoreError, KeyError):
    """The store has no object under that key (the store interface's error contract)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class ChecksumMismatchError(StoreError):
    """The bytes the store holds or returned do not match the checksum they were sent with."""
