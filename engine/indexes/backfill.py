"""Backfill: index the items a table already holds into a new GSI, in the background.

Per base partition, in map order: pin a snapshot (LSN ``S``), scan its items and write
their GSI entries (idempotent puts, batches paced so foreground writes keep their
latency), then — under the follower lock — drop the partition's deltas of that index at
or below ``S`` (the snapshot holds their effect) and let the follower apply the later
ones. The definition was installed in every partition before the first snapshot, so
every write after the snapshot is in the outbox: nothing is missed.

A crash mid-backfill leaves the GSI partly built from a snapshot whose later deletes may
already have been dropped; so the restart (:meth:`IndexManager.recover`) empties the
GSI and backfills from the beginning rather than resuming.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import _itemcodec
from ..partition import OP_PUT, Partition
from .gsi_store import GsiStore
from .maintain import IndexSpec

BACKFILL_BATCH = 512  # entries written per GSI write
#: Sleep this fraction of each batch's time, so writers beside the backfill (same
#: process, same GIL) keep most of their throughput; 0 runs flat out (bulk rebuilds).
BACKFILL_PACE_RATIO = 0.5


class BackfillCancelled(Exception):
    """The index was deleted (or the engine closed) while it was being backfilled."""


def backfill_partition(partition: Partition, spec: IndexSpec, store: GsiStore, *,
                       cancelled: Callable[[], bool], pace_ratio: float | None = None,
                       on_batch: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Index one partition's snapshot into ``store``; returns ``(snapshot LSN, entries)``."""
    ratio = BACKFILL_PACE_RATIO if pace_ratio is None else pace_ratio
    decode = _itemcodec.decode_item
    names = _decode_names(spec)
    written = 0
    with partition.snapshot(durable=True) as snapshot:
        cursor = snapshot.txn.cursor(db=partition.items_db)
        batch: list[tuple[int, bytes, bytes]] = []
        started = time.perf_counter()
        for _, raw in cursor.iternext():
            item = decode(raw, names)
            key = spec.key(item)
            if key is not None:
                batch.append((OP_PUT, key, spec.value(item, raw)))
            if len(batch) >= BACKFILL_BATCH:
                written += _flush(store, batch, cancelled, on_batch)
                if ratio:
                    time.sleep((time.perf_counter() - started) * ratio)
                started = time.perf_counter()
        written += _flush(store, batch, cancelled, on_batch)
        return snapshot.lsn, written


def _flush(store: GsiStore, batch: list, cancelled: Callable[[], bool],
           on_batch: Callable[[int], None] | None) -> int:
    if cancelled():
        raise BackfillCancelled()
    count = len(batch)
    if batch:
        store.write(batch)
        if on_batch is not None:
            on_batch(count)
    batch.clear()
    return count


def _decode_names(spec: IndexSpec) -> frozenset[str] | None:
    if spec.names is not None:
        return spec.names
    names = {spec.base_pk, spec.hash_name}
    if spec.base_sk is not None:
        names.add(spec.base_sk)
    if spec.range_name is not None:
        names.add(spec.range_name)
    return frozenset(names)
