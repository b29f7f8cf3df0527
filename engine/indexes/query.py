"""Query and Scan on a secondary index, paged as :meth:`engine.table.Table.query_page`
pages (the same :class:`~engine.table.Page`).

Get a handle with :meth:`engine.Engine.index`. Rules (DynamoDB's Query/Scan references):

* a GSI is eventually consistent: ``consistent_read=True`` is a ValidationException
  ("Consistent reads are not supported on global secondary indexes"); a GSI still being
  backfilled cannot be read;
* an LSI is read in the base partitions, so it is always consistent; attributes it does
  not project are fetched from the base item (``select_all=True``, or a projection that
  names them), as DynamoDB fetches them at an extra read cost;
* ``last_evaluated_key`` holds the base table's key and the index's key attributes;
  pass it back as ``exclusive_start_key``;
* index entries are ordered by the index key, then by the base key; a Scan walks them in
  that order (per GSI hash range) and splits into segments like a table's scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from .. import _itemcodec, _keycodec
from ..errors import ValidationException
from ..expressions.ast import Condition, Path, Projection
from ..expressions.evaluate import check_condition, compile_condition
from ..expressions.parser import parse_condition, parse_projection
from ..expressions.placeholders import Placeholders, bind
from ..expressions.projection import project
from ..expressions.tuples import condition_from_tuples
from ..itemsize import item_size
from ..keys import key_mode, sort_condition_range
from ..longkeys import SORT_WINDOW, in_order, key_range
from ..partition_map import key_successor
from ..table import DEFAULT_PAGE_BYTES, Page, Table
from .gsi_store import GsiStore, merged_range
from .maintain import IndexSpec


class Index:
    """A handle on one secondary index of a table (thread-safe, cheap to create).

    ``status()`` returns the index's current catalog status and backfilling flag.
    """

    def __init__(self, table: Table, spec: IndexSpec, store: GsiStore | None,
                 status: Callable[[], tuple[str, bool]]) -> None:
        self.table = table
        self.spec = spec
        self.store = store
        self.name = spec.name
        self.local = spec.local
        self._status = status
        self._key_names = frozenset(
            name for name in (spec.base_pk, spec.base_sk, spec.hash_name, spec.range_name)
            if name is not None)

    @property
    def key_schema(self) -> list[tuple[str, str]]:
        return list(self.spec.definition.key_schema)

    # ------------------------------------------------------------------ public reads
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
        consistent_read: bool = False,
        select_all: bool = False,
    ) -> Page:
        """One page of the entries whose index partition key is ``pk_value`` and whose
        index sort key meets ``sort_condition`` (``("=", v)``, ``("<", v)``, ``("<=", v)``,
        ``(">", v)``, ``(">=", v)``, ``("between", lo, hi)``, ``("begins_with", p)``), in
        index order (then base-key order). Limit, filter, projection and the page byte
        cap work as in :meth:`Table.query_page`. ``select_all``: every attribute of the
        base item (LSIs; a GSI only if it projects ALL)."""
        self._check_read(consistent_read, select_all, limit)
        filter_tree, projection_tree = _expressions(filter, projection, names, values)
        full_prefix, prefix = self._pk_prefixes(pk_value)
        lo, hi = self._query_range(full_prefix, sort_condition)  # full keys
        lo, hi = self._after_start(lo, hi, exclusive_start_key, forward, full=True)
        if hi is not None and lo >= hi:
            return Page([], None, 0, 0)
        stored = key_range(lo, hi, full_prefix, prefix, self.spec.long_keys)

        def entries(resort: bool) -> Iterator[tuple[bytes, bytes]]:
            if self.local:
                rows = self._lsi_entries(stored.lo, stored.hi, prefix, key_successor(prefix),
                                         forward)
            else:
                rows = self.store.iter_range(stored.lo, stored.hi, reverse=not forward)
            if resort:
                return in_order(rows, stored, self._full_key_of_entry, not forward)
            return rows

        # As Table._collect: re-sorting buckets (engine.longkeys) costs every row, so the
        # page is read without it and read again with it if a row may be in a bucket.
        watch = stored.long_keys and not stored.exact
        page = self._collect(entries(stored.exact), limit, projection_tree, filter_tree,
                             max_page_bytes, measure, select_all,
                             stored.sort_from + SORT_WINDOW if watch else None)
        if page is None:
            page = self._collect(entries(True), limit, projection_tree, filter_tree,
                                 max_page_bytes, measure, select_all)
        assert page is not None
        return page

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
        consistent_read: bool = False,
        select_all: bool = False,
    ) -> Page:
        """One page of a scan of the index (of one parallel-scan segment, if given)."""
        self._check_read(consistent_read, select_all, limit)
        if (segment is None) != (total_segments is None):
            raise ValidationException("Segment and TotalSegments must be given together")
        filter_tree, projection_tree = _expressions(filter, projection, names, values)
        if segment is None:
            lo, hi = b"", None
        elif self.local:
            lo, hi = self.table.segment_range(segment, total_segments)
        else:
            lo, hi = _hash_segment(segment, total_segments)
        lo, hi = self._after_start(lo, hi, exclusive_start_key, True)
        if hi is not None and lo >= hi:
            return Page([], None, 0, 0)
        if self.local:
            entries = self._lsi_entries(lo, hi, lo, hi, True)
        else:
            entries = self.store.iter_range(lo, hi)
        page = self._collect(entries, limit, projection_tree, filter_tree, max_page_bytes,
                             measure, select_all)  # a scan keeps stored order: never None
        assert page is not None
        return page

    def query(self, pk_value: Any, sort_condition: tuple | None = None,
              **options: Any) -> tuple[list[dict], dict | None]:
        """:meth:`query_page` as ``(items, last_evaluated_key)``."""
        page = self.query_page(pk_value, sort_condition, **options)
        return page.items, page.last_evaluated_key

    def scan(self, **options: Any) -> tuple[list[dict], dict | None]:
        """:meth:`scan_page` as ``(items, last_evaluated_key)``."""
        page = self.scan_page(**options)
        return page.items, page.last_evaluated_key

    def iter_entries(self) -> Iterator[dict]:
        """Every entry of the index as stored (projected), in index order."""
        key = None
        while True:
            page = self.scan_page(exclusive_start_key=key)
            yield from page.items
            key = page.last_evaluated_key
            if key is None:
                return

    # ------------------------------------------------------------------ internals
    def _check_read(self, consistent_read: bool, select_all: bool, limit: int | None) -> None:
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                  or limit < 1):
            raise ValidationException(f"Limit must be an integer of at least 1, got {limit!r}")
        if self.local:
            return
        if consistent_read:
            raise ValidationException(
                "Consistent reads are not supported on global secondary indexes")
        if select_all and self.spec.names is not None:
            raise ValidationException(
                "One or more parameter values were invalid: Select type ALL_ATTRIBUTES is "
                f"not supported for global secondary index {self.name} because its "
                "projection type is not ALL")
        status, backfilling = self._status()
        if backfilling or status != "ACTIVE":
            raise ValidationException(
                f"Cannot read from backfilling global secondary index: {self.name}"
                if backfilling else f"global secondary index {self.name} is {status}")

    def _pk_prefixes(self, pk_value: Any) -> tuple[bytes, bytes]:
        """The full-key and stored-key prefixes of an index partition key."""
        spec = self.spec
        self._check_value(spec.hash_name, spec.hash_type, pk_value)
        if self.local:
            schema = self.table.schema
            return (schema.partition_prefix(pk_value, full=True),
                    schema.partition_prefix(pk_value))
        try:
            return (_keycodec.storage_key(True, pk_value, spec.hash_type, None, None),
                    _keycodec.storage_key(key_mode(True, spec.long_keys), pk_value,
                                          spec.hash_type, None, None))
        except (ValueError, TypeError, OverflowError) as err:
            raise ValidationException(
                f"One or more parameter values were invalid: key attribute "
                f"{spec.hash_name}: {err}") from err

    def _full_key_of_entry(self, entry: tuple[bytes, bytes]) -> bytes:
        """An entry's full key (engine.longkeys), from the key attributes it holds."""
        # (An entry's value is not bound to its key as a base item's is: decode it alone.)
        full = self.spec.key(_itemcodec.decode_item(entry[1], self._key_names), full=True)
        assert full is not None  # an entry holds its index key
        return full

    def _check_value(self, name: str, key_type: str, value: Any) -> None:
        expected = {"S": (str,), "N": (int, Decimal), "B": (bytes, bytearray)}
        if not isinstance(value, expected[key_type]) or isinstance(value, bool):
            raise ValidationException(
                "One or more parameter values were invalid: Condition parameter type does "
                f"not match schema type (index {self.name}, key {name}: expected {key_type}, "
                f"got {type(value).__name__})")

    def _query_range(self, prefix: bytes, condition: tuple | None) -> tuple[bytes, bytes | None]:
        """The full-key range of a query on the index partition key whose full-key prefix
        is ``prefix``."""
        spec = self.spec
        if isinstance(condition, tuple) and spec.range_name is not None:
            for operand in condition[1:]:
                self._check_value(spec.range_name, spec.range_type, operand)
        return sort_condition_range(prefix, condition, spec.range_name, spec.range_type,
                                    self._encode_sort_operand, f"index {self.name}")

    def _encode_sort_operand(self, value: Any) -> bytes:
        try:
            return _keycodec.encode_key(value, self.spec.range_type, max_len=1024)
        except (ValueError, TypeError, OverflowError) as err:
            raise ValidationException(
                f"One or more parameter values were invalid: key attribute "
                f"{self.spec.range_name}: {err}") from err

    def _after_start(self, lo: bytes, hi: bytes | None, start: dict | None,
                     forward: bool, full: bool = False) -> tuple[bytes, bytes | None]:
        if start is None:
            return lo, hi
        if not isinstance(start, dict) or set(start) != self._key_names:
            raise ValidationException(
                "The provided starting key is invalid: it must hold exactly the table's and "
                f"the index's key attributes ({', '.join(sorted(self._key_names))})")
        try:
            key = self.spec.key(start, strict=True, full=full)
        except ValidationException as err:
            raise ValidationException(f"The provided starting key is invalid: {err}") from err
        if key is None:
            raise ValidationException("The provided starting key is invalid")
        if forward:
            return max(lo, key + b"\x00"), hi
        return lo, key if hi is None else min(hi, key)

    def _lsi_entries(self, lo: bytes, hi: bytes | None, route_lo: bytes,
                     route_hi: bytes | None, forward: bool) -> Iterator[tuple[bytes, bytes]]:
        """LSI entries in ``[lo, hi)`` from every base partition owning a key in
        ``[route_lo, route_hi)`` (an item collection may straddle a split), merged."""
        pmap, partitions = self.table.routing
        index = pmap.index_for(route_lo)
        parts = []
        while True:
            partition = partitions[index]
            state = partition.index_state
            spec = state.by_name(self.name) if state is not None else None
            if spec is not None:
                parts.append(partition.iter_range(lo, hi, reverse=not forward, db=spec.db))
            index += 1
            if index >= len(pmap) or (route_hi is not None
                                      and pmap.intervals[index].start >= route_hi):
                break
        if not parts:
            return iter(())
        return merged_range(parts, reverse=not forward)

    def _collect(self, entries: Iterator[tuple[bytes, bytes]], limit: int | None,
                 projection: Projection | None, filter: Condition | None,
                 max_page_bytes: int, measure: bool, select_all: bool,
                 longest_plain: int | None = None) -> Page | None:
        """One page from ``entries``; None as soon as an entry's key is longer than
        ``longest_plain`` (it may be in a bucket: the caller reads again, re-sorting)."""
        fetch = self.local and self.spec.names is not None and (
            select_all or (projection is not None
                           and not _top_names(projection) <= self.spec.names))
        decode = _itemcodec.decode_item
        items: list[dict] = []
        scanned = page_bytes = size_bytes = 0
        key_names = self._key_names
        matches = compile_condition(filter) if filter is not None else None
        for key, raw in entries:
            if longest_plain is not None and len(key) > longest_plain:
                return None
            item = decode(raw)
            scanned += 1
            page_bytes += len(raw)
            if fetch:
                base = self.table.get_item(
                    {name: item[name] for name in self.table.schema.names})
                item = base if base is not None else item
            if measure:
                size_bytes += item_size(item)
            if matches is None or matches(item):
                items.append(project(item, projection) if projection is not None else item)
            if (limit is not None and scanned >= limit) or page_bytes >= max_page_bytes:
                last = {name: item[name] for name in key_names if name in item}
                return Page(items, last, scanned, size_bytes)
        return Page(items, None, scanned, size_bytes)


