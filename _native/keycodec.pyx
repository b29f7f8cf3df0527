# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Key codec: order-preserving, self-delimiting key encodings and the partition hash (SPEC §2-3).

``enc(value)`` for a key attribute of type S, N or B is one type tag byte then a body:

* ``S`` -- tag ``0x03``, then the UTF-8 bytes with every 0x00 written as ``00 FF``, then the
  terminator ``00 01``.
* ``B`` -- tag ``0x01``, then the bytes escaped the same way, then ``00 01``.
* ``N`` -- tag ``0x02``, then the number body of ``decnum.pxd``::

      zero      02
      positive  03 | E+130 | digit pairs
      negative  01 | 255-(E+130) | 255-(digit pairs)

  for the value d1.d2...dn x 10^E normalized (d1, dn != 0; E in [-130, 125]); digit pair v
  (0..99) is ``2v+1`` when more follow and ``2v`` for the last one. 1, 1.0 and
  ``Decimal('1E0')`` share one encoding.

For two values a, b of the same type, ``enc(a) < enc(b)`` bytewise iff a < b in DynamoDB
order (N numerically, S by UTF-8 bytes, B bytewise), and no encoding is a proper prefix of
another, so ``enc(a) + x`` orders by a first whatever ``x`` is. (The escape byte 0xFF sorts
above the terminator's 0x01, so "ab" < "ab\\0" even with a suffix.) Tags are chosen so that
B < N < S, which only matters for keys of different types and never within a table.

Limits (DynamoDB's): S and B keys must not be empty and their UTF-8 / raw length (not the
escaped length) must not exceed ``max_len`` (2048 for partition keys, 1024 for sort keys;
``storage_key`` applies both, ``encode_key`` takes ``max_len``, default 2048); N keys have at most 38 significant digits and magnitude 1E-130 .. 9.99..E+125. Violations
raise ``ValueError`` (``TypeError`` for a value of the wrong Python type: float and bool are
never numbers) with a message naming the problem.

Storage keys (SPEC §3)::

    hash partitioning:   hash64(enc(pk)) as 8 bytes big-endian | enc(pk) | enc(sk)
    range partitioning:  enc(pk) | enc(sk)

``enc(sk)`` is absent for tables without a sort key; passing ``sk_value=None`` also gives
the prefix shared by every item of that partition key, which is what a Query scans.

``encode_key_prefix(value, key_type)`` (S and B only) is ``enc(value)`` without the
terminator: every key whose value starts with ``value`` starts with it (``begins_with``).

``hash64(data)`` is XXH64 with seed 0 -- the partition hash. It is part of the on-disk and
backup format: stable across versions, platforms and byte orders; never change it.

Long keys (key format 2, ``mode & MODE_COMPACT``). LMDB keys end at 511 bytes, DynamoDB's
keys at 2048 + 1024 bytes (twice that escaped). Under format 2 each key component whose
encoding is longer than ``INLINE`` (200) bytes is stored *compacted*::

    tag | escaped body[:c] | 00 02 | BLAKE2b-256(enc(value))

with ``c = CUT`` (165), or ``CUT - 1`` when body[CUT-1] opens an escape pair (a pair is
never split). ``00 02`` never occurs inside a plain body (00 is always followed by FF or
01), so a compacted component is recognisable and self-delimiting (the digest is 32
bytes). The hash prefix is still ``hash64`` of the *plain* ``enc(pk)``.

Order: call ``P`` = body[:c] a component's *bucket prefix* (defined when its escaped body
is longer than ``CUT``). Storage order equals DynamoDB order between any two components
except two whose bucket prefixes are equal -- those compare by digest. Readers that need
DynamoDB order (Query) re-sort each run of keys sharing a bucket prefix by the full key
(:func:`bucket_end`), and widen range bounds to whole buckets (``engine.longkeys``).
``mode`` bit 0 is "hashed"; format 1 (bit 1 clear) is the plain layout above, unchanged.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.pycapsule cimport PyCapsule_New
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcpy

