"""engine._itemcodec: items to deterministic bytes and back (SPEC §2)."""

from __future__ import annotations

import random
import sys
from decimal import Decimal

import pytest
import reference_codecs as ref
from hypothesis import given
from hypothesis import strategies as st

from engine import _itemcodec as ic
from engine.errors import CorruptionError

# ---------------------------------------------------------------------------- strategies


@st.composite
def numbers(draw):
    if draw(st.booleans()):
        return draw(st.integers(-(2**70), 2**70))
    ndigits = draw(st.integers(1, 38))
    digits = [draw(st.integers(1, 9))] + draw(
        st.lists(st.integers(0, 9), min_size=ndigits - 1, max_size=ndigits - 1)
    )
    sci = draw(st.integers(-130, 125))
    return Decimal((draw(st.integers(0, 1)), tuple(digits), sci - ndigits + 1))


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
scalars = st.one_of(
    texts,
    numbers(),
    st.binary(max_size=20),
    st.booleans(),
    st.none(),
    st.sets(texts, min_size=1, max_size=5),
    st.sets(numbers(), min_size=1, max_size=5),
    st.sets(st.binary(max_size=8), min_size=1, max_size=5),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(names, children, max_size=4),
    max_leaves=12,
)
items = st.dictionaries(names, values, max_size=8)


def normalized(value):
    """What decode_item returns for ``value``."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, Decimal)):
        return ref.normalize_number(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return [normalized(v) for v in value]
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return {normalized(v) for v in value}
    return value


def assert_same(got, expected, path="item"):
    """Equality that also checks types (int vs Decimal vs bool, list vs tuple)."""
    assert type(got) is type(expected), (path, got, expected)
    if isinstance(got, dict):
        assert list(sorted(got)) == list(sorted(expected)), path
        for k in got:
            assert_same(got[k], expected[k], f"{path}.{k}")
    elif isinstance(got, list):
        assert len(got) == len(expected), path
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(got, Decimal):
        assert got.as_tuple() == expected.as_tuple(), path
    else:
        assert got == expected, path


def shuffled(value, rng):
    """The same value with every dict rebuilt in a random insertion order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


# ---------------------------------------------------------------------------- round trip


@given(item=items)
def test_round_trip(item):
    encoded = ic.encode_item(item)
    assert_same(ic.decode_item(encoded), normalized(item))
    assert ic.decode_item(memoryview(encoded)) == item
    assert ic.decode_item(bytearray(encoded)) == item


@given(item=items, key=st.binary(max_size=40))
def test_matches_reference_encoder(item, key):
    assert ic.encode_item(item, key) == ref.encode_item(item, key)
    assert ic.encode_item(item) == ref.encode_item(item)


@given(item=items, seed=st.integers(0, 2**32))
def test_encoding_is_deterministic(item, seed):
    encoded = ic.encode_item(item)
    assert ic.encode_item(shuffled(item, random.Random(seed))) == encoded
    # decoding and re-encoding is a fixed point
    assert ic.encode_item(ic.decode_item(encoded)) == encoded


@given(item=items, data=st.data())
def test_projection(item, data):
    wanted = data.draw(st.sets(st.sampled_from(sorted(item)) | names) if item else st.sets(names))
    encoded = ic.encode_item(item)
    expected = {k: v for k, v in item.items() if k in wanted}
    assert ic.decode_item(encoded, wanted) == expected
    assert ic.decode_item(encoded, frozenset(wanted)) == expected
    assert ic.decode_item(encoded, list(wanted)) == expected


def test_all_types_decode_to_the_documented_python_types():
    item = {
        "s": "text",
        "e": "",
        "n_int": Decimal("42.000"),
        "n_dec": Decimal("-1.50"),
        "big": 10**125,
        "b": bytearray(b"\x00\x01"),
        "mv": memoryview(b"abc"),
        "t": True,
        "f": False,
        "null": None,
        "ss": frozenset({"a", "b"}),
        "ns": {1, Decimal("2.5"), -3},
        "bs": {b"x", b""},
        "l": (1, "two", [3]),
        "m": {"z": {"y": {}}},
    }
    got = ic.decode_item(ic.encode_item(item))
    assert got["n_int"] == 42 and type(got["n_int"]) is int
    assert got["n_dec"].as_tuple() == Decimal("-1.5").as_tuple()
    assert type(got["b"]) is bytes and got["mv"] == b"abc"
    assert got["t"] is True and got["f"] is False and got["null"] is None
    assert type(got["ss"]) is set and got["ss"] == {"a", "b"}
    assert got["ns"] == {1, Decimal("2.5"), -3}
    assert got["l"] == [1, "two", [3]] and got["m"] == {"z": {"y": {}}}
    assert got["big"] == 10**125 and got["e"] == ""


