# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Point reads natively: key dict -> storage key -> owning partition -> one LMDB read
transaction -> decoded item, in one C call (the hot path of ``Table.get_item``).

Done in Python, the interpreter's share (attribute loads, keyword calls, two frames) was
as large as LMDB's or the decoder's: 14.0k instructions per get of a 5-attribute item,
9.6k this way with the codec changes that came with it (callgrind, bench/bench_engine.py
items). What is left is mostly py-lmdb (begin, get, abort: ~4.7k, the B-tree search
included) and building the dict.

A :class:`PointReader` belongs to one routing state (partition map + open partitions) and
is rebuilt with it, so a repartitioning swaps both in one assignment (SPEC §10). Each read
still opens its own read transaction and aborts it before returning: it sees every write
committed before it started, and never holds a snapshot open between calls. py-lmdb is
called through its public methods only (``Environment.begin``, ``Transaction.get``,
``Transaction.abort``, looked up once and called by vectorcall); the environment is never
opened by a second LMDB copy.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Size
from cpython.list cimport PyList_GET_ITEM
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdint cimport uint8_t

from capi cimport DECODE_ITEM_CAPSULE, STORAGE_KEY_CAPSULE, decode_item_fn, storage_key_fn
from routing cimport owner, plain_storage_key

import sys

import lmdb

from engine._itemcodec import _C_DECODE_ITEM
from engine._keycodec import _C_STORAGE_KEY

cdef extern from "Python.h":
    object PyObject_Vectorcall(object callable, PyObject **args, size_t nargsf,
                               PyObject *kwnames)

cdef storage_key_fn _storage_key = <storage_key_fn>PyCapsule_GetPointer(
    _C_STORAGE_KEY, STORAGE_KEY_CAPSULE)
cdef decode_item_fn _decode_item = <decode_item_fn>PyCapsule_GetPointer(
    _C_DECODE_ITEM, DECODE_ITEM_CAPSULE)

# Unbound methods: calling them with the object as first argument skips the attribute
# lookup and the bound-method object of ``env.begin(...)``.
cdef object _begin = lmdb.Environment.begin
cdef object _get = lmdb.Transaction.get
cdef object _abort = lmdb.Transaction.abort


cdef class PointReader:
    """Reads single items of one table under one routing state.

    ``routing`` is ``(partition_map, partitions)`` (partitions in map order, each with
    ``env`` and ``items_db``); ``checked_key(key)`` is the table schema's checked key
    function, called for every key the native path does not take (so it raises the
    precise ValidationException); ``projection_of(names)`` validates a projection.
    """

    cdef readonly tuple routing
    cdef list starts
    cdef list envs
    cdef list dbs
    cdef bint hashed
    cdef str pk_name
    cdef object pk_type, sk_name, sk_type
    cdef Py_ssize_t key_count
    cdef object checked_key, projection_of

    def __init__(self, tuple routing, schema, checked_key, projection_of):
        partition_map, partitions = routing
        self.routing = routing
        self.starts = partition_map.starts
        self.envs = [partition.env for partition in partitions]
        self.dbs = [partition.items_db for partition in partitions]
        if len(self.starts) != len(self.envs):
            raise ValueError(f"{len(self.starts)} intervals but {len(self.envs)} partitions")
        self.hashed = schema.hashed
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
        cdef PyObject *args[2]
        cdef bytes value
        if type(key) is dict and PyDict_Size(key) == self.key_count:
            storage_key = plain_storage_key(_storage_key, <dict>key, self.hashed, self.pk_name,
                                            self.pk_type, self.sk_name, self.sk_type)
        if storage_key is None:
            storage_key = self.checked_key(key)
        index = owner(self.starts, storage_key)
        args[0] = PyList_GET_ITEM(self.envs, index)
        args[1] = PyList_GET_ITEM(self.dbs, index)
        txn = PyObject_Vectorcall(_begin, args, 2, NULL)
        try:
            args[0] = <PyObject *>txn
            args[1] = <PyObject *>storage_key
            raw = PyObject_Vectorcall(_get, args, 2, NULL)
        finally:
            args[0] = <PyObject *>txn
            PyObject_Vectorcall(_abort, args, 1, NULL)
        if raw is None:
            return None
        value = <bytes?>raw
        if projection is not None:
            projection = self.projection_of(projection)
        return _decode_item(<const uint8_t *>PyBytes_AS_STRING(value),
                            <size_t>PyBytes_GET_SIZE(value), projection)


def get_item(table, key, projection=None):
    """The item stored under ``key`` (a dict of the key attributes) or None; with
    ``projection`` (attribute names) only those attributes.

    ``Table.get_item`` itself: bound as the method, so a point read runs no Python frame
    of its own. ``table._reader`` is read once, so the read uses one routing state.
    """
    return (<PointReader?>table._reader).get_item(key, projection)
