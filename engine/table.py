"""A table: routes items to partitions by storage key; reads, writes, queries and scans.

Data flows one way: ``Table`` → :class:`~engine.partition.Partition` → LMDB/WAL. The
routing state (partition map + open partitions) is one tuple swapped atomically, so a
repartitioning (SPEC §10) never shows a reader half of a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from typing import Any

import lmdb

from . import _batchroute, _itemcodec, _reads
from .errors import (
    ConditionalCheckFailedException,
    CorruptionError,
    ValidationException,
    lmdb_error,
)
from .expressions.ast import (
    And,
    Between,
    Call,
    Compare,
    Condition,
    DeleteAction,
    In,
    Not,
    Or,
    Path,
    Projection,
    RemoveAction,
    Update,
)
from .expressions.evaluate import check_condition, compile_condition, evaluate
from .expressions.parser import parse_condition, parse_projection, parse_update
from .expressions.placeholders import Placeholders, bind
from .expressions.projection import project, project_paths
from .expressions.tuples import condition_from_tuples, update_from_tuples
from .expressions.update import apply_update, check_update_paths
from .itemsize import MAX_ITEM_SIZE_BYTES, item_size
from .keys import KeySchema
from .longkeys import SORT_WINDOW, KeyRange, in_order
from .partition import OP_DELETE, OP_PUT, Partition, PartitionRetired
from .partition_map import PartitionInterval, PartitionMap

MAX_ITEM_BYTES = MAX_ITEM_SIZE_BYTES  # DynamoDB's 400 KB item limit, by its size formula
# An item's DynamoDB size is at most twice its encoded length (the worst case, a list of
# NULLs or BOOLs, costs 2 bytes an element by DynamoDB's formula and 1 encoded;
# tests/test_table_itemsize.py checks the bound), so an item encoded in half the limit is
# within it. The native batch router, which sees encoded lengths only, takes those; larger
# items take the checked path (encode_item), which measures them by the formula.
_NATIVE_ROUTE_MAX_ENCODED_BYTES = MAX_ITEM_SIZE_BYTES // 2
DEFAULT_PAGE_BYTES = 1 << 20  # query/scan pages stop at 1 MB, as in DynamoDB
# Items decoded per native call in a full scan. Small on purpose: a chunk's dicts are alive
# together, and CPython runs a generation-0 collection every 700 live allocations, so
# 1024-item chunks paid for one or more collections each; 64 stays far below that and in
# cache (1M-item scan, best of 4: 1024 -> 850 ns/item, 128 -> 781, 64 -> 702-747, 32 -> 824).
SCAN_CHUNK_ITEMS = 64
RETURN_VALUES = ("NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW")
RETURN_VALUES_ON_CONDITION_CHECK_FAILURE = ("NONE", "ALL_OLD")

_CONDITION_NODES = (Compare, Between, In, And, Or, Not, Call)
_get_item = _reads.get_item


_DURABILITY_POOL: ThreadPoolExecutor | None = None


def _durability_pool() -> ThreadPoolExecutor:
    """Threads that wait for WAL fsyncs of a multi-partition batch in parallel."""
    global _DURABILITY_POOL
    if _DURABILITY_POOL is None:
        _DURABILITY_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="wal-sync")
    return _DURABILITY_POOL


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a query or scan, as DynamoDB pages them.

    ``scanned_count`` items were read (Limit and the 1 MB page cap count these, before any
    filter); ``items`` are those that passed the filter, projected. ``last_evaluated_key``
    is the key of the last item read when the page stopped early (pass it back as
    ``exclusive_start_key``), None when the range is exhausted. ``scanned_size_bytes`` is
    the DynamoDB item size (:func:`engine.itemsize.item_size`) summed over the items read —
    what read capacity is charged on — and 0 unless the page was asked to ``measure``.
    """

    items: list[dict]
    last_evaluated_key: dict | None
    scanned_count: int
    scanned_size_bytes: int