def test_bool_is_not_a_number():
    encoded = ic.encode_item({"a": True, "b": 1})
    got = ic.decode_item(encoded)
    assert got["a"] is True and type(got["b"]) is int


def test_equal_numbers_encode_identically():
    forms = [1, Decimal("1"), Decimal("1.0"), Decimal("1E0"), Decimal("0.01E2")]
    assert len({ic.encode_item({"n": v}) for v in forms}) == 1
    assert len({ic.encode_item({"ns": {v, 2}}) for v in forms}) == 1


def test_nesting_limit_is_32():
    value = 1
    for _ in range(32):
        value = [value]
    assert ic.decode_item(ic.encode_item({"a": value})) == {"a": value}
    nested = {"k": 1}
    for _ in range(31):
        nested = {"k": nested}
    assert ic.decode_item(ic.encode_item({"a": nested})) == {"a": nested}
    with pytest.raises(ValueError, match=r"attribute 'a'(\[0\]){32}: nesting deeper than 32"):
        ic.encode_item({"a": [value]})
    with pytest.raises(ValueError, match="nesting deeper than 32"):
        ic.encode_item({"a": {"k": nested}})
    # hand-made bytes 33 lists deep are refused by the decoder too
    crafted = bytes([1, 1, 1]) + b"a" + bytes([ref.T_L, 1]) * 33 + bytes([ref.T_NULL])
    with pytest.raises(CorruptionError, match="nesting deeper than 32"):
        ic.decode_item(crafted)


# ---------------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    "item, error, match",
    [
        ({"tags": [1, 2, 1.5]}, TypeError, r"attribute 'tags'\[2\]: unsupported type float"),
        ({"price": 1.5}, TypeError, r"attribute 'price': .*float"),
        (
            {"a": {"b": [{"c": object()}]}},
            TypeError,
            r"attribute 'a'\.'b'\[0\]\.'c': unsupported type object",
        ),
        ({"": 1}, ValueError, "item: empty attribute name"),
        ({"m": {"": 1}}, ValueError, "attribute 'm': empty attribute name"),
        ({"m": {1: 1}}, TypeError, "attribute 'm': attribute names must be str, got int"),
        ({"n": Decimal("NaN")}, ValueError, "attribute 'n': NaN"),
        ({"n": Decimal("-Infinity")}, ValueError, "attribute 'n': -Infinity"),
        ({"n": int("9" * 39)}, ValueError, "attribute 'n': number has 39 significant digits"),
        ({"n": Decimal("1E+126")}, ValueError, "attribute 'n': .*out of range"),
        ({"n": Decimal("1E-131")}, ValueError, "attribute 'n': .*out of range"),
        ({"l": [[Decimal("1E-200")]]}, ValueError, r"attribute 'l'\[0\]\[0\]: .*out of range"),
        ({"s": set()}, ValueError, "attribute 's': empty sets are not allowed"),
        ({"s": frozenset()}, ValueError, "attribute 's': empty sets are not allowed"),
        ({"s": {"a", 1}}, TypeError, "attribute 's': "),
        ({"s": {2, True}}, TypeError, r"attribute 's': .*bool"),
        ({"s": {1.5}}, TypeError, "attribute 's': unsupported set member type float"),
        ({"s": {(1, 2)}}, TypeError, "attribute 's': unsupported set member type tuple"),
        ({"s": {1, Decimal("NaN")}}, ValueError, "attribute 's': NaN"),
        ({"x": "\ud800"}, ValueError, "attribute 'x': .*surrogate"),
    ],
)
def test_rejections_name_the_path(item, error, match):
    with pytest.raises(error, match=match):
        ic.encode_item(item)


def test_not_a_dict():
    with pytest.raises(TypeError, match="must be a dict"):
        ic.encode_item([("a", 1)])


