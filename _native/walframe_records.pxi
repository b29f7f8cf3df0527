# Record framing and tail scanning of engine._walframe (included by walframe.pyx after
# walframe_crc.pxi, whose CRC they use; the C scan is walscan.h).

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_FromUnsignedLongLong
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cdef extern from "byteorder.h":
    void tw_st32(uint8_t *p, uint32_t v) nogil
    void tw_st64(uint8_t *p, uint64_t v) nogil

cdef extern from "walscan.h":
    ctypedef struct tw_rec:
        size_t off
        uint32_t len
        uint64_t lsn
    int tw_scan(const uint8_t *b, size_t n, size_t pos, int have_expect, uint64_t expect,
                tw_rec **out, size_t *nout, size_t *good_end) nogil
    int TW_OK, TW_TORN, TW_CORRUPT, TW_NOMEM

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void *op)

HEADER_SIZE = 16
MAX_PAYLOAD = 1 << 30

cdef object _TORN = "torn"
cdef object _CORRUPT = "corrupt"


cdef inline void _write_record(uint8_t *out, uint64_t lsn, const uint8_t *payload,
                               uint32_t n) noexcept nogil:
    tw_st32(out, n)
    tw_st64(out + 4, lsn)
    if n:
        memcpy(out + 16, payload, n)
    cdef uint32_t c = tw_crc_raw(0xFFFFFFFF, out, 12)
    c = tw_crc_raw(c, out + 16, n)
    tw_st32(out + 12, ~c)


cdef uint64_t _as_lsn(object lsn) except? 0xFFFFFFFFFFFFFFFF:
    if lsn < 0 or lsn > 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"lsn must fit in an unsigned 64-bit integer, got {lsn}")
    return <uint64_t>lsn


def frame_record(lsn, payload):
    """One framed record: 16-byte header (len, lsn, crc) followed by ``payload``."""
    cdef Py_buffer view
    cdef uint64_t l = _as_lsn(lsn)
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        if <size_t>view.len > <size_t>MAX_PAYLOAD:
            raise ValueError(
                f"WAL payload of {view.len} bytes exceeds the 1 GiB record limit")
        out = PyBytes_FromStringAndSize(NULL, 16 + view.len)
        _write_record(<uint8_t *>PyBytes_AS_STRING(out), l,
                      <const uint8_t *>view.buf, <uint32_t>view.len)
    finally:
        PyBuffer_Release(&view)
    return out


def frame_records(records):
    """Concatenation of ``frame_record(lsn, payload)`` for each pair, in one allocation."""
    cdef list recs = list(records)
    cdef Py_ssize_t i, count = len(recs)
    cdef size_t total = 0, pos = 0
    cdef uint64_t *lsns = NULL
    cdef Py_buffer *views = NULL
    cdef Py_ssize_t acquired = 0
    cdef uint8_t *dst
    if count == 0:
        return b""
    lsns = <uint64_t *>malloc(count * sizeof(uint64_t))
    views = <Py_buffer *>malloc(count * sizeof(Py_buffer))
    if lsns == NULL or views == NULL:
        free(lsns)
        free(views)
        raise MemoryError()
    try:
        for i in range(count):
            item = recs[i]
            if type(item) is not tuple or len(<tuple>item) != 2:
                raise TypeError(f"record {i}: expected an (lsn, payload) tuple, got {item!r:.80}")
            lsns[i] = _as_lsn((<tuple>item)[0])
            PyObject_GetBuffer((<tuple>item)[1], &views[i], PyBUF_SIMPLE)
            acquired += 1
            if <size_t>views[i].len > <size_t>MAX_PAYLOAD:
                raise ValueError(
                    f"record {i}: WAL payload of {views[i].len} bytes exceeds the 1 GiB limit")
            total += 16 + <size_t>views[i].len
        out = PyBytes_FromStringAndSize(NULL, total)
        dst = <uint8_t *>PyBytes_AS_STRING(out)
        with nogil:
            for i in range(count):
                _write_record(dst + pos, lsns[i], <const uint8_t *>views[i].buf,
                              <uint32_t>views[i].len)
                pos += 16 + <size_t>views[i].len
    finally:
        for i in range(acquired):
            PyBuffer_Release(&views[i])
        free(lsns)
        free(views)
    return out


def scan_records(buf, Py_ssize_t start=0, *, expect_lsn=None):
    """Walk the records of ``buf`` from ``start``; see the module docstring.

    Returns ``(records, good_end, problem)`` with ``records`` a list of ``(lsn, payload)``,
    ``good_end`` the offset just past the last good record and ``problem`` one of ``None``,
    ``"torn"``, ``"corrupt"``.
    """
    cdef Py_buffer view
    cdef tw_rec *recs = NULL
    cdef size_t nrecs = 0, good_end = 0, i
    cdef int have_expect = 0, rc
    cdef uint64_t expect = 0
    cdef const uint8_t *base
    cdef list result
    if expect_lsn is not None:
        have_expect = 1
        expect = _as_lsn(expect_lsn)
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        if start < 0 or start > view.len:
            raise ValueError(f"start offset {start} is outside the buffer of {view.len} bytes")
        base = <const uint8_t *>view.buf
        with nogil:
            rc = tw_scan(base, <size_t>view.len, <size_t>start, have_expect, expect,
                         &recs, &nrecs, &good_end)
        if rc == TW_NOMEM:
            raise MemoryError()
        try:
            result = PyList_New(nrecs)
            for i in range(nrecs):
                t = PyTuple_New(2)
                lsn_obj = PyLong_FromUnsignedLongLong(recs[i].lsn)
                Py_INCREF(lsn_obj)
                PyTuple_SET_ITEM(t, 0, lsn_obj)
                payload = PyBytes_FromStringAndSize(<const char *>base + recs[i].off, recs[i].len)
                Py_INCREF(payload)
                PyTuple_SET_ITEM(t, 1, payload)
                # (int, bytes) tuples cannot be part of a cycle: keep them away from the
                # cyclic GC, which otherwise dominates scanning segments of small records.
                PyObject_GC_UnTrack(<void *>t)
                Py_INCREF(t)
                PyList_SET_ITEM(result, i, t)
        finally:
            free(recs)
    finally:
        PyBuffer_Release(&view)
    if rc == TW_TORN:
        problem = _TORN
    elif rc == TW_CORRUPT:
        problem = _CORRUPT
    else:
        problem = None
    return result, good_end, problem

