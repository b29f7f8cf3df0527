# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Point reads natively: key dict -> storage key -> owning partition -> one LMDB read
transaction -> decoded item, in one C call (the hot path of ``Table.get_item``).

Done in Python, the interpreter's share (attribute loads, keyword calls, two frames) was
as large as LMDB's or the decoder's: 14.0k instructions per get of a 5-attribute item,
9.6k this way with the codec changes that came with it (callgrind, bench/bench_engine.py
items). What is left is mostly py-lmdb (begin, get, abort: ~4.7k, the B-tree search
included) and building the dict.

A :class:`PointReader` belongs to one routing state (partition map + open partitions) and
is rebuilt with it, so a repartitioning swaps both in one assignment (SPEC §10).

Read transactions: beginning and aborting one costs more than the B-tree search itself
(py-lmdb: ~0.8 µs of a 2.3 µs get here). A :class:`ReadCache` (one per partition) keeps one
read transaction per thread and reuses it **only while nothing has been committed to the
partition since it began**: a snapshot with no commit after it *is* the latest state, so
every read still sees every write committed before it started. The partition calls
:meth:`ReadCache.committed` right after each commit; that bumps the generation (later
reads begin afresh) and aborts every cached transaction not in use at that moment, so an
idle thread never pins old pages (LMDB could not reuse the pages a commit frees while a
reader still sees them). Cross-thread aborts are allowed because py-lmdb opens
environments with MDB_NOTLS; a transaction is never used by two threads at once because
its owner marks it in use, and the committer skips it, with the GIL held between check
and mark (no Python call in between). Free-threaded CPython would need a lock here.

Stored items carry checksums (engine._itemcodec): every point read checks them against
the key it read, and a failure is a ``CorruptionError`` naming the partition (given to
:class:`ReadCache`), its ``data.mdb`` and the key.

py-lmdb is called through its public methods only (``Environment.begin``,
``Transaction.get``, ``Transaction.abort``, looked up once and called by vectorcall); the
environment is never opened by a second LMDB copy.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Size
from cpython.list cimport PyList_GET_ITEM
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from libc.stdint cimport uint8_t

from capi cimport DECODE_ITEM_CAPSULE, STORAGE_KEY_CAPSULE, decode_item_fn, storage_key_fn
from routing cimport owner, plain_storage_key

import os
import sys

import lmdb

from engine.errors import CorruptionError, EngineClosedError, lmdb_error

from engine._itemcodec import _C_DECODE_ITEM
from engine._keycodec import _C_STORAGE_KEY

cdef extern from "Python.h":
    object PyObject_Vectorcall(object callable, PyObject **args, size_t nargsf,
                               PyObject *kwnames)
    unsigned long PyThread_get_thread_ident()

cdef storage_key_fn _storage_key = <storage_key_fn>PyCapsule_GetPointer(
    _C_STORAGE_KEY, STORAGE_KEY_CAPSULE)
cdef decode_item_fn _decode_item = <decode_item_fn>PyCapsule_GetPointer(
    _C_DECODE_ITEM, DECODE_ITEM_CAPSULE)

# Unbound methods: calling them with the object as first argument skips the attribute
# lookup and the bound-method object of ``env.begin(...)``.
cdef object _begin = lmdb.Environment.begin
cdef object _get = lmdb.Transaction.get
cdef object _abort = lmdb.Transaction.abort


#: Threads that may hold a cached read transaction on one partition at a time; more
#: threads read uncached (LMDB's reader table is finite: open_environment sets 1024).
MAX_CACHED_THREADS = 64


cdef class _Slot:
    """One thread's cached read transaction on one partition."""
    cdef object txn                      # a py-lmdb Transaction, or None
    cdef unsigned long long generation   # ReadCache.generation read before it began
    cdef bint in_use


cdef inline object _abort_txn(object txn):
    cdef PyObject *args[1]
    args[0] = <PyObject *>txn
    return PyObject_Vectorcall(_abort, args, 1, NULL)