@given(item=st.dictionaries(names, values, min_size=1, max_size=3))
def test_truncation_and_trailing_bytes_raise(item):
    encoded = ic.encode_item(item, b"k")
    for cut in range(len(encoded)):
        with pytest.raises(CorruptionError, match="stored item under key 0x6b"):
            ic.decode_item(encoded[:cut], key=b"k")
    with pytest.raises(CorruptionError, match="checksum"):
        ic.decode_item(encoded + b"\x00", key=b"k")
    legacy = ref.encode_legacy_item(item)
    for cut in range(1, len(legacy)):
        with pytest.raises(CorruptionError, match="malformed item"):
            ic.decode_item(legacy[:cut])
    with pytest.raises(CorruptionError, match="trailing"):
        ic.decode_item(legacy + b"\x00")


@given(data=st.binary(max_size=40), version=st.sampled_from([b"\x01", b"\x02", b""]))
def test_decoding_garbage_raises_corruption_error_only(data, version):
    try:
        item = ic.decode_item(version + data)
    except CorruptionError:
        return
    assert isinstance(item, dict)


def test_unknown_format_version():
    with pytest.raises(CorruptionError, match="unknown format version byte 0x03"):
        ic.decode_item(b"\x03\x00")
    with pytest.raises(CorruptionError, match="empty"):
        ic.decode_item(b"")
    with pytest.raises(CorruptionError, match="too short"):
        ic.decode_item(b"\x02\x00")


def test_public_names():
    assert callable(ic.encode_item) and callable(ic.decode_item) and callable(ic.check_item)
    assert ic.FORMAT_VERSION == 2 and ic.LEGACY_FORMAT_VERSION == 1 and ic.MAX_DEPTH == 32
    assert ic.TRAILER_BYTES == 8


# ---------------------------------------------------------------------------- checksums
# Version 2 carries CRC32C(body) and CRC32C(body | key): every damaged byte of the value,
# and a value read under another key, is a CorruptionError naming the key; version-1 items
# (written before checksums) still decode.

keys = st.binary(min_size=1, max_size=40)


@given(item=items, key=keys)
def test_keyed_round_trip(item, key):
    encoded = ic.encode_item(item, key)
    assert len(encoded) == len(ref.encode_legacy_item(item)) + ic.TRAILER_BYTES
    assert ic.decode_item(encoded, key=key) == item
    assert ic.decode_item(encoded) == item  # the value's own checksum only
    assert ic.decode_items(iter([encoded, encoded]), 5) == [item, item]
    assert ic.check_item(key, encoded) == 2
    assert ref.item_body(encoded, key) == encoded[:-8]


@given(item=items, key=keys, data=st.data())
def test_every_flipped_byte_is_corruption(item, key, data):
    encoded = bytearray(ic.encode_item(item, key))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(CorruptionError, match="stored item"):
        ic.decode_item(bytes(encoded), key=key)
    with pytest.raises(CorruptionError):
        ic.check_item(key, bytes(encoded))
    # Without the key only the last 4 bytes (the key binding) go unchecked: a flip there
    # leaves the value intact, so it may decode, but only to the true item.
    for decode in (lambda raw: ic.decode_item(raw), lambda raw: ic.decode_items(iter([raw]), 1)[0]):
        if position < len(encoded) - 4:
            with pytest.raises(CorruptionError, match="stored item"):
                decode(bytes(encoded))
        else:
            assert decode(bytes(encoded)) == item


@given(item=items, key=keys, data=st.data())
def test_a_value_under_another_key_is_corruption(item, key, data):
    encoded = ic.encode_item(item, key)
    other = bytearray(key)
    other[data.draw(st.integers(0, len(key) - 1))] ^= data.draw(st.integers(1, 255))
    with pytest.raises(CorruptionError, match=f"under key 0x{bytes(other).hex()}.*not stored"):
        ic.decode_item(encoded, key=bytes(other))
    with pytest.raises(CorruptionError, match="not stored under this key"):
        ic.check_item(bytes(other), encoded)


@given(item=items)
def test_a_version_byte_flipped_to_legacy_is_corruption(item):
    encoded = ic.encode_item(item, b"k")
    with pytest.raises(CorruptionError, match="8 trailing bytes"):
        ic.decode_item(b"\x01" + encoded[1:], key=b"k")


@given(item=items, key=keys)
def test_legacy_items_still_decode(item, key):
    legacy = ref.encode_legacy_item(item)
    assert ic.decode_item(legacy, key=key) == item
    assert ic.decode_item(legacy) == item
    assert ic.decode_items(iter([legacy]), 1) == [item]
    assert ic.check_item(key, legacy) == 1
    assert ref.item_body(legacy, key) == legacy
    # rewritten, it becomes version 2
    assert ic.encode_item(ic.decode_item(legacy, key=key), key)[0] == ic.FORMAT_VERSION


