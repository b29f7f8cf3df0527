# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""WAL record framing, CRC32C and the batch payload codec (SPEC §4).

CRC32C
------
``crc32c(data, crc=0)`` is CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial
value and final xor 0xFFFFFFFF), the same function as ``google_crc32c.value`` and
``crcmod.predefined.mkCrcFun('crc-32c')``. Chaining works the usual way:
``crc32c(b, crc32c(a)) == crc32c(a + b)``. On x86-64 the SSE4.2 ``crc32`` instruction is
used when the CPU has it (checked once at import, ``HARDWARE_CRC`` says which); otherwise a
table-driven slice-by-8 loop. Buffers of 64 KiB or more are checksummed without the GIL.

Record framing (all integers little-endian)
-------------------------------------------
::

    offset 0   u32  payload_len      (at most MAX_PAYLOAD = 1 GiB)
    offset 4   u64  lsn
    offset 12  u32  crc              CRC32C over bytes [0, 12) of the header + the payload
    offset 16  payload_len bytes of payload

``HEADER_SIZE = 16``. A segment is a plain concatenation of records, LSNs strictly
increasing by exactly 1. The writer appends whole records and never recycles segment files
(the tail after the last record is either the end of the file or zero bytes from
preallocation).

How ``scan_records`` classifies the tail
----------------------------------------
It walks records from ``start`` and stops at the first record that is not good. It returns
``(records, good_end, problem)``: ``records`` is the list of ``(lsn, payload)`` of the good
records, ``good_end`` the offset just past the last good one (so the offset of the bad
record when there is one), and ``problem``:

* ``None`` -- the buffer ends exactly at a record boundary.
* ``"torn"`` -- what an interrupted append leaves behind, safe to cut off:
    - the remaining bytes are all zero (a preallocated / zero-filled tail), or fewer than
      a header;
    - a complete header whose ``payload_len`` runs past the end of the buffer (the CRC
      cannot be checked), unless the damage is provably a corrupted length field, see
      below;
    - a complete-length record with a bad CRC that is followed only by zero bytes (or by
      nothing) *and* whose own last byte is zero: a partial write into preallocated space
      (a correct prefix, then zeros) looks exactly like this.
* ``"corrupt"`` -- damage an interrupted append cannot produce:
    - a complete record with a bad CRC followed by any non-zero byte, or whose last byte is
      non-zero (a torn write into zeros would end in a zero byte);
    - a CRC-valid record whose LSN is not the previous LSN + 1 (or, for the first record,
      not ``expect_lsn`` when that is given);
    - ``payload_len`` > 1 GiB (``frame_record`` refuses such payloads, and a partially
      written header, being a prefix of the right bytes followed by zeros, can only make
      the length smaller) -- even when it runs past the end;
    - a length field provably corrupted: the record becomes CRC-valid with a different
      length that ends either exactly at the end of the buffer or exactly where a CRC-valid
      record with the next LSN starts. This turns a flipped byte in any length field
      (except in the last record when a preallocated zero tail follows it) into
      ``"corrupt"`` instead of ``"torn"``.
  A kill -9 mid-append leaves a prefix of the intended bytes (possibly followed by
  preallocated zeros), so it always yields ``"torn"``, except with probability ~2^-32 per
  crash (a CRC collision in the length-field check). A single flipped byte inside a complete
  record that is not the last always yields ``"corrupt"`` with ``good_end`` at that record.
  A damaged *last* record is indistinguishable from a torn append when its final byte is
  zero and only zeros (or nothing) follow it; that case is reported as ``"torn"``.

Batch payload (one WAL record = one atomic batch on one partition)
------------------------------------------------------------------
::

    varint n_ops
    n_ops times:  u8 opcode | varint key_len | key | (PUT only) varint value_len | value

