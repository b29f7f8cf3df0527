# cython: language_level=3
# Shared by keycodec.pyx and itemcodec.pyx (inline, compiled into each): the one codec for
# DynamoDB numbers (SPEC §2: up to 38 significant digits, exact, never float).
#
# Byte format of a number body (order-preserving, self-delimiting, canonical):
#
#   zero:      0x02
#   positive:  0x03 | E + 130 | pairs
#   negative:  0x01 | 255 - (E + 130) | 255 - pairs   (every byte after the class complemented)
#
# The value is d1.d2d3...dn x 10^E with d1 != 0 and dn != 0 (trailing zeros stripped, so 1,
# 1.0, 1.00 and Decimal('1E0') are one encoding). E is in [-130, 125], DynamoDB's range, so
# E + 130 fits one byte. The digits go two per byte from d1 (an odd count is padded with a
# 0): pair value v in 0..99 is stored as 2v + 1 when more pairs follow and 2v for the last
# pair, so the last byte is the only even one and no encoding is a prefix of another.
# Larger E means larger magnitude (d1 != 0); at equal E the pair bytes compare like the
# digit strings; complementing reverses both for negatives.

from cpython.long cimport PyLong_FromLongLong, PyLong_FromString
from libc.stdint cimport int64_t, uint8_t, uint64_t

cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object obj, int *overflow) except? -1

# A .pxd cannot import, so callers pass ``decimal.Decimal`` in as ``Decimal``.

cdef enum:
    NUM_NEG = 0x01
    NUM_ZERO = 0x02
    NUM_POS = 0x03
    NUM_MAX_DIGITS = 38
    NUM_MIN_EXP = -130
    NUM_MAX_EXP = 125
    NUM_MAX_BODY = 22        # class + exponent + 19 pair bytes (+1 spare)


cdef inline str _num_msg(object what, str message):
    """Prefix ``what`` (the key or attribute being encoded) unless it is None."""
    return message if what is None else f"{what}: {message}"


cdef inline object _num_range_error(object what, int neg, const char *digits, int ndig, long exp):
    return ValueError(_num_msg(what,
        f"number {'-' if neg else ''}{digits[:ndig].decode('ascii')}E{exp} is out of "
        f"range; DynamoDB numbers have magnitude 1E-130 to "
        f"9.9999999999999999999999999999999999999E+125"))


cdef inline int num_pack(uint8_t *out, int neg, const char *digits, int ndig, long exp,
                         object what) except -1:
    """Pack digits (ASCII, no leading zeros) x 10^exp into out; returns the body length.

    ndig == 0 means zero. Trailing zeros are stripped here. ``what`` names the value in
    error messages.
    """
    cdef int i, n, v, last
    cdef long sci
    if ndig == 0:
        out[0] = NUM_ZERO
        return 1
    while ndig > 0 and digits[ndig - 1] == 48:  # '0'
        ndig -= 1
        exp += 1
    if ndig > NUM_MAX_DIGITS:
        raise ValueError(_num_msg(
            what, f"number has {ndig} significant digits; DynamoDB allows at most 38"))
    sci = exp + ndig - 1
    if sci < NUM_MIN_EXP or sci > NUM_MAX_EXP:
        raise _num_range_error(what, neg, digits, ndig, exp)
    out[0] = NUM_NEG if neg else NUM_POS
    out[1] = <uint8_t>(sci - NUM_MIN_EXP)
    n = 2
    i = 0
    while i < ndig:
        v = (digits[i] - 48) * 10
        if i + 1 < ndig:
            v += digits[i + 1] - 48
        last = i + 2 >= ndig
        out[n] = <uint8_t>(2 * v + (0 if last else 1))
        n += 1
        i += 2
    if neg:
        for i in range(1, n):
            out[i] = 255 - out[i]
    return n


cdef inline int num_encode(uint8_t *out, object value, object what, object Decimal) except -1:
    """Encode a Python int or Decimal (not bool, not float) into out (>= NUM_MAX_BODY bytes)."""
    cdef char buf[32]
    cdef long long small
    cdef unsigned long long mag
    cdef int i, neg, overflow = 0
    if type(value) is int:
        small = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow:
            if small == 0:
                out[0] = NUM_ZERO
                return 1
            neg = small < 0
            mag = (<unsigned long long>(-(small + 1)) + 1) if neg else <unsigned long long>small
            i = 31
            while mag:
                buf[i] = <char>(48 + mag % 10)
                mag //= 10
                i -= 1
            return num_pack(out, neg, buf + i + 1, 31 - i, 0, what)
        return _num_encode_bigint(out, value, what)
    if isinstance(value, bool):
        raise TypeError(_num_msg(what, "expected a number (int or Decimal), got bool"))
    if isinstance(value, int):
        return _num_encode_bigint(out, int(value), what)
    if isinstance(value, Decimal):
        return _num_encode_decimal(out, value, what)
    if isinstance(value, float):
        raise TypeError(_num_msg(
            what, "float is not allowed for numbers (inexact); use int or decimal.Decimal"))
    raise TypeError(_num_msg(
        what, f"expected a number (int or Decimal), got {type(value).__name__}"))