def encode_item(item: dict, *, table: str, key: bytes) -> bytes:
    """Encode an item for storage under its storage ``key`` (which its checksums cover),
    turning codec errors into ValidationException and refusing items over DynamoDB's
    400 KB limit (measured by DynamoDB's size formula)."""
    try:
        encoded = _itemcodec.encode_item(item, key)
    except (ValueError, TypeError, OverflowError) as err:
        raise ValidationException(
            f"One or more parameter values were invalid in an item for table {table}: {err}"
        ) from err
    if len(encoded) <= _NATIVE_ROUTE_MAX_ENCODED_BYTES:
        return encoded  # within the limit whatever its size by the formula (at most twice)
    try:
        size = item_size(item)
    except TypeError:  # a form the codec accepts and the formula does not (tuples)
        size = item_size(decode_item(encoded, key=key))
    if size > MAX_ITEM_SIZE_BYTES:
        raise ValidationException(
            f"Item size has exceeded the maximum allowed size (table {table}: {size} bytes "
            f"by DynamoDB's item size formula; the limit is 400 KB, {MAX_ITEM_SIZE_BYTES} bytes)"
        )
    return encoded


def decode_item(raw: bytes, projection: frozenset[str] | None = None, *,
                key: bytes | None = None) -> dict:
    """Check and decode a stored item; pass the storage ``key`` it was read under whenever
    it is at hand (it detects a damaged key). CorruptionError names the key."""
    return _itemcodec.decode_item(raw, projection, key)


def _raise_located(err: CorruptionError | lmdb.Error, partition: Partition) -> None:
    """Re-raise a read's failure naming the partition and its data file: a stored item's
    CorruptionError from the codec (which names only the key), or py-lmdb's error for a
    damaged page (through engine.errors.lmdb_error). Returns if ``err`` names a place."""
    if isinstance(err, lmdb.Error):
        raise lmdb_error(err, what="reading items", partition=partition.name,
                         path=partition.read_cache.path) from err
    if err.partition is None and err.path is None:
        raise CorruptionError(err.message, partition=partition.name,
                              path=partition.read_cache.path) from None


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


def _check_on_failure(value: str) -> None:
    if value not in RETURN_VALUES_ON_CONDITION_CHECK_FAILURE:
        raise ValidationException(
            f"ReturnValuesOnConditionCheckFailure must be NONE or ALL_OLD, got {value!r}"
        )


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValidationException(f"Limit must be an integer of at least 1, got {limit!r}")


def _check_condition_holds(condition: Condition, old: dict | None, on_failure: str) -> None:
    """Raise ConditionalCheckFailedException (carrying the old item if asked) unless
    ``condition`` holds for ``old``."""
    if not evaluate(condition, old):
        raise ConditionalCheckFailedException(
            "The conditional request failed", item=old if on_failure == "ALL_OLD" else None
        )


class _Expressions:
    """One call's expressions, in any of their forms, made into bound trees.

    A string is parsed (:mod:`engine.expressions.parser`, cached by its text) and bound
    with the call's ``names`` / ``values``; every string of the call shares one
    :class:`Placeholders`, so :meth:`finish` reports unused placeholders once all are
    bound, as DynamoDB does. Bound trees pass through; the older tuple forms are converted
    (:mod:`engine.expressions.tuples`); a projection may also be a list of top-level names.
    """

    __slots__ = ("names", "values", "placeholders")

    def __init__(self, names: dict | None, values: dict | None) -> None:
        self.names = names
        self.values = values
        self.placeholders: Placeholders | None = None

    def _bind(self, tree: Any, kind: str) -> Any:
        if self.placeholders is None:
            self.placeholders = Placeholders(self.names, self.values)
        return bind(tree, self.placeholders, kind)

    def condition(self, condition: Any, kind: str = "ConditionExpression") -> Condition | None:
        if condition is None:
            return None
        if isinstance(condition, str):
            tree = self._bind(parse_condition(condition, kind), kind)
        elif isinstance(condition, _CONDITION_NODES):
            tree = condition
        elif isinstance(condition, (list, tuple)):
            tree = condition_from_tuples(condition)
        else:
            raise ValidationException(
                f"a {kind} must be an expression string, a bound condition or a list of "
                f"condition tuples, got {type(condition).__name__}"
            )
        if tree is not None:
            check_condition(tree, kind=kind)
        return tree

    def update(self, update: Any) -> Update:
        if isinstance(update, str):
            return self._bind(parse_update(update), "UpdateExpression")
        if isinstance(update, Update):
            return update
        if isinstance(update, (list, tuple)):
            return update_from_tuples(update)
        raise ValidationException(
            f"an UpdateExpression must be an expression string, an Update or a list of "
            f"update action tuples, got {type(update).__name__}"
        )

    def projection(self, projection: Any) -> Projection | None:
        if projection is None:
            return None
        if isinstance(projection, str):
            return self._bind(parse_projection(projection), "ProjectionExpression")
        if isinstance(projection, Projection):
            if not projection.paths:
                raise ValidationException("a projection must list one or more paths")
            return projection
        names = list(dict.fromkeys(projection))  # the caller's order, once each
        _projection(names)
        return Projection(tuple(Path((name,)) for name in names))

    def finish(self) -> None:
        """After every expression of the call: names or values no expression used are an
        error (DynamoDB refuses them)."""
        if self.placeholders is not None:
            self.placeholders.check_all_used()
        elif self.names is not None or self.values is not None:
            given = "ExpressionAttributeNames" if self.names is not None else \
                "ExpressionAttributeValues"
            raise ValidationException(
                f"{given} can only be specified when using expressions"
            )


