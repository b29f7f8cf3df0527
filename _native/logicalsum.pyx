# cython: language_level=3
"""The byte stream of the logical checksum (engine/backup/logical.py), produced in C.

``ItemFramer(path)`` opens a *closed* LMDB environment (an export or a re-inflated copy
that nothing writes) read-only with ``MDB_NOLOCK`` through the vendored LMDB in
``_native/lmdb`` and walks its ``items`` database in key order. ``fill(buffer)`` writes
as many whole items as fit, each framed ``u32be(len(key)) ‖ key ‖ u32be(len(value)) ‖
value``, without the GIL, and returns the byte count (0 at the end; ``-n`` when the next
item alone needs an ``n``-byte buffer). Python feeds the bytes to hashlib, which also
releases the GIL on large updates — so partitions checksum in parallel on every core and
writers keep the interpreter. Never open a live environment with it: without a reader
slot, its pages could be reused under the walk.

Every item's checksums (engine._itemcodec, ``_native/itemcheck.h``) are checked against
its key as it is framed: an item that fails is a ``CorruptionError`` naming the file and
the key, so no backup, verify or restore vouches for a damaged item. The bytes hashed are
the stored bytes, whatever their format version (1, before item checksums, or 2), so a
checksum means what it meant before: a backup taken before the change verifies and
restores as it did (every copy — physical, range copy, WAL replay — moves stored bytes
unchanged, and nothing re-encodes an item but a write). ``frame_pairs`` does the same
for ``(key, value)`` pairs from py-lmdb (an open environment).

LMDB failures raise this package's errors (``engine.errors.lmdb_error`` through
``lmdbapi.lmdb_failure``); an environment without an ``items`` database is a
``CorruptionError``.
"""

import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t
from libc.string cimport memcpy

from lmdbapi cimport (
    MDB_FIRST,
    MDB_NEXT,
    MDB_NOTFOUND,
    MDB_cursor,
    MDB_cursor_op,
    MDB_env,
    MDB_txn,
    MDB_val,
    close_reader,
    lmdb_failure,
    mdb_cursor_get,
    open_items_reader,
)

from engine._itemcodec import check_item
from engine.errors import CorruptionError, StorageError

cdef extern from "crc32c.h":
    void tw_init(int allow_hw)

cdef extern from "itemcheck.h":
    int ti_check(const uint8_t *key, size_t key_len, const uint8_t *v, size_t n,
                 size_t *body_end, uint32_t *stored, uint32_t *computed) noexcept nogil
    int TI_V1

tw_init(1)

cdef size_t _MAX_FRAMED_BYTES = 0xFFFFFFFF  # a u32 length prefix


cdef inline void _put_u32be(unsigned char *out, uint32_t n) noexcept nogil:
    out[0] = <unsigned char>(n >> 24)
    out[1] = <unsigned char>(n >> 16)
    out[2] = <unsigned char>(n >> 8)
    out[3] = <unsigned char>n


