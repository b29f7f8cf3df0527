"""Query ranges over long keys (key format 2): from DynamoDB's order to stored keys, and back.

Under key format 2 (``engine._keycodec``) a key component longer than 200 encoded bytes
is stored as a prefix and a digest, so every key DynamoDB accepts fits LMDB's 511-byte
keys. Stored order then equals DynamoDB order except inside a *bucket*: components
sharing their first ``CUT`` escaped bytes, which compare by digest. Query results must
come in sort-key order, so a query:

1. builds its range in *full keys* (the plain, unbounded encoding, which orders exactly
   as DynamoDB does) — ``KeySchema.query_range``, and the index equivalents;
2. maps it to stored keys with :func:`key_range`: the partition-key prefix is swapped for
   its stored form, and a bound whose sort part is longer than ``SORT_WINDOW`` bytes is
   widened to the whole bucket it falls in (``exact``: rows must then be filtered by
   their full key);
3. reads the stored range and passes the rows through :func:`in_order`, which re-sorts
   every run of rows sharing a bucket prefix by full key and drops rows outside the
   full-key range.

Rows without a bucket (every sort key of at most 165 bytes, every number) pass straight
through; a table of key format 1 skips all of this. Scans need none of it: DynamoDB
promises no order across partition keys, and a scan pages in stored order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from . import _keycodec
from .partition_map import key_successor

SORT_WINDOW = _keycodec.SORT_WINDOW


class KeyRange(NamedTuple):
    """A query's range in stored keys (``lo``, ``hi``) and in full keys; ``sort_from`` is
    where the sort component starts in a stored key (the stored prefix's length);
    ``exact``: the bounds were widened; ``long_keys``: the table has key format 2."""

    lo: bytes
    hi: bytes | None
    full_lo: bytes
    full_hi: bytes | None
    sort_from: int
    exact: bool
    long_keys: bool


def key_range(full_lo: bytes, full_hi: bytes | None, full_prefix: bytes, prefix: bytes,
              long_keys: bool) -> KeyRange:
    """Map the full-key range ``[full_lo, full_hi)`` of the partition key whose full and
    stored prefixes are given to the stored keys that hold it (see the module docstring).

    Widening is safe because a stored compacted component keeps its first ``CUT``
    escaped bytes verbatim: truncating a lower bound there, or taking the successor of
    the truncated upper bound, can only let in rows of the bound's own bucket, which the
    full-key filter then sorts out.
    """
    if not long_keys:
        return KeyRange(full_lo, full_hi, full_lo, full_hi, len(prefix), False, False)
    lo, widened_lo = _stored_bound(full_lo, full_prefix, prefix, upper=False)
    hi, widened_hi = _stored_bound(full_hi, full_prefix, prefix, upper=True)
    return KeyRange(lo, hi, full_lo, full_hi, len(prefix), widened_lo or widened_hi, True)


def _stored_bound(bound: bytes | None, full_prefix: bytes, prefix: bytes,
                  upper: bool) -> tuple[bytes | None, bool]:
    if bound is None:
        return None, False
    if bound.startswith(full_prefix):
        rest = bound[len(full_prefix):]
        if len(rest) <= SORT_WINDOW:
            return prefix + rest, False
        cut = prefix + rest[:SORT_WINDOW]
        if not upper:
            return cut, True
        end = key_successor(cut)
        prefix_end = key_successor(prefix)
        if end is None or (prefix_end is not None and prefix_end < end):
            end = prefix_end
        return end, True
    if bound < full_prefix:
        return prefix, False
    return key_successor(prefix), False  # past every key of this partition key


def in_order(rows: Iterable[tuple], key_range: KeyRange, full_key_of: Callable[[Any], bytes],
             reverse: bool) -> Iterator[tuple]:
    """The rows (tuples whose first element is the stored key) of a stored range, read in
    stored order, in full-key order instead, and only those inside the full-key range.

    ``full_key_of(row)`` gives a row's full key (from its item). Each run of rows sharing
    a bucket prefix is gathered and sorted; other rows pass through (checked against the
    full range only if the bounds were widened).
    """
    bucket_end = _keycodec.bucket_end
    sort_from = key_range.sort_from
    exact = key_range.exact
    lo, hi = key_range.full_lo, key_range.full_hi
    run_prefix: bytes | None = None
    run: list[tuple] = []

    def inside(full: bytes) -> bool:
        return full >= lo and (hi is None or full < hi)

    def flush() -> list[tuple]:
        if len(run) == 1 and not exact:  # alone in its bucket: already in place
            rows_out = run[:]
        else:
            keyed = sorted(((full_key_of(row), row) for row in run),
                           key=lambda pair: pair[0], reverse=reverse)
            rows_out = [row for full, row in keyed if not exact or inside(full)]
        run.clear()
        return rows_out

    for row in rows:
        key = row[0]
        end = bucket_end(key, sort_from)
        if end >= 0:
            prefix = key[:end]
            if prefix != run_prefix:
                if run:
                    yield from flush()
                run_prefix = prefix
            run.append(row)
            continue
        if run:
            yield from flush()
            run_prefix = None
        if exact and not inside(full_key_of(row)):
            continue
        yield row
    if run:
        yield from flush()