def test_the_error_names_a_long_key_shortened():
    key = bytes(range(100))
    encoded = bytearray(ic.encode_item({"a": 1}, key))
    encoded[2] ^= 0xFF
    with pytest.raises(CorruptionError) as caught:
        ic.decode_item(bytes(encoded), key=key)
    assert f"under key 0x{key[:64].hex()}... (100 bytes)" in str(caught.value)
    assert caught.value.partition is None and caught.value.path is None


# ---------------------------------------------------------------------------- name caches
# Decoding keeps attribute names in two caches (by top-level position, and by hash) and
# compares a name against a cached one a word at a time. Items of changing shapes, names
# that differ only in their last byte (inside and past the first 8), names at the very end
# of an item (fewer than 8 bytes left to read) and names the caches do not keep (non-ASCII,
# over 64 bytes) must all decode exactly.

CACHE_NAMES = [
    "a", "b", "ab", "abcdefg", "abcdefgh", "abcdefgi", "abcdefghi", "abcdefghj",
    "abcdefghijklmnop", "abcdefghijklmnoq", "x" * 64, "x" * 65, "y" * 300, "é", "nämé", "ñ" * 9,
]


@given(st.lists(st.dictionaries(st.sampled_from(CACHE_NAMES),
                                st.one_of(st.none(), st.booleans(), st.integers(), texts),
                                max_size=8),
                min_size=1, max_size=30))
def test_names_decode_exactly_whatever_the_caches_hold(items_in_order):
    for item in items_in_order:
        raw = ic.encode_item(item)
        assert ic.decode_item(raw) == normalized(item)
        nested = {"m": item, "l": [item]}
        assert ic.decode_item(ic.encode_item(nested)) == normalized(nested)


def test_decoded_names_are_interned():
    item = ic.decode_item(ic.encode_item({"attribute_name": 1, "other": 2}))
    assert [name is sys.intern(name) for name in item] == [True, True]


# ---------------------------------------------------------------------------- numbers
# Positive integers of up to 18 digits decode on a fast path straight from the digit
# pairs; everything else (and every malformed body) on the general one.

@pytest.mark.parametrize("value", [
    0, 1, 9, 10, 11, 99, 100, 101, 120, 1000, 10**9, 123 * 10**15, 10**17, 10**18 - 1,
    10**18, 10**18 + 1, 10**19, 10**38 - 1, -1, -(10**18), Decimal("1.5"), Decimal("1E+20"),
])
def test_number_decoding_at_the_fast_path_edges(value):
    assert ic.decode_item(ic.encode_item({"n": value})) == {"n": value}


@given(body=st.binary(min_size=1, max_size=24))
def test_any_number_body_decodes_canonically_or_raises_value_error(body):
    # item := version | 1 attribute | name "n" | tag N | body
    raw = bytes([1, 1, 1, ord("n"), 0x03]) + body
    try:
        value = ic.decode_item(raw)["n"]
    except CorruptionError:
        return
    assert ref.number_body(value) == body


@given(st.integers(1, 10**18), st.integers(0, 20))
def test_integers_with_trailing_zeros(value, zeros):
    assert ic.decode_item(ic.encode_item({"n": value * 10**zeros})) == {"n": value * 10**zeros}


# ---------------------------------------------------------------------------- by hand
# engine/backup/RESTORE_BY_HAND.md gives a pure-Python decoder for stored items: it must
# decode what the codec writes, versions 1 and 2, and refuse what fails a checksum.

def restore_by_hand_decoder():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "engine/backup/RESTORE_BY_HAND.md").read_text()
    (block,) = [part.split("```", 1)[0] for part in text.split("```python\n")[1:]
                if "def decode_stored_item" in part]
    namespace: dict = {}
    exec(compile(block, "RESTORE_BY_HAND.md", "exec"), namespace)
    return namespace["decode_stored_item"]


_by_hand = restore_by_hand_decoder()


@given(item=items, key=keys)
def test_the_restore_by_hand_decoder_agrees(item, key):
    assert _by_hand(ic.encode_item(item, key), key) == ic.decode_item(ic.encode_item(item, key))
    assert _by_hand(ref.encode_legacy_item(item), key) == item
    damaged = bytearray(ic.encode_item(item, key))
    damaged[len(damaged) // 2] ^= 0x10
    with pytest.raises(ValueError, match="checksum"):
        _by_hand(bytes(damaged), key)
