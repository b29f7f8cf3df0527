# The batch payload codec of engine._walframe (included by walframe.pyx): one WAL
# record's payload is one atomic batch of PUTs and DELETEs on one partition.

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy

OP_PUT = 1
OP_DELETE = 2


cdef inline size_t _varint_size(uint64_t v) noexcept nogil:
    cdef size_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline uint8_t *_put_varint(uint8_t *p, uint64_t v) noexcept nogil:
    while v >= 0x80:
        p[0] = <uint8_t>(v | 0x80)
        v >>= 7
        p += 1
    p[0] = <uint8_t>v
    return p + 1


cdef inline int _get_varint(const uint8_t *p, size_t n, size_t *pos, uint64_t *out) noexcept nogil:
    """0 on success, -1 when truncated, -2 when longer than 10 bytes / overflowing 64 bits."""
    cdef uint64_t v = 0
    cdef unsigned int shift = 0
    cdef uint8_t byte
    cdef size_t i = pos[0]
    while True:
        if i >= n:
            return -1
        byte = p[i]
        i += 1
        if shift == 63 and byte > 1:
            return -2
        v |= (<uint64_t>(byte & 0x7F)) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            return -2
    pos[0] = i
    out[0] = v
    return 0


def encode_ops(ops):
    """Encode a batch ``[(opcode, storage_key, value_or_None), ...]`` as one WAL payload."""
    cdef list items = list(ops)
    cdef Py_ssize_t i, count = len(items)
    cdef size_t total = _varint_size(count)
    cdef int opcode
    cdef bytes out
    cdef uint8_t *p
    keys = []
    values = []
    for i in range(count):
        op = items[i]
        if type(op) is not tuple or len(<tuple>op) != 3:
            raise TypeError(f"op {i}: expected an (opcode, key, value) tuple, got {op!r:.80}")
        opcode = (<tuple>op)[0]
        key = (<tuple>op)[1]
        value = (<tuple>op)[2]
        if type(key) is not bytes:
            key = bytes(memoryview(key))
        if opcode == OP_PUT:
            if value is None:
                raise ValueError(f"op {i}: PUT needs a value")
            if type(value) is not bytes:
                value = bytes(memoryview(value))
            total += 1 + _varint_size(len(<bytes>key)) + len(<bytes>key)
            total += _varint_size(len(<bytes>value)) + len(<bytes>value)
        elif opcode == OP_DELETE:
            if value is not None:
                raise ValueError(f"op {i}: DELETE takes no value")
            total += 1 + _varint_size(len(<bytes>key)) + len(<bytes>key)
        else:
            raise ValueError(f"op {i}: unknown opcode {opcode} (1 = PUT, 2 = DELETE)")
        keys.append(key)
        values.append(value)
    out = PyBytes_FromStringAndSize(NULL, total)
    p = <uint8_t *>PyBytes_AS_STRING(out)
    p = _put_varint(p, count)
    for i in range(count):
        key = keys[i]
        value = values[i]
        if value is None:
            p[0] = OP_DELETE
        else:
            p[0] = OP_PUT
        p = _put_varint(p + 1, len(<bytes>key))
        memcpy(p, PyBytes_AS_STRING(key), len(<bytes>key))
        p += len(<bytes>key)
        if value is not None:
            p = _put_varint(p, len(<bytes>value))
            memcpy(p, PyBytes_AS_STRING(value), len(<bytes>value))
            p += len(<bytes>value)
    return out


cdef object _ops_error(size_t pos, str what):
    return ValueError(f"malformed WAL batch payload at byte {pos}: {what}")


def decode_ops(payload):
    """Inverse of :func:`encode_ops`: ``[(opcode, key, value_or_None), ...]``."""
    cdef Py_buffer view
    cdef const uint8_t *p
    cdef size_t n, pos = 0, start
    cdef uint64_t count, klen, vlen, i
    cdef uint8_t opcode
    cdef int rc
    cdef list result = []
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        p = <const uint8_t *>view.buf
        n = <size_t>view.len
        rc = _get_varint(p, n, &pos, &count)
        if rc != 0:
            raise _ops_error(pos, "bad op count")
        # Every op takes at least two bytes, which bounds a corrupt count.
        if count > (n - pos) // 2 + 1:
            raise _ops_error(0, f"op count {count} cannot fit in {n} bytes")
        for i in range(count):
            start = pos
            if pos >= n:
                raise _ops_error(pos, f"truncated: {count} ops declared, {i} present")
            opcode = p[pos]
            pos += 1
            if opcode != OP_PUT and opcode != OP_DELETE:
                raise _ops_error(start, f"unknown opcode {opcode}")
            rc = _get_varint(p, n, &pos, &klen)
            if rc != 0 or klen > n - pos:
                raise _ops_error(start, "truncated key")
            key = PyBytes_FromStringAndSize(<const char *>p + pos, <Py_ssize_t>klen)
            pos += klen
            if opcode == OP_PUT:
                rc = _get_varint(p, n, &pos, &vlen)
                if rc != 0 or vlen > n - pos:
                    raise _ops_error(start, "truncated value")
                value = PyBytes_FromStringAndSize(<const char *>p + pos, <Py_ssize_t>vlen)
                pos += vlen
                result.append((1, key, value))
            else:
                result.append((2, key, None))
        if pos != n:
            raise _ops_error(pos, f"{n - pos} trailing bytes after {count} ops")
    finally:
        PyBuffer_Release(&view)
    return result
