"""The GSI follower: applies each base partition's outbox to the GSIs, durably.

One round, for one table, under the table's follower lock: for every base partition and
every GSI it maintains, read the oldest pending deltas, write them to the GSI's
partitions (one WAL record per GSI partition, returned once durable), then delete those
deltas from the outbox in one base transaction. A crash between the two re-applies the
same deltas in the same order — puts and deletes are idempotent — so an index entry is
never lost and never duplicated. The outbox deletion is not in the base WAL: losing it
(a power loss before LMDB's sync) only means applying the same deltas again.

Deltas of one partition are applied in outbox (LSN) order, and a GSI entry's key holds
its base item's key, which lives in one base partition: so no two partitions race on
one GSI entry. Repartitioning drains an old partition's outbox under its write lock
(:meth:`IndexFollower.drain`) before the new partitions, whose outboxes start empty,
take over.

While a GSI is being backfilled, the deltas of a partition not yet backfilled wait: the
backfill of that partition scans a snapshot at LSN ``S`` and then drops the deltas at or
below ``S`` (already in the snapshot), so only later ones are applied after it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from ..partition import OP_DELETE, OP_PUT, Partition
from .gsi_store import GsiStore
from .maintain import OUTBOX_PUT, decode_outbox

FOLLOW_BATCH = 2048  # deltas per index per partition per round
IDLE_POLL_SECONDS = 0.05  # writes wake the follower; this only bounds a missed wake-up
LAG_SAMPLES = 100_000
COALESCE_BELOW = 512  # a round that applied fewer deltas than this ...
COALESCE_SECONDS = 0.002  # ... waits this long before the next one  # write-to-applied delays kept for the lag percentiles


class IndexFollower:
    """Applies outboxes to GSIs; one background thread per engine.

    ``tables()`` lists the table names to follow; ``partitions(name)`` the table's
    current base partitions in map order; ``stores(name)`` its open GSIs by index name;
    ``waiting(name, index_id, partition_id)`` is True while that partition's deltas must
    wait for its backfill.
    """

    def __init__(self, *, tables: Callable[[], Iterable[str]],
                 partitions: Callable[[str], list[Partition]],
                 stores: Callable[[str], dict[str, GsiStore]],
                 waiting: Callable[[str, str, str], bool]) -> None:
        self._tables = tables
        self._partitions = partitions
        self._stores = stores
        self._waiting = waiting
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = 0
        self.last_error: str | None = None
        self.lag_samples_ns: list[int] = []

    def lock(self, name: str) -> threading.RLock:
        """The follower lock of table ``name`` (held by a round, a drain, a backfill's
        purge)."""
        with self._guard:
            return self._locks.setdefault(name, threading.RLock())

    # ------------------------------------------------------------------ applying
    def apply_partition(self, name: str, partition: Partition,
                        stores: dict[str, GsiStore], *, until_empty: bool = False) -> int:
        """Apply the pending deltas of one base partition; returns how many.

        The caller holds :meth:`lock` of the table.
        """
        state = partition.index_state
        if state is None or not state.global_:
            return 0
        if partition.outbox_listener is None:
            partition.outbox_listener = self.wake  # writes wake the follower at once
        applied = 0
        # Only deltas of durable records: a write a crash may still roll back must not
        # reach the GSI (whose own writes are durable at once). Read once, so a drain
        # under a steady write load ends.
        upto_lsn = partition.durable_lsn
        for spec in state.global_:
            store = stores.get(spec.name)
            if store is None or self._waiting(name, spec.index_id, partition.partition_id):
                continue
            while True:
                entries = partition.outbox_batch(spec.id_bytes, FOLLOW_BATCH, upto_lsn)
                if not entries:
                    break
                ops = []
                now = time.time_ns()
                samples = self.lag_samples_ns
                for _, raw in entries:
                    kind, written, key, value = decode_outbox(raw)
                    ops.append((OP_PUT, key, value) if kind == OUTBOX_PUT
                               else (OP_DELETE, key, None))
                    if len(samples) < LAG_SAMPLES:
                        samples.append(now - written)
                store.write(ops)
                partition.delete_outbox([key for key, _ in entries])
                applied += len(entries)
                if not until_empty:
                    break
        self.applied += applied
        return applied

    def follow_round(self, name: str, *, until_empty: bool = False) -> int:
        """One pass over every partition of table ``name``; returns deltas applied."""
        with self.lock(name):
            stores = self._stores(name)
            if not stores:
                return 0
            return sum(self.apply_partition(name, partition, stores, until_empty=until_empty)
                       for partition in self._partitions(name))

    def drain(self, name: str, partitions: Iterable[Partition]) -> int:
        """Apply everything pending in ``partitions`` (a split's, merge's or move's old
        partitions, under their write locks) — backfill waits aside, which cannot run
        during a repartitioning (both hold the table's repartitioning lock)."""
        with self.lock(name):
            stores = self._stores(name)
            applied = 0
            for partition in partitions:
                partition.make_durable()  # every committed record: none may stay behind
                applied += self.apply_partition(name, partition, stores, until_empty=True)
            return applied

    def catch_up(self, name: str) -> int:
        """Apply every delta pending now for table ``name`` (in the caller's thread)."""
        return self.follow_round(name, until_empty=True)

    # ------------------------------------------------------------------ the thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gsi-follower", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            applied = 0
            for name in list(self._tables()):
                if self._stop.is_set():
                    return
                try:
                    applied += self.follow_round(name)
                except Exception as err:  # noqa: BLE001 - a dropped table, a closed engine
                    self.last_error = f"{name}: {type(err).__name__}: {err}"
            if not applied:
                self._wake.wait(IDLE_POLL_SECONDS)
                self._wake.clear()
            elif applied < COALESCE_BELOW:
                # A trickle: let a few more deltas gather, so one GSI fsync covers them
                # (each round's GSI write is durable before its deltas leave the outbox).
                self._stop.wait(COALESCE_SECONDS)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def lag_percentiles(self) -> dict[str, float]:
        """p50 / p99 / max of the delays (seconds) from a base write to its GSI entry,
        over the deltas applied since the last :meth:`reset_lag`."""
        samples = sorted(self.lag_samples_ns)
        if not samples:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0, "samples": 0}

        def pick(fraction: float) -> float:
            return samples[min(len(samples) - 1, int(fraction * len(samples)))] / 1e9

        return {"p50": pick(0.5), "p99": pick(0.99), "max": samples[-1] / 1e9,
                "samples": len(samples)}

    def reset_lag(self) -> None:
        self.lag_samples_ns = []
