"""Key schemas: from items and key dicts to storage keys, and back (SPEC §2–3).

Storage key = ``hash64(enc(pk)) ‖ enc(pk) ‖ enc(sk)`` for hash partitioning and
``enc(pk) ‖ enc(sk)`` for range partitioning; ``enc`` (``engine._keycodec``) is
order-preserving and self-delimiting, so all items of one partition key are contiguous
and ordered by sort key as DynamoDB orders them.

Key formats. Tables created by this version use key format 2 (``long_keys``): a key
component whose encoding is longer than 200 bytes is stored compacted (a prefix and a
digest, ``engine._keycodec``), so every key DynamoDB accepts (2048-byte partition keys,
1024-byte sort keys) fits LMDB's 511-byte keys. The *full key* is the plain layout above,
unbounded: it orders exactly as DynamoDB does and is what Query ranges are built in
(``engine.longkeys`` maps them to stored keys and restores the order). Tables of key
format 1 (created before) keep the plain layout and LMDB's limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import _keycodec
from .errors import ValidationException
from .longkeys import KeyRange, key_range
from .partition_map import key_successor

KEY_TYPES = ("S", "N", "B")
#: The key format of tables created now; records without "key_format" are format 1.
KEY_FORMAT = 2
PARTITION_KEY_MAX_BYTES = 2048
SORT_KEY_MAX_BYTES = 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")

_PYTHON_TYPE_NAMES = {str: "S", int: "N", Decimal: "N", bytes: "B", bytearray: "B", bool: "BOOL"}


def validate_table_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValidationException(
            f"invalid table name {name!r}: use 3 to 255 characters of letters, digits, '_', '-' and '.'"
        )
    return name


def _type_label(value: Any) -> str:
    return _PYTHON_TYPE_NAMES.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class KeySchema:
    """The key attributes of a table and how their values become storage keys."""

    partition_name: str
    partition_type: str
    sort_name: str | None = None
    sort_type: str | None = None
    hashed: bool = True
    long_keys: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key_count", 1 if self.sort_name is None else 2)
        #: ``_keycodec.storage_key``'s mode for stored keys, and for full keys.
        object.__setattr__(self, "key_mode", key_mode(self.hashed, self.long_keys))
        object.__setattr__(self, "full_mode", int(self.hashed))

    @property
    def key_format(self) -> int:
        return 2 if self.long_keys else 1

    @classmethod
    def build(cls, partition_key: Any, sort_key: Any, partitioning: str,
              key_format: int = KEY_FORMAT) -> KeySchema:
        pk_name, pk_type = _check_key_definition(partition_key, "partition_key")
        sk_name = sk_type = None
        if sort_key is not None:
            sk_name, sk_type = _check_key_definition(sort_key, "sort_key")
            if sk_name == pk_name:
                raise ValidationException(
                    f"the partition key and the sort key have the same name {pk_name!r}"
                )
        if partitioning not in ("hash", "range"):
            raise ValidationException(
                f"partitioning must be 'hash' or 'range', got {partitioning!r}"
            )
        if key_format not in (1, 2):
            raise ValidationException(f"unknown key format {key_format!r} (this version has 1 and 2)")
        return cls(pk_name, pk_type, sk_name, sk_type, partitioning == "hash", key_format == 2)

    # ------------------------------------------------------------------ describing
    @property
    def names(self) -> tuple[str, ...]:
        if self.sort_name is None:
            return (self.partition_name,)
        return (self.partition_name, self.sort_name)

    def to_json(self) -> list[list[str]]:
        pairs = [[self.partition_name, self.partition_type]]
        if self.sort_name is not None:
            pairs.append([self.sort_name, self.sort_type])
        return pairs

    @classmethod
    def from_json(cls, pairs: list, partitioning: str, key_format: int = 1) -> KeySchema:
        pk = tuple(pairs[0])
        sk = tuple(pairs[1]) if len(pairs) > 1 else None
        return cls.build(pk, sk, partitioning, key_format)

    # ------------------------------------------------------------------ encoding
    def _encode_part(self, name: str, key_type: str, value: Any, max_bytes: int) -> None:
        """Validate one key value (raises ValidationException naming the attribute)."""
        if value is None:
            raise ValidationException(
                f"One or more parameter values were invalid: Missing the key {name} in the item"
            )
        expected = {"S": (str,), "N": (int, Decimal), "B": (bytes, bytearray, memoryview)}[key_type]
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ValidationException(
                f"One or more parameter values were invalid: Type mismatch for key {name} "
                f"expected: {key_type} actual: {_type_label(value)}"
            )

    @staticmethod
    def _check_size(key_type: str, value: Any, max_bytes: int) -> None:
        """Raise DynamoDB's error if an S or B key value is over its limit. Called once the
        codec (which enforces the same limits) refused a key, off the hot path."""
        message = oversize_message(key_type, value, max_bytes)
        if message is not None:
            raise ValidationException(message)

    def storage_key(self, pk_value: Any, sk_value: Any = None, *, full: bool = False) -> bytes:
        """The storage key of one item (``full``: its full key), validating types,
        emptiness, size and range."""
        self._encode_part(self.partition_name, self.partition_type, pk_value, PARTITION_KEY_MAX_BYTES)
        if self.sort_name is not None:
            self._encode_part(self.sort_name, self.sort_type, sk_value, SORT_KEY_MAX_BYTES)
        try:
            return _keycodec.storage_key(
                self.full_mode if full else self.key_mode, pk_value, self.partition_type,
                sk_value, self.sort_type
            )
        except (ValueError, TypeError, OverflowError) as err:
            self._check_size(self.partition_type, pk_value, PARTITION_KEY_MAX_BYTES)
            if self.sort_name is not None:
                self._check_size(self.sort_type, sk_value, SORT_KEY_MAX_BYTES)
            which = self.partition_name
            if self.sort_name is not None:
                try:
                    _keycodec.encode_key(pk_value, self.partition_type)
                except (ValueError, TypeError, OverflowError):
                    pass
                else:
                    which = self.sort_name
            raise ValidationException(
                f"One or more parameter values were invalid: key attribute {which}: {err}"
            ) from err

    def _fast_key(self, values: dict) -> bytes | None:
        """The storage key via the native codec alone, or None to take the checked path
        (which produces the precise error message). Hot: every get and put comes here."""
        pk_value = values.get(self.partition_name)
        if pk_value is None:
            return None
        sort_name = self.sort_name
        try:
            if sort_name is None:
                return _keycodec.storage_key(self.key_mode, pk_value, self.partition_type, None, None)
            sk_value = values.get(sort_name)
            if sk_value is None:
                return None
            return _keycodec.storage_key(
                self.key_mode, pk_value, self.partition_type, sk_value, self.sort_type
            )
        except (ValueError, TypeError, OverflowError):
            return None

    def key_of_item(self, item: dict) -> bytes:
        if type(item) is dict:
            storage_key = self._fast_key(item)
            if storage_key is not None:
                return storage_key
        if not isinstance(item, dict):
            raise ValidationException(f"an item must be a dict, got {type(item).__name__}")
        return self.storage_key(
            item.get(self.partition_name),
            item.get(self.sort_name) if self.sort_name is not None else None,
        )

    def key_of(self, key: dict) -> bytes:
        """The storage key for a key dict holding exactly the key attributes."""
        if type(key) is dict and len(key) == self._key_count:
            storage_key = self._fast_key(key)
            if storage_key is not None:
                return storage_key
        if not isinstance(key, dict):
            raise ValidationException(f"a key must be a dict, got {type(key).__name__}")
        if set(key) != set(self.names):
            raise ValidationException(
                "The provided key element does not match the schema: expected exactly "
                f"{', '.join(self.names)}, got {', '.join(sorted(map(str, key))) or 'nothing'}"
            )
        return self.key_of_item(key)

    def full_key(self, key: dict) -> bytes:
        """The full key (DynamoDB order, unbounded) for a key dict of exactly the key
        attributes."""
        self.key_of(key)  # the same checks and errors
        return self.full_key_of_item(key)

    def full_key_of_item(self, item: dict) -> bytes:
        return self.storage_key(
            item.get(self.partition_name),
            item.get(self.sort_name) if self.sort_name is not None else None, full=True)

    def key_dict(self, storage_key: bytes) -> dict:
        """The key attributes of a format-1 storage key (format 2 may have compacted
        them: read those from the item)."""
        pk_value, sk_value = _keycodec.split_storage_key(storage_key, self.hashed)
        result = {self.partition_name: pk_value}
        if self.sort_name is not None:
            result[self.sort_name] = sk_value
        return result

    def key_dict_of_item(self, item: dict) -> dict:
        return {name: item[name] for name in self.names}

    # ------------------------------------------------------------------ ranges
    def partition_prefix(self, pk_value: Any, *, full: bool = False) -> bytes:
        """The storage-key prefix shared by every item with this partition key value
        (``full``: the full-key prefix)."""
        self._encode_part(self.partition_name, self.partition_type, pk_value, PARTITION_KEY_MAX_BYTES)
        try:
            return _keycodec.storage_key(self.full_mode if full else self.key_mode, pk_value,
                                         self.partition_type, None, None)
        except (ValueError, TypeError, OverflowError) as err:
            self._check_size(self.partition_type, pk_value, PARTITION_KEY_MAX_BYTES)
            raise ValidationException(
                f"One or more parameter values were invalid: key attribute {self.partition_name}: {err}"
            ) from err

    def _sort_bytes(self, value: Any) -> bytes:
        self._encode_part(self.sort_name, self.sort_type, value, SORT_KEY_MAX_BYTES)
        try:
            return _keycodec.encode_key(value, self.sort_type, max_len=SORT_KEY_MAX_BYTES)
        except (ValueError, TypeError, OverflowError) as err:
            self._check_size(self.sort_type, value, SORT_KEY_MAX_BYTES)
            raise ValidationException(
                f"One or more parameter values were invalid: key attribute {self.sort_name}: {err}"
            ) from err

    def query_range(self, pk_value: Any, condition: tuple | None) -> tuple[bytes, bytes | None]:
        """The half-open full-key range ``[lo, hi)`` a query touches (stored keys:
        :meth:`stored_range`)."""
        return sort_condition_range(self.partition_prefix(pk_value, full=True), condition,
                                    self.sort_name, self.sort_type, self._sort_bytes,
                                    "the table")

    def stored_range(self, pk_value: Any, lo: bytes, hi: bytes | None) -> KeyRange:
        """The stored-key range holding the full-key range ``[lo, hi)`` of one partition
        key (:func:`engine.longkeys.key_range`)."""
        if not self.long_keys:  # format 1: stored keys are full keys
            return KeyRange(lo, hi, lo, hi, 0, False, False)
        # pk_value was checked when the full-key range was built
        full_prefix = _keycodec.storage_key(self.full_mode, pk_value, self.partition_type)
        prefix = _keycodec.storage_key(self.key_mode, pk_value, self.partition_type)
        return key_range(lo, hi, full_prefix, prefix, True)


def oversize_message(key_type: str, value: Any, max_bytes: int) -> str | None:
    """DynamoDB's error text if an S or B key value (of a table or an index) is longer than
    ``max_bytes`` (2048 for a partition key, 1024 for a sort key), else None."""
    if key_type == "N" or not isinstance(value, (str, bytes, bytearray, memoryview)):
        return None
    size = len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else len(value)
    if size <= max_bytes:
        return None
    if max_bytes == PARTITION_KEY_MAX_BYTES:  # DynamoDB's texts, "of2048" included
        return ("One or more parameter values were invalid: Size of hashkey has exceeded "
                f"the maximum size limit of{max_bytes} bytes")
    return ("One or more parameter values were invalid: Aggregated size of all range keys "
            f"has exceeded the size limit of {max_bytes} bytes")


_SORT_ARITY = {"=": 1, "<": 1, "<=": 1, ">": 1, ">=": 1, "between": 2, "begins_with": 1}


def sort_condition_range(prefix: bytes, condition: tuple | None, sort_name: str | None,
                         sort_type: str | None, encode: Callable[[Any], bytes],
                         owner: str) -> tuple[bytes, bytes | None]:
    """The half-open full-key range of the keys starting with ``prefix`` (one partition
    key's, of a table or an index) whose sort key meets ``condition``: ``("=", v)``,
    ``("<", v)``, ``("<=", v)``, ``(">", v)``, ``(">=", v)``, ``("between", lo, hi)`` or
    ``("begins_with", p)``. ``encode(v)`` checks and encodes one operand. Every bound is
    an encoding or its successor, so it holds for keys that go on after the sort key
    (index entries end with the base key); ``owner`` names the table or index in errors."""
    prefix_end = key_successor(prefix)
    if condition is None:
        return prefix, prefix_end
    if sort_name is None:
        raise ValidationException(f"Query key condition not supported: {owner} has no sort key")
    if (not isinstance(condition, tuple) or not condition or condition[0] not in _SORT_ARITY
            or len(condition) - 1 != _SORT_ARITY[condition[0]]):
        raise ValidationException(
            f"invalid sort key condition {condition!r}: use one of =, <, <=, >, >=, "
            "('between', lo, hi) or ('begins_with', prefix)")
    op, *operands = condition
    if op == "begins_with":
        if sort_type == "N":
            raise ValidationException(
                f"Query key condition not supported: begins_with on sort key {sort_name} "
                "of type N")
        try:  # a prefix longer than any sort key is valid and matches nothing
            start = prefix + _keycodec.encode_key_prefix(operands[0], sort_type,
                                                         max_len=1 << 20)
        except (ValueError, TypeError) as err:
            raise ValidationException(
                f"One or more parameter values were invalid: key attribute {sort_name}: "
                f"{err}") from err
        return start, _min_end(key_successor(start), prefix_end)
    encoded = [prefix + encode(value) for value in operands]
    after = [_min_end(key_successor(key), prefix_end) for key in encoded]
    if op == "=":
        return encoded[0], after[0]
    if op == "<":
        return prefix, encoded[0]
    if op == "<=":
        return prefix, after[0]
    if op == ">":
        return after[0] or prefix_end, prefix_end
    if op == ">=":
        return encoded[0], prefix_end
    if encoded[0] > encoded[1]:
        raise ValidationException(
            "Invalid KeyConditionExpression: the BETWEEN bounds are in the wrong order")
    return encoded[0], after[1]


def _min_end(a: bytes | None, b: bytes | None) -> bytes | None:
    """The lower of two exclusive upper bounds (None: unbounded)."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def key_mode(hashed: bool, long_keys: bool) -> int:
    """``_keycodec.storage_key``'s mode word for a table's stored keys."""
    return (_keycodec.MODE_HASHED if hashed else 0) | (_keycodec.MODE_COMPACT if long_keys else 0)


def _check_key_definition(definition: Any, label: str) -> tuple[str, str]:
    if (
        not isinstance(definition, (tuple, list))
        or len(definition) != 2
        or not isinstance(definition[0], str)
    ):
        raise ValidationException(f"{label} must be a (name, type) pair, got {definition!r}")
    name, key_type = definition
    if not name or len(name.encode()) > 255:
        raise ValidationException(f"{label} name must be 1 to 255 bytes, got {name!r}")
    if key_type not in KEY_TYPES:
        raise ValidationException(
            f"{label} {name!r} has type {key_type!r}: key attributes must be S, N or B"
        )
    return name, key_type
