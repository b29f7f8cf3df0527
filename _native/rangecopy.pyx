# cython: language_level=3
"""Copy a key range of closed LMDB environments into a new one, in C (engine/backup/restore.py).

A restore into another partition layout rewrites every item: each target partition gets
the items of ``[start, end)`` from the backup's partitions that overlap it, in key order.
Through py-lmdb that is a Python step per item, and py-lmdb releases and retakes the GIL
on every cursor step, so two restore threads spent as much time trading the GIL as
copying. ``RangeCopy`` does the copying with the vendored LMDB (``_native/lmdb``, the
same version and format as py-lmdb's) without the GIL, a write transaction at a time.

Both ends must be environments no other handle uses: the sources are re-inflated backup
objects in the restore's scratch directory, the target a partition of a table that is
still CREATING. Both are opened with ``MDB_NOLOCK`` (no lock file, no reader table).

LMDB failures raise this package's errors (``engine.errors.lmdb_error`` through
``lmdbapi.lmdb_failure``): a full map is a ``StorageFullError`` saying to raise
``map_size_bytes``; a source without an ``items`` database a ``CorruptionError``. Calls
on a closed copy, or a step with no source open, are a ``ValueError`` (a caller's mistake,
as with a closed file).
"""

import os

from libc.string cimport memcmp

from lmdbapi cimport (
    MDB_APPEND,
    MDB_CREATE,
    MDB_FIRST,
    MDB_NEXT,
    MDB_NOLOCK,
    MDB_NOMETASYNC,
    MDB_NOSYNC,
    MDB_NOTFOUND,
    MDB_SET_RANGE,
    MDB_cursor,
    MDB_cursor_op,
    MDB_dbi,
    MDB_env,
    MDB_txn,
    MDB_val,
    close_reader,
    lmdb_failure,
    mdb_cursor_get,
    mdb_cursor_open,
    mdb_cursor_put,
    mdb_dbi_open,
    mdb_env_close,
    mdb_env_sync,
    mdb_txn_abort,
    mdb_txn_begin,
    mdb_txn_commit,
    open_env,
    open_items_reader,
)

from engine.errors import CorruptionError

cdef inline int _key_cmp(const MDB_val *a, const MDB_val *b) noexcept nogil:
    """LMDB's default key order (``mdb_cmp_memn``): bytewise, then the shorter first."""
    cdef size_t n = a.mv_size if a.mv_size < b.mv_size else b.mv_size
    cdef int diff = memcmp(a.mv_data, b.mv_data, n) if n else 0
    if diff:
        return diff
    return (a.mv_size > b.mv_size) - (a.mv_size < b.mv_size)