cdef class ReadCache:
    """Read transactions of one partition, reused per thread until the next commit.

    See the module docstring. ``get(key)`` is the value under ``key`` (bytes) or None,
    read from a snapshot that includes every commit before the call. ``partition`` (its
    name) and ``path`` (its ``data.mdb``) name it in the errors of reads through it.
    """

    cdef object env, db
    cdef readonly object partition
    cdef readonly str path
    cdef readonly unsigned long long generation
    cdef dict slots  # thread ident (int) -> _Slot
    cdef bint closed
    cdef unsigned long last_ident  # the thread that read last, and its slot: a read from
    cdef _Slot last_slot           # the same thread skips the dict (no int to build)

    def __init__(self, env, db, partition=None):
        self.env = env
        self.db = db
        self.partition = partition
        self.path = os.path.join(env.path(), "data.mdb")
        self.generation = 0
        self.slots = {}
        self.closed = False

    def committed(self) -> None:
        """Called by the partition after every commit (under its write lock)."""
        self.generation += 1
        self._drop_idle()

    def close(self) -> None:
        """Abort every idle cached transaction and cache no more (before ``env.close``)."""
        self.closed = True
        self._drop_idle()

    @property
    def cached(self) -> int:
        """Threads holding a cached transaction now (for tests and diagnostics)."""
        return sum(1 for slot in self.slots.values() if (<_Slot>slot).txn is not None)

    cdef int _drop_idle(self) except -1:
        cdef _Slot slot
        cdef list victims = []
        # Collect first, with no Python call in between, then abort: abort may release
        # the GIL, and an owner must find either its live transaction or None.
        for value in self.slots.values():
            slot = <_Slot>value
            if not slot.in_use and slot.txn is not None:
                victims.append(slot.txn)
                slot.txn = None
        for txn in victims:
            _abort_txn(txn)
        return 0

    cpdef object get(self, object key):
        cdef PyObject *args[2]
        cdef PyObject *found
        cdef _Slot slot
        cdef unsigned long long generation
        cdef unsigned long ident = PyThread_get_thread_ident()
        if self.last_slot is not None and ident == self.last_ident:
            slot = self.last_slot
        else:
            found = PyDict_GetItem(self.slots, ident)
            if found == NULL:
                if self.closed or len(self.slots) >= MAX_CACHED_THREADS:
                    return self._get_uncached(key)
                slot = _Slot()
                PyDict_SetItem(self.slots, ident, slot)
            else:
                slot = <_Slot>found
            self.last_ident = ident
            self.last_slot = slot
        if slot.txn is None or slot.generation != self.generation:
            if slot.txn is not None:
                old = slot.txn
                slot.txn = None
                _abort_txn(old)
            if self.closed:
                return self._get_uncached(key)
            generation = self.generation  # before begin: the snapshot is at least this new
            args[0] = <PyObject *>self.env
            args[1] = <PyObject *>self.db
            txn = PyObject_Vectorcall(_begin, args, 2, NULL)
            slot.txn = txn
            slot.generation = generation
        slot.in_use = True
        try:
            args[0] = <PyObject *>slot.txn
            args[1] = <PyObject *>key
            raw = PyObject_Vectorcall(_get, args, 2, NULL)
        except lmdb.Error as err:  # a damaged page (MDB_CORRUPTED, MDB_PAGE_NOTFOUND), say
            raise self._failure(err) from err
        finally:
            slot.in_use = False
        if slot.generation != self.generation and slot.txn is not None:
            old = slot.txn  # a commit came while we read: do not pin its old pages
            slot.txn = None
            _abort_txn(old)
        return raw

    cdef object _get_uncached(self, object key):
        cdef PyObject *args[2]
        if self.closed:  # the partition closed (or is closing) its environment
            raise EngineClosedError()
        args[0] = <PyObject *>self.env
        args[1] = <PyObject *>self.db
        txn = PyObject_Vectorcall(_begin, args, 2, NULL)
        try:
            args[0] = <PyObject *>txn
            args[1] = <PyObject *>key
            return PyObject_Vectorcall(_get, args, 2, NULL)
        except lmdb.Error as err:
            raise self._failure(err) from err
        finally:
            _abort_txn(txn)

    cdef object _failure(self, object err):
        """This package's error for a py-lmdb failure of a read (engine.errors.lmdb_error)."""
        return lmdb_error(err, what="reading an item", partition=self.partition, path=self.path)