Opcodes: ``OP_PUT = 1``, ``OP_DELETE = 2``. Varints are unsigned LEB128 (at most 10 bytes,
value < 2^64). ``decode_ops`` raises ``ValueError`` on an unknown opcode, truncation,
overlong varints or trailing bytes.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_FromUnsignedLongLong
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

cdef extern from *:
    """
    #include <stdint.h>
    #include <stddef.h>
    #include <string.h>

    static uint32_t tw_crc_table[8][256];
    static int tw_have_hw = 0;

    static void tw_crc_init_tables(void) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : (c >> 1);
            tw_crc_table[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = tw_crc_table[0][i];
            for (int t = 1; t < 8; t++) {
                c = tw_crc_table[0][c & 0xff] ^ (c >> 8);
                tw_crc_table[t][i] = c;
            }
        }
    }

    static inline uint32_t tw_ld32(const uint8_t *p) {
        return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    }
    static inline uint64_t tw_ld64(const uint8_t *p) {
        return (uint64_t)tw_ld32(p) | ((uint64_t)tw_ld32(p + 4) << 32);
    }
    static inline void tw_st32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
    }
    static inline void tw_st64(uint8_t *p, uint64_t v) {
        tw_st32(p, (uint32_t)v); tw_st32(p + 4, (uint32_t)(v >> 32));
    }

    /* Slice-by-8 on the raw (pre-inverted) register. */
    static uint32_t tw_crc_sw(uint32_t c, const uint8_t *p, size_t n) {
        while (n && ((uintptr_t)p & 7)) { c = tw_crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8); n--; }
        while (n >= 8) {
            uint32_t lo = c ^ tw_ld32(p);
            uint32_t hi = tw_ld32(p + 4);
            c = tw_crc_table[7][lo & 0xff] ^ tw_crc_table[6][(lo >> 8) & 0xff] ^
                tw_crc_table[5][(lo >> 16) & 0xff] ^ tw_crc_table[4][lo >> 24] ^
                tw_crc_table[3][hi & 0xff] ^ tw_crc_table[2][(hi >> 8) & 0xff] ^
                tw_crc_table[1][(hi >> 16) & 0xff] ^ tw_crc_table[0][hi >> 24];
            p += 8; n -= 8;
        }
        while (n--) c = tw_crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        return c;
    }

    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #define TW_HAVE_X86 1
    __attribute__((target("sse4.2")))
    static uint32_t tw_crc_hw(uint32_t c, const uint8_t *p, size_t n) {
        uint64_t c64 = c;
        while (n && ((uintptr_t)p & 7)) { c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++); n--; }
        /* One dependent stream: ~8 bytes per 3 cycles (crc32q latency), plenty here. */
        while (n >= 32) {
            uint64_t a, b, d, e;
            memcpy(&a, p, 8); memcpy(&b, p + 8, 8); memcpy(&d, p + 16, 8); memcpy(&e, p + 24, 8);
            c64 = __builtin_ia32_crc32di(c64, a);
            c64 = __builtin_ia32_crc32di(c64, b);
            c64 = __builtin_ia32_crc32di(c64, d);
            c64 = __builtin_ia32_crc32di(c64, e);
            p += 32; n -= 32;
        }
        while (n >= 8) { uint64_t a; memcpy(&a, p, 8); c64 = __builtin_ia32_crc32di(c64, a); p += 8; n -= 8; }
        while (n--) c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++);
        return (uint32_t)c64;
    }
    static int tw_detect_hw(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("sse4.2") ? 1 : 0;
    }
    #else
    #define TW_HAVE_X86 0
    static uint32_t tw_crc_hw(uint32_t c, const uint8_t *p, size_t n) { return tw_crc_sw(c, p, n); }
    static int tw_detect_hw(void) { return 0; }
    #endif

    /* Raw register update: callers pass ~crc in and take ~result out. */
    static inline uint32_t tw_crc_raw(uint32_t c, const uint8_t *p, size_t n) {
        return tw_have_hw ? tw_crc_hw(c, p, n) : tw_crc_sw(c, p, n);
    }
    static inline uint32_t tw_crc32c(uint32_t crc, const uint8_t *p, size_t n) {
        return ~tw_crc_raw(~crc, p, n);
    }
    static void tw_init(int allow_hw) {
        tw_crc_init_tables();
        tw_have_hw = allow_hw ? tw_detect_hw() : 0;
    }
    static void tw_set_hw(int on) { tw_have_hw = on ? tw_detect_hw() : 0; }
    static int tw_get_hw(void) { return tw_have_hw; }

    /* ---------------------------------------------------------------- scanning */
    #define TW_HEADER 16
    #define TW_MAX_PAYLOAD ((uint64_t)1 << 30)
    enum { TW_OK = 0, TW_TORN = 1, TW_CORRUPT = 2, TW_NOMEM = -1 };

    typedef struct { size_t off; uint32_t len; uint64_t lsn; } tw_rec;

    static int tw_all_zero(const uint8_t *p, size_t n) {
        while (n && ((uintptr_t)p & 7)) { if (*p++) return 0; n--; }
        while (n >= 8) { uint64_t v; memcpy(&v, p, 8); if (v) return 0; p += 8; n -= 8; }
        while (n--) if (*p++) return 0;
        return 1;
    }

    /* CRC of the record at `pos` as if its payload were `len` bytes long. */
    static uint32_t tw_record_crc(const uint8_t *b, size_t pos, uint32_t len) {
        uint8_t head[12];
        memcpy(head, b + pos, 12);
        tw_st32(head, len);
        uint32_t c = tw_crc_raw(0xFFFFFFFFu, head, 12);
        c = tw_crc_raw(c, b + pos + TW_HEADER, len);
        return ~c;
    }

    static int tw_record_valid(const uint8_t *b, size_t n, size_t q) {
        if (n - q < TW_HEADER) return 0;
        uint32_t len = tw_ld32(b + q);
        if ((uint64_t)len > TW_MAX_PAYLOAD || len > n - q - TW_HEADER) return 0;
        return tw_record_crc(b, q, len) == tw_ld32(b + q + 12);
    }

    /* Is the record at `pos` provably intact except for its length field? */
    static int tw_length_field_damaged(const uint8_t *b, size_t n, size_t pos) {
        uint64_t lsn = tw_ld64(b + pos + 4);
        uint32_t want = tw_ld32(b + pos + 12);
        size_t whole = n - pos - TW_HEADER;
        if ((uint64_t)whole <= TW_MAX_PAYLOAD && tw_ld32(b + pos) != (uint32_t)whole &&
            tw_record_crc(b, pos, (uint32_t)whole) == want)
            return 1;
        if (n - pos < 2 * TW_HEADER) return 0;
        uint64_t next = lsn + 1;
        for (size_t q = pos + TW_HEADER; q + TW_HEADER <= n; q++) {
            if (tw_ld64(b + q + 4) != next) continue;
            size_t len = q - pos - TW_HEADER;
            if ((uint64_t)len > TW_MAX_PAYLOAD) break;
            if (tw_record_valid(b, n, q) && tw_record_crc(b, pos, (uint32_t)len) == want)
                return 1;
        }
        return 0;
    }

    static int tw_scan(const uint8_t *b, size_t n, size_t pos, int have_expect, uint64_t expect,
                       tw_rec **out, size_t *nout, size_t *good_end) {
        size_t cap = 0, cnt = 0;
        tw_rec *recs = NULL;
        int problem = TW_OK;
        uint64_t prev = 0;
        for (;;) {
            size_t rem = n - pos;
            if (rem == 0) { problem = TW_OK; break; }
            if (rem < TW_HEADER || tw_all_zero(b + pos, rem)) { problem = TW_TORN; break; }
            uint32_t len = tw_ld32(b + pos);
            uint64_t lsn = tw_ld64(b + pos + 4);
            uint32_t stored = tw_ld32(b + pos + 12);
            if ((uint64_t)len > TW_MAX_PAYLOAD) { problem = TW_CORRUPT; break; }
            if (len > rem - TW_HEADER) {
                problem = tw_length_field_damaged(b, n, pos) ? TW_CORRUPT : TW_TORN;
                break;
            }
            size_t end = pos + TW_HEADER + len;
            if (tw_record_crc(b, pos, len) != stored) {
                if (end < n && !tw_all_zero(b + end, n - end)) problem = TW_CORRUPT;
                else if (b[end - 1] != 0) problem = TW_CORRUPT;
                else if (tw_length_field_damaged(b, n, pos)) problem = TW_CORRUPT;
                else problem = TW_TORN;
                break;
            }
            if (cnt > 0) { if (lsn != prev + 1) { problem = TW_CORRUPT; break; } }
            else if (have_expect && lsn != expect) { problem = TW_CORRUPT; break; }
            if (cnt == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                tw_rec *nr = (tw_rec *)realloc(recs, ncap * sizeof(tw_rec));
                if (!nr) { free(recs); return TW_NOMEM; }
                recs = nr; cap = ncap;
            }
            recs[cnt].off = pos + TW_HEADER; recs[cnt].len = len; recs[cnt].lsn = lsn;
            cnt++;
            prev = lsn;
            pos = end;
        }
        *out = recs; *nout = cnt; *good_end = pos;
        return problem;
    }
    """
    ctypedef struct tw_rec:
        size_t off
        uint32_t len
        uint64_t lsn
    void tw_init(int allow_hw)
    void tw_set_hw(int on)
    int tw_get_hw()
    uint32_t tw_crc32c(uint32_t crc, const uint8_t *p, size_t n) nogil
    uint32_t tw_crc_raw(uint32_t c, const uint8_t *p, size_t n) nogil
    uint32_t tw_ld32(const uint8_t *p) nogil
    uint64_t tw_ld64(const uint8_t *p) nogil
    void tw_st32(uint8_t *p, uint32_t v) nogil
    void tw_st64(uint8_t *p, uint64_t v) nogil
    int tw_scan(const uint8_t *b, size_t n, size_t pos, int have_expect, uint64_t expect,
                tw_rec **out, size_t *nout, size_t *good_end) nogil
    int TW_OK, TW_TORN, TW_CORRUPT, TW_NOMEM

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void *op)