cdef inline int _num_encode_bigint(uint8_t *out, object value, object what) except -1:
    cdef int neg = value < 0
    cdef bytes text
    if value == 0:
        out[0] = NUM_ZERO
        return 1
    mag = -value if neg else value
    if mag.bit_length() > 420:      # 2**420 > 10**126: out of range whatever the digits
        raise ValueError(_num_msg(what,
            f"number is out of range; DynamoDB numbers have magnitude at most "
            f"9.9999999999999999999999999999999999999E+125"))
    text = str(mag).encode("ascii")
    return num_pack(out, neg, text, len(text), 0, what)


cdef inline int _num_encode_decimal(uint8_t *out, object value, object what) except -1:
    cdef char buf[64]
    cdef int neg, i, first, last, ndig
    cdef Py_ssize_t count
    cdef long exp
    if not value.is_finite():
        raise ValueError(_num_msg(
            what, f"{value} is not a number DynamoDB can store (NaN/Infinity)"))
    sign, digits, exponent = value.as_tuple()
    neg = sign == 1
    count = len(digits)
    first = 0
    while first < count and digits[first] == 0:
        first += 1
    if first == count:
        out[0] = NUM_ZERO
        return 1
    last = <int>count
    while digits[last - 1] == 0:
        last -= 1
    ndig = last - first
    exp = exponent + (count - last)
    if ndig > NUM_MAX_DIGITS:
        raise ValueError(_num_msg(
            what, f"number has {ndig} significant digits; DynamoDB allows at most 38"))
    for i in range(ndig):
        buf[i] = <char>(48 + <int>digits[first + i])
    return num_pack(out, neg, buf, ndig, exp, what)


cdef inline object num_decode(const uint8_t *p, size_t n, size_t *pos, object Decimal):
    """Decode a number body at p[pos]; advance pos. int when integral, else Decimal."""
    cdef size_t i = pos[0], j
    cdef uint8_t first, b
    cdef int pairs = 0, ndig, v
    cdef long exp
    cdef int64_t acc = 0
    # Fast path: a positive integer of at most 18 digits (counts, timestamps, scores)
    # straight from the digit pairs. Anything else, and every malformed body, takes
    # _num_decode_general, which decides and reports exactly as before.
    if i + 2 < n and p[i] == NUM_POS:
        j = i + 2
        while j < n and pairs < 9:
            b = p[j]
            v = b >> 1
            if v > 99:
                break
            acc = acc * 100 + v
            pairs += 1
            j += 1
            if (b & 1) == 0:
                first = p[i + 2] >> 1
                ndig = 2 * pairs
                if v % 10 == 0:             # odd digit count: the last pair is padded
                    acc //= 10
                    ndig -= 1
                    v //= 10
                if first < 10 or v % 10 == 0:
                    break                   # non-canonical: let the general path say so
                exp = <long>p[i + 1] + NUM_MIN_EXP - ndig + 1
                if exp < 0 or ndig + exp > 18:
                    break
                while exp > 0:
                    acc *= 10
                    exp -= 1
                pos[0] = j
                return PyLong_FromLongLong(acc)
    return _num_decode_general(p, n, pos, Decimal)


cdef inline object _num_decode_general(const uint8_t *p, size_t n, size_t *pos, object Decimal):
    cdef size_t i = pos[0]
    cdef uint8_t cls, b, flip
    cdef int neg, ndig = 0, v, last = 0, k
    cdef long sci, exp
    cdef char buf[200]
    cdef int64_t acc
    if i >= n:
        raise ValueError("truncated number")
    cls = p[i]
    i += 1
    if cls == NUM_ZERO:
        pos[0] = i
        return 0
    if cls != NUM_NEG and cls != NUM_POS:
        raise ValueError(f"bad number class byte 0x{cls:02x}")
    neg = cls == NUM_NEG
    flip = 255 if neg else 0
    if i >= n:
        raise ValueError("truncated number")
    sci = <long>(p[i] ^ flip) + NUM_MIN_EXP
    i += 1
    if sci > NUM_MAX_EXP:
        raise ValueError("number exponent out of range")
    k = 1 if neg else 0
    buf[0] = 45  # '-'
    while not last:
        if i >= n:
            raise ValueError("truncated number")
        b = p[i] ^ flip
        i += 1
        last = (b & 1) == 0
        v = b >> 1
        if v > 99 or ndig >= NUM_MAX_DIGITS:
            raise ValueError("malformed number digits")
        buf[k + ndig] = <char>(48 + v // 10)
        buf[k + ndig + 1] = <char>(48 + v % 10)
        ndig += 2
    if buf[k + ndig - 1] == 48:
        ndig -= 1
    if buf[k] == 48 or buf[k + ndig - 1] == 48:
        raise ValueError("non-canonical number digits")
    pos[0] = i
    exp = sci - ndig + 1          # value = digits x 10^exp
    if exp >= 0:
        if ndig + exp <= 18:
            acc = 0
            for v in range(ndig):
                acc = acc * 10 + (buf[k + v] - 48)
            for v in range(exp):
                acc *= 10
            return PyLong_FromLongLong(-acc if neg else acc)
        for v in range(exp):
            buf[k + ndig + v] = 48
        buf[k + ndig + exp] = 0
        return PyLong_FromString(buf, NULL, 10)
    return Decimal(f"{buf[:k + ndig].decode('ascii')}E{exp}")