cdef class ItemFramer:
    cdef MDB_env *_env
    cdef MDB_txn *_txn
    cdef MDB_cursor *_cursor
    cdef MDB_val _key
    cdef MDB_val _value
    cdef bint _pending
    cdef bint _started
    cdef bint _done
    cdef readonly unsigned long long item_count
    cdef readonly str path

    def __cinit__(self, path):
        self.path = os.fsdecode(os.fspath(path))
        cdef bytes encoded = os.fsencode(self.path)
        cdef const char *c_path = encoded
        cdef bint no_items
        cdef int rc
        with nogil:
            rc = open_items_reader(c_path, &self._env, &self._txn, &self._cursor, &no_items)
        if no_items:
            raise CorruptionError("environment has no 'items' database", path=self.path)
        if rc:
            self._raise("opening the environment", rc)

    cdef _raise(self, str what, int rc):
        self.close()
        raise lmdb_failure(rc, what, self.path)

    def fill(self, unsigned char[::1] buffer not None):
        """Frame whole items into ``buffer``; return bytes written, 0 at the end, or
        ``-n`` if the next item needs a buffer of at least ``n`` bytes."""
        if self._cursor is NULL:
            if self._done:
                return 0
            raise ValueError(f"{self.path}: the framer is closed")
        cdef size_t capacity = buffer.shape[0]
        cdef unsigned char *out = &buffer[0] if capacity else NULL
        cdef size_t position = 0
        cdef size_t need = 0
        cdef unsigned long long count = 0
        cdef int rc = 0
        cdef bint too_big = False
        cdef bint damaged = False
        cdef size_t body_end
        cdef uint32_t stored, computed
        cdef MDB_cursor_op op
        cdef int checked
        cdef bint legacy = False
        while True:
            with nogil:
                while True:
                    if not self._pending:
                        op = MDB_FIRST
                        if self._started:
                            op = MDB_NEXT
                        rc = mdb_cursor_get(self._cursor, &self._key, &self._value, op)
                        self._started = True
                        if rc == MDB_NOTFOUND:
                            rc = 0
                            self._done = True
                            break
                        if rc:
                            break
                        if self._value.mv_size > _MAX_FRAMED_BYTES:
                            too_big = True
                            break
                        checked = ti_check(<const uint8_t *>self._key.mv_data,
                                           self._key.mv_size,
                                           <const uint8_t *>self._value.mv_data,
                                           self._value.mv_size, &body_end, &stored, &computed)
                        if checked < 0:
                            damaged = True
                            break
                        if checked == TI_V1:  # no checksums: decoded below, with the GIL
                            legacy = True
                            break
                        self._pending = True
                    need = 8 + self._key.mv_size + self._value.mv_size
                    if position + need > capacity:
                        break
                    _put_u32be(out + position, <uint32_t>self._key.mv_size)
                    memcpy(out + position + 4, self._key.mv_data, self._key.mv_size)
                    position += 4 + self._key.mv_size
                    _put_u32be(out + position, <uint32_t>self._value.mv_size)
                    memcpy(out + position + 4, self._value.mv_data, self._value.mv_size)
                    position += 4 + self._value.mv_size
                    self._pending = False
                    count += 1
            if not legacy:
                break
            legacy = False
            self._check_current()  # raises CorruptionError for a malformed one
            self._pending = True
        self.item_count += count
        if rc:
            self._raise("reading the items database", rc)
        if damaged:
            self._check_current()
            raise AssertionError("ItemFramer: an item failed its check only once")
        if too_big:
            self.close()
            raise StorageError(f"a value of {self._value.mv_size} bytes is over the 4 GiB "
                               f"the checksum framing allows (file {self.path})")
        if self._done and position == 0:
            self.close()
            return 0
        if position == 0:
            return -<long long>need
        return position

    cdef _check_current(self):
        """``check_item`` on the item under the cursor (with the GIL): raises its
        CorruptionError, naming this environment's data.mdb and the key."""
        key = (<const char *>self._key.mv_data)[:self._key.mv_size]
        value = (<const char *>self._value.mv_data)[:self._value.mv_size]
        try:
            check_item(key, value)
        except CorruptionError as err:
            self.close()
            raise CorruptionError(err.message,
                                  path=os.path.join(self.path, "data.mdb")) from None

    def close(self):
        """Idempotent."""
        close_reader(&self._cursor, &self._txn, &self._env)

    def __dealloc__(self):
        self.close()


cdef inline void _put_frame(uint8_t *out, size_t *position, object data) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    _put_u32be(out + position[0], <uint32_t>n)
    memcpy(out + position[0] + 4, PyBytes_AS_STRING(data), n)
    position[0] += 4 + n


def frame_pairs(pairs, Py_ssize_t max_items, path=None):
    """Check and frame up to ``max_items`` ``(key, value)`` bytes pairs from the iterator
    ``pairs`` (py-lmdb's ``iternext(keys=True, values=True)``, ``buffers=False``) as
    :class:`ItemFramer` frames them. Returns ``(framed bytes, item count)``, count 0 at the
    end. An item failing its checksums raises ``CorruptionError`` naming ``path`` and the key.
    """
    cdef list taken = []
    cdef Py_ssize_t count = 0
    cdef size_t total = 0, position = 0
    cdef size_t body_end
    cdef uint32_t stored, computed
    cdef object key, value
    while count < max_items:
        pair = next(pairs, None)
        if pair is None:
            break
        key, value = pair
        if type(key) is not bytes or type(value) is not bytes:
            raise TypeError("frame_pairs takes (bytes, bytes) pairs (a buffers=False txn)")
        if <size_t>PyBytes_GET_SIZE(value) > _MAX_FRAMED_BYTES:
            raise StorageError(f"a value of {PyBytes_GET_SIZE(value)} bytes is over the 4 GiB "
                               f"the checksum framing allows (file {path})")
        if ti_check(<const uint8_t *>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                    <const uint8_t *>PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value),
                    &body_end, &stored, &computed) <= TI_V1:  # damaged, or unchecked
            try:
                check_item(key, value)
            except CorruptionError as err:
                raise CorruptionError(err.message, path=None if path is None else str(path))
        taken.append(pair)
        total += 8 + PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(value)
        count += 1
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef uint8_t *dst = <uint8_t *>PyBytes_AS_STRING(out)
    for pair in taken:
        _put_frame(dst, &position, (<tuple>pair)[0])
        _put_frame(dst, &position, (<tuple>pair)[1])
    return out, count