tw_init(1)

HEADER_SIZE = 16
MAX_PAYLOAD = 1 << 30
OP_PUT = 1
OP_DELETE = 2

cdef Py_ssize_t _NOGIL_THRESHOLD = 65536  # 64 KiB
cdef object _TORN = "torn"
cdef object _CORRUPT = "corrupt"


def _hardware_crc():
    """True when the SSE4.2 instruction computes CRC32C (the slice-by-8 table otherwise)."""
    return bool(tw_get_hw())


def _use_hardware_crc(bint on):
    """Force the table implementation (``False``) or re-enable the CPU one (tests only)."""
    tw_set_hw(1 if on else 0)


HARDWARE_CRC = _hardware_crc()


def crc32c(data, crc=0):
    """CRC-32C of ``data`` (bytes-like), continuing from ``crc`` (a previous result)."""
    cdef Py_buffer view
    cdef uint32_t c
    cdef unsigned long long start = crc
    if start > 0xFFFFFFFF:
        raise ValueError(f"crc must be a 32-bit unsigned value, got {crc}")
    c = <uint32_t>start
    if type(data) is bytes:
        if PyBytes_GET_SIZE(data) < _NOGIL_THRESHOLD:
            return tw_crc32c(c, <const uint8_t *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len >= _NOGIL_THRESHOLD:
            with nogil:
                c = tw_crc32c(c, <const uint8_t *>view.buf, view.len)
        else:
            c = tw_crc32c(c, <const uint8_t *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return c


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


# ------------------------------------------------------------------ batch payload codec

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