from capi cimport STORAGE_KEY_CAPSULE
from decnum cimport NUM_MAX_BODY, num_decode, num_encode

from decimal import Decimal as _Decimal
from hashlib import blake2b as _blake2b

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL

cdef extern from "xxh64.h":
    uint64_t tk_xxh64(const uint8_t *p, size_t len, uint64_t seed) nogil

cdef enum:
    _TAG_B = 0x01
    _TAG_N = 0x02
    _TAG_S = 0x03
    _DEFAULT_MAX_LEN = 2048     # partition key limit in bytes
    _SORT_KEY_MAX_LEN = 1024
    # Worst case of a storage key: hash, then pk and sk escaped (3 + 2 x limit each).
    _STORAGE_KEY_ROOM = 8 + (3 + 2 * _DEFAULT_MAX_LEN) + (3 + 2 * _SORT_KEY_MAX_LEN)
    _STACK_BYTES = 3 + 2 * _DEFAULT_MAX_LEN
    _MODE_HASHED = 1
    _MODE_COMPACT = 2
    _INLINE = 200       # longest component encoding stored whole under key format 2
    _CUT = 165          # escaped body bytes a compacted component keeps
    _DIGEST = 32        # BLAKE2b-256 of the plain encoding
    _TAIL_INLINE = 100  # longest index-entry tail (the base key) stored whole
    _TAG_DIGEST = 0x04  # a tail stored as its digest

TAG_B = _TAG_B
TAG_N = _TAG_N
TAG_S = _TAG_S
DEFAULT_MAX_LEN = _DEFAULT_MAX_LEN
SORT_KEY_MAX_LEN = _SORT_KEY_MAX_LEN
MODE_HASHED = _MODE_HASHED
MODE_COMPACT = _MODE_COMPACT
INLINE = _INLINE
CUT = _CUT
#: Bytes of a (format 2) sort component that decide its place up to its bucket: range
#: bounds longer than this (after the partition-key prefix) are widened to the bucket.
SORT_WINDOW = 1 + _CUT

cdef object _TYPE_S = "S"
cdef object _TYPE_N = "N"
cdef object _TYPE_B = "B"


# ------------------------------------------------------------------ escaping

cdef Py_ssize_t _escape_into(uint8_t *out, uint8_t tag, const uint8_t *src,
                             Py_ssize_t n) noexcept:
    """Write tag | src with 00 -> 00 FF | 00 01 at ``out`` (room for 3 + 2n bytes);
    returns the bytes written."""
    cdef uint8_t *o = out + 1
    cdef Py_ssize_t i
    out[0] = tag
    if memchr(src, 0, n) == NULL:
        memcpy(o, src, n)
        o += n
    else:
        for i in range(n):
            o[0] = src[i]
            o += 1
            if src[i] == 0:
                o[0] = 0xFF
                o += 1
    o[0] = 0
    o[1] = 1
    return (o + 2) - out


cdef bytes _escape(uint8_t tag, const uint8_t *src, Py_ssize_t n):
    """tag | src with 00 -> 00 FF | 00 01, as bytes."""
    cdef Py_ssize_t zeros = 0
    cdef const uint8_t *z = src
    cdef const uint8_t *end = src + n
    cdef bytes result
    while z < end:
        z = <const uint8_t *>memchr(z, 0, end - z)
        if z == NULL:
            break
        zeros += 1
        z += 1
    result = PyBytes_FromStringAndSize(NULL, 1 + n + zeros + 2)
    _escape_into(<uint8_t *>PyBytes_AS_STRING(result), tag, src, n)
    return result


