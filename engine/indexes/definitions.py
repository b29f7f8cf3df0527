"""Secondary index definitions: their shape, their validation, their catalog form.

An index definition as callers give it (``Engine.create_table(local_indexes=...,
global_indexes=...)``, ``Engine.create_global_index``, restore overrides)::

    {"name": "byStatus",
     "key_schema": [("status", "S"), ("updated", "N")],     # hash, then optional range
     "projection": {"type": "INCLUDE", "non_key_attributes": ["title"]}}
                  # or "ALL" / "KEYS_ONLY" (a plain string), default ALL

The rules are DynamoDB's (Developer Guide, "Improving data access with secondary indexes"
and the CreateTable API reference): index names of 3 to 255 characters of
``[A-Za-z0-9_.-]``, unique across the table's LSIs and GSIs; at most 5 LSIs and 20 GSIs;
an LSI has the table's partition key and a sort key, and only a table with a sort key can
have one; ``NonKeyAttributes`` only with ``INCLUDE``, at most 100 summed over every index
of the table (the same attribute projected into two indexes counts twice); an attribute
used as a key anywhere has one type across the table and its indexes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import LimitExceededException, ValidationException
from ..keys import KEY_TYPES

MAX_LOCAL_INDEXES = 5
MAX_GLOBAL_INDEXES = 20
MAX_NON_KEY_ATTRIBUTES = 100  # summed over every index of a table (DynamoDB)
PROJECTION_TYPES = ("ALL", "KEYS_ONLY", "INCLUDE")
LOCAL = "local"
GLOBAL = "global"
_INDEX_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")


@dataclass(frozen=True)
class IndexDefinition:
    """One secondary index, validated. ``kind`` is ``"local"`` or ``"global"``."""

    name: str
    kind: str
    hash_key: tuple[str, str]
    range_key: tuple[str, str] | None
    projection_type: str = "ALL"
    non_key_attributes: tuple[str, ...] = ()
    index_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def key_schema(self) -> list[tuple[str, str]]:
        keys = [self.hash_key]
        if self.range_key is not None:
            keys.append(self.range_key)
        return keys

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.key_schema)

    def projection_json(self) -> dict:
        projection: dict[str, Any] = {"type": self.projection_type}
        if self.projection_type == "INCLUDE":
            projection["non_key_attributes"] = list(self.non_key_attributes)
        return projection

    def to_json(self) -> dict:
        """The catalog / partition-meta form (plain JSON)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "key_schema": [list(pair) for pair in self.key_schema],
            "projection": self.projection_json(),
            "index_id": self.index_id,
        }

    @classmethod
    def from_json(cls, data: dict) -> IndexDefinition:
        keys = [tuple(pair) for pair in data["key_schema"]]
        projection = data.get("projection") or {"type": "ALL"}
        return cls(
            name=data["name"], kind=data["kind"], hash_key=keys[0],
            range_key=keys[1] if len(keys) > 1 else None,
            projection_type=projection["type"],
            non_key_attributes=tuple(projection.get("non_key_attributes", ())),
            index_id=data["index_id"],
        )

    def same_shape(self, other: IndexDefinition) -> bool:
        """True if both index the same keys with the same projection (ids aside)."""
        return (self.kind, self.key_schema, self.projection_type,
                sorted(self.non_key_attributes)) == (
            other.kind, other.key_schema, other.projection_type,
            sorted(other.non_key_attributes))


def parse_definition(data: Any, kind: str, *, index_id: str | None = None) -> IndexDefinition:
    """Check one caller-given definition (see the module docstring) and build it.

    Raises ValidationException naming the index and what is wrong with it.
    """
    if isinstance(data, IndexDefinition):
        return data
    if not isinstance(data, dict):
        raise ValidationException(
            f"a {kind} secondary index definition must be a dict with name, key_schema and "
            f"projection, got {type(data).__name__}")
    unknown = set(data) - {"name", "key_schema", "projection", "index_id", "kind"}
    if unknown:
        raise ValidationException(
            f"unknown fields in the definition of index {data.get('name')!r}: "
            f"{', '.join(sorted(map(str, unknown)))} (use name, key_schema, projection)")
    name = data.get("name")
    if not isinstance(name, str) or not _INDEX_NAME_RE.match(name):
        raise ValidationException(
            f"invalid index name {name!r}: use 3 to 255 characters of letters, digits, "
            "'_', '-' and '.'")
    keys = data.get("key_schema")
    if not isinstance(keys, (list, tuple)) or not 1 <= len(keys) <= 2:
        raise ValidationException(
            f"index {name}: key_schema must list a hash key and optionally a range key, "
            f"got {keys!r}")
    pairs = []
    for pair in keys:
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not isinstance(pair[0], str) or not pair[0]):
            raise ValidationException(
                f"index {name}: each key must be a (name, type) pair, got {pair!r}")
        if pair[1] not in KEY_TYPES:
            raise ValidationException(
                f"index {name}: key attribute {pair[0]} has type {pair[1]!r}; index key "
                "attributes must be of type S, N or B")
        pairs.append((pair[0], pair[1]))
    if len(pairs) == 2 and pairs[0][0] == pairs[1][0]:
        raise ValidationException(
            f"index {name}: the hash key and the range key are the same attribute "
            f"{pairs[0][0]!r}")
    projection = data.get("projection", "ALL")
    if isinstance(projection, str):
        projection = {"type": projection}
    if not isinstance(projection, dict) or projection.get("type") not in PROJECTION_TYPES:
        raise ValidationException(
            f"index {name}: projection type must be one of {', '.join(PROJECTION_TYPES)}, "
            f"got {projection!r}")
    non_key = projection.get("non_key_attributes")
    if projection["type"] == "INCLUDE":
        if not non_key or not isinstance(non_key, (list, tuple)) or not all(
                isinstance(attr, str) and attr for attr in non_key):
            raise ValidationException(
                f"index {name}: a projection of type INCLUDE needs a non-empty list of "
                "non_key_attributes (attribute names)")
        if len(set(non_key)) != len(non_key):
            raise ValidationException(
                f"index {name}: non_key_attributes lists an attribute twice")
    elif non_key:
        raise ValidationException(
            "One or more parameter values were invalid: ProjectionType is "
            f"{projection['type']}, but NonKeyAttributes is specified (index {name})")
    return IndexDefinition(
        name=name, kind=kind, hash_key=pairs[0], range_key=pairs[1] if len(pairs) > 1 else None,
        projection_type=projection["type"], non_key_attributes=tuple(non_key or ()),
        index_id=index_id or data.get("index_id") or uuid.uuid4().hex,
    )


