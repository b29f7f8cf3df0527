# cython: language_level=3
# Shared by batchroute.pyx and reads.pyx (inline, compiled into each): from a key or item
# dict to its storage key and owning partition, natively, handing anything unusual back.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from libc.string cimport memcmp

from capi cimport storage_key_fn


cdef inline Py_ssize_t owner(list starts, bytes key) except -1:
    """bisect_right(starts, key) - 1: the interval whose start is the last one <= key."""
    cdef Py_ssize_t lo = 0, hi = PyList_GET_SIZE(starts), mid, n = PyBytes_GET_SIZE(key)
    cdef Py_ssize_t start_len
    cdef const char *k = PyBytes_AS_STRING(key)
    cdef bytes start
    cdef int c
    while lo < hi:
        mid = (lo + hi) >> 1
        start = <bytes?>PyList_GET_ITEM(starts, mid)
        start_len = PyBytes_GET_SIZE(start)
        c = memcmp(k, PyBytes_AS_STRING(start), n if n < start_len else start_len)
        if c < 0 or (c == 0 and n < start_len):  # key < start
            hi = mid
        else:
            lo = mid + 1
    return lo - 1


cdef inline object plain_storage_key(storage_key_fn storage_key, dict values, int mode,
                                     str pk_name, pk_type, sk_name, sk_type):
    """The storage key from a dict's key attributes, or None if one is missing or invalid
    (the caller's checked path then gives the precise error)."""
    cdef PyObject *pk = PyDict_GetItem(values, pk_name)
    cdef PyObject *sk
    if pk == NULL:
        return None
    try:
        if sk_name is None:
            return storage_key(mode, <object>pk, pk_type, None, None)
        sk = PyDict_GetItem(values, sk_name)
        if sk == NULL or <object>sk is None:
            return None
        return storage_key(mode, <object>pk, pk_type, <object>sk, sk_type)
    except (ValueError, TypeError, OverflowError):
        return None
