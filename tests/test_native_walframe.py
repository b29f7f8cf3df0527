"""engine._walframe: CRC32C, record framing, tail classification, batch payloads (SPEC §4)."""

from __future__ import annotations

import struct

import crcmod.predefined
import google_crc32c
import pytest
import reference_codecs as ref
from hypothesis import given
from hypothesis import strategies as st

from engine import _walframe as wf

crcmod_crc32c = crcmod.predefined.mkCrcFun("crc-32c")

payloads = st.binary(max_size=64) | st.builds(lambda n: b"\x00" * n, st.integers(0, 40))
record_lists = st.lists(payloads, min_size=1, max_size=6)


def _framed(first_lsn: int, bodies: list[bytes]) -> tuple[list[tuple[int, bytes]], bytes]:
    records = [(first_lsn + i, body) for i, body in enumerate(bodies)]
    return records, wf.frame_records(records)


def _boundaries(records: list[tuple[int, bytes]]) -> list[int]:
    ends, pos = [], 0
    for _, body in records:
        pos += wf.HEADER_SIZE + len(body)
        ends.append(pos)
    return ends


@pytest.fixture(params=[True, False], ids=["hw", "table"])
def crc_impl(request):
    if request.param and not wf.HARDWARE_CRC:
        pytest.skip("CPU has no CRC32C instruction")
    wf._use_hardware_crc(request.param)
    yield request.param
    wf._use_hardware_crc(True)


# ---------------------------------------------------------------------------- CRC32C


@pytest.mark.parametrize(
    "data, expected",
    [(b"", 0), (b"123456789", 0xE3069283), (b"\x00" * 32, 0x8A9136AA), (b"\xff" * 32, 0x62A8AB43)],
)
def test_crc32c_known_vectors(crc_impl, data, expected):
    assert wf.crc32c(data) == expected


@given(data=st.binary(max_size=300), split=st.integers(0, 300), offset=st.integers(0, 7))
def test_crc32c_matches_references(data, split, offset):
    for hw in (False, True):
        wf._use_hardware_crc(hw)
        expected = crcmod_crc32c(data)
        assert wf.crc32c(data) == expected == google_crc32c.value(data)
        assert wf.crc32c(bytearray(data)) == expected
        # unaligned views exercise the head/tail loops
        assert wf.crc32c(memoryview(b"x" * offset + data)[offset:]) == expected
        split = min(split, len(data))
        assert wf.crc32c(data[split:], wf.crc32c(data[:split])) == expected
    wf._use_hardware_crc(True)


def test_crc32c_large_buffer_without_gil(crc_impl):
    data = bytes(range(256)) * 1024 + b"tail"  # above the 64 KiB no-GIL threshold
    assert wf.crc32c(data) == google_crc32c.value(data)
    assert wf.crc32c(memoryview(data)) == google_crc32c.value(data)


def test_crc32c_rejects_bad_input():
    with pytest.raises(TypeError):
        wf.crc32c("text")
    with pytest.raises((ValueError, OverflowError)):
        wf.crc32c(b"x", 1 << 32)


def test_pure_python_reference_agrees():
    assert ref.crc32c(b"123456789") == wf.crc32c(b"123456789")


# ---------------------------------------------------------------------------- framing


@given(lsn=st.integers(0, 2**64 - 1), body=st.binary(max_size=200))
def test_frame_record_layout(lsn, body):
    framed = wf.frame_record(lsn, body)
    assert framed == ref.frame_record(lsn, body)
    length, got_lsn, crc = struct.unpack_from("<IQI", framed)
    assert (length, got_lsn) == (len(body), lsn)
    assert crc == crcmod_crc32c(framed[:12] + body)
    assert wf.frame_record(lsn, bytearray(body)) == framed


@given(first=st.integers(0, 2**40), bodies=record_lists)
def test_frame_scan_round_trip(first, bodies):
    records, buf = _framed(first, bodies)
    assert buf == b"".join(wf.frame_record(lsn, body) for lsn, body in records)
    assert wf.scan_records(buf) == (records, len(buf), None)
    assert wf.scan_records(buf, expect_lsn=first) == (records, len(buf), None)
    assert wf.scan_records(bytearray(buf)) == (records, len(buf), None)
    assert wf.scan_records(memoryview(buf)) == (records, len(buf), None)
    # starting at any record boundary continues from there
    for i, end in enumerate(_boundaries(records)):
        assert wf.scan_records(buf, end) == (records[i + 1 :], len(buf), None)


def test_frame_rejects_bad_lsn():
    with pytest.raises((ValueError, OverflowError)):
        wf.frame_record(-1, b"x")
    with pytest.raises((ValueError, OverflowError)):
        wf.frame_record(2**64, b"x")
    with pytest.raises(TypeError):
        wf.frame_records([(1, b"x", b"y")])
    assert wf.frame_records([]) == b""