cdef Py_ssize_t _unescape_end(const uint8_t *p, Py_ssize_t n, Py_ssize_t start,
                              Py_ssize_t *raw_len) except -1:
    """Find the terminator of an escaped body starting at p[start]; returns the offset after it."""
    cdef Py_ssize_t i = start, count = 0
    cdef const uint8_t *z
    while True:
        z = <const uint8_t *>memchr(p + i, 0, n - i)
        if z == NULL:
            raise ValueError("truncated key: missing terminator")
        count += (z - (p + i))
        i = z - p
        if i + 1 >= n:
            raise ValueError("truncated key: escape at end of data")
        if p[i + 1] == 0x01:
            raw_len[0] = count
            return i + 2
        if p[i + 1] != 0xFF:
            raise ValueError(f"malformed key: byte 0x{p[i + 1]:02x} after 0x00 at offset {i + 1}")
        count += 1
        i += 2


cdef bytes _unescape(const uint8_t *p, Py_ssize_t start, Py_ssize_t end, Py_ssize_t raw_len):
    """Raw bytes of the escaped body p[start : end-2]."""
    cdef bytes result = PyBytes_FromStringAndSize(NULL, raw_len)
    cdef uint8_t *out = <uint8_t *>PyBytes_AS_STRING(result)
    cdef Py_ssize_t i = start, stop = end - 2
    if raw_len == stop - start:
        memcpy(out, p + start, raw_len)
        return result
    while i < stop:
        out[0] = p[i]
        out += 1
        i += 2 if p[i] == 0 else 1
    return result


# ------------------------------------------------------------------ encode / decode

cdef inline Py_ssize_t _encoded_room(Py_ssize_t max_len) noexcept:
    """Bytes ``_encode_into`` may write for a value of at most ``max_len`` bytes."""
    return max(3 + 2 * max_len, NUM_MAX_BODY + 1)


