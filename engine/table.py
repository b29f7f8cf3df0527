"""A table: routes items to partitions by storage key; reads, writes, queries and scans.

Data flows one way: ``Table`` → :class:`~engine.partition.Partition` → LMDB/WAL. The
routing state (partition map + open partitions) is one tuple swapped atomically, so a
repartitioning (SPEC §10) never shows a reader half of a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Any

from . import _batchroute, _itemcodec, _reads
from .errors import ValidationException
from .keys import KeySchema
from .partition import OP_DELETE, OP_PUT, Partition, PartitionRetired
from .partition_map import PartitionInterval, PartitionMap
from .updates import apply_update, check_condition

MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's 400 KB item limit
DEFAULT_PAGE_BYTES = 1 << 20  # query/scan pages stop at 1 MB, as in DynamoDB
# Items decoded per native call in a full scan. Small on purpose: a chunk's dicts are alive
# together, and CPython runs a generation-0 collection every 700 live allocations, so
# 1024-item chunks paid for one or more collections each; 64 stays far below that and in
# cache (1M-item scan, best of 4: 1024 -> 850 ns/item, 128 -> 781, 64 -> 702-747, 32 -> 824).
SCAN_CHUNK_ITEMS = 64
RETURN_VALUES = ("NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW")


_DURABILITY_POOL: ThreadPoolExecutor | None = None


def _durability_pool() -> ThreadPoolExecutor:
    """Threads that wait for WAL fsyncs of a multi-partition batch in parallel."""
    global _DURABILITY_POOL
    if _DURABILITY_POOL is None:
        _DURABILITY_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="wal-sync")
    return _DURABILITY_POOL


def encode_item(item: dict, *, table: str) -> bytes:
    """Encode an item for storage, turning codec errors into ValidationException."""
    try:
        encoded = _itemcodec.encode_item(item)
    except (ValueError, TypeError, OverflowError) as err:
        raise ValidationException(
            f"One or more parameter values were invalid in an item for table {table}: {err}"
        ) from err
    if len(encoded) > MAX_ITEM_BYTES:
        raise ValidationException(
            f"Item size has exceeded the maximum allowed size of 400 KB "
            f"(table {table}: {len(encoded)} bytes encoded)"
        )
    return encoded


def decode_item(raw: bytes, projection: frozenset[str] | None = None) -> dict:
    return _itemcodec.decode_item(raw, projection)


def _projection(names: Iterable[str] | None) -> frozenset[str] | None:
    if names is None:
        return None
    names = frozenset(names)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ValidationException("a projection must list one or more attribute names")
    return names


def _check_return_values(value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValidationException(
            f"ReturnValues must be one of {', '.join(allowed)} for this operation, got {value!r}"
        )


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValidationException(f"Limit must be an integer of at least 1, got {limit!r}")


class Table:
    """A handle on one table. Thread-safe; get it from :meth:`engine.Engine.table`."""

    def __init__(
        self,
        name: str,
        schema: KeySchema,
        partition_map: PartitionMap,
        partitions: dict[str, Partition],
    ) -> None:
        self.name = name
        self.schema = schema
        self.swap_routing(partition_map, partitions)

    # ------------------------------------------------------------------ routing
    @property
    def key_schema(self) -> list[tuple[str, str]]:
        return [tuple(pair) for pair in self.schema.to_json()]

    @property
    def _routing(self) -> tuple[PartitionMap, list[Partition]]:
        """The partition map and its open partitions, in map order: one snapshot."""
        return self._reader.routing

    @property
    def routing(self) -> tuple[PartitionMap, list[Partition]]:
        """The partition map and its open partitions, in map order: one consistent
        snapshot (for repartitioning and auto-split, which must not see half a change)."""
        return self._reader.routing

    @property
    def partition_map(self) -> PartitionMap:
        return self._routing[0]

    @property
    def partitions(self) -> list[Partition]:
        return list(self._routing[1])

    def swap_routing(self, partition_map: PartitionMap, partitions: dict[str, Partition]) -> None:
        """Switch to a new, validated map in one step (repartitioning).

        The routing state lives in the point reader built for it, so readers and writers
        see the old state or the new one, never a mix.
        """
        routing = (partition_map, [partitions[i.partition_id] for i in partition_map])
        self._reader = _reads.PointReader(routing, self.schema, self.schema.key_of, _projection)

    def _partition_for(self, storage_key: bytes) -> Partition:
        pmap, partitions = self._routing
        return partitions[pmap.index_for(storage_key)]

    def _write(self, storage_key: bytes, plan) -> Any:
        """Write through the partition owning ``storage_key``; if a split, merge or move
        retired it while we waited for its lock, route again (SPEC §10)."""
        while True:
            try:
                return self._partition_for(storage_key).write(plan)
            except PartitionRetired:
                continue

    # ------------------------------------------------------------------ single items
    def put_item(
        self, item: dict, condition: Sequence | None = None, return_values: str = "NONE"
    ) -> dict | None:
        """Store ``item`` (replacing any item with the same key)."""
        _check_return_values(return_values, ("NONE", "ALL_OLD"))
        storage_key = self.schema.key_of_item(item)
        encoded = encode_item(item, table=self.name)
        need_old = bool(condition) or return_values == "ALL_OLD"

        def plan(get):
            old_raw = get(storage_key) if need_old else None
            if condition:
                check_condition(
                    decode_item(old_raw) if old_raw is not None else None, condition, table=self.name
                )
            return [(OP_PUT, storage_key, encoded)], old_raw

        old_raw = self._write(storage_key, plan)
        if return_values == "ALL_OLD" and old_raw is not None:
            return decode_item(old_raw)
        return None

    #: ``get_item(key, projection=None) -> dict | None``: the item with ``key`` or None.
    #: Native (engine._reads), bound as a method: routing, one read transaction and the
    #: decoding run without a Python frame (point reads are the hottest path). A key it
    #: cannot route natively goes through ``schema.key_of``, which raises the precise
    #: error; the projection is validated when the item exists.
    get_item = _reads.get_item

    def delete_item(
        self, key: dict, condition: Sequence | None = None, return_values: str = "NONE"
    ) -> dict | None:
        _check_return_values(return_values, ("NONE", "ALL_OLD"))
        storage_key = self.schema.key_of(key)

        def plan(get):
            old_raw = get(storage_key)
            if condition:
                check_condition(
                    decode_item(old_raw) if old_raw is not None else None, condition, table=self.name
                )
            if old_raw is None:
                return [], None
            return [(OP_DELETE, storage_key, None)], old_raw

        old_raw = self._write(storage_key, plan)
        if return_values == "ALL_OLD" and old_raw is not None:
            return decode_item(old_raw)
        return None

    def update_item(
        self,
        key: dict,
        actions: Sequence,
        condition: Sequence | None = None,
        return_values: str = "NONE",
    ) -> dict | None:
        """Apply update ``actions`` (see :mod:`engine.updates`), creating the item if missing."""
        _check_return_values(return_values, RETURN_VALUES)
        storage_key = self.schema.key_of(key)

        def plan(get):
            old_raw = get(storage_key)
            old = decode_item(old_raw) if old_raw is not None else None
            check_condition(old, condition, table=self.name)
            new, touched = apply_update(old, key, actions, self.schema.names)
            encoded = encode_item(new, table=self.name)
            return [(OP_PUT, storage_key, encoded)], (old, encoded, touched)

        old, encoded, touched = self._write(storage_key, plan)
        if return_values == "NONE":
            return None
        if return_values == "ALL_OLD":
            return old
        new = decode_item(encoded)
        if return_values == "ALL_NEW":
            return new
        source = (old or {}) if return_values == "UPDATED_OLD" else new
        return {name: source[name] for name in touched if name in source}

    # ------------------------------------------------------------------ batches
    def batch_write(self, puts: Iterable[dict] = (), deletes: Iterable[dict] = ()) -> None:
        """Write many items; every item is validated before anything is written.

        Atomic per partition (one WAL record each), not across partitions — like
        DynamoDB's BatchWriteItem, which gives no atomicity at all.
        """
        seen: set[bytes] = set()
        pmap, partitions = self._routing
        groups: list[list] = [[] for _ in partitions]
        puts = puts if type(puts) is list else list(puts)
        schema = self.schema
        routed = 0
        while routed < len(puts):
            # The native loop routes every plain item; it stops at one it cannot handle,
            # which the checked path below either routes or rejects with the precise error.
            routed = _batchroute.route_puts(
                puts, routed, schema.hashed, schema.partition_name, schema.partition_type,
                schema.sort_name, schema.sort_type, pmap.starts, MAX_ITEM_BYTES, OP_PUT,
                groups, seen)
            if routed < len(puts):
                item = puts[routed]
                storage_key = schema.key_of_item(item)
                seen.add(storage_key)
                groups[pmap.index_for(storage_key)].append(
                    (OP_PUT, storage_key, encode_item(item, table=self.name)))
                routed += 1
        count = len(puts)
        for key in deletes:
            storage_key = schema.key_of(key)
            seen.add(storage_key)
            groups[pmap.index_for(storage_key)].append((OP_DELETE, storage_key, None))
            count += 1
        if len(seen) != count:
            raise ValidationException("Provided list of item keys contains duplicates")
        for index, ops in enumerate(groups):
            if not ops:
                continue
            try:
                partitions[index].write(lambda get, ops=ops: (ops, None))
            except PartitionRetired:
                self._write_regrouped(ops)

    def _write_regrouped(self, ops: list) -> None:
        """Write ops whose partition was retired meanwhile: they may now span two
        partitions, each written atomically as one record (SPEC §10)."""
        pmap, partitions = self._routing
        groups: dict[int, list] = {}
        for op in ops:
            groups.setdefault(pmap.index_for(op[1]), []).append(op)
        for index, group in groups.items():
            try:
                partitions[index].write(lambda get, group=group: (group, None))
            except PartitionRetired:
                self._write_regrouped(group)

    def batch_get(self, keys: Iterable[dict], projection: Iterable[str] | None = None) -> list[dict]:
        """The items that exist among ``keys`` (missing keys are left out)."""
        names = _projection(projection)
        pmap, partitions = self._routing
        by_partition: dict[int, list[bytes]] = {}
        for key in keys:
            storage_key = self.schema.key_of(key)
            by_partition.setdefault(pmap.index_for(storage_key), []).append(storage_key)
        result = []
        for index, storage_keys in by_partition.items():
            for raw in partitions[index].get_many(storage_keys):
                if raw is not None:
                    result.append(decode_item(raw, names))
        return result

    # ------------------------------------------------------------------ query / scan
    def _collect(
        self,
        lo: bytes,
        hi: bytes | None,
        *,
        forward: bool,
        limit: int | None,
        projection: frozenset[str] | None,
        max_page_bytes: int,
    ) -> tuple[list[dict], dict | None]:
        pmap, partitions = self._routing
        indexes = [pmap.index_for(lo)]
        while indexes[-1] + 1 < len(pmap) and (
            hi is None or pmap.intervals[indexes[-1] + 1].start < hi
        ):
            indexes.append(indexes[-1] + 1)
        if not forward:
            indexes.reverse()
        items: list[dict] = []
        page_bytes = 0
        for index in indexes:
            interval: PartitionInterval = pmap.intervals[index]
            part_lo = max(lo, interval.start)
            part_hi = hi if interval.end is None else (interval.end if hi is None else min(hi, interval.end))
            for storage_key, raw in partitions[index].iter_range(part_lo, part_hi, reverse=not forward):
                items.append(decode_item(raw, projection))
                page_bytes += len(raw)
                if (limit is not None and len(items) >= limit) or page_bytes >= max_page_bytes:
                    return items, self.schema.key_dict(storage_key)
        return items, None

    def query(
        self,
        pk_value: Any,
        sort_condition: tuple | None = None,
        forward: bool = True,
        limit: int | None = None,
        exclusive_start_key: dict | None = None,
        projection: Iterable[str] | None = None,
        max_page_bytes: int = DEFAULT_PAGE_BYTES,
    ) -> tuple[list[dict], dict | None]:
        """Items with partition key ``pk_value`` whose sort key meets ``sort_condition``.

        Returns ``(items, last_evaluated_key)``; pass the key back as
        ``exclusive_start_key`` for the next page (``None`` when there is no more).
        """
        _check_limit(limit)
        lo, hi = self.schema.query_range(pk_value, sort_condition)
        if exclusive_start_key is not None:
            start = self.schema.key_of(exclusive_start_key)
            if forward:
                lo = max(lo, start + b"\x00")
            else:
                hi = start if hi is None else min(hi, start)
        if hi is not None and lo >= hi:
            return [], None
        return self._collect(lo, hi, forward=forward, limit=limit,
                             projection=_projection(projection), max_page_bytes=max_page_bytes)

    def segment_range(self, segment: int, total_segments: int) -> tuple[bytes, bytes | None]:
        """The storage-key range of one parallel-scan segment.

        Segments split the 64-bit space of the key's first bytes evenly: the hash prefix
        under hash partitioning; under range partitioning the bytes after the partition
        key's type tag (so segments may be uneven, but every item is in exactly one).
        """
        if (
            not isinstance(total_segments, int) or not 1 <= total_segments <= 1_000_000
            or not isinstance(segment, int) or not 0 <= segment < total_segments
        ):
            raise ValidationException(
                f"Segment must be in 0..TotalSegments-1 and TotalSegments in 1..1000000, "
                f"got Segment={segment!r}, TotalSegments={total_segments!r}"
            )
        space = 1 << 64
        prefix = b"" if self.schema.hashed else self.schema.partition_prefix(
            {"S": "a", "N": 0, "B": b"a"}[self.schema.partition_type]
        )[:1]

        def bound(index: int) -> bytes:
            return prefix + (index * space // total_segments).to_bytes(8, "big")

        lo = b"" if segment == 0 else bound(segment)
        hi = None if segment == total_segments - 1 else bound(segment + 1)
        return lo, hi

    def scan(
        self,
        limit: int | None = None,
        exclusive_start_key: dict | None = None,
        segment: int | None = None,
        total_segments: int | None = None,
        projection: Iterable[str] | None = None,
        max_page_bytes: int = DEFAULT_PAGE_BYTES,
    ) -> tuple[list[dict], dict | None]:
        """One page of a scan in storage-key order: ``(items, last_evaluated_key)``."""
        _check_limit(limit)
        if (segment is None) != (total_segments is None):
            raise ValidationException("Segment and TotalSegments must be given together")
        lo, hi = (b"", None) if segment is None else self.segment_range(segment, total_segments)
        if exclusive_start_key is not None:
            lo = max(lo, self.schema.key_of(exclusive_start_key) + b"\x00")
        if hi is not None and lo >= hi:
            return [], None
        return self._collect(lo, hi, forward=True, limit=limit,
                             projection=_projection(projection), max_page_bytes=max_page_bytes)

    def iter_items(self, projection: Iterable[str] | None = None) -> Iterator[dict]:
        """Every item, in storage-key order, each partition read from one snapshot.

        Decodes in chunks natively and chains the chunks in C, so the per-item work of a
        full scan (which dominates it) never runs Python bytecode.
        """
        return chain.from_iterable(self._item_chunks(_projection(projection)))

    def _item_chunks(self, names: frozenset[str] | None) -> Iterator[list[dict]]:
        decode_items = _itemcodec.decode_items
        for partition in self.partitions:
            with partition.reader() as txn:
                values = txn.cursor().iternext(keys=False, values=True)
                while chunk := decode_items(values, SCAN_CHUNK_ITEMS, names):
                    yield chunk

    # ------------------------------------------------------------------ stats
    def stats(self) -> tuple[int, int]:
        """(item count, bytes in use) summed over the partitions."""
        count = size = 0
        for partition in self.partitions:
            items, used = partition.stats()
            count += items
            size += used
        return count, size