def test_empty_buffer_and_bad_start():
    assert wf.scan_records(b"") == ([], 0, None)
    with pytest.raises(ValueError, match="outside"):
        wf.scan_records(b"abc", 4)
    with pytest.raises(ValueError, match="outside"):
        wf.scan_records(b"abc", -1)


# ---------------------------------------------------------------------------- torn tails


@given(first=st.integers(0, 1000), bodies=record_lists)
def test_every_truncation_point_is_torn_not_corrupt(first, bodies):
    records, buf = _framed(first, bodies)
    ends = [0, *_boundaries(records)]
    for cut in range(len(buf) + 1):
        got, good_end, problem = wf.scan_records(buf[:cut])
        complete = sum(1 for end in ends[1:] if end <= cut)
        assert got == records[:complete], cut
        assert good_end == ends[complete], cut
        assert problem == (None if cut in ends else "torn"), cut


@given(
    first=st.integers(0, 1000),
    bodies=record_lists,
    cut_frac=st.floats(0, 1),
    extra=st.integers(0, 100),
)
def test_truncation_into_preallocated_zeros_is_torn(first, bodies, cut_frac, extra):
    """A partial append into a zero-filled (preallocated) file: prefix, then zeros."""
    records, buf = _framed(first, bodies)
    ends = [0, *_boundaries(records)]
    cut = int(cut_frac * len(buf))
    damaged = buf[:cut] + b"\x00" * (len(buf) - cut + extra)
    got, good_end, problem = wf.scan_records(damaged)
    complete = sum(1 for end in ends[1:] if end <= cut)
    # the zeros may happen to complete a record whose own tail was zeros
    assert problem in (None, "torn")
    assert len(got) >= complete and got == records[: len(got)]
    assert good_end == ends[len(got)]


@given(bodies=record_lists, zeros=st.integers(1, 64))
def test_zero_filled_tail_is_torn(bodies, zeros):
    records, buf = _framed(1, bodies)
    assert wf.scan_records(buf + b"\x00" * zeros) == (records, len(buf), "torn")


# ---------------------------------------------------------------------------- corruption


@given(
    first=st.integers(0, 1000),
    bodies=st.lists(payloads, min_size=2, max_size=5),
    xor=st.integers(1, 255),
)
def test_any_flipped_byte_before_the_last_record_is_corrupt(first, bodies, xor):
    records, buf = _framed(first, bodies)
    starts = [0, *_boundaries(records)][:-1]
    last_start = starts[-1]
    for pos in range(last_start):
        index = max(i for i, start in enumerate(starts) if start <= pos)
        damaged = bytearray(buf)
        damaged[pos] ^= xor
        got, good_end, problem = wf.scan_records(damaged)
        assert (problem, good_end) == ("corrupt", starts[index]), pos
        assert got == records[:index]
        # and with the usual 0xFF flip, which turns small lengths into huge ones
        damaged[pos] = buf[pos] ^ 0xFF
        assert wf.scan_records(damaged)[1:] == (starts[index], "corrupt"), pos


@given(
    bodies=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=4),
    xor=st.integers(1, 255),
)
def test_flipped_byte_in_last_record_is_never_accepted(bodies, xor):
    records, buf = _framed(7, bodies)
    last_start = len(buf) - wf.HEADER_SIZE - len(bodies[-1])
    for pos in range(last_start, len(buf)):
        damaged = bytearray(buf)
        damaged[pos] ^= xor
        got, good_end, problem = wf.scan_records(damaged)
        assert (got, good_end) == (records[:-1], last_start), pos
        assert problem in ("corrupt", "torn"), pos
        in_length = pos < last_start + 4
        grew = struct.unpack_from("<I", damaged, last_start)[0] > len(bodies[-1])
        # Only a zero final byte makes a damaged last record look like a torn append.
        if (not in_length and damaged[-1] != 0) or (in_length and grew):
            assert problem == "corrupt", pos


def test_lsn_must_increase_by_one():
    buf = wf.frame_record(5, b"a") + wf.frame_record(6, b"b") + wf.frame_record(8, b"c")
    records, good_end, problem = wf.scan_records(buf)
    assert records == [(5, b"a"), (6, b"b")]
    assert problem == "corrupt" and good_end == 2 * (wf.HEADER_SIZE + 1)
    buf = wf.frame_record(5, b"a") + wf.frame_record(5, b"a")
    assert wf.scan_records(buf)[2] == "corrupt"