cdef Py_ssize_t _encode_into(uint8_t *out, object value, object key_type,
                             Py_ssize_t max_len) except -1:
    """Write enc(value) at ``out`` (room for ``_encoded_room(max_len)`` bytes); returns
    the bytes written. Raises on an invalid value (see the module docstring)."""
    cdef const char *s
    cdef Py_ssize_t n
    cdef Py_buffer view
    if key_type == _TYPE_S:
        if not isinstance(value, str):
            raise TypeError(f"key of type S must be str, got {type(value).__name__}")
        s = PyUnicode_AsUTF8AndSize(value, &n)
        if n == 0:
            raise ValueError("key of type S must not be empty")
        if n > max_len:
            raise ValueError(
                f"key of type S is {n} bytes in UTF-8; the limit is {max_len} bytes")
        return _escape_into(out, _TAG_S, <const uint8_t *>s, n)
    if key_type == _TYPE_N:
        out[0] = _TAG_N
        return 1 + num_encode(out + 1, value, "key of type N", _Decimal)
    if key_type == _TYPE_B:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"key of type B must be bytes, bytearray or memoryview, got {type(value).__name__}")
        PyObject_GetBuffer(value, &view, PyBUF_SIMPLE)
        try:
            if view.len == 0:
                raise ValueError("key of type B must not be empty")
            if view.len > max_len:
                raise ValueError(f"key of type B is {view.len} bytes; the limit is {max_len} bytes")
            return _escape_into(out, _TAG_B, <const uint8_t *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
    raise ValueError(f"key type must be 'S', 'N' or 'B', got {key_type!r}")


cdef bytes _encode(object value, object key_type, Py_ssize_t max_len):
    cdef uint8_t stack[_STACK_BYTES]
    cdef uint8_t *out = stack
    cdef Py_ssize_t room = _encoded_room(max_len)
    if room > _STACK_BYTES:
        out = <uint8_t *>malloc(room)
        if out == NULL:
            raise MemoryError()
    try:
        return PyBytes_FromStringAndSize(<const char *>out, _encode_into(out, value, key_type,
                                                                         max_len))
    finally:
        if out != stack:
            free(out)


cdef object _decode(const uint8_t *p, Py_ssize_t n, Py_ssize_t *pos, int *key_type):
    cdef Py_ssize_t start = pos[0], end, raw_len = 0
    cdef size_t upos
    cdef uint8_t tag
    if start < 0 or start >= n:
        raise ValueError(f"no key at offset {start} (data is {n} bytes)")
    tag = p[start]
    if tag == _TAG_N:
        upos = start + 1
        value = num_decode(p, n, &upos, _Decimal)
        pos[0] = upos
        key_type[0] = _TAG_N
        return value
    if tag == _TAG_S or tag == _TAG_B:
        end = _unescape_end(p, n, start + 1, &raw_len)
        pos[0] = end
        if tag == _TAG_S:
            key_type[0] = _TAG_S
            if raw_len == end - start - 3:
                return PyUnicode_DecodeUTF8(<const char *>p + start + 1, raw_len, NULL)
            raw = _unescape(p, start + 1, end, raw_len)
            return (<bytes>raw).decode("utf-8")
        key_type[0] = _TAG_B
        return _unescape(p, start + 1, end, raw_len)
    raise ValueError(f"unknown key type tag 0x{tag:02x} at offset {start}")


def encode_key(value, key_type, *, Py_ssize_t max_len=2048):
    """Order-preserving, self-delimiting encoding of a key attribute (see module docstring)."""
    return _encode(value, key_type, max_len)


def encode_key_prefix(value, key_type, *, Py_ssize_t max_len=2048):
    """The bytes every ``encode_key(x)`` with ``x`` starting with ``value`` begins with.

    For S and B only (``begins_with``): the tag and the escaped bytes, without the
    terminator. An empty ``value`` gives just the tag (every key of that type).
    """
    cdef const char *s
    cdef Py_ssize_t n
    cdef Py_buffer view
    cdef bytes enc
    if key_type == _TYPE_S:
        if not isinstance(value, str):
            raise TypeError(f"prefix of type S must be str, got {type(value).__name__}")
        s = PyUnicode_AsUTF8AndSize(value, &n)
        if n > max_len:
            raise ValueError(
                f"prefix of type S is {n} bytes in UTF-8; the limit is {max_len} bytes")
        enc = _escape(_TAG_S, <const uint8_t *>s, n)
    elif key_type == _TYPE_B:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(
                "prefix of type B must be bytes, bytearray or memoryview, "
                f"got {type(value).__name__}")
        PyObject_GetBuffer(value, &view, PyBUF_SIMPLE)
        try:
            if view.len > max_len:
                raise ValueError(
                    f"prefix of type B is {view.len} bytes; the limit is {max_len} bytes")
            enc = _escape(_TAG_B, <const uint8_t *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
    elif key_type == _TYPE_N:
        raise ValueError("key prefixes (begins_with) exist for types S and B only, not N")
    else:
        raise ValueError(f"key type must be 'S', 'N' or 'B', got {key_type!r}")
    return enc[:len(enc) - 2]


def decode_key(data, Py_ssize_t offset=0):
    """Decode one key at ``offset``: ``(value, key_type, next_offset)``."""
    cdef Py_buffer view
    cdef Py_ssize_t pos = offset
    cdef int key_type = 0
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        value = _decode(<const uint8_t *>view.buf, view.len, &pos, &key_type)
    finally:
        PyBuffer_Release(&view)
    return value, (_TYPE_B, _TYPE_N, _TYPE_S)[key_type - 1], pos


def hash64(data):
    """XXH64 of ``data`` with seed 0: the partition hash (stable forever, see module doc)."""
    cdef Py_buffer view
    cdef uint64_t h
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        h = tk_xxh64(<const uint8_t *>view.buf, view.len, 0)
    finally:
        PyBuffer_Release(&view)
    return h


cdef inline void _put_be64(uint8_t *p, uint64_t v) noexcept:
    cdef int i
    for i in range(8):
        p[7 - i] = <uint8_t>(v >> (8 * i))


def hash_prefix_of(pk_value, pk_type):
    """The 8-byte big-endian ``hash64(enc(pk))`` that leads hashed storage keys."""
    cdef bytes enc = _encode(pk_value, pk_type, _DEFAULT_MAX_LEN)
    cdef uint8_t out[8]
    _put_be64(out, tk_xxh64(<const uint8_t *>PyBytes_AS_STRING(enc), len(enc), 0))
    return PyBytes_FromStringAndSize(<const char *>out, 8)


def storage_key(int mode, pk_value, pk_type, sk_value=None, sk_type=None):
    """The storage key of an item (SPEC §3); without ``sk_value`` the partition key's prefix.

    ``mode``: bit 0 (``MODE_HASHED``, or just ``True``) hash partitioning, bit 1
    (``MODE_COMPACT``) key format 2 (long components compacted, see the module docstring).
    """
    return _storage_key(mode, pk_value, pk_type, sk_value, sk_type)


cdef bytes _storage_key(int mode, object pk_value, object pk_type, object sk_value,
                        object sk_type):
    # Built in place, one allocation: [hash64(enc(pk)) if hashed] enc(pk) [enc(sk)].
    cdef uint8_t out[_STORAGE_KEY_ROOM]
    cdef bint hashed = mode & _MODE_HASHED
    cdef bint compact = mode & _MODE_COMPACT
    cdef Py_ssize_t start = 8 if hashed else 0, pk_len, sk_len = 0
    pk_len = _encode_into(out + start, pk_value, pk_type, _DEFAULT_MAX_LEN)
    if hashed:
        _put_be64(out, tk_xxh64(out + 8, pk_len, 0))
    if compact and pk_len > _INLINE:
        pk_len = _compact_in_place(out + start, pk_len)
    if sk_value is not None:
        if sk_type is None:
            raise ValueError("a sort key value was given without its sort key type")
        sk_len = _encode_into(out + start + pk_len, sk_value, sk_type, _SORT_KEY_MAX_LEN)
        if compact and sk_len > _INLINE:
            sk_len = _compact_in_place(out + start + pk_len, sk_len)
    return PyBytes_FromStringAndSize(<const char *>out, start + pk_len + sk_len)


cdef Py_ssize_t _compact_in_place(uint8_t *p, Py_ssize_t n) except -1:
    """Rewrite the plain component ``p[:n]`` (longer than INLINE) as its compacted form;
    returns the new length (at most CUT + 35)."""
    cdef bytes digest = _blake2b(PyBytes_FromStringAndSize(<const char *>p, n),
                                 digest_size=_DIGEST).digest()
    cdef Py_ssize_t c = _CUT
    if p[c] == 0:  # body[c-1] opens an escape pair: keep the pair whole by cutting before it
        c -= 1
    p[1 + c] = 0
    p[2 + c] = 2
    memcpy(p + 3 + c, PyBytes_AS_STRING(digest), _DIGEST)
    return 3 + c + _DIGEST


def compact(bytes encoded):
    """One plain component ``enc(value)`` as key format 2 stores it (itself if short)."""
    cdef Py_ssize_t n = len(encoded)
    cdef uint8_t out[3 + 2 * _DEFAULT_MAX_LEN]
    if n <= _INLINE:
        return encoded
    if n > 3 + 2 * _DEFAULT_MAX_LEN:
        raise ValueError(f"a key component of {n} bytes is longer than any key encodes to")
    memcpy(out, PyBytes_AS_STRING(encoded), n)
    return PyBytes_FromStringAndSize(<const char *>out, _compact_in_place(out, n))


def tail(bytes encoded):
    """An index entry's tail (the base key's plain encoding) as key format 2 stores it:
    itself up to TAIL_INLINE bytes, else tag 0x04 and its BLAKE2b-256 digest. The tail only
    makes entries unique and orders ties, so its digest serves as well."""
    if len(encoded) <= _TAIL_INLINE:
        return encoded
    return bytes((_TAG_DIGEST,)) + _blake2b(encoded, digest_size=_DIGEST).digest()


def bucket_end(bytes key, Py_ssize_t start):
    """The end of the bucket prefix of the component at ``key[start]``, or -1.

    A component of type S or B whose escaped body is longer than CUT (plain or compacted)
    has a bucket prefix ``P``: keys sharing ``key[:bucket_end]`` may be stored out of
    DynamoDB order among themselves and are re-sorted by readers. Anything else (type N,
    a short body, no component at ``start``) gives -1.
    """
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(key)
    cdef Py_ssize_t n = len(key), i, pos, c
    cdef const uint8_t *z
    if start < 0 or start >= n or (p[start] != _TAG_S and p[start] != _TAG_B):
        return -1
    if n - start - 1 <= _CUT:  # too short to hold a longer body
        return -1
    i = start + 1
    while True:
        z = <const uint8_t *>memchr(p + i, 0, n - i)
        if z == NULL:
            return -1
        pos = z - p
        if pos + 1 >= n:
            return -1
        if p[pos + 1] == 2:  # compacted: the marker follows P
            return pos
        if p[pos + 1] == 1:  # terminator: a plain body
            break
        i = pos + 2
    if pos - (start + 1) <= _CUT:
        return -1
    c = _CUT
    if p[start + c] == 0:
        c -= 1
    return start + 1 + c


def component_end(key, Py_ssize_t start):
    """The offset just after the (plain or compacted) component at ``key[start]``."""
    cdef Py_buffer view
    cdef const uint8_t *p
    cdef const uint8_t *z
    cdef Py_ssize_t n, i, pos
    cdef int key_type = 0
    PyObject_GetBuffer(key, &view, PyBUF_SIMPLE)
    try:
        p = <const uint8_t *>view.buf
        n = view.len
        if start < 0 or start >= n:
            raise ValueError(f"no key component at offset {start} (key is {n} bytes)")
        if p[start] == _TAG_S or p[start] == _TAG_B:
            i = start + 1
            while True:
                z = <const uint8_t *>memchr(p + i, 0, n - i)
                if z == NULL or (z - p) + 1 >= n:
                    raise ValueError("truncated key: missing terminator")
                pos = z - p
                if p[pos + 1] == 1:
                    return pos + 2
                if p[pos + 1] == 2:
                    if pos + 2 + _DIGEST > n:
                        raise ValueError("truncated key: compacted component without digest")
                    return pos + 2 + _DIGEST
                i = pos + 2
        pos = start
        _decode(p, n, &pos, &key_type)
        return pos
    finally:
        PyBuffer_Release(&view)


# ``_storage_key`` for the routing of puts and point reads, see _native/capi.pxd.
_C_STORAGE_KEY = PyCapsule_New(<void *>_storage_key, STORAGE_KEY_CAPSULE, NULL)


def split_storage_key(key, bint hashed):
    """Inverse of :func:`storage_key`: ``(pk_value, sk_value_or_None)``. A compacted
    (format 2) component cannot be inverted: read the key attributes from the item.

    Raises ``ValueError`` if the key is malformed, has trailing bytes, or (hashed) its hash
    prefix does not match the partition key.
    """
    cdef Py_buffer view
    cdef const uint8_t *p
    cdef Py_ssize_t pos = 0, pk_start
    cdef int key_type = 0
    cdef uint8_t want[8]
    sk = None
    PyObject_GetBuffer(key, &view, PyBUF_SIMPLE)
    try:
        p = <const uint8_t *>view.buf
        if hashed:
            if view.len < 9:
                raise ValueError(f"storage key of {view.len} bytes is too short for a hashed key")
            pos = 8
        pk_start = pos
        pk = _decode(p, view.len, &pos, &key_type)
        if hashed:
            _put_be64(want, tk_xxh64(p + pk_start, pos - pk_start, 0))
            if memcmp_(want, p, 8) != 0:
                raise ValueError("storage key hash prefix does not match its partition key")
        if pos < view.len:
            sk = _decode(p, view.len, &pos, &key_type)
            if pos != view.len:
                raise ValueError(
                    f"storage key has {view.len - pos} trailing bytes after the sort key")
    finally:
        PyBuffer_Release(&view)
    return pk, sk


cdef inline int memcmp_(const uint8_t *a, const uint8_t *b, size_t n) noexcept:
    cdef size_t i
    for i in range(n):
        if a[i] != b[i]:
            return 1
    return 0
