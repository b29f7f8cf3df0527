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


class SerializationException(TesseraError):
    """The request's JSON does not have the shape DynamoDB's protocol requires: a number
    sent as a JSON number (``{"N": 123}``), bad base64 in a binary, a list where a map
    belongs. DynamoDB answers these before any validation, with HTTP 400."""

    code = "SerializationException"
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


class ItemCollectionSizeLimitExceededException(TesseraError):
    """A write would take an item collection (the items of one partition key and their
    LSI entries) past 10 GB; only tables with local secondary indexes have the limit."""

    code = "ItemCollectionSizeLimitExceededException"
    http_status = 400


class ConditionalCheckFailedException(TesseraError):
    """A ConditionExpression did not hold. ``item`` is the item as it was when the
    condition was checked, when the caller asked for it
    (ReturnValuesOnConditionCheckFailure=ALL_OLD) and it existed; otherwise None."""

    code = "ConditionalCheckFailedException"
    http_status = 400

    def __init__(
        self, message: str = "The conditional request failed", *, item: dict | None = None
    ) -> None:
        super().__init__(message)
        self.item = item


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


class EngineClosedError(TesseraError):
    """The engine (or the table handle taken from it) was closed: every public call after
    :meth:`engine.Engine.close` raises this one error. DynamoDB's ``ServiceUnavailable``
    (HTTP 503), which clients retry, is what a server shutting down answers."""

    code = "ServiceUnavailable"
    http_status = 503

    def __init__(self, message: str = "the engine is closed: open it again with Engine.open") -> None:
        super().__init__(message)


class StorageFullError(LimitExceededException):
    """A partition's LMDB environment reached its map size (``MDB_MAP_FULL``): a limit of
    the deployment, reported as DynamoDB reports limits; the message says what to raise."""


class StorageError(TesseraError):
    """LMDB failed for a reason that is neither corruption nor a full map (I/O, limits)."""

    code = "InternalServerError"
    http_status = 500


#: LMDB's largest key as built by py-lmdb (``mdb_env_get_maxkeysize``); key format 2
#: (engine.keys) keeps every stored key within it.
MAX_STORAGE_KEY_BYTES = 511

# LMDB's return codes (lmdb.h) by name, so the one table below serves py-lmdb's exception
# classes (matched by class name) and the Cython modules' integer codes alike.
_LMDB_CODES = {
    -30799: "KeyExistsError", -30798: "NotFoundError", -30797: "PageNotFoundError",
    -30796: "CorruptedError", -30795: "PanicError", -30794: "VersionMismatchError",
    -30793: "InvalidError", -30792: "MapFullError", -30791: "DbsFullError",
    -30790: "ReadersFullError", -30789: "TlsFullError", -30788: "TxnFullError",
    -30787: "CursorFullError", -30786: "PageFullError", -30785: "MapResizedError",
    -30784: "IncompatibleError", -30783: "BadRslotError", -30782: "BadTxnError",
    -30781: "BadValsizeError", -30780: "BadDbiError",
}
_LMDB_CORRUPTION = frozenset({
    "PageNotFoundError", "CorruptedError", "PanicError", "VersionMismatchError",
    "InvalidError", "IncompatibleError",
})
_LMDB_HINTS = {
    "MapFullError": "raise map_size_bytes (Engine.open(..., map_size_bytes=...)) or split "
                    "the partition",
    "ReadersFullError": "too many concurrent readers: close idle threads or engines",
    "TxnFullError": "the transaction touched too many pages: write in smaller batches",
    "BadValsizeError": "a key is longer than LMDB accepts",
    "DiskError": "check the volume (space, permissions, I/O errors in the kernel log)",
}


def lmdb_error(
    err: BaseException | int,
    *,
    what: str,
    path: object = None,
    partition: str | None = None,
    reason: str | None = None,
) -> TesseraError:
    """The one mapping from an LMDB failure to this package's errors (raise the result
    ``from err``). ``err`` is a py-lmdb exception or an LMDB return code from the native
    modules; ``what`` says what was being done. Corruption → :class:`CorruptionError`,
    a full map → :class:`StorageFullError` with the hint, anything else →
    :class:`StorageError`; each message names the partition and file."""
    if isinstance(err, int):
        name = _LMDB_CODES.get(err, "DiskError" if err > 0 else "Error")
        detail = reason or f"LMDB error {err}"
    else:
        name = type(err).__name__
        detail = reason or str(err) or name
    if name == "BadValsizeError":
        # Keys are the only variable-size LMDB argument a client controls: refuse the
        # request (400) and change nothing, instead of failing the server (500).
        # Only tables of key format 1 (created before long keys, engine.keys) meet it.
        return ValidationException(
            "One or more parameter values were invalid: the item's key is longer than this "
            f"table stores ({MAX_STORAGE_KEY_BYTES} bytes encoded: the table has key format 1, "
            "from before DynamoDB's full key sizes; tables created now take partition keys "
            "up to 2048 bytes and sort keys up to 1024): shorten the key, or copy the items "
            "into a new table" + (f" (partition {partition})" if partition is not None else ""))
    hint = _LMDB_HINTS.get(name)
    message = f"{what} failed: {detail}" + (f"; {hint}" if hint else "")
    if name in _LMDB_CORRUPTION:
        return CorruptionError(message, partition=partition,
                               path=str(path) if path is not None else None)
    where = ", ".join(part for part in (
        f"partition {partition}" if partition is not None else "",
        f"file {path}" if path is not None else "",
    ) if part)
    full = f"{message} ({where})" if where else message
    return StorageFullError(full) if name == "MapFullError" else StorageError(full)


class DataDirectoryInUseError(TesseraError):
    """Another process (or another engine in this one) holds the data directory's lock
    (``engine.dirlock``): two owners of one directory lose acknowledged writes. The
    message names the directory and the holder's PID, and says what to do."""

    code = "InternalServerError"
    http_status = 500

    def __init__(self, message: str, *, path: str | None = None, pid: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.pid = pid