cdef class PointReader:
    """Reads single items of one table under one routing state.

    ``routing`` is ``(partition_map, partitions)`` (partitions in map order, each with
    its ``read_cache``); ``checked_key(key)`` is the table schema's checked key
    function, called for every key the native path does not take (so it raises the
    precise ValidationException); ``projection_of(names)`` validates a projection.
    """

    cdef readonly tuple routing
    cdef list starts
    cdef list caches
    cdef int key_mode
    cdef str pk_name
    cdef object pk_type, sk_name, sk_type
    cdef Py_ssize_t key_count
    cdef object checked_key, projection_of

    def __init__(self, tuple routing, schema, checked_key, projection_of):
        partition_map, partitions = routing
        self.routing = routing
        self.starts = partition_map.starts
        self.caches = [<ReadCache?>partition.read_cache for partition in partitions]
        if len(self.starts) != len(self.caches):
            raise ValueError(f"{len(self.starts)} intervals but {len(self.caches)} partitions")
        self.key_mode = schema.key_mode
        # Interned, as attribute names in source code are: a caller's {"id": ...} key dict
        # then matches by identity instead of comparing strings.
        self.pk_name = sys.intern(schema.partition_name)
        self.pk_type = schema.partition_type
        self.sk_name = None if schema.sort_name is None else sys.intern(schema.sort_name)
        self.sk_type = schema.sort_type
        self.key_count = 1 if self.sk_name is None else 2
        self.checked_key = checked_key
        self.projection_of = projection_of

    cdef object get_item(self, object key, object projection):
        cdef object storage_key = None
        cdef Py_ssize_t index
        cdef bytes value, key_bytes
        cdef ReadCache cache
        if type(key) is dict and PyDict_Size(key) == self.key_count:
            storage_key = plain_storage_key(_storage_key, <dict>key, self.key_mode, self.pk_name,
                                            self.pk_type, self.sk_name, self.sk_type)
        if storage_key is None:
            storage_key = self.checked_key(key)
        index = owner(self.starts, storage_key)
        cache = <ReadCache>PyList_GET_ITEM(self.caches, index)
        raw = cache.get(storage_key)
        if raw is None:
            return None
        value = <bytes?>raw
        key_bytes = <bytes?>storage_key
        if projection is not None:
            projection = self.projection_of(projection)
        try:
            return _decode_item(<const uint8_t *>PyBytes_AS_STRING(value),
                                <size_t>PyBytes_GET_SIZE(value), projection,
                                <const uint8_t *>PyBytes_AS_STRING(key_bytes),
                                <size_t>PyBytes_GET_SIZE(key_bytes))
        except CorruptionError as err:  # the codec names the key; add partition and file
            raise CorruptionError(err.message, partition=cache.partition,
                                  path=cache.path) from None


def get_item(table, key, projection=None, *, names=None):
    """The item stored under ``key`` (a dict of the key attributes) or None; with
    ``projection`` (attribute names) only those attributes.

    ``Table.get_item`` itself: bound as the method, so a point read runs no Python frame
    of its own. ``table._reader`` is read once, so the read uses one routing state. A
    ProjectionExpression (a ``str`` or a parsed tree) or ``names`` go to the table's
    ``get_item_by_expression`` (the evaluator's nested projections).
    """
    if names is not None or not (projection is None or type(projection) is list
                                 or type(projection) is tuple or isinstance(projection,
                                                                             (set, frozenset))):
        return table.get_item_by_expression(key, projection, names)
    return (<PointReader?>table._reader).get_item(key, projection)
