"""Index maintenance inside a base partition's write transaction.

Every path that changes a partition's items — a live write, WAL replay at open, the
catch-up of a backup export, of a replica or of a split half — goes through
:func:`engine.partition.apply_records` or :meth:`engine.partition.Partition.write_nowait`,
and both call :func:`apply_indexed_ops` when the environment has index definitions. For
each operation it reads the item being replaced, and:

* for each LSI: deletes the old entry and puts the new one in the LSI's own database of
  the same environment (``lsi:<index_id>``), in the same LMDB transaction — an LSI is
  always exactly as consistent as the base items;
* for each GSI: appends the delta (``delete <gsi key>`` / ``put <gsi key> <projected
  item>``) to the ``gsi_outbox`` database, again in the same transaction. The follower
  (:mod:`engine.indexes.follower`) applies the outbox to the GSI's own partitions and
  then deletes what it applied.

Everything is computed from (old item, new item) alone, so replaying a record reproduces
exactly the same LSI entries and outbox entries: after a crash, the state is whatever
the WAL says, never half of an index update.

Self-describing environments: the definitions live in the environment's ``meta``
database (key ``b"indexes"``, JSON), so a physical copy (backup export, replica, split
half) maintains the same indexes without being told.

Keys (``enc`` is :mod:`engine._keycodec`'s order-preserving, self-delimiting codec):

* LSI entry: ``prefix(pk) ‖ enc(lsi_sort) ‖ enc(base_sort)`` where ``prefix(pk)`` is the
  base table's storage-key prefix of the partition key — an LSI query is one key range;
* GSI entry: ``hash64(enc(gsi_pk)) ‖ enc(gsi_pk) ‖ enc(gsi_sort)? ‖ enc(base_pk) ‖
  enc(base_sort)?`` — unique per base item and in DynamoDB's order (index key, then base
  key), hash-partitioned on the GSI's partition key.

Under key format 2 (``engine.keys``) the index key components are stored as the table's
are (compacted past 200 bytes) and the *tail* (the base key after the index key) is
stored whole up to 100 bytes, else as its digest (``_keycodec.tail``): the tail only makes
an entry unique and orders ties, so every entry fits LMDB's 511-byte keys. An entry's
*full key* (for ``engine.longkeys``) is the same with the index key components plain.

Values are the projected item (item codec), always holding the base key and index key
attributes (DynamoDB's projections always include them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from .. import _itemcodec, _keycodec
from ..errors import ItemCollectionSizeLimitExceededException, ValidationException
from ..keys import key_mode, oversize_message
from .definitions import LOCAL, IndexDefinition

INDEXES_META_KEY = b"indexes"
OUTBOX_DB = b"gsi_outbox"
COLLECTIONS_DB = b"item_collections"  # LSI tables: partition-key prefix -> bytes (8, BE)
#: DynamoDB's item collection limit (tables with LSIs): base items plus LSI entries of
#: one partition key, here measured as stored bytes (keys and values). Tests lower it.
ITEM_COLLECTION_LIMIT_BYTES = 10 << 30
OP_PUT = 1  # the partition's opcodes (engine.partition), repeated to avoid an import cycle
OUTBOX_PUT = b"P"
OUTBOX_DELETE = b"D"
_TYPES = {"S": (str,), "N": (int, Decimal), "B": (bytes, bytearray)}
_TYPE_LABELS = {str: "S", int: "N", Decimal: "N", bytes: "B", bytearray: "B", bool: "BOOL",
                dict: "M", list: "L", type(None): "NULL", set: "SS", frozenset: "SS"}


def lsi_db_name(index_id: str) -> bytes:
    return b"lsi:" + index_id.encode()


class IndexSpec:
    """One index compiled for maintenance: how an item becomes its key and its value."""

    __slots__ = ("definition", "name", "local", "index_id", "id_bytes", "hash_name",
                 "hash_type", "range_name", "range_type", "base_pk", "base_pk_type",
                 "base_sk", "base_sk_type", "hashed", "long_keys", "names", "db")

    def __init__(self, definition: IndexDefinition, base_keys: Sequence[Sequence[str]],
                 hashed: bool, long_keys: bool = False) -> None:
        self.definition = definition
        self.name = definition.name
        self.local = definition.kind == LOCAL
        self.index_id = definition.index_id
        self.id_bytes = bytes.fromhex(definition.index_id)
        self.hash_name, self.hash_type = definition.hash_key
        self.range_name, self.range_type = definition.range_key or (None, None)
        self.base_pk, self.base_pk_type = base_keys[0]
        self.base_sk, self.base_sk_type = base_keys[1] if len(base_keys) > 1 else (None, None)
        self.hashed = hashed
        self.long_keys = long_keys
        key_names = {self.base_pk, *definition.key_names}
        if self.base_sk is not None:
            key_names.add(self.base_sk)
        if definition.projection_type == "ALL":
            self.names: frozenset[str] | None = None
        else:
            self.names = frozenset(key_names | set(definition.non_key_attributes))
        self.db = None

    def _check(self, attr: str, attr_type: str, value: Any, strict: bool,
               max_bytes: int) -> bool:
        allowed = _TYPES[attr_type]
        if not isinstance(value, allowed) or isinstance(value, bool):
            if strict:
                actual = _TYPE_LABELS.get(type(value), type(value).__name__)
                raise ValidationException(
                    f"One or more parameter values were invalid: Type mismatch for Index Key "
                    f"{attr} Expected: {attr_type} Actual: {actual} IndexName: {self.name}")
            return False
        if attr_type != "N" and len(value) == 0:
            if strict:
                raise ValidationException(
                    "One or more parameter values are not valid. A value specified for a "
                    "secondary index key is not supported. The AttributeValue for a key "
                    "attribute cannot contain an empty "
                    f"{'string' if attr_type == 'S' else 'binary'} value. IndexName: "
                    f"{self.name}, IndexKey: {attr}")
            return False
        message = oversize_message(attr_type, value, max_bytes)
        if message is not None:
            if strict:
                raise ValidationException(message)
            return False
        return True

    def key(self, item: dict | None, strict: bool = False, full: bool = False) -> bytes | None:
        """The index entry's key for ``item`` (``full``: its full key), or None if the item
        is not indexed (sparse: an index key attribute is missing). A key attribute of the
        wrong type raises ValidationException when ``strict`` (a live write), else leaves
        the item out."""
        if item is None:
            return None
        # Each key attribute present is checked, even when the other is missing (DynamoDB
        # refuses a wrong type whether or not the item would be indexed).
        hash_value = item.get(self.hash_name)
        if hash_value is not None and not self._check(
                self.hash_name, self.hash_type, hash_value, strict, 2048):
            return None
        range_value = None
        if self.range_name is not None:
            range_value = item.get(self.range_name)
            if range_value is not None and not self._check(
                    self.range_name, self.range_type, range_value, strict, 1024):
                return None
            if range_value is None:
                return None
        if hash_value is None:
            return None
        encode = _keycodec.encode_key
        long_keys = self.long_keys
        compact = _keycodec.compact if long_keys and not full else _same
        try:
            if self.local:
                mode = key_mode(self.hashed, long_keys and not full)
                key = _keycodec.storage_key(mode, hash_value, self.hash_type, None, None)
                key += compact(encode(range_value, self.range_type, max_len=1024))
                tail = b""
            else:
                mode = key_mode(True, long_keys and not full)
                key = _keycodec.storage_key(mode, hash_value, self.hash_type, None, None)
                if range_value is not None:
                    key += compact(encode(range_value, self.range_type, max_len=1024))
                tail = encode(item[self.base_pk], self.base_pk_type)
            if self.base_sk is not None:
                tail += encode(item[self.base_sk], self.base_sk_type, max_len=1024)
            key += _keycodec.tail(tail) if long_keys else tail
        except (ValueError, TypeError, OverflowError) as err:
            if strict:
                raise ValidationException(
                    f"One or more parameter values were invalid: index key of index "
                    f"{self.name}: {err}") from err
            return None
        return key

    def value(self, item: dict, raw: bytes) -> bytes:
        """The stored (projected) form of ``item`` (``raw``: its whole encoding)."""
        if self.names is None:
            return bytes(raw)
        return _itemcodec.encode_item({name: item[name] for name in self.names if name in item})


class IndexState:
    """The index definitions of one environment and their open databases."""

    def __init__(self, meta: dict, specs: list[IndexSpec], outbox_db: Any,
                 collections_db: Any = None) -> None:
        self.meta = meta
        self.collections_db = collections_db
        self.hashed = meta["hashed"]
        self.specs = specs
        self.local = [spec for spec in specs if spec.local]
        self.global_ = [spec for spec in specs if not spec.local]
        self.outbox_db = outbox_db
        names: set[str] = set()
        self.decode_all = False
        for spec in specs:
            names.update((spec.base_pk, spec.hash_name))
            if spec.base_sk is not None:
                names.add(spec.base_sk)
            if spec.range_name is not None:
                names.add(spec.range_name)
            if spec.names is not None:
                names.update(spec.names)
        self.decode_names = frozenset(names)

    def without_global(self) -> IndexState | None:
        """The same state maintaining the LSIs only (None if there are none)."""
        local = [spec for spec in self.specs if spec.local]
        if not local:
            return None
        return IndexState(self.meta, local, self.outbox_db, self.collections_db)

    def by_name(self, name: str) -> IndexSpec | None:
        for spec in self.specs:
            if spec.name == name:
                return spec
        return None


def build_meta(key_schema: Sequence[Sequence[str]], hashed: bool,
               definitions: Sequence[IndexDefinition], key_format: int = 1) -> dict:
    """The JSON stored under ``meta[b"indexes"]``."""
    return {"key_schema": [list(pair) for pair in key_schema], "hashed": hashed,
            "key_format": key_format,
            "indexes": [definition.to_json() for definition in definitions]}


def _same(encoded: bytes) -> bytes:
    return encoded


def load_index_state(env: Any, meta_db: Any) -> IndexState | None:
    """Read the environment's definitions and open their databases (None: no indexes).

    Call with no transaction of this thread open on ``env`` (opening a database may write).
    """
    with env.begin(db=meta_db) as txn:
        raw = txn.get(INDEXES_META_KEY)
    if raw is None:
        return None
    meta = json.loads(raw)
    return _state_from_meta(env, meta)


def _state_from_meta(env: Any, meta: dict) -> IndexState | None:
    if not meta["indexes"]:
        return None
    specs = [IndexSpec(IndexDefinition.from_json(data), meta["key_schema"], meta["hashed"],
                       meta.get("key_format", 1) == 2)
             for data in meta["indexes"]]
    # Databases are opened in an explicit write transaction: py-lmdb's open_db without one
    # begins its own while holding the GIL, which deadlocks against another thread that
    # holds this environment's write lock and needs the GIL to finish (the follower).
    with env.begin(write=True) as txn:
        for spec in specs:
            if spec.local:
                spec.db = env.open_db(lsi_db_name(spec.index_id), txn=txn, create=True)
        outbox_db = env.open_db(OUTBOX_DB, txn=txn, create=True)
        collections_db = None
        if any(spec.local for spec in specs):
            collections_db = env.open_db(COLLECTIONS_DB, txn=txn, create=True)
    return IndexState(meta, specs, outbox_db, collections_db)


def store_index_meta(env: Any, meta_db: Any, meta: dict) -> IndexState | None:
    """Write new definitions into the environment and return its new state.

    The databases of indexes no longer defined are emptied (an LSI's entries, a GSI's
    pending outbox deltas), so nothing stale survives a drop. The caller holds the
    partition's write lock (no write of the partition runs meanwhile) and syncs.
    """
    old = load_index_state(env, meta_db)
    new_ids = {data["index_id"] for data in meta["indexes"]}
    state = _state_from_meta(env, meta)
    dropped = [spec for spec in (old.specs if old else []) if spec.index_id not in new_ids]
    with env.begin(write=True) as txn:
        for spec in dropped:
            if spec.local:
                txn.drop(spec.db, delete=True)
            else:
                _delete_prefix(txn, old.outbox_db, spec.id_bytes)
        txn.put(INDEXES_META_KEY, json.dumps(meta, sort_keys=True).encode(), db=meta_db)
    return state


def _delete_prefix(txn: Any, db: Any, prefix: bytes) -> int:
    cursor = txn.cursor(db=db)
    deleted = 0
    if cursor.set_range(prefix):
        while cursor.key() and cursor.key().startswith(prefix):
            cursor.delete()
            deleted += 1
    return deleted


def apply_indexed_ops(txn: Any, items_db: Any, state: IndexState, ops: Sequence[tuple],
                      lsn: int, *, strict: bool) -> None:
    """Apply ``ops`` (a WAL record's operations, LSN ``lsn``) to the items and every index.

    ``strict`` (live writes): an index key attribute of the wrong type or empty refuses
    the write (ValidationException; the caller aborts the transaction). Replays and
    catch-ups are not strict: what was written is applied, and an item that does not fit
    a newer index is left out of it, as DynamoDB's backfill leaves out such items.
    """
    decode = _itemcodec.decode_item
    names = state.decode_names
    now_ns = time.time_ns().to_bytes(8, "big")
    lsn_bytes = lsn.to_bytes(8, "big")
    seq = 0
    collections = state.collections_db
    for opcode, key, value in ops:
        old_raw = txn.get(key, db=items_db)
        old = decode(old_raw, names) if old_raw is not None else None
        new = decode(value, names) if opcode == OP_PUT else None
        if collections is not None:
            _track_collection(txn, state, key, old, old_raw, new, value, strict)
        for spec in state.specs:
            old_key = spec.key(old)
            new_key = spec.key(new, strict)
            if old_key is None and new_key is None:
                continue
            new_value = spec.value(new, value) if new_key is not None else None
            if old_key == new_key and spec.value(old, old_raw) == new_value:
                continue  # the update touched nothing this index holds
            if spec.local:
                if old_key is not None and old_key != new_key:
                    txn.delete(old_key, db=spec.db)
                if new_key is not None:
                    txn.put(new_key, new_value, db=spec.db)
                continue
            if old_key is not None and old_key != new_key:
                txn.put(spec.id_bytes + lsn_bytes + seq.to_bytes(4, "big"),
                        encode_outbox(OUTBOX_DELETE, now_ns, old_key, None), db=state.outbox_db)
                seq += 1
            if new_key is not None:
                txn.put(spec.id_bytes + lsn_bytes + seq.to_bytes(4, "big"),
                        encode_outbox(OUTBOX_PUT, now_ns, new_key, new_value),
                        db=state.outbox_db)
                seq += 1
        if opcode == OP_PUT:
            txn.put(key, value, db=items_db)
        else:
            txn.delete(key, db=items_db)


def _collection_bytes(state: IndexState, key: bytes, item: dict | None,
                      raw: bytes | None) -> int:
    """Stored bytes of one item and its LSI entries (0 for no item)."""
    if item is None:
        return 0
    size = len(key) + len(raw)
    for spec in state.local:
        entry = spec.key(item)
        if entry is not None:
            size += len(entry) + len(spec.value(item, raw))
    return size


def collection_prefix(key: bytes, hashed: bool) -> bytes:
    """The storage-key prefix of a base key's partition key (its item collection)."""
    return key[:_keycodec.component_end(key, 8 if hashed else 0)]


def _track_collection(txn: Any, state: IndexState, key: bytes, old: dict | None,
                      old_raw: bytes | None, new: dict | None, new_raw: bytes | None,
                      strict: bool) -> None:
    delta = _collection_bytes(state, key, new, new_raw) - _collection_bytes(
        state, key, old, old_raw)
    if not delta:
        return
    prefix = collection_prefix(key, state.hashed)
    current = txn.get(prefix, db=state.collections_db)
    total = (int.from_bytes(current, "big") if current else 0) + delta
    if strict and delta > 0 and total > ITEM_COLLECTION_LIMIT_BYTES:
        raise ItemCollectionSizeLimitExceededException(
            "Item collection size limit exceeded: the total size of the item collection "
            f"of this partition key would be {total} bytes, over the maximum of "
            f"{ITEM_COLLECTION_LIMIT_BYTES} bytes (10 GB) for a table with local "
            "secondary indexes")
    if total > 0:
        txn.put(prefix, max(total, 0).to_bytes(8, "big"), db=state.collections_db)
    else:
        txn.delete(prefix, db=state.collections_db)


def item_collection_bytes(txn: Any, state: IndexState, prefix: bytes) -> int:
    """The tracked size of one item collection (bytes; 0 if none)."""
    if state.collections_db is None:
        return 0
    raw = txn.get(prefix, db=state.collections_db)
    return int.from_bytes(raw, "big") if raw else 0


# ---------------------------------------------------------------------- the outbox
def encode_outbox(kind: bytes, time_ns: bytes, key: bytes, value: bytes | None) -> bytes:
    """``kind(1) ‖ written at, ns since the epoch (8) ‖ len(key) (4) ‖ key ‖ value``."""
    return kind + time_ns + len(key).to_bytes(4, "big") + key + (value or b"")


def decode_outbox(raw: bytes) -> tuple[bytes, int, bytes, bytes | None]:
    """``(kind, written_at_ns, key, value or None)``."""
    raw = bytes(raw)
    kind = raw[:1]
    written = int.from_bytes(raw[1:9], "big")
    length = int.from_bytes(raw[9:13], "big")
    key = raw[13:13 + length]
    value = raw[13 + length:] if kind == OUTBOX_PUT else None
    return kind, written, key, value


def outbox_lsn(outbox_key: bytes) -> int:
    return int.from_bytes(outbox_key[16:24], "big")


def iter_outbox(txn: Any, outbox_db: Any, id_bytes: bytes,
                limit: int) -> Iterator[tuple[bytes, bytes]]:
    """Up to ``limit`` (outbox key, value) of one index, oldest first."""
    cursor = txn.cursor(db=outbox_db)
    if not cursor.set_range(id_bytes):
        return
    count = 0
    for key, value in cursor.iternext():
        if not key.startswith(id_bytes) or count >= limit:
            return
        count += 1
        yield key, value


def clear_outbox(env: Any) -> None:
    """Empty the outbox of an environment (a split half, a restored copy): its deltas
    were applied (or the GSIs are rebuilt) elsewhere, and its LSN space starts anew."""
    with env.begin(write=True) as txn:
        try:
            db = env.open_db(OUTBOX_DB, txn=txn, create=False)
        except Exception:  # noqa: BLE001 - lmdb.NotFoundError: no outbox, nothing to clear
            return
        txn.drop(db, delete=False)


def rebuild_local_indexes(env: Any, items_db: Any, state: IndexState | None) -> None:
    """Recompute every LSI database of ``env`` from its items (a split half whose other
    half's entries must go, a restore whose LSIs changed)."""
    if state is None or not state.local:
        return
    decode = _itemcodec.decode_item
    totals: dict[bytes, int] = {}
    with env.begin(write=True) as txn:
        for spec in state.local:
            txn.drop(spec.db, delete=False)
        txn.drop(state.collections_db, delete=False)
        for item_key, raw in txn.cursor(db=items_db).iternext():
            item = decode(raw, state.decode_names)
            for spec in state.local:
                key = spec.key(item)
                if key is not None:
                    txn.put(key, spec.value(item, raw), db=spec.db)
            prefix = collection_prefix(item_key, state.hashed)
            totals[prefix] = totals.get(prefix, 0) + _collection_bytes(
                state, item_key, item, raw)
        for prefix, total in totals.items():
            txn.put(prefix, total.to_bytes(8, "big"), db=state.collections_db)