cdef class RangeCopy:
    """``RangeCopy(target_dir, map_size)``: a new environment filled from source ranges.

    ``target_dir`` must exist and hold no environment yet; ``items`` and ``meta`` are
    created. For each source, in key order: :meth:`open_source`, then :meth:`step` until
    it returns less than asked. :meth:`finish` syncs the target to disk; :meth:`close`
    (idempotent) releases everything, and a target not finished is not durable.
    """
    cdef MDB_env *_target
    cdef MDB_dbi _target_items
    cdef MDB_env *_source
    cdef MDB_txn *_source_txn
    cdef MDB_cursor *_source_cursor
    cdef bytes _start
    cdef bytes _end
    cdef bint _started
    cdef readonly str path
    cdef readonly str source_path

    def __cinit__(self, target_dir, size_t map_size):
        self.path = os.fsdecode(os.fspath(target_dir))
        cdef bytes encoded = os.fsencode(self.path)
        cdef const char *c_path = encoded
        cdef MDB_txn *txn = NULL
        cdef MDB_dbi meta
        cdef int rc
        with nogil:
            rc = open_env(&self._target, c_path, MDB_NOLOCK | MDB_NOSYNC | MDB_NOMETASYNC,
                          map_size)
        if not rc:
            rc = mdb_txn_begin(self._target, NULL, 0, &txn)
        if not rc:
            rc = mdb_dbi_open(txn, b"items", MDB_CREATE, &self._target_items)
        if not rc:
            rc = mdb_dbi_open(txn, b"meta", MDB_CREATE, &meta)
        if not rc:
            rc = mdb_txn_commit(txn)
            txn = NULL
        if rc:
            if txn is not NULL:
                mdb_txn_abort(txn)
            self._raise(self.path, "creating the environment", rc)

    cdef _raise(self, str where, str what, int rc):
        self.close()
        raise lmdb_failure(rc, what, where)

    def open_source(self, source_dir, bytes start not None, bytes end=None):
        """Read ``[start, end)`` (``end=None``: to the last key) of ``source_dir``'s items."""
        if self._target is NULL:
            raise ValueError(f"{self.path}: the copy is closed")
        self._close_source()
        self.source_path = os.fsdecode(os.fspath(source_dir))
        cdef bytes encoded = os.fsencode(self.source_path)
        cdef const char *c_path = encoded
        cdef bint no_items
        cdef int rc
        with nogil:
            rc = open_items_reader(c_path, &self._source, &self._source_txn,
                                   &self._source_cursor, &no_items)
        if no_items:
            self.close()
            raise CorruptionError("environment has no 'items' database", path=self.source_path)
        if rc:
            self._raise(self.source_path, "opening the items database", rc)
        self._start = start
        self._end = end
        self._started = False

    def step(self, size_t max_items):
        """Copy up to ``max_items`` more items in one committed write transaction; the
        count copied (fewer than ``max_items``: this source's range is done)."""
        if self._source_cursor is NULL:
            raise ValueError(f"{self.path}: no source is open")
        cdef MDB_val key, value, start_key, end_key
        cdef MDB_txn *txn = NULL
        cdef MDB_cursor *out = NULL
        cdef MDB_cursor_op op
        cdef size_t copied = 0
        cdef int rc = 0
        cdef bint bounded = self._end is not None
        start_key.mv_size = len(self._start)
        start_key.mv_data = <char *>self._start
        if bounded:
            end_key.mv_size = len(self._end)
            end_key.mv_data = <char *>self._end
        with nogil:
            rc = mdb_txn_begin(self._target, NULL, 0, &txn)
            if not rc:
                rc = mdb_cursor_open(txn, self._target_items, &out)
            while not rc and copied < max_items:
                if self._started:
                    op = MDB_NEXT
                elif start_key.mv_size:
                    op = MDB_SET_RANGE
                    key = start_key
                else:
                    op = MDB_FIRST
                rc = mdb_cursor_get(self._source_cursor, &key, &value, op)
                if rc == MDB_NOTFOUND:
                    rc = 0
                    break
                if rc:
                    break
                if bounded and _key_cmp(&key, &end_key) >= 0:
                    break
                self._started = True
                # Keys arrive in order, so every put appends (MDB_APPEND: no tree search).
                rc = mdb_cursor_put(out, &key, &value, MDB_APPEND)
                if rc:
                    break
                copied += 1
            if not rc:
                rc = mdb_txn_commit(txn)
                txn = NULL
            if txn is not NULL:
                mdb_txn_abort(txn)
        if rc:
            self._raise(self.path, f"copying items from {self.source_path}", rc)
        return copied

    def finish(self):
        """Flush the target to disk (call once every source is copied)."""
        if self._target is NULL:
            raise ValueError(f"{self.path}: the copy is closed")
        cdef int rc
        with nogil:
            rc = mdb_env_sync(self._target, 1)
        if rc:
            self._raise(self.path, "mdb_env_sync", rc)

    cdef _close_source(self):
        close_reader(&self._source_cursor, &self._source_txn, &self._source)

    def close(self):
        """Idempotent."""
        self._close_source()
        if self._target is not NULL:
            mdb_env_close(self._target)
            self._target = NULL

    def __dealloc__(self):
        self.close()
