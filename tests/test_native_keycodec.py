"""engine._keycodec: order-preserving key encodings, storage keys, the partition hash (SPEC §2-3)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import reference_codecs as ref
import xxhash
from hypothesis import assume, given
from hypothesis import strategies as st

from engine import _keycodec as kc

# ---------------------------------------------------------------------------- strategies


@st.composite
def numbers(draw):
    """Any DynamoDB number: int or Decimal, 1..38 significant digits, E in [-130, 125]."""
    kind = draw(st.sampled_from(["small", "int", "decimal", "decimal", "zero"]))
    if kind == "zero":
        return draw(
            st.sampled_from([0, Decimal(0), Decimal("-0"), Decimal("0E-10"), Decimal("0.000")])
        )
    if kind == "small":
        return draw(st.integers(-(2**64), 2**64))
    ndigits = draw(st.integers(1, 38))
    digits = draw(st.lists(st.integers(0, 9), min_size=ndigits, max_size=ndigits))
    digits[0] = draw(st.integers(1, 9))
    sci = draw(st.integers(-130, 125))
    exponent = sci - ndigits + 1
    sign = draw(st.integers(0, 1))
    # extra trailing zeros must not change the encoding
    pad = draw(st.integers(0, 3))
    value = Decimal((sign, tuple(digits) + (0,) * pad, exponent - pad))
    if kind == "int" and value == value.to_integral_value():
        return int(value)
    return value


valid_strings = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
blobs = st.binary(min_size=1, max_size=30) | st.builds(
    lambda n, tail: b"\x00" * n + tail, st.integers(1, 4), st.binary(max_size=3)
)


def typed_values(key_type):
    return {"N": numbers(), "S": valid_strings, "B": blobs}[key_type]


def _cmp(a, b) -> int:
    return (a > b) - (a < b)


def _order_key(value, key_type):
    if key_type == "S":
        return value.encode("utf-8")
    if key_type == "B":
        return bytes(value)
    return Decimal(value)


key_types = st.sampled_from(["N", "S", "B"])


@st.composite
def same_type_pairs(draw):
    key_type = draw(key_types)
    return key_type, draw(typed_values(key_type)), draw(typed_values(key_type))


# ---------------------------------------------------------------------------- order


@given(pair=same_type_pairs())
def test_encoding_order_matches_dynamodb_order(pair):
    key_type, a, b = pair
    ea, eb = kc.encode_key(a, key_type), kc.encode_key(b, key_type)
    assert _cmp(ea, eb) == _cmp(_order_key(a, key_type), _order_key(b, key_type))


@given(a=numbers(), b=numbers())
def test_number_order_over_full_range(a, b):
    assert _cmp(kc.encode_key(a, "N"), kc.encode_key(b, "N")) == _cmp(Decimal(a), Decimal(b))


@given(pair=same_type_pairs(), s1=st.binary(max_size=6), s2=st.binary(max_size=6))
def test_self_delimiting(pair, s1, s2):
    key_type, a, b = pair
    ka, kb = _order_key(a, key_type), _order_key(b, key_type)
    assume(ka != kb)
    ea, eb = kc.encode_key(a, key_type) + s1, kc.encode_key(b, key_type) + s2
    assert _cmp(ea, eb) == _cmp(ka, kb)


@given(key_type=key_types, data=st.data())
def test_no_encoding_is_a_prefix_of_another(key_type, data):
    a = data.draw(typed_values(key_type))
    b = data.draw(typed_values(key_type))
    ea, eb = kc.encode_key(a, key_type), kc.encode_key(b, key_type)
    if ea != eb:
        assert not eb.startswith(ea) and not ea.startswith(eb)


# ---------------------------------------------------------------------------- round trip


@given(value=numbers())
def test_number_round_trip_and_normal_form(value):
    enc = kc.encode_key(value, "N")
    assert enc == ref.encode_key(value, "N")
    decoded, key_type, end = kc.decode_key(enc)
    assert (key_type, end) == ("N", len(enc))
    assert decoded == value
    expected = ref.normalize_number(value)
    assert type(decoded) is type(expected)
    if isinstance(decoded, Decimal):
        assert decoded.as_tuple() == expected.as_tuple()  # normalized, exact
    assert kc.encode_key(decoded, "N") == enc


@given(value=valid_strings)
def test_string_round_trip(value):
    enc = kc.encode_key(value, "S")
    assert enc == ref.encode_key(value, "S")
    assert kc.decode_key(enc) == (value, "S", len(enc))


@given(value=blobs)
def test_binary_round_trip(value):
    enc = kc.encode_key(value, "B")
    assert enc == ref.encode_key(value, "B")
    assert kc.encode_key(bytearray(value), "B") == enc
    assert kc.encode_key(memoryview(value), "B") == enc
    assert kc.decode_key(enc) == (value, "B", len(enc))


@given(pair=same_type_pairs(), prefix=st.binary(max_size=5))
def test_decode_at_offset(pair, prefix):
    key_type, a, b = pair
    data = prefix + kc.encode_key(a, key_type) + kc.encode_key(b, key_type)
    va, ta, mid = kc.decode_key(data, len(prefix))
    vb, tb, end = kc.decode_key(data, mid)
    assert (ta, tb, end) == (key_type, key_type, len(data))
    assert _order_key(va, key_type) == _order_key(a, key_type)
    assert _order_key(vb, key_type) == _order_key(b, key_type)


@pytest.mark.parametrize(
    "values",
    [
        [1, Decimal("1"), Decimal("1.0"), Decimal("1.00"), Decimal("1E0"), Decimal("0.1E1")],
        [100, Decimal("1E2"), Decimal("100.000"), Decimal("10E1")],
        [0, Decimal("0"), Decimal("-0"), Decimal("0E+5"), Decimal("0.000")],
        [Decimal("-2.5"), Decimal("-2.50"), Decimal("-25E-1")],
    ],
)
def test_normalization(values):
    assert len({kc.encode_key(v, "N") for v in values}) == 1


def test_number_decodes_to_int_or_normalized_decimal():
    assert (
        kc.decode_key(kc.encode_key(Decimal("12.500"), "N"))[0].as_tuple()
        == Decimal("12.5").as_tuple()
    )
    assert type(kc.decode_key(kc.encode_key(Decimal("1E+20"), "N"))[0]) is int
    assert kc.decode_key(kc.encode_key(Decimal("-1E+125"), "N"))[0] == -(10**125)
    assert kc.decode_key(kc.encode_key(2**63, "N"))[0] == 2**63
    assert kc.decode_key(kc.encode_key(-(2**63), "N"))[0] == -(2**63)


def test_extremes_order():
    ordered = [
        Decimal("-9.9999999999999999999999999999999999999E+125"),
        -(10**125),
        -1,
        Decimal("-1E-130"),
        0,
        Decimal("1E-130"),
        Decimal("1.0000000000000000000000000000000000001"),
        10**125,
        Decimal("9.9999999999999999999999999999999999999E+125"),
    ]
    encoded = [kc.encode_key(v, "N") for v in ordered]
    assert encoded == sorted(encoded) and len(set(encoded)) == len(encoded)


def test_strings_order_by_utf8_not_code_points():
    # U+FF61 sorts before U+10000 as UTF-16 would say otherwise; DynamoDB uses UTF-8 bytes.
    a, b = "\uff61", "\U00010000"
    assert (kc.encode_key(a, "S") < kc.encode_key(b, "S")) == (a.encode() < b.encode())
    assert kc.encode_key("ab", "S") + b"\xff" < kc.encode_key("ab\x00", "S")


# ---------------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    "value, key_type, error, match",
    [
        (Decimal("NaN"), "N", ValueError, "NaN"),
        (Decimal("sNaN"), "N", ValueError, "NaN"),
        (Decimal("Infinity"), "N", ValueError, "Infinity"),
        (Decimal("-Infinity"), "N", ValueError, "Infinity"),
        (int("1" * 39), "N", ValueError, "39 significant digits"),
        (Decimal("1." + "1" * 38), "N", ValueError, "39 significant digits"),
        (10**126, "N", ValueError, "out of range"),
        (Decimal("1E+126"), "N", ValueError, "out of range"),
        (Decimal("1E-131"), "N", ValueError, "out of range"),
        (Decimal("-1E-131"), "N", ValueError, "out of range"),
        (10**1000, "N", ValueError, "out of range"),
        (1.5, "N", TypeError, "float"),
        (True, "N", TypeError, "bool"),
        ("1", "N", TypeError, "str"),
        ("", "S", ValueError, "empty"),
        (b"", "B", ValueError, "empty"),
        (bytearray(), "B", ValueError, "empty"),
        ("x" * 2049, "S", ValueError, "2049 bytes"),
        ("\u00e9" * 1025, "S", ValueError, "2050 bytes"),
        (b"x" * 2049, "B", ValueError, "2049 bytes"),
        (b"x", "S", TypeError, "must be str"),
        ("x", "B", TypeError, "must be bytes"),
        ("x", "Q", ValueError, "key type"),
        ("\ud800", "S", ValueError, "surrogate"),
    ],
)
def test_rejections(value, key_type, error, match):
    with pytest.raises(error, match=match):
        kc.encode_key(value, key_type)


def test_limits_are_inclusive_and_max_len_is_a_parameter():
    assert kc.decode_key(kc.encode_key("x" * 2048, "S"))[0] == "x" * 2048
    assert kc.encode_key(Decimal("9.9999999999999999999999999999999999999E+125"), "N")
    assert kc.encode_key(Decimal("-1E-130"), "N")
    assert kc.encode_key(int("9" * 38), "N")
    kc.encode_key("y" * 1024, "S", max_len=1024)
    with pytest.raises(ValueError, match="1025 bytes in UTF-8; the limit is 1024"):
        kc.encode_key("y" * 1025, "S", max_len=1024)


@given(data=st.binary(max_size=24))
def test_decoding_garbage_raises_value_error_only(data):
    try:
        value, key_type, end = kc.decode_key(data)
    except ValueError:
        return
    assert kc.encode_key(value, key_type, max_len=1 << 20) == data[:end]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x09",
        b"\x03ab",
        b"\x03a\x00",
        b"\x03a\x00\x02",
        b"\x02",
        b"\x02\x04",
        b"\x02\x03\x82",
        b"\x02\x03\x82\x01",
        b"\x02\x03\x82\x00",
        b"\x02\x03\x82\xfa",
        b"\x03\xff\x00\x01",
    ],
)
def test_malformed_keys(data):
    with pytest.raises(ValueError):
        kc.decode_key(data)


# ---------------------------------------------------------------------------- hash


@given(data=st.binary(max_size=200))
def test_hash64_is_xxh64_seed_0(data):
    assert kc.hash64(data) == xxhash.xxh64_intdigest(data, seed=0)
    assert kc.hash64(bytearray(data)) == kc.hash64(memoryview(data)) == kc.hash64(data)


def test_hash64_is_stable():
    # Pinned: the partition hash is part of the on-disk and backup format.
    assert kc.hash64(b"") == 0xEF46DB3751D8E999
    assert kc.hash64(b"abc") == 0x44BC2CF5AD770999


# ---------------------------------------------------------------------------- storage keys


@st.composite
def key_parts(draw):
    pk_type = draw(key_types)
    sk_type = draw(st.none() | key_types)
    pk = draw(typed_values(pk_type))
    sk = None if sk_type is None else draw(typed_values(sk_type))
    return pk_type, sk_type, pk, sk


@given(parts=key_parts(), hashed=st.booleans())
def test_storage_key_layout_and_split(parts, hashed):
    pk_type, sk_type, pk, sk = parts
    key = kc.storage_key(hashed, pk, pk_type, sk, sk_type)
    enc_pk = kc.encode_key(pk, pk_type)
    enc_sk = b"" if sk is None else kc.encode_key(sk, sk_type, max_len=1024)
    if hashed:
        prefix = kc.hash64(enc_pk).to_bytes(8, "big")
        assert prefix == kc.hash_prefix_of(pk, pk_type)
        assert key == prefix + enc_pk + enc_sk
    else:
        assert key == enc_pk + enc_sk
    got_pk, got_sk = kc.split_storage_key(key, hashed)
    assert _order_key(got_pk, pk_type) == _order_key(pk, pk_type)
    if sk is None:
        assert got_sk is None
    else:
        assert _order_key(got_sk, sk_type) == _order_key(sk, sk_type)


@given(
    pk_type=key_types,
    sk_type=key_types,
    data=st.data(),
)
def test_range_storage_keys_order_by_pk_then_sk(pk_type, sk_type, data):
    a = (data.draw(typed_values(pk_type)), data.draw(typed_values(sk_type)))
    b = (data.draw(typed_values(pk_type)), data.draw(typed_values(sk_type)))
    ka = kc.storage_key(False, a[0], pk_type, a[1], sk_type)
    kb = kc.storage_key(False, b[0], pk_type, b[1], sk_type)
    order_a = (_order_key(a[0], pk_type), _order_key(a[1], sk_type))
    order_b = (_order_key(b[0], pk_type), _order_key(b[1], sk_type))
    assert _cmp(ka, kb) == _cmp(order_a, order_b)
    # every item of a partition key lies under its prefix
    assert ka.startswith(kc.storage_key(False, a[0], pk_type))


def test_sort_key_limit_is_1024():
    kc.storage_key(False, "p", "S", "s" * 1024, "S")
    with pytest.raises(ValueError, match="limit is 1024"):
        kc.storage_key(False, "p", "S", "s" * 1025, "S")
    with pytest.raises(ValueError, match="limit is 2048"):
        kc.storage_key(True, "p" * 2049, "S")
    with pytest.raises(ValueError, match="without its sort key type"):
        kc.storage_key(True, "p", "S", 1, None)


def test_split_rejects_damaged_keys():
    key = kc.storage_key(True, "user", "S", 7, "N")
    with pytest.raises(ValueError, match="hash prefix"):
        kc.split_storage_key(b"\x00" + key[1:], True)
    with pytest.raises(ValueError, match="trailing"):
        kc.split_storage_key(key + b"\x02\x02", True)
    with pytest.raises(ValueError, match="too short"):
        kc.split_storage_key(key[:5], True)


@given(value=valid_strings, cut=st.integers(0, 30), rest=valid_strings)
def test_encode_key_prefix_brackets_begins_with(value, cut, rest):
    prefix = value[:cut]
    p = kc.encode_key_prefix(prefix, "S")
    assert kc.encode_key(value, "S").startswith(p) == value.startswith(prefix)
    assert kc.encode_key(prefix + rest, "S").startswith(p)
    assert kc.encode_key_prefix(prefix.encode(), "B") == b"\x01" + p[1:]
    with pytest.raises(ValueError, match="S and B only"):
        kc.encode_key_prefix(1, "N")


def test_public_names():
    for name in (
        "encode_key",
        "decode_key",
        "encode_key_prefix",
        "hash64",
        "storage_key",
        "split_storage_key",
        "hash_prefix_of",
    ):
        assert callable(getattr(kc, name)), name


@pytest.mark.parametrize("hashed", [True, False])
def test_storage_key_at_the_worst_case_length(hashed):
    # Every byte escaped, both parts at their limits: the longest storage key there is,
    # built in place (one buffer, no intermediate bytes).
    pk, sk = b"\x00" * 2048, b"\x00" * 1024
    key = kc.storage_key(hashed, pk, "B", sk, "B")
    enc_pk, enc_sk = ref.encode_key(pk, "B"), ref.encode_key(sk, "B")
    prefix = kc.hash64(enc_pk).to_bytes(8, "big") if hashed else b""
    assert key == prefix + enc_pk + enc_sk
    assert len(key) == len(prefix) + (3 + 2 * 2048) + (3 + 2 * 1024)
    assert kc.split_storage_key(key, hashed) == (pk, sk)