def test_expect_lsn():
    buf = wf.frame_records([(10, b"a"), (11, b"b")])
    assert wf.scan_records(buf, expect_lsn=10) == ([(10, b"a"), (11, b"b")], len(buf), None)
    assert wf.scan_records(buf, expect_lsn=9) == ([], 0, "corrupt")
    assert wf.scan_records(buf, wf.HEADER_SIZE + 1, expect_lsn=11)[2] is None


def test_absurd_length_is_corrupt_even_past_the_end():
    header = struct.pack("<IQ", (1 << 30) + 1, 1)
    header += struct.pack("<I", wf.crc32c(header))
    good = wf.frame_record(1, b"ok")
    assert wf.scan_records(header + b"x" * 10) == ([], 0, "corrupt")
    assert wf.scan_records(good + header) == ([(1, b"ok")], len(good), "corrupt")


def test_short_header_tail_is_torn():
    good = wf.frame_record(1, b"ok")
    for n in range(1, wf.HEADER_SIZE):
        assert wf.scan_records(good + b"\x01" * n) == ([(1, b"ok")], len(good), "torn")


def test_garbage_after_a_bad_record_is_corrupt():
    good = wf.frame_record(1, b"ok")
    bad = bytearray(wf.frame_record(2, b"payload"))
    bad[-1] ^= 1
    assert wf.scan_records(good + bytes(bad) + b"junk")[1:] == (len(good), "corrupt")
    # a bad record followed only by zeros but ending in a non-zero byte cannot be a tear
    assert wf.scan_records(good + bytes(bad) + b"\x00" * 20)[1:] == (len(good), "corrupt")


# ---------------------------------------------------------------------------- batches

keys = st.binary(max_size=40)
ops_lists = st.lists(
    st.one_of(
        st.tuples(st.just(wf.OP_PUT), keys, st.binary(max_size=300)),
        st.tuples(st.just(wf.OP_DELETE), keys, st.none()),
    ),
    max_size=12,
)


@given(ops=ops_lists)
def test_ops_round_trip(ops):
    payload = wf.encode_ops(ops)
    assert payload == ref.encode_ops(ops)
    assert wf.decode_ops(payload) == ops
    assert wf.decode_ops(memoryview(payload)) == ops


@given(ops=ops_lists.filter(bool))
def test_truncated_ops_payload_raises(ops):
    payload = wf.encode_ops(ops)
    for cut in range(len(payload)):
        with pytest.raises(ValueError, match="malformed WAL batch"):
            wf.decode_ops(payload[:cut])
    with pytest.raises(ValueError, match="trailing"):
        wf.decode_ops(payload + b"\x00")


@given(data=st.binary(max_size=64))
def test_decode_ops_fuzz_only_raises_value_error(data):
    try:
        ops = wf.decode_ops(data)
    except ValueError:
        return
    assert wf.encode_ops(ops) == data


def test_encode_ops_rejects_bad_ops():
    with pytest.raises(ValueError, match="unknown opcode"):
        wf.encode_ops([(3, b"k", b"v")])
    with pytest.raises(ValueError, match="PUT needs a value"):
        wf.encode_ops([(wf.OP_PUT, b"k", None)])
    with pytest.raises(ValueError, match="DELETE takes no value"):
        wf.encode_ops([(wf.OP_DELETE, b"k", b"v")])
    with pytest.raises(TypeError):
        wf.encode_ops([(wf.OP_PUT, b"k")])
    with pytest.raises(ValueError, match="unknown opcode"):
        wf.decode_ops(b"\x01\x07\x00")


def test_batch_in_a_record_round_trip():
    ops = [(wf.OP_PUT, b"k1", b"v1"), (wf.OP_DELETE, b"k2", None)]
    buf = wf.frame_record(42, wf.encode_ops(ops))
    [(lsn, payload)], _, problem = wf.scan_records(buf)
    assert (lsn, problem, wf.decode_ops(payload)) == (42, None, ops)


def test_public_names():
    for name in (
        "crc32c",
        "frame_record",
        "frame_records",
        "scan_records",
        "encode_ops",
        "decode_ops",
        "HEADER_SIZE",
        "MAX_PAYLOAD",
        "OP_PUT",
        "OP_DELETE",
        "HARDWARE_CRC",
    ):
        assert hasattr(wf, name), name
    assert wf.HEADER_SIZE == 16 and wf.OP_PUT == 1 and wf.OP_DELETE == 2


def test_the_public_names_stay_put():
    # walframe.pyx is built from three parts (walframe_crc/records/ops.pxi); engine.wal,
    # engine.wal_tail and engine.partition import these names from the one module.
    assert {name for name in dir(wf) if not name.startswith("_")} == {
        "HARDWARE_CRC", "HEADER_SIZE", "MAX_PAYLOAD", "OP_DELETE", "OP_PUT", "crc32c",
        "decode_ops", "encode_ops", "frame_record", "frame_records", "scan_records",
    }
