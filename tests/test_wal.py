"""The write-ahead log: recovery, torn tails, corruption, rollover, retention, catch-up reads."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import CorruptionError, ValidationException
from engine.wal import WriteAheadLog


def open_wal(directory, applied=0, **options):
    wal = WriteAheadLog(directory, partition_name="t/p0000", **options)
    replayed = list(wal.recover(applied))
    return wal, replayed


@pytest.mark.parametrize("sync", ["always", "batch", "none"])
def test_records_survive_reopen(tmp_path, sync):
    wal, replayed = open_wal(tmp_path, sync=sync)
    assert replayed == []
    for n in range(1, 51):
        lsn = wal.append(f"record {n}".encode())
        wal.wait_durable(lsn)
        assert lsn == n
    wal.close()
    wal, replayed = open_wal(tmp_path, sync=sync)
    assert [lsn for lsn, _ in replayed] == list(range(1, 51))
    assert replayed[9][1] == b"record 10"
    assert wal.append(b"next") == 51
    wal.close()


def test_replay_starts_above_applied_lsn(tmp_path):
    wal, _ = open_wal(tmp_path)
    for n in range(10):
        wal.append(bytes([n]))
    wal.close()
    _, replayed = open_wal(tmp_path, applied=7)
    assert [lsn for lsn, _ in replayed] == [8, 9, 10]


def test_torn_tail_is_cut_and_earlier_records_kept(tmp_path):
    wal, _ = open_wal(tmp_path)
    for _n in range(5):
        wal.append(b"x" * 100)
    wal.close()
    (segment,) = sorted(tmp_path.glob("*.wal"))
    size = segment.stat().st_size
    with open(segment, "r+b") as handle:
        handle.truncate(size - 37)  # cut inside the last record
    wal, replayed = open_wal(tmp_path)
    assert [lsn for lsn, _ in replayed] == [1, 2, 3, 4]
    assert segment.stat().st_size == size - 116  # the torn record is gone from disk
    assert wal.append(b"after") == 5
    wal.close()
    _, replayed = open_wal(tmp_path)
    assert replayed[-1] == (5, b"after")


def test_flipped_byte_names_file_and_offset(tmp_path):
    wal, _ = open_wal(tmp_path)
    for _n in range(5):
        wal.append(b"y" * 100)
    wal.close()
    (segment,) = sorted(tmp_path.glob("*.wal"))
    data = bytearray(segment.read_bytes())
    data[116 * 2 + 40] ^= 0x01  # inside the third record's payload
    segment.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as caught:
        open_wal(tmp_path)
    message = str(caught.value)
    assert "t/p0000" in message and segment.name in message and "offset 232" in message
    assert caught.value.offset == 232


def test_rollover_and_segment_removal(tmp_path):
    wal, _ = open_wal(tmp_path, segment_bytes=1000)
    for _n in range(100):
        wal.append(b"z" * 100)
    segments = wal.segments()
    assert len(segments) > 5 and wal.rollovers == len(segments) - 1
    removed = wal.remove_segments_through(50)
    remaining = wal.segments()
    assert removed > 0
    assert remaining[0][0] <= 51  # record 51 is still on disk
    assert wal.first_lsn == remaining[0][0]
    assert [lsn for lsn, _ in wal.read_records(50, 60)] == list(range(51, 61))
    with pytest.raises(CorruptionError, match="missing"):
        list(wal.read_records(0, 10))
    wal.close()
    _, replayed = open_wal(tmp_path, applied=50)
    assert [lsn for lsn, _ in replayed] == list(range(51, 101))


def test_missing_records_below_the_wal_are_corruption(tmp_path):
    wal, _ = open_wal(tmp_path, segment_bytes=500)
    for _n in range(30):
        wal.append(b"w" * 100)
    wal.remove_segments_through(20)
    wal.close()
    with pytest.raises(CorruptionError, match="missing"):
        open_wal(tmp_path, applied=3)


def test_bad_sync_policy():
    with pytest.raises(ValidationException, match="sync policy"):
        WriteAheadLog("/nonexistent", partition_name="x", sync="sometimes")


@settings(max_examples=60)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=8), st.data())
def test_every_truncation_point_keeps_a_prefix(tmp_path_factory, payloads, data):
    directory = tmp_path_factory.mktemp("wal")
    wal, _ = open_wal(directory, sync="none")
    for payload in payloads:
        wal.append(payload)
    wal.close()
    (segment,) = sorted(directory.glob("*.wal"))
    full = segment.read_bytes()
    cut = data.draw(st.integers(0, len(full)))
    segment.write_bytes(full[:cut])
    _, replayed = open_wal(directory)
    assert [payload for _, payload in replayed] == payloads[: len(replayed)]
    ends = [sum(16 + len(p) for p in payloads[:k]) for k in range(len(payloads) + 1)]
    assert ends[len(replayed)] <= cut < (ends[len(replayed) + 1] if len(replayed) < len(payloads) else cut + 1)
    for path in directory.glob("*.wal"):
        os.unlink(path)
