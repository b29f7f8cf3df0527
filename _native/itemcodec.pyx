# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Item codec: DynamoDB items (dicts) to compact, deterministic bytes and back (SPEC §2).

Byte format (varint = unsigned LEB128; u32le = 4 bytes little-endian)::

    stored := 0x02 | body | u32le CRC32C(0x02 | body) | u32le CRC32C(0x02 | body | key)
    legacy := 0x01 | body          (written before item checksums existed; still read)
    body   := varint n | n x (varint name_len | name utf8 | value)
    value  := tag | body

    tag   type  body
    0x00  NULL  -
    0x01  BOOL  -               (false)
    0x02  BOOL  -               (true)
    0x03  N     number body     (decnum.pxd: canonical, self-delimiting, 2 digits per byte)
    0x04  S     varint len | utf8
    0x05  B     varint len | bytes
    0x06  SS    varint n | n x (varint len | utf8)
    0x07  NS    varint n | n x number body
    0x08  BS    varint n | n x (varint len | bytes)
    0x09  L     varint n | n x value
    0x0A  M     varint n | n x (varint name_len | name utf8 | value)

Checksums (issue 12: LMDB has no page checksums, so a flipped byte in ``data.mdb`` was read
back as a changed value). CRC32C is Castagnoli's (``engine._walframe.crc32c``, the SSE4.2
instruction where the CPU has it). ``key`` is the LMDB key the item is stored under (the
storage key). Two checksums rather than one over ``key | value`` because the full scan
(``decode_items``, ``Table.iter_items``) reads values without their keys: py-lmdb's
``(key, value)`` tuples cost a scan ~40% (measured, 200k items). The first checksum covers
every byte of the value and is checked on every decode; the second binds the value to its
key and is checked wherever the caller has the key (point reads, queries, scans by page,
batch gets, the conditional writes' reads, the logical walk of backups) — so a flipped
key byte never makes an item silently appear under another key there. A full scan
without keys returns each item's true value (its key attributes are inside it).

Why a version byte and not a migration on open: items written before the checksums
(version 1) stay readable as they are and become version 2 when rewritten (every write
encodes anew). A migration would rewrite every partition on the first open (hours for a
large table, twice the pages under LMDB's copy-on-write) and change the bytes that backup
checksums and WAL records describe. The cost is that a version-1 item is unchecked. A
version-2 item cannot pass for version 1: its body is self-delimiting, so read as version
1 it leaves 8 trailing bytes and is refused — a flipped version byte is caught too.

Determinism (the logical backup checksum hashes the stored bytes): map entries, at the top
level and nested, are written in order of their names' UTF-8 bytes; set members in order
of their encoded bytes; numbers are normalized (1, 1.0 and Decimal('1E0') are one
encoding). Equal items under equal keys therefore encode to equal bytes whatever their
dict insertion order.

Python types: S str; N int or decimal.Decimal (never float, NaN or Infinity; at most 38
significant digits; magnitude 1E-130 .. 9.99..E+125); B bytes (bytearray and memoryview
accepted); BOOL bool; NULL None; SS/NS/BS set or frozenset of str / numbers / bytes
(non-empty, one kind, no duplicates after normalization); L list or tuple; M dict with str
keys. Nesting of L and M is limited to 32 levels. Decoding gives str, int (integral numbers)
or Decimal (normalized), bytes, bool, None, set, list and dict.

Errors: encoding raises ``TypeError`` (unsupported Python type) or ``ValueError`` (bad
value) with the attribute path in the message, e.g. ``attribute 'tags'[2]: unsupported
type float``. Decoding stored bytes that fail a checksum or do not parse raises
``engine.errors.CorruptionError`` naming the key (callers that know the partition and
file add them: ``engine._reads`` itself, ``engine.table`` at its call sites).
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.dict cimport PyDict_New, PyDict_Next, PyDict_SetItem, PyDict_Size
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_New
from cpython.ref cimport Py_INCREF
from cpython.set cimport PySet_Add
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memcmp, memcpy

from capi cimport DECODE_ITEM_CAPSULE
from decnum cimport NUM_MAX_BODY, num_decode, num_encode

from decimal import Decimal as _Decimal

from engine.errors import CorruptionError

cdef extern from "crc32c.h":
    void tw_init(int allow_hw)

cdef extern from "itemcheck.h":
    void ti_checksums(const uint8_t *key, size_t key_len, const uint8_t *v, size_t n_body,
                      uint32_t *value_crc, uint32_t *keyed_crc) noexcept nogil
    int ti_check(const uint8_t *key, size_t key_len, const uint8_t *v, size_t n,
                 size_t *body_end, uint32_t *stored, uint32_t *computed) noexcept nogil
    int TI_V1, TI_V2, TI_EMPTY, TI_BAD_VERSION, TI_TOO_SHORT, TI_BAD_VALUE_CRC, TI_BAD_KEY_CRC
    int TI_TRAILER

cdef extern from "byteorder.h":
    void tw_st32(uint8_t *p, uint32_t v) noexcept nogil

tw_init(1)

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    object PyUnicode_New(Py_ssize_t size, unsigned int maxchar)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    void *PyUnicode_DATA(object o)
    void Py_XDECREF(PyObject *o)
    void PyUnicode_InternInPlace(PyObject **p)
    int PyUnicode_IS_COMPACT_ASCII(object o)

FORMAT_VERSION = 2
LEGACY_FORMAT_VERSION = 1
TRAILER_BYTES = 8  # the two CRC32Cs after a version-2 body
MAX_DEPTH = 32

cdef enum:
    _VERSION = 0x02
    _VERSION_LEGACY = 0x01
    _MAX_DEPTH = 32
    T_NULL = 0x00
    T_FALSE = 0x01
    T_TRUE = 0x02
    T_N = 0x03
    T_S = 0x04
    T_B = 0x05
    T_SS = 0x06
    T_NS = 0x07
    T_BS = 0x08
    T_L = 0x09
    T_M = 0x0A
    _PATH_CAP = 40
    _SMALL = 512
    _STACK_ENTRIES = 16


# ------------------------------------------------------------------ encoder state

cdef struct PathEntry:
    const char *name        # utf8 of a map key, or NULL for a list index
    Py_ssize_t name_len
    Py_ssize_t index

cdef struct Enc:
    uint8_t *buf
    size_t len
    size_t cap
    int npath
    PathEntry path[_PATH_CAP]
    uint8_t small[_SMALL]

cdef struct MapEntry:
    const char *name
    Py_ssize_t name_len
    PyObject *value

cdef struct Span:
    size_t off
    size_t len


cdef int _grow(Enc *e, size_t extra) except -1:
    cdef size_t cap = e.cap * 2
    cdef uint8_t *nb
    if cap < e.len + extra:
        cap = e.len + extra
    if e.buf == e.small:
        nb = <uint8_t *>malloc(cap)
        if nb != NULL:
            memcpy(nb, e.buf, e.len)
    else:
        nb = <uint8_t *>realloc(e.buf, cap)
    if nb == NULL:
        raise MemoryError()
    e.buf = nb
    e.cap = cap
    return 0


cdef inline int _reserve(Enc *e, size_t extra) except -1:
    if e.len + extra > e.cap:
        return _grow(e, extra)
    return 0


cdef inline int _put_varint(Enc *e, uint64_t v) except -1:
    cdef uint8_t *p
    if e.len + 10 > e.cap:
        _grow(e, 10)
    p = e.buf + e.len
    while v >= 0x80:
        p[0] = <uint8_t>(v | 0x80)
        v >>= 7
        p += 1
    p[0] = <uint8_t>v
    e.len = (p + 1) - e.buf
    return 0


cdef inline int _put_byte(Enc *e, uint8_t b) except -1:
    if e.len + 1 > e.cap:
        _grow(e, 1)
    e.buf[e.len] = b
    e.len += 1
    return 0


cdef inline int _put_lp(Enc *e, const char *p, size_t n) except -1:
    """varint length + bytes."""
    _put_varint(e, n)
    if e.len + n > e.cap:
        _grow(e, n)
    memcpy(e.buf + e.len, p, n)
    e.len += n
    return 0


cdef inline int _put_number(Enc *e, object value) except -1:
    if e.len + NUM_MAX_BODY > e.cap:
        _grow(e, NUM_MAX_BODY)
    e.len += num_encode(e.buf + e.len, value, None, _Decimal)
    return 0


cdef str _path_of(Enc *e):
    """The attribute path at the point of an error, e.g. 'tags'[2] or 'a'.'b'."""
    cdef int i
    parts = []
    for i in range(e.npath):
        if e.path[i].name == NULL:
            parts.append(f"[{e.path[i].index}]")
        else:
            name = e.path[i].name[:e.path[i].name_len].decode("utf-8", "replace")
            parts.append(f"'{name}'" if i == 0 else f".'{name}'")
    return "".join(parts)


# ------------------------------------------------------------------ sorting helpers

cdef int _cmp_names(const void *a, const void *b) noexcept nogil:
    cdef const MapEntry *x = <const MapEntry *>a
    cdef const MapEntry *y = <const MapEntry *>b
    cdef Py_ssize_t n = x.name_len if x.name_len < y.name_len else y.name_len
    cdef int c = memcmp(x.name, y.name, n)
    if c:
        return c
    return (x.name_len > y.name_len) - (x.name_len < y.name_len)


# qsort has no context argument; the GIL is held for the whole sort, so a static is safe.
cdef const uint8_t *_span_base = NULL

cdef int _cmp_spans(const void *a, const void *b) noexcept nogil:
    cdef const Span *x = <const Span *>a
    cdef const Span *y = <const Span *>b
    cdef size_t n = x.len if x.len < y.len else y.len
    cdef int c = memcmp(_span_base + x.off, _span_base + y.off, n)
    if c:
        return c
    return (x.len > y.len) - (x.len < y.len)


# ------------------------------------------------------------------ encoding

cdef int _enc_map_body(Enc *e, object d, int depth) except -1:
    """varint n | entries sorted by name bytes (d is a dict)."""
    cdef Py_ssize_t n = PyDict_Size(d), i = 0, pos = 0, j
    cdef PyObject *key
    cdef PyObject *value
    cdef MapEntry stack_entries[_STACK_ENTRIES]
    cdef MapEntry *entries = stack_entries
    cdef MapEntry tmp
    cdef bint sorted_already = True
    if n > _STACK_ENTRIES:
        entries = <MapEntry *>malloc(n * sizeof(MapEntry))
        if entries == NULL:
            raise MemoryError()
    try:
        while PyDict_Next(d, &pos, &key, &value):
            if type(<object>key) is not str and not isinstance(<object>key, str):
                raise TypeError(
                    f"attribute names must be str, got {type(<object>key).__name__} "
                    f"({<object>key!r:.40})")
            entries[i].name = PyUnicode_AsUTF8AndSize(<object>key, &entries[i].name_len)
            if entries[i].name_len == 0:
                raise ValueError("empty attribute name")
            entries[i].value = value
            if i and sorted_already and _cmp_names(&entries[i - 1], &entries[i]) > 0:
                sorted_already = False
            i += 1
        if not sorted_already:
            if n <= _STACK_ENTRIES:
                for i in range(1, n):
                    tmp = entries[i]
                    j = i - 1
                    while j >= 0 and _cmp_names(&entries[j], &tmp) > 0:
                        entries[j + 1] = entries[j]
                        j -= 1
                    entries[j + 1] = tmp
            else:
                qsort(entries, n, sizeof(MapEntry), _cmp_names)
        _put_varint(e, n)
        for i in range(n):
            _put_lp(e, entries[i].name, entries[i].name_len)
            # The path is kept for error messages only: entries stay on it when an
            # exception unwinds, and encode_item reads it there.
            e.path[e.npath].name = entries[i].name
            e.path[e.npath].name_len = entries[i].name_len
            e.npath += 1
            _enc_value(e, <object>entries[i].value, depth)
            e.npath -= 1
    finally:
        if entries != stack_entries:
            free(entries)
    return 0


cdef int _enc_list_body(Enc *e, object seq, int depth) except -1:
    cdef Py_ssize_t i, n = len(seq)
    _put_varint(e, n)
    for i in range(n):
        e.path[e.npath].name = NULL
        e.path[e.npath].index = i
        e.npath += 1
        _enc_value(e, seq[i], depth)
        e.npath -= 1
    return 0


cdef int _enc_set(Enc *e, object s) except -1:
    cdef Py_ssize_t count = len(s), i = 0
    cdef uint8_t tag
    cdef Span *spans
    cdef uint8_t *copy
    cdef size_t start, off, total
    cdef const char *p
    cdef Py_ssize_t plen
    cdef Py_buffer view
    if count == 0:
        raise ValueError("empty sets are not allowed")
    for first in s:
        break
    if isinstance(first, str):
        tag = T_SS
    elif isinstance(first, (bytes, bytearray, memoryview)):
        tag = T_BS
    elif isinstance(first, (int, _Decimal)) and not isinstance(first, bool):
        tag = T_NS
    else:
        raise TypeError(f"unsupported set member type {type(first).__name__}; "
                        "sets hold only str (SS), numbers (NS) or bytes (BS)")
    _put_byte(e, tag)
    _put_varint(e, count)
    spans = <Span *>malloc(count * sizeof(Span))
    if spans == NULL:
        raise MemoryError()
    try:
        start = e.len
        for member in s:
            if i >= count:
                raise RuntimeError("set changed size during encoding")
            spans[i].off = e.len
            if tag == T_SS:
                if not isinstance(member, str):
                    raise TypeError(
                        f"string set (SS) holds a member of type {type(member).__name__}")
                p = PyUnicode_AsUTF8AndSize(member, &plen)
                _put_lp(e, p, plen)
            elif tag == T_NS:
                if isinstance(member, bool) or not isinstance(member, (int, _Decimal)):
                    raise TypeError(
                        f"number set (NS) holds a member of type {type(member).__name__}")
                _put_number(e, member)
            else:
                if not isinstance(member, (bytes, bytearray, memoryview)):
                    raise TypeError(
                        f"binary set (BS) holds a member of type {type(member).__name__}")
                PyObject_GetBuffer(member, &view, PyBUF_SIMPLE)
                try:
                    _put_lp(e, <const char *>view.buf, view.len)
                finally:
                    PyBuffer_Release(&view)
            spans[i].len = e.len - spans[i].off
            i += 1
        if i != count:
            raise RuntimeError("set changed size during encoding")
        if count > 1:
            global _span_base
            _span_base = e.buf
            qsort(spans, count, sizeof(Span), _cmp_spans)
            for i in range(1, count):
                if _cmp_spans(&spans[i - 1], &spans[i]) == 0:
                    raise ValueError("set holds duplicate members (after number normalization)")
            total = e.len - start
            copy = <uint8_t *>malloc(total)
            if copy == NULL:
                raise MemoryError()
            off = 0
            for i in range(count):
                memcpy(copy + off, e.buf + spans[i].off, spans[i].len)
                off += spans[i].len
            memcpy(e.buf + start, copy, total)
            free(copy)
    finally:
        free(spans)
    return 0


cdef int _enc_value(Enc *e, object v, int depth) except -1:
    cdef type t = type(v)
    cdef const char *p
    cdef Py_ssize_t n
    cdef Py_buffer view
    if t is str:
        p = PyUnicode_AsUTF8AndSize(v, &n)
        _put_byte(e, T_S)
        _put_lp(e, p, n)
    elif t is bool:
        _put_byte(e, T_TRUE if v is True else T_FALSE)
    elif t is int or t is _Decimal:
        _put_byte(e, T_N)
        _put_number(e, v)
    elif t is dict:
        if depth >= _MAX_DEPTH:
            raise ValueError(f"nesting deeper than {_MAX_DEPTH} levels")
        _put_byte(e, T_M)
        _enc_map_body(e, v, depth + 1)
    elif t is list or t is tuple:
        if depth >= _MAX_DEPTH:
            raise ValueError(f"nesting deeper than {_MAX_DEPTH} levels")
        _put_byte(e, T_L)
        _enc_list_body(e, v, depth + 1)
    elif v is None:
        _put_byte(e, T_NULL)
    elif t is bytes or t is bytearray or t is memoryview:
        PyObject_GetBuffer(v, &view, PyBUF_SIMPLE)
        try:
            _put_byte(e, T_B)
            _put_lp(e, <const char *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
    elif t is set or t is frozenset:
        _enc_set(e, v)
    # subclasses, in an order that keeps bool out of N
    elif isinstance(v, bool):
        _put_byte(e, T_TRUE if v else T_FALSE)
    elif isinstance(v, str):
        _enc_value(e, str(v), depth)
    elif isinstance(v, (int, _Decimal)):
        _put_byte(e, T_N)
        _put_number(e, v)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        _enc_value(e, bytes(v), depth)
    elif isinstance(v, dict):
        _enc_value(e, dict(v), depth)
    elif isinstance(v, (list, tuple)):
        _enc_value(e, list(v), depth)
    elif isinstance(v, (set, frozenset)):
        _enc_set(e, v)
    else:
        raise TypeError(f"unsupported type {t.__name__}")
    return 0


def encode_item(item, key=b""):
    """Encode an item for storage under ``key`` (its storage key, bytes-like): version 2
    with both checksums; see the module docstring. The checksums bind the bytes to
    ``key``: read under another key they fail their check. Items of a table must pass
    their storage key; the default ``b""`` serves values only ever read without their
    key (index projections) and measurements."""
    cdef Enc e
    cdef Py_buffer key_view
    cdef uint32_t value_crc, keyed_crc
    if not isinstance(item, dict):
        raise TypeError(f"an item must be a dict, got {type(item).__name__}")
    PyObject_GetBuffer(key, &key_view, PyBUF_SIMPLE)
    e.buf = e.small
    e.len = 0
    e.cap = _SMALL
    e.npath = 0
    try:
        _put_byte(&e, _VERSION)
        _enc_map_body(&e, item, 0)
        _reserve(&e, TI_TRAILER)
        ti_checksums(<const uint8_t *>key_view.buf, <size_t>key_view.len, e.buf, e.len,
                     &value_crc, &keyed_crc)
        tw_st32(e.buf + e.len, value_crc)
        tw_st32(e.buf + e.len + 4, keyed_crc)
        e.len += TI_TRAILER
        return PyBytes_FromStringAndSize(<const char *>e.buf, e.len)
    except (ValueError, TypeError) as err:
        where = f"attribute {_path_of(&e)}: " if e.npath else "item: "
        # (plain classes: UnicodeEncodeError and friends take other constructor arguments)
        raise (ValueError if isinstance(err, ValueError) else TypeError)(where + str(err)) from None
    finally:
        PyBuffer_Release(&key_view)
        if e.buf != e.small:
            free(e.buf)


# ------------------------------------------------------------------ decoding

cdef struct Dec:
    const uint8_t *p
    size_t n
    size_t pos


cdef object _malformed(Dec *d, str what):
    return ValueError(f"malformed item at byte {d.pos}: {what}")


cdef uint64_t _get_varint(Dec *d) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint64_t v = 0
    cdef unsigned int shift = 0
    cdef uint8_t b
    while True:
        if d.pos >= d.n:
            raise _malformed(d, "truncated varint")
        b = d.p[d.pos]
        d.pos += 1
        if shift == 63 and b > 1:
            raise _malformed(d, "varint overflows 64 bits")
        v |= (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            return v
        shift += 7
        if shift > 63:
            raise _malformed(d, "varint too long")


cdef size_t _get_len_slow(Dec *d) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint64_t v = _get_varint(d)
    if v > d.n - d.pos:
        raise _malformed(d, f"length {v} runs past the end ({d.n - d.pos} bytes left)")
    return <size_t>v


cdef inline size_t _get_len(Dec *d) except? 0xFFFFFFFFFFFFFFFF:
    """A varint length that must fit in the remaining bytes."""
    cdef size_t v
    if d.pos < d.n:  # the common one-byte length inline; the rest (and errors) out of line
        v = d.p[d.pos]
        if v < 0x80 and v < d.n - d.pos:
            d.pos += 1
            return v
    return _get_len_slow(d)


cdef size_t _get_count_slow(Dec *d) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint64_t v = _get_varint(d)
    if v > d.n - d.pos:
        raise _malformed(d, f"count {v} cannot fit in the {d.n - d.pos} bytes left")
    return <size_t>v


cdef inline size_t _get_count(Dec *d) except? 0xFFFFFFFFFFFFFFFF:
    """A varint element count; every element takes at least one byte."""
    cdef size_t v
    if d.pos < d.n:
        v = d.p[d.pos]
        if v < 0x80 and v < d.n - d.pos:
            d.pos += 1
            return v
    return _get_count_slow(d)


cdef inline bint _is_ascii(const uint8_t *s, size_t n) noexcept:
    cdef uint64_t word, high = 0
    while n >= 8:
        memcpy(&word, s, 8)
        high |= word
        s += 8
        n -= 8
    while n:
        high |= s[0]
        s += 1
        n -= 1
    return (high & 0x8080808080808080ULL) == 0


cdef inline object _ascii_str(const uint8_t *s, size_t n):
    """A str of ``n`` ASCII bytes: filled in place, skipping the UTF-8 decoder's dispatch
    (most attribute values are short ASCII strings)."""
    result = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(result), s, n)
    return result


cdef inline object _get_str_of_len(Dec *d, size_t n):
    cdef const uint8_t *s = d.p + d.pos
    d.pos += n
    if _is_ascii(s, n):
        return _ascii_str(s, n)
    return PyUnicode_DecodeUTF8(<const char *>s, n, NULL)


cdef inline object _get_str(Dec *d):
    return _get_str_of_len(d, _get_len(d))


cdef inline object _get_bytes(Dec *d):
    cdef size_t n = _get_len(d)
    b = PyBytes_FromStringAndSize(<const char *>d.p + d.pos, n)
    d.pos += n
    return b


cdef inline object _get_number(Dec *d):
    return num_decode(d.p, d.n, &d.pos, _Decimal)


cdef object _dec_value(Dec *d, int depth):
    cdef uint8_t tag
    cdef size_t count, i
    if d.pos >= d.n:
        raise _malformed(d, "truncated value")
    tag = d.p[d.pos]
    d.pos += 1
    if tag == T_S:
        return _get_str(d)
    if tag == T_N:
        return _get_number(d)
    if tag == T_TRUE:
        return True
    if tag == T_FALSE:
        return False
    if tag == T_NULL:
        return None
    if tag == T_B:
        return _get_bytes(d)
    if tag == T_M:
        if depth >= _MAX_DEPTH:
            raise _malformed(d, f"nesting deeper than {_MAX_DEPTH} levels")
        return _dec_map_body(d, depth + 1, None)
    if tag == T_L:
        if depth >= _MAX_DEPTH:
            raise _malformed(d, f"nesting deeper than {_MAX_DEPTH} levels")
        count = _get_count(d)
        result = PyList_New(count)
        for i in range(count):
            item = _dec_value(d, depth + 1)
            Py_INCREF(item)
            PyList_SET_ITEM(result, i, item)
        return result
    if tag == T_SS or tag == T_NS or tag == T_BS:
        count = _get_count(d)
        if count == 0:
            raise _malformed(d, "empty set")
        result = set()
        for i in range(count):
            if tag == T_SS:
                member = _get_str(d)
            elif tag == T_NS:
                member = _get_number(d)
            else:
                member = _get_bytes(d)
            PySet_Add(result, member)
        if <size_t>len(result) != count:
            raise _malformed(d, "set holds duplicate members")
        return result
    d.pos -= 1
    raise _malformed(d, f"unknown type tag 0x{tag:02x}")


cdef int _skip_value(Dec *d, int depth) except -1:
    cdef uint8_t tag
    cdef size_t count, i
    if d.pos >= d.n:
        raise _malformed(d, "truncated value")
    tag = d.p[d.pos]
    d.pos += 1
    if tag == T_S or tag == T_B:
        d.pos += _get_len(d)
    elif tag == T_N:
        num_decode(d.p, d.n, &d.pos, _Decimal)
    elif tag == T_TRUE or tag == T_FALSE or tag == T_NULL:
        pass
    elif tag == T_M or tag == T_L:
        if depth >= _MAX_DEPTH:
            raise _malformed(d, f"nesting deeper than {_MAX_DEPTH} levels")
        count = _get_count(d)
        for i in range(count):
            if tag == T_M:
                d.pos += _get_len(d)
            _skip_value(d, depth + 1)
    elif tag == T_SS or tag == T_BS:
        count = _get_count(d)
        for i in range(count):
            d.pos += _get_len(d)
    elif tag == T_NS:
        count = _get_count(d)
        for i in range(count):
            num_decode(d.p, d.n, &d.pos, _Decimal)
    else:
        d.pos -= 1
        raise _malformed(d, f"unknown type tag 0x{tag:02x}")
    return 0


# Attribute names repeat in every item: decoding them is a large share of a scan. Two
# caches of ASCII names (strong references to interned strs, replaced on a miss) turn most
# name decodes into one short byte comparison: by position among the top-level
# attributes (items of one table mostly share their names, and the encoding sorts them,
# so the i-th name is mostly the same), then a direct-mapped one by hash. A slot keeps the
# characters' address and length beside the reference, so a hit touches one cache line.
# Only touched with the GIL held.
DEF _NAME_CACHE_SLOTS = 4096
DEF _NAME_CACHE_MAX_LEN = 64
DEF _POSITION_SLOTS = 32

cdef struct NameSlot:
    PyObject *name          # an interned compact-ASCII str, or NULL
    const uint8_t *data     # its characters, which are its UTF-8 bytes
    size_t len
    uint64_t head           # its first min(len, 8) bytes, zero-padded (see tk_head)

cdef NameSlot _name_cache[_NAME_CACHE_SLOTS]
cdef NameSlot _position_cache[_POSITION_SLOTS]

cdef extern from "head_word.h":
    uint64_t tk_head(const uint8_t *p, size_t n) noexcept nogil


cdef inline bint _slot_holds(const NameSlot *slot, const uint8_t *s, size_t n,
                             size_t readable) noexcept:
    """Does ``slot`` hold the name of ``n`` bytes at ``s`` (``readable`` bytes there)?
    Compared a word at a time where 8 bytes can be read: a byte loop's exit, at a
    different length for each name, is a branch the CPU mispredicts."""
    cdef size_t i
    if slot.name == NULL or slot.len != n:
        return False
    if readable >= 8:
        if tk_head(s, n) != slot.head:
            return False
        return n <= 8 or memcmp(slot.data + 8, s + 8, n - 8) == 0
    for i in range(n):
        if slot.data[i] != s[i]:
            return False
    return True


cdef inline void _slot_set(NameSlot *slot, object name) noexcept:
    cdef uint64_t head = 0
    Py_INCREF(name)
    Py_XDECREF(slot.name)
    slot.name = <PyObject *>name
    slot.data = <const uint8_t *>PyUnicode_DATA(name)
    slot.len = <size_t>PyUnicode_GET_LENGTH(name)
    memcpy(&head, slot.data, slot.len if slot.len < 8 else 8)
    slot.head = head


cdef object _get_hashed_name(Dec *d, size_t n):
    cdef const uint8_t *s = d.p + d.pos
    cdef uint64_t h = 1469598103934665603ULL
    cdef NameSlot *slot
    cdef PyObject *interned
    cdef size_t i
    if n > _NAME_CACHE_MAX_LEN:
        return _get_str_of_len(d, n)
    for i in range(n):
        h = (h ^ s[i]) * 1099511628211ULL
    slot = &_name_cache[h & (_NAME_CACHE_SLOTS - 1)]
    if _slot_holds(slot, s, n, d.n - d.pos):
        d.pos += n
        return <object>slot.name
    d.pos += n
    if not _is_ascii(s, n):
        return PyUnicode_DecodeUTF8(<const char *>s, n, NULL)
    # Interned, as names in source code are: a caller's item["name"] then matches by
    # identity.
    name = _ascii_str(s, n)
    interned = <PyObject *>name
    Py_INCREF(name)
    PyUnicode_InternInPlace(&interned)
    name = <object>interned
    Py_XDECREF(interned)
    _slot_set(slot, name)
    return name


cdef inline object _get_name(Dec *d, size_t position):
    """An attribute name; ``position`` is its index in a top-level map (or any larger
    value elsewhere)."""
    cdef size_t n = _get_len(d)
    cdef NameSlot *slot = NULL
    if position < _POSITION_SLOTS:
        slot = &_position_cache[position]
        if _slot_holds(slot, d.p + d.pos, n, d.n - d.pos):
            d.pos += n
            return <object>slot.name
    name = _get_hashed_name(d, n)
    if slot != NULL and PyUnicode_IS_COMPACT_ASCII(name):
        _slot_set(slot, name)
    return name


cdef object _dec_map_body(Dec *d, int depth, object projection):
    cdef size_t count = _get_count(d), i
    cdef size_t position_limit = _POSITION_SLOTS if depth == 0 else 0
    cdef dict result = PyDict_New()
    for i in range(count):
        name = _get_name(d, i if i < position_limit else _POSITION_SLOTS)
        if projection is not None and name not in projection:
            _skip_value(d, depth)
            continue
        PyDict_SetItem(result, name, _dec_value(d, depth))
    return result


cdef str _key_text(const uint8_t *key, size_t key_len):
    """How an error names a storage key: ``under key 0x…`` (hex, at most 64 bytes shown)."""
    if key == NULL:
        return ""
    shown = (<const char *>key)[:key_len if key_len <= 64 else 64].hex()
    more = f"... ({key_len} bytes)" if key_len > 64 else ""
    return f" under key 0x{shown}{more}"


cdef object _check_failure(int rc, const uint8_t *p, size_t n, const uint8_t *key,
                           size_t key_len, uint32_t stored, uint32_t computed):
    """The CorruptionError for a ``ti_check`` result below zero."""
    where = _key_text(key, key_len)
    if rc == TI_BAD_VALUE_CRC:
        why = (f"fails its checksum (CRC32C of its {n - TI_TRAILER} bytes is "
               f"0x{computed:08x}, stored 0x{stored:08x})")
    elif rc == TI_BAD_KEY_CRC:
        why = (f"is intact but was not stored under this key: the key fails the checksum "
               f"binding it to the value (0x{computed:08x}, stored 0x{stored:08x}), so the "
               "key's bytes were damaged")
    elif rc == TI_EMPTY:
        why = "is empty"
    elif rc == TI_TOO_SHORT:
        why = f"is {n} bytes, too short for a version-2 item"
    else:
        why = f"has an unknown format version byte 0x{p[0]:02x}"
    return CorruptionError(f"stored item{where} {why}; LMDB has no page checksums, so the "
                           "data file is damaged: restore the partition from a backup")


cdef object _decode_buffer(const uint8_t *p, size_t n, object projection,
                           const uint8_t *key, size_t key_len):
    """Check and decode ``n`` stored bytes at ``p``; ``key`` (NULL: not known) is the
    storage key they were read under."""
    cdef Dec d
    cdef size_t body_end
    cdef uint32_t stored = 0, computed = 0
    cdef int rc = ti_check(key, key_len, p, n, &body_end, &stored, &computed)
    if rc < 0:
        raise _check_failure(rc, p, n, key, key_len, stored, computed)
    d.p = p
    d.n = body_end
    d.pos = 1
    try:
        result = _dec_map_body(&d, 0, projection)
        if d.pos != d.n:
            raise _malformed(&d, f"{d.n - d.pos} trailing bytes")
    except ValueError as err:  # a malformed item, a bad number or bad UTF-8
        message = str(err)
        if not message.startswith("malformed item"):
            message = f"malformed item at byte {d.pos}: {message}"
        raise CorruptionError(
            f"stored item{_key_text(key, key_len)} does not decode ({message}); the data "
            "file is damaged: restore the partition from a backup") from None
    return result


# ``_decode_buffer`` for the point-read path (engine._reads), see _native/capi.pxd.
_C_DECODE_ITEM = PyCapsule_New(<void *>_decode_buffer, DECODE_ITEM_CAPSULE, NULL)


cdef object _decode_object(object data, object projection, const uint8_t *key,
                           size_t key_len):
    cdef Py_buffer view
    if PyBytes_CheckExact(data):
        return _decode_buffer(<const uint8_t *>PyBytes_AS_STRING(data),
                              <size_t>PyBytes_GET_SIZE(data), projection, key, key_len)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _decode_buffer(<const uint8_t *>view.buf, <size_t>view.len, projection,
                              key, key_len)
    finally:
        PyBuffer_Release(&view)


def decode_item(data, projection=None, key=None):
    """Check and decode a stored item; with ``projection`` (top-level names) skip every
    other attribute. ``key``: the storage key it was read under — pass it whenever it is
    at hand, it is what detects a damaged key (without it only the value is checked).
    Raises ``CorruptionError`` (naming the key) for bytes that fail a check."""
    cdef Py_buffer key_view
    if projection is not None and not isinstance(projection, (set, frozenset, dict)):
        projection = frozenset(projection)
    if key is None:
        return _decode_object(data, projection, NULL, 0)
    PyObject_GetBuffer(key, &key_view, PyBUF_SIMPLE)
    try:
        return _decode_object(data, projection, <const uint8_t *>key_view.buf,
                              <size_t>key_view.len)
    finally:
        PyBuffer_Release(&key_view)


def check_item(key, data):
    """Raise ``CorruptionError`` unless ``data`` is a stored item whose checksums hold
    under ``key``; returns its format version. A version-1 item, which has no checksums,
    is decoded instead: a version-2 item whose version byte was damaged into 1 fails
    there (it leaves 8 trailing bytes)."""
    cdef Py_buffer key_view, view
    cdef size_t body_end
    cdef uint32_t stored = 0, computed = 0
    cdef int rc
    PyObject_GetBuffer(key, &key_view, PyBUF_SIMPLE)
    try:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            rc = ti_check(<const uint8_t *>key_view.buf, <size_t>key_view.len,
                          <const uint8_t *>view.buf, <size_t>view.len, &body_end, &stored,
                          &computed)
            if rc < 0:
                raise _check_failure(rc, <const uint8_t *>view.buf, <size_t>view.len,
                                     <const uint8_t *>key_view.buf, <size_t>key_view.len,
                                     stored, computed)
            if rc == TI_V1:
                _decode_buffer(<const uint8_t *>view.buf, <size_t>view.len, None,
                               <const uint8_t *>key_view.buf, <size_t>key_view.len)
        finally:
            PyBuffer_Release(&view)
    finally:
        PyBuffer_Release(&key_view)
    return rc


def decode_items(values, Py_ssize_t max_count, projection=None):
    """Check and decode up to ``max_count`` stored items taken from the iterator ``values``.

    The scan loop: one call per chunk instead of one Python-level call per item. Values
    come without their keys (see the module docstring), so each value's own checksum is
    checked, not its key binding. Returns a list (empty when ``values`` is exhausted).
    """
    cdef list result = []
    cdef Py_ssize_t taken = 0
    if projection is not None and not isinstance(projection, (set, frozenset, dict)):
        projection = frozenset(projection)
    while taken < max_count:
        data = next(values, None)
        if data is None:
            break
        result.append(_decode_object(data, projection, NULL, 0))
        taken += 1
    return result