def validate_indexes(
    table_keys: Sequence[Sequence[str]],
    local: Iterable[IndexDefinition],
    global_: Iterable[IndexDefinition],
) -> None:
    """Check a table's whole set of indexes against its key schema (DynamoDB's rules)."""
    local, global_ = list(local), list(global_)
    table_keys = [tuple(pair) for pair in table_keys]
    if len(local) > MAX_LOCAL_INDEXES:
        raise ValidationException(
            f"One or more parameter values were invalid: Number of LocalSecondaryIndexes "
            f"exceeds per-table limit of {MAX_LOCAL_INDEXES} ({len(local)} given)")
    if len(global_) > MAX_GLOBAL_INDEXES:
        raise LimitExceededException(
            f"One or more parameter values were invalid: Number of GlobalSecondaryIndexes "
            f"exceeds per-table limit of {MAX_GLOBAL_INDEXES} ({len(global_)} given)")
    seen: set[str] = set()
    for index in [*local, *global_]:
        if index.name in seen:
            raise ValidationException(
                f"One or more parameter values were invalid: Duplicate index name: {index.name}")
        seen.add(index.name)
    if local and len(table_keys) < 2:
        raise ValidationException(
            "One or more parameter values were invalid: Table KeySchema does not have a "
            "range key, which is required when specifying a LocalSecondaryIndex")
    for index in local:
        if index.hash_key != table_keys[0]:
            raise ValidationException(
                f"One or more parameter values were invalid: Index KeySchema does not have "
                f"the same leading hash key as table KeySchema for index: {index.name}. "
                f"index hash key: {index.hash_key[0]}, table hash key: {table_keys[0][0]}")
        if index.range_key is None:
            raise ValidationException(
                f"One or more parameter values were invalid: Index KeySchema for local "
                f"secondary index {index.name} must have a range key")
    total_non_key = sum(len(index.non_key_attributes) for index in [*local, *global_])
    if total_non_key > MAX_NON_KEY_ATTRIBUTES:
        raise ValidationException(
            "One or more parameter values were invalid: The sum of the number of "
            f"NonKeyAttributes across all secondary indexes ({total_non_key}) exceeds the "
            f"limit of {MAX_NON_KEY_ATTRIBUTES}")
    types: dict[str, str] = dict(table_keys)
    for index in [*local, *global_]:
        for attr, attr_type in index.key_schema:
            if types.setdefault(attr, attr_type) != attr_type:
                raise ValidationException(
                    f"One or more parameter values were invalid: attribute {attr} is used as "
                    f"a key with type {types[attr]} and with type {attr_type} (index "
                    f"{index.name}); an attribute has one type across the table's key schemas")


def parse_all(
    table_keys: Sequence[Sequence[str]], local: Iterable[Any] | None, global_: Iterable[Any] | None,
) -> tuple[list[IndexDefinition], list[IndexDefinition]]:
    """Parse and validate both lists (None = none)."""
    if local is not None and not isinstance(local, (list, tuple)):
        raise ValidationException("local_indexes must be a list of index definitions")
    if global_ is not None and not isinstance(global_, (list, tuple)):
        raise ValidationException("global_indexes must be a list of index definitions")
    local_defs = [parse_definition(data, LOCAL) for data in local or ()]
    global_defs = [parse_definition(data, GLOBAL) for data in global_ or ()]
    validate_indexes(table_keys, local_defs, global_defs)
    return local_defs, global_defs
