"""Pure-Python references of the native codecs, used only by tests for differential testing.

Each function here writes the byte format documented in the matching ``_native/*.pyx``
module docstring, as plainly as possible; production code never imports this file.
"""

from __future__ import annotations

import struct
from decimal import Decimal

# ---------------------------------------------------------------------------- CRC32C


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    c = crc ^ 0xFFFFFFFF
    for byte in data:
        c = _CRC_TABLE[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------- WAL framing


def frame_record(lsn: int, payload: bytes) -> bytes:
    head = struct.pack("<IQ", len(payload), lsn)
    return head + struct.pack("<I", crc32c(head + payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_ops(ops: list[tuple[int, bytes, bytes | None]]) -> bytes:
    out = bytearray(_varint(len(ops)))
    for opcode, key, value in ops:
        out.append(opcode)
        out += _varint(len(key)) + key
        if opcode == 1:
            out += _varint(len(value)) + value
    return bytes(out)


# ---------------------------------------------------------------------------- keys

TAG_B, TAG_N, TAG_S = 0x01, 0x02, 0x03


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff") + b"\x00\x01"


def _normalized_parts(d: Decimal) -> tuple[int, str, int]:
    """(sign, significant digits without leading/trailing zeros, exponent) of a non-zero d."""
    sign, digits, exponent = d.as_tuple()
    text = "".join(map(str, digits)).lstrip("0")
    stripped = text.rstrip("0")
    return sign, stripped, exponent + (len(text) - len(stripped))


def number_body(value: int | Decimal) -> bytes:
    """The decnum.pxd body of a number (no type tag)."""
    d = Decimal(value)
    if d == 0:
        return b"\x02"
    sign, stripped, exponent = _normalized_parts(d)
    sci = exponent + len(stripped) - 1
    assert len(stripped) <= 38 and -130 <= sci <= 125, value
    if len(stripped) % 2:
        stripped += "0"
    pairs = [int(stripped[i : i + 2]) for i in range(0, len(stripped), 2)]
    body = [sci + 130] + [2 * v + 1 for v in pairs[:-1]] + [2 * pairs[-1]]
    if sign:
        return b"\x01" + bytes(255 - b for b in body)
    return b"\x03" + bytes(body)


def encode_key(value, key_type: str) -> bytes:
    if key_type == "S":
        return bytes([TAG_S]) + _escape(value.encode("utf-8"))
    if key_type == "B":
        return bytes([TAG_B]) + _escape(bytes(value))
    return bytes([TAG_N]) + number_body(value)


def normalize_number(value: int | Decimal) -> int | Decimal:
    """What decoding returns: int when integral, else the normalized Decimal."""
    d = Decimal(value)
    if d == 0:
        return 0
    sign, digits, exponent = _normalized_parts(d)
    if exponent >= 0:
        return int(d)
    return Decimal((sign, tuple(int(c) for c in digits), exponent))


# ---------------------------------------------------------------------------- items

ITEM_VERSION = 0x02  # with checksums (engine._itemcodec)
LEGACY_ITEM_VERSION = 0x01
T_NULL, T_FALSE, T_TRUE, T_N, T_S, T_B, T_SS, T_NS, T_BS, T_L, T_M = range(11)


def _lp(raw: bytes) -> bytes:
    return _varint(len(raw)) + raw


def _map_body(mapping: dict) -> bytes:
    entries = sorted((name.encode("utf-8"), value) for name, value in mapping.items())
    return _varint(len(entries)) + b"".join(_lp(name) + encode_value(v) for name, v in entries)


def encode_value(value) -> bytes:
    if value is None:
        return bytes([T_NULL])
    if isinstance(value, bool):
        return bytes([T_TRUE if value else T_FALSE])
    if isinstance(value, (int, Decimal)):
        return bytes([T_N]) + number_body(value)
    if isinstance(value, str):
        return bytes([T_S]) + _lp(value.encode("utf-8"))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes([T_B]) + _lp(bytes(value))
    if isinstance(value, (list, tuple)):
        return bytes([T_L]) + _varint(len(value)) + b"".join(encode_value(v) for v in value)
    if isinstance(value, dict):
        return bytes([T_M]) + _map_body(value)
    if isinstance(value, (set, frozenset)):
        first = next(iter(value))
        if isinstance(first, str):
            tag, members = T_SS, [_lp(m.encode("utf-8")) for m in value]
        elif isinstance(first, (bytes, bytearray, memoryview)):
            tag, members = T_BS, [_lp(bytes(m)) for m in value]
        else:
            tag, members = T_NS, [number_body(m) for m in value]
        return bytes([tag]) + _varint(len(members)) + b"".join(sorted(members))
    raise TypeError(type(value).__name__)


def encode_item(item: dict, key: bytes = b"") -> bytes:
    """Version 2: the body, then CRC32C of it and CRC32C of it followed by ``key``."""
    body = bytes([ITEM_VERSION]) + _map_body(item)
    return body + struct.pack("<II", crc32c(body), crc32c(body + key))


def encode_legacy_item(item: dict) -> bytes:
    """Version 1, as written before item checksums (still read)."""
    return bytes([LEGACY_ITEM_VERSION]) + _map_body(item)


def item_body(value: bytes, key: bytes | None = None) -> bytes:
    """The checked body of a stored item (version byte included): the decoder of
    engine/backup/RESTORE_BY_HAND.md. ValueError for a value that fails a check."""
    if value[:1] == bytes([LEGACY_ITEM_VERSION]):
        return value  # written before checksums: nothing to check
    if value[:1] != bytes([ITEM_VERSION]) or len(value) < 10:
        raise ValueError("not a stored item")
    body, value_crc, keyed_crc = value[:-8], *struct.unpack("<II", value[-8:])
    if crc32c(body) != value_crc:
        raise ValueError("the item fails its checksum")
    if key is not None and crc32c(body + key) != keyed_crc:
        raise ValueError("the item was not stored under this key")
    return body
