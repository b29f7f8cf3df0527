"""Tessera: an embeddable partitioned table engine on LMDB with verified, parallel backups.

The public API is what ``__all__`` lists; everything else is internal.
"""

from .engine import Engine
from .errors import (
    BackupInUseException,
    BackupNotFoundException,
    ConditionalCheckFailedException,
    CorruptionError,
    DataDirectoryInUseError,
    EngineClosedError,
    ItemCollectionSizeLimitExceededException,
    LimitExceededException,
    ResourceInUseException,
    ResourceNotFoundException,
    SerializationException,
    TableAlreadyExistsException,
    TableInUseException,
    TableNotFoundException,
    TesseraError,
    ValidationException,
)
from .table import Table

__all__ = [
    "BackupInUseException",
    "BackupNotFoundException",
    "ConditionalCheckFailedException",
    "CorruptionError",
    "DataDirectoryInUseError",
    "Engine",
    "EngineClosedError",
    "ItemCollectionSizeLimitExceededException",
    "LimitExceededException",
    "ResourceInUseException",
    "ResourceNotFoundException",
    "SerializationException",
    "Table",
    "TableAlreadyExistsException",
    "TableInUseException",
    "TableNotFoundException",
    "TesseraError",
    "ValidationException",
]