def _top_names(projection: Projection) -> frozenset[str]:
    return frozenset(path.elements[0] for path in projection.paths)


def _is_flat(projection: Projection) -> bool:
    return all(len(path.elements) == 1 for path in projection.paths)


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
        self._key_names = frozenset(schema.names)
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
            partition = self._partition_for(storage_key)
            try:
                return partition.write(plan)
            except PartitionRetired:
                continue
            except CorruptionError as err:  # the plan read a damaged item
                _raise_located(err, partition)
                raise

    # ------------------------------------------------------------------ single items
    def put_item(
        self,
        item: dict,
        condition: str | Condition | Sequence | None = None,
        return_values: str = "NONE",
        *,
        names: dict | None = None,
        values: dict | None = None,
        return_values_on_condition_check_failure: str = "NONE",
    ) -> dict | None:
        """Store ``item`` (replacing any item with the same key) if ``condition`` holds for
        the item it replaces (None when there is none). ``condition``: an expression string
        (placeholders from ``names`` / ``values``), a bound Condition, or condition tuples
        (:mod:`engine.expressions.tuples`). Returns the old item for ALL_OLD."""
        _check_return_values(return_values, ("NONE", "ALL_OLD"))
        _check_on_failure(return_values_on_condition_check_failure)
        expressions = _Expressions(names, values)
        tree = expressions.condition(condition)
        expressions.finish()
        storage_key = self.schema.key_of_item(item)
        encoded = encode_item(item, table=self.name, key=storage_key)
        need_old = tree is not None or return_values == "ALL_OLD"
        on_failure = return_values_on_condition_check_failure

        def plan(get):
            old_raw = get(storage_key) if need_old else None
            # Decoded here, under _write, which names the partition if the item is damaged.
            old = decode_item(old_raw, key=storage_key) if old_raw is not None else None
            if tree is not None:
                _check_condition_holds(tree, old, on_failure)
            return [(OP_PUT, storage_key, encoded)], old

        old = self._write(storage_key, plan)
        return old if return_values == "ALL_OLD" else None

    #: ``get_item(key, projection=None, *, names=None) -> dict | None``: the item with
    #: ``key``, or None. ``projection``: top-level names (a list, tuple or set), a
    #: ProjectionExpression string (``#name`` placeholders from ``names``) or a Projection.
    #: Native (engine._reads), bound as the method: routing, one read transaction and the
    #: decoding of the projected top-level attributes run without a Python frame (point
    #: reads are the hottest path); a key it cannot route natively goes through
    #: ``schema.key_of``, which raises the precise error; expressions go to
    #: :meth:`get_item_by_expression`.
    get_item = _get_item

    def get_item_by_expression(self, key: dict, projection: str | Projection | None,
                               names: dict | None = None) -> dict | None:
        """``get_item`` with a ProjectionExpression (string or tree) and its ``names``."""
        expressions = _Expressions(names, None)
        tree = expressions.projection(projection)
        expressions.finish()
        if tree is None:
            return _get_item(self, key)
        item = _get_item(self, key, _top_names(tree))
        if item is None or _is_flat(tree):
            return item
        return project(item, tree)

    def delete_item(
        self,
        key: dict,
        condition: str | Condition | Sequence | None = None,
        return_values: str = "NONE",
        *,
        names: dict | None = None,
        values: dict | None = None,
        return_values_on_condition_check_failure: str = "NONE",
    ) -> dict | None:
        """Delete the item with ``key`` (nothing if there is none) if ``condition`` holds."""
        _check_return_values(return_values, ("NONE", "ALL_OLD"))
        _check_on_failure(return_values_on_condition_check_failure)
        expressions = _Expressions(names, values)
        tree = expressions.condition(condition)
        expressions.finish()
        storage_key = self.schema.key_of(key)
        on_failure = return_values_on_condition_check_failure

        def plan(get):
            old_raw = get(storage_key)
            if old_raw is None:
                if tree is not None:
                    _check_condition_holds(tree, None, on_failure)
                return [], None
            old = decode_item(old_raw, key=storage_key)  # named by _write if damaged
            if tree is not None:
                _check_condition_holds(tree, old, on_failure)
            return [(OP_DELETE, storage_key, None)], old

        old = self._write(storage_key, plan)
        return old if return_values == "ALL_OLD" else None

    def update_item(
        self,
        key: dict,
        update: str | Update | Sequence,
        condition: str | Condition | Sequence | None = None,
        return_values: str = "NONE",
        *,
        names: dict | None = None,
        values: dict | None = None,
        return_values_on_condition_check_failure: str = "NONE",
    ) -> dict | None:
        """Apply ``update`` to the item with ``key``, creating it if missing, if
        ``condition`` holds for the item as it was.

        ``update``: an UpdateExpression string, an Update, or update action tuples
        (:mod:`engine.expressions.tuples`). An update of only REMOVE actions on a missing
        item creates nothing (DynamoDB). ReturnValues: ALL_OLD / ALL_NEW the whole item;
        UPDATED_OLD / UPDATED_NEW the paths the update wrote, nested as DynamoDB returns
        them (``SET a.b = :v`` returns ``{"a": {"b": ...}}``), without paths that do not
        exist on that side. Returns None for NONE or when there is no item to return."""
        _check_return_values(return_values, RETURN_VALUES)
        _check_on_failure(return_values_on_condition_check_failure)
        expressions = _Expressions(names, values)
        update_tree = expressions.update(update)
        tree = expressions.condition(condition)
        expressions.finish()
        key_names = self.schema.names
        check_update_paths(update_tree, key_names)  # fail before taking the write lock
        storage_key = self.schema.key_of(key)
        # Only REMOVE / DELETE (set elements) actions: a missing item stays missing, as
        # in DynamoDB (there is nothing to remove from). No action at all creates the
        # key-only item, as DynamoDB's UpdateItem without an update does.
        remove_only = bool(update_tree.actions) and all(
            type(action) in (RemoveAction, DeleteAction) for action in update_tree.actions)
        on_failure = return_values_on_condition_check_failure

        def plan(get):
            old_raw = get(storage_key)
            old = decode_item(old_raw, key=storage_key) if old_raw is not None else None
            if tree is not None:
                _check_condition_holds(tree, old, on_failure)
            if old is None and remove_only:
                return [], (None, None, ())
            new, touched = apply_update(update_tree, old, key, key_names)
            encoded = encode_item(new, table=self.name, key=storage_key)
            return [(OP_PUT, storage_key, encoded)], (old, encoded, touched)

        old, encoded, touched = self._write(storage_key, plan)
        if return_values == "NONE":
            return None
        if return_values == "ALL_OLD":
            return old
        if return_values == "UPDATED_OLD":
            return project_paths(old, touched) if old is not None else None
        if encoded is None:
            return None
        new = decode_item(encoded, key=storage_key)  # as stored: numbers normalized
        return new if return_values == "ALL_NEW" else project_paths(new, touched)

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
                puts, routed, schema.key_mode, schema.partition_name, schema.partition_type,
                schema.sort_name, schema.sort_type, pmap.starts, _NATIVE_ROUTE_MAX_ENCODED_BYTES,
                OP_PUT,
                groups, seen)
            if routed < len(puts):
                item = puts[routed]
                storage_key = schema.key_of_item(item)
                seen.add(storage_key)
                groups[pmap.index_for(storage_key)].append(
                    (OP_PUT, storage_key, encode_item(item, table=self.name, key=storage_key)))
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

    def batch_get(
        self, keys: Iterable[dict], projection: str | Projection | Iterable[str] | None = None,
        *, names: dict | None = None,
    ) -> list[dict]:
        """The items that exist among ``keys`` (missing keys are left out), projected as
        :meth:`get_item` projects."""
        expressions = _Expressions(names, None)
        tree = expressions.projection(projection)
        expressions.finish()
        top = _top_names(tree) if tree is not None else None
        nested = tree is not None and not _is_flat(tree)
        pmap, partitions = self._routing
        by_partition: dict[int, list[bytes]] = {}
        for key in keys:
            storage_key = self.schema.key_of(key)
            by_partition.setdefault(pmap.index_for(storage_key), []).append(storage_key)
        result = []
        for index, storage_keys in by_partition.items():
            try:
                values = partitions[index].get_many(storage_keys)
                for storage_key, raw in zip(storage_keys, values, strict=True):
                    if raw is not None:
                        item = decode_item(raw, top, key=storage_key)
                        result.append(project(item, tree) if nested else item)
            except (CorruptionError, lmdb.Error) as err:
                _raise_located(err, partitions[index])
                raise
        return result

    # ------------------------------------------------------------------ query / scan
    def _partition_ranges(self, lo: bytes, hi: bytes | None, forward: bool,
                          where: list) -> Iterator[Iterator[tuple[bytes, bytes]]]:
        """Each partition's share of the stored range ``[lo, hi)``, in order; ``where[0]``
        is the partition being read (for errors). Chained in C by the caller, so the rows
        pass through no extra Python frame."""
        pmap, partitions = self._routing
        indexes = [pmap.index_for(lo)]
        while indexes[-1] + 1 < len(pmap) and (
            hi is None or pmap.intervals[indexes[-1] + 1].start < hi
        ):
            indexes.append(indexes[-1] + 1)
        if not forward:
            indexes.reverse()
        for index in indexes:
            interval: PartitionInterval = pmap.intervals[index]
            part_lo = max(lo, interval.start)
            part_hi = hi if interval.end is None else (
                interval.end if hi is None else min(hi, interval.end))
            where[0] = partitions[index]
            yield partitions[index].iter_range(part_lo, part_hi, reverse=not forward)

    def _full_key_of_row(self, row: tuple[bytes, bytes]) -> bytes:
        """A row's full key (engine.longkeys), from the key attributes of its item."""
        item = decode_item(row[1], self._key_names, key=row[0])
        return self.schema.full_key_of_item(item)

    def _last_key(self, storage_key: bytes, raw: bytes) -> dict:
        """LastEvaluatedKey: from the stored key, or (key format 2, where it may be
        compacted) from the item's key attributes."""
        try:
            return self.schema.key_dict(storage_key)
        except ValueError:  # a compacted component (key format 2) does not decode
            if not self.schema.long_keys:
                raise
        item = decode_item(raw, self._key_names, key=storage_key)
        return self.schema.key_dict_of_item(item)

    def _collect(
        self,
        key_range: KeyRange,
        *,
        forward: bool,
        limit: int | None,
        projection: Projection | None,
        filter: Condition | None,
        max_page_bytes: int,
        measure: bool,
        ordered: bool,
        resort: bool = False,
    ) -> Page:
        """Read the key range in order until it ends, ``limit`` items were read or
        ``max_page_bytes`` (stored bytes) were read; filter and project what was read.
        ``ordered``: in full-key (DynamoDB) order, which a query of a key-format-2 table
        gets by re-sorting buckets (``engine.longkeys``). That costs every row, so the read
        starts without it and starts over with it (``resort``) at the first row long
        enough to be in a bucket; a page is short, and such rows are rare."""
        where: list = [None]
        rows: Iterator[tuple[bytes, bytes]] = chain.from_iterable(
            self._partition_ranges(key_range.lo, key_range.hi, forward, where))
        in_buckets = ordered and key_range.long_keys
        if in_buckets and (resort or key_range.exact):
            rows = in_order(rows, key_range, self._full_key_of_row, not forward)
            in_buckets = False
        # Only S and B sort keys can be long enough to share a bucket.
        watch = in_buckets and self.schema.sort_type in ("S", "B")
        longest_plain = key_range.sort_from + SORT_WINDOW  # no bucket in a key this short
        # Decode only the projected top-level attributes unless the filter or the size
        # needs the whole item; nested projections are cut from what was decoded.
        whole = filter is not None or measure
        matches = compile_condition(filter) if filter is not None else None
        decode_names = _top_names(projection) if projection is not None and not whole else None
        reproject = projection is not None and (whole or not _is_flat(projection))
        items: list[dict] = []
        scanned = page_bytes = size_bytes = 0
        try:
            for storage_key, raw in rows:
                if watch and len(storage_key) > longest_plain:
                    return self._collect(
                        key_range, forward=forward, limit=limit, projection=projection,
                        filter=filter, max_page_bytes=max_page_bytes, measure=measure,
                        ordered=ordered, resort=True)
                item = decode_item(raw, decode_names, key=storage_key)
                scanned += 1
                page_bytes += len(raw)
                if measure:
                    size_bytes += item_size(item)
                if matches is None or matches(item):
                    items.append(project(item, projection) if reproject else item)
                if (limit is not None and scanned >= limit) or page_bytes >= max_page_bytes:
                    return Page(items, self._last_key(storage_key, raw), scanned, size_bytes)
        except (CorruptionError, lmdb.Error) as err:  # a damaged item or page
            if where[0] is not None:
                _raise_located(err, where[0])
            raise
        return Page(items, None, scanned, size_bytes)

    def query_page(
        self,
        pk_value: Any,
        sort_condition: tuple | None = None,
        *,
        forward: bool = True,
        limit: int | None = None,
        exclusive_start_key: dict | None = None,
        projection: str | Projection | Iterable[str] | None = None,
        filter: str | Condition | Sequence | None = None,
        names: dict | None = None,
        values: dict | None = None,
        max_page_bytes: int = DEFAULT_PAGE_BYTES,
        measure: bool = False,
    ) -> Page:
        """One page of the items with partition key ``pk_value`` whose sort key meets
        ``sort_condition``, as DynamoDB's Query pages: ``limit`` counts items read before
        the ``filter`` (a FilterExpression string, a Condition or condition tuples) drops
        any, the page stops at ``max_page_bytes`` read, the projection applies after the
        filter. ``measure`` adds up DynamoDB item sizes of the items read."""
        _check_limit(limit)
        expressions = _Expressions(names, values)
        filter_tree = expressions.condition(filter, "FilterExpression")
        projection_tree = expressions.projection(projection)
        expressions.finish()
        lo, hi = self.schema.query_range(pk_value, sort_condition)  # full keys
        if exclusive_start_key is not None:
            start = self.schema.full_key(exclusive_start_key)
            if forward:
                lo = max(lo, start + b"\x00")
            else:
                hi = start if hi is None else min(hi, start)
        if hi is not None and lo >= hi:
            return Page([], None, 0, 0)
        return self._collect(self.schema.stored_range(pk_value, lo, hi), forward=forward,
                             limit=limit, projection=projection_tree, filter=filter_tree,
                             max_page_bytes=max_page_bytes, measure=measure, ordered=True)

    def query(
        self,
        pk_value: Any,
        sort_condition: tuple | None = None,
        forward: bool = True,
        limit: int | None = None,
        exclusive_start_key: dict | None = None,
        projection: str | Projection | Iterable[str] | None = None,
        max_page_bytes: int = DEFAULT_PAGE_BYTES,
        *,
        filter: str | Condition | Sequence | None = None,
        names: dict | None = None,
        values: dict | None = None,
    ) -> tuple[list[dict], dict | None]:
        """:meth:`query_page` as ``(items, last_evaluated_key)``; pass the key back as
        ``exclusive_start_key`` for the next page (``None`` when there is no more)."""
        page = self.query_page(
            pk_value, sort_condition, forward=forward, limit=limit,
            exclusive_start_key=exclusive_start_key, projection=projection, filter=filter,
            names=names, values=values, max_page_bytes=max_page_bytes)
        return page.items, page.last_evaluated_key

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

    def scan_page(
        self,
        *,
        limit: int | None = None,
        exclusive_start_key: dict | None = None,
        segment: int | None = None,
        total_segments: int | None = None,
        projection: str | Projection | Iterable[str] | None = None,
        filter: str | Condition | Sequence | None = None,
        names: dict | None = None,
        values: dict | None = None,
        max_page_bytes: int = DEFAULT_PAGE_BYTES,
        measure: bool = False,
    ) -> Page:
        """One page of a scan (of one segment, if given) in storage-key order, paged as
        :meth:`query_page` pages."""
        _check_limit(limit)
        if (segment is None) != (total_segments is None):
            raise ValidationException("Segment and TotalSegments must be given together")
        expressions = _Expressions(names, values)
        filter_tree = expressions.condition(filter, "FilterExpression")
        projection_tree = expressions.projection(projection)
        expressions.finish()
        lo, hi = (b"", None) if segment is None else self.segment_range(segment, total_segments)
        if exclusive_start_key is not None:
            lo = max(lo, self.schema.key_of(exclusive_start_key) + b"\x00")
        if hi is not None and lo >= hi:
            return Page([], None, 0, 0)
        return self._collect(KeyRange(lo, hi, lo, hi, 0, False, self.schema.long_keys),
                             forward=True, limit=limit, projection=projection_tree,
                             filter=filter_tree, max_page_bytes=max_page_bytes,
                             measure=measure, ordered=False)

    def scan(
        self,
        limit: int | None = None,
        exclusive_start_key: dict | None = None,
        segment: int | None = None,
        total_segments: int | None = None,
        projection: str | Projection | Iterable[str] | None = None,
        max_page_bytes: int = DEFAULT_PAGE_BYTES,
        *,
        filter: str | Condition | Sequence | None = None,
        names: dict | None = None,
        values: dict | None = None,
    ) -> tuple[list[dict], dict | None]:
        """:meth:`scan_page` as ``(items, last_evaluated_key)``."""
        page = self.scan_page(
            limit=limit, exclusive_start_key=exclusive_start_key, segment=segment,
            total_segments=total_segments, projection=projection, filter=filter, names=names,
            values=values, max_page_bytes=max_page_bytes)
        return page.items, page.last_evaluated_key

    def iter_items(self, projection: Iterable[str] | None = None) -> Iterator[dict]:
        """Every item, in storage-key order, each partition read from one snapshot.

        Decodes in chunks natively and chains the chunks in C, so the per-item work of a
        full scan (which dominates it) never runs Python bytecode.
        """
        return chain.from_iterable(self._item_chunks(_projection(projection)))

    def _item_chunks(self, names: frozenset[str] | None) -> Iterator[list[dict]]:
        decode_items = _itemcodec.decode_items
        for partition in self.partitions:
            try:
                with partition.reader() as txn:
                    values = txn.cursor().iternext(keys=False, values=True)
                    while chunk := decode_items(values, SCAN_CHUNK_ITEMS, names):
                        yield chunk
            except (CorruptionError, lmdb.Error) as err:  # values are checked without keys
                _raise_located(err, partition)
                raise

    # ------------------------------------------------------------------ stats
    def stats(self) -> tuple[int, int]:
        """(item count, bytes in use) summed over the partitions."""
        count = size = 0
        for partition in self.partitions:
            items, used = partition.stats()
            count += items
            size += used
        return count, size