def _hash_segment(segment: int, total_segments: int) -> tuple[bytes, bytes | None]:
    if (not isinstance(total_segments, int) or not 1 <= total_segments <= 1_000_000
            or not isinstance(segment, int) or not 0 <= segment < total_segments):
        raise ValidationException(
            f"Segment must be in 0..TotalSegments-1 and TotalSegments in 1..1000000, "
            f"got Segment={segment!r}, TotalSegments={total_segments!r}")
    space = 1 << 64

    def bound(index: int) -> bytes:
        return (index * space // total_segments).to_bytes(8, "big")

    return (b"" if segment == 0 else bound(segment),
            None if segment == total_segments - 1 else bound(segment + 1))


def _top_names(projection: Projection) -> frozenset[str]:
    return frozenset(path.elements[0] for path in projection.paths)


def _expressions(filter: Any, projection: Any, names: dict | None,
                 values: dict | None) -> tuple[Condition | None, Projection | None]:
    """Bind a filter and a projection as Table does (strings, trees, tuples, names)."""
    placeholders = None

    def bound(tree: Any, kind: str) -> Any:
        nonlocal placeholders
        if placeholders is None:
            placeholders = Placeholders(names, values)
        return bind(tree, placeholders, kind)

    filter_tree = None
    if isinstance(filter, str):
        filter_tree = bound(parse_condition(filter, "FilterExpression"), "FilterExpression")
    elif isinstance(filter, (list, tuple)):
        filter_tree = condition_from_tuples(filter)
    elif filter is not None:
        filter_tree = filter
    if filter_tree is not None:
        check_condition(filter_tree, kind="FilterExpression")
    projection_tree = None
    if isinstance(projection, str):
        projection_tree = bound(parse_projection(projection), "ProjectionExpression")
    elif isinstance(projection, Projection):
        projection_tree = projection
    elif projection is not None:
        wanted = list(dict.fromkeys(projection))
        if not wanted or not all(isinstance(name, str) and name for name in wanted):
            raise ValidationException("a projection must list one or more attribute names")
        projection_tree = Projection(tuple(Path((name,)) for name in wanted))
    if placeholders is not None:
        placeholders.check_all_used()
    elif names is not None or values is not None:
        raise ValidationException(
            f"{'ExpressionAttributeNames' if names is not None else 'ExpressionAttributeValues'}"
            " can only be specified when using expressions")
    return filter_tree, projection_tree
