"""The partition layout of a new table: where its partitions start in storage-key space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _keycodec
from .errors import ValidationException
from .keys import KeySchema
from .partition_map import hash_boundaries

MAX_PARTITIONS = 4096


def initial_boundaries(
    schema: KeySchema, partitions: int, split_points: Sequence[Any] | None
) -> list[bytes]:
    """The start keys of a new table's partitions (create_table, and a restore into
    another layout): ``partitions`` even hash ranges, or range partitions at
    ``split_points`` (partition-key values) or evenly over the first byte of the encoded
    partition key."""
    if not isinstance(partitions, int) or isinstance(partitions, bool) or not (
        1 <= partitions <= MAX_PARTITIONS
    ):
        raise ValidationException(
            f"partitions must be an integer from 1 to {MAX_PARTITIONS}, got {partitions!r}"
        )
    if schema.hashed:
        if split_points is not None:
            raise ValidationException("split_points apply to range partitioning only")
        return hash_boundaries(partitions)
    if split_points is not None:
        full = [schema.partition_prefix(value, full=True) for value in split_points]
        if full != sorted(set(full)):
            raise ValidationException("split_points must be distinct and in ascending order")
        # Stored prefixes: a long partition key's is compacted (engine.keys), so two that
        # share a long prefix may store in the other order; boundaries must be sorted.
        return [b""] + sorted(schema.partition_prefix(value) for value in split_points)
    tag = _keycodec.encode_key({"S": "a", "N": 0, "B": b"a"}[schema.partition_type],
                               schema.partition_type)[:1]
    starts = sorted({index * 256 // partitions for index in range(1, partitions)})
    if len(starts) != partitions - 1:
        raise ValidationException(
            "more than 256 range partitions need explicit split_points"
        )
    return [b""] + [tag + bytes([start]) for start in starts]
