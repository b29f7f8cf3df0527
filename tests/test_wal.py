"""The write-ahead log: recovery, torn tails, corruption, rollover, retention, catch-up reads,
and where its durable end is (segment headers and seals: a truncation or a missing segment
is a CorruptionError naming the file; only a torn tail of an unsealed newest segment is cut)."""

import pytest
import reference_codecs as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import CorruptionError, ValidationException
from engine.wal import FORMAT_FILE, SEGMENT_HEADER_BYTES, WriteAheadLog, segment_name

HEADER = SEGMENT_HEADER_BYTES


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


def crash_image(wal) -> dict:
    """The segment files as a crash right now would leave them: everything appended is
    on disk (flushed), the active segment unsealed. Closes ``wal``."""
    wal.flush()
    image = {path: path.read_bytes() for _, path in wal.segments()}
    wal.close()
    return image


def restore_image(image: dict) -> None:
    for path, data in image.items():
        path.write_bytes(data)


def test_torn_tail_is_cut_and_earlier_records_kept(tmp_path):
    wal, _ = open_wal(tmp_path)
    for _n in range(5):
        wal.append(b"x" * 100)
    restore_image(crash_image(wal))
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
    data[HEADER + 116 * 2 + 40] ^= 0x01  # inside the third record's payload
    segment.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as caught:
        open_wal(tmp_path)
    message = str(caught.value)
    third = HEADER + 232
    assert "t/p0000" in message and segment.name in message and f"offset {third}" in message
    assert caught.value.offset == third


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


def record_ends(payloads: list[bytes]) -> list[int]:
    """Offsets just past each whole record of one segment holding ``payloads``."""
    return [HEADER + sum(16 + len(p) for p in payloads[:k]) for k in range(len(payloads) + 1)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=8), st.data())
def test_a_torn_tail_after_a_crash_is_cut_at_every_truncation_point(tmp_path_factory, payloads,
                                                                    data):
    directory = tmp_path_factory.mktemp("wal")
    wal, _ = open_wal(directory, sync="none")
    for payload in payloads:
        wal.append(payload)
    image = crash_image(wal)  # unsealed: a crash mid-append may have cut it anywhere
    (segment,) = image
    full = image[segment]
    cut = data.draw(st.integers(0, len(full)))
    segment.write_bytes(full[:cut])
    if cut < HEADER:  # segments are created whole: a crash never leaves a short header
        with pytest.raises(CorruptionError, match="shorter than its 64-byte header") as caught:
            open_wal(directory)
        assert segment.name in str(caught.value)
        return
    wal, replayed = open_wal(directory)
    wal.close()
    assert [payload for _, payload in replayed] == payloads[: len(replayed)]
    ends = record_ends(payloads)
    assert ends[len(replayed)] <= cut
    assert len(replayed) == len(payloads) or cut < ends[len(replayed) + 1]
    assert segment.stat().st_size == ends[len(replayed)]  # the torn bytes are gone


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=30), st.data())
def test_a_truncated_segment_of_a_closed_log_is_corruption_naming_it(tmp_path_factory,
                                                                     payloads, data):
    """A cleanly closed log has every segment sealed: a cut anywhere in any of them, at a
    record boundary or not, is a CorruptionError naming that file, never a shorter log."""
    directory = tmp_path_factory.mktemp("wal")
    wal, _ = open_wal(directory, segment_bytes=300)
    for payload in payloads:
        wal.append(payload)
    wal.close()
    segments = [path for _, path in wal.segments()]
    segment = data.draw(st.sampled_from(segments), label="segment")
    full = segment.read_bytes()
    cut = data.draw(st.integers(0, len(full) - 1), label="cut")
    segment.write_bytes(full[:cut])
    applied = data.draw(st.integers(0, len(payloads)), label="applied_lsn")
    with pytest.raises(CorruptionError) as caught:
        open_wal(directory, applied=applied)
    assert segment.name in str(caught.value) and "t/p0000" in str(caught.value)


def many_segments(directory, count=40, **options):
    wal, _ = open_wal(directory, segment_bytes=600, **options)
    for n in range(1, count + 1):
        wal.append(b"r%03d" % n + b"." * 100)
    segments = wal.segments()
    assert len(segments) >= 3
    return wal, segments


def test_a_segment_cut_at_a_record_boundary_is_corruption(tmp_path):
    wal, segments = many_segments(tmp_path)
    wal.close()
    for _, path in (segments[1], segments[-1]):  # one in the middle, the newest
        full = path.read_bytes()
        path.write_bytes(full[:HEADER + 120])  # exactly one whole record left
        with pytest.raises(CorruptionError, match="sealed .* it was truncated") as caught:
            open_wal(tmp_path)
        assert path.name in str(caught.value)
        path.write_bytes(full)
    wal, replayed = open_wal(tmp_path)
    assert [lsn for lsn, _ in replayed] == list(range(1, 41))
    wal.close()


@pytest.mark.parametrize("which", ["middle", "newest", "oldest"])
def test_a_deleted_segment_is_corruption_naming_the_missing_file(tmp_path, which):
    wal, segments = many_segments(tmp_path)
    wal.close()
    index = {"middle": 2, "newest": -1, "oldest": 0}[which]
    first_lsn, path = wal.segments()[index]
    path.unlink()
    with pytest.raises(CorruptionError, match="missing") as caught:
        open_wal(tmp_path)
    # The missing file itself, or for the oldest the one the gap comes before.
    named = wal.segments()[0][1] if which == "oldest" else path
    assert named.name in str(caught.value)
    # Records at or below applied_lsn are in data.mdb: a checkpoint deletes the oldest
    # segments exactly so, and that is no gap.
    if which == "oldest":
        next_first = wal.segments()[0][0]
        wal, replayed = open_wal(tmp_path, applied=next_first - 1)
        assert replayed[0][0] == next_first
        wal.close()


def test_the_newest_segment_deleted_right_after_a_rollover_is_corruption(tmp_path):
    wal, segments = many_segments(tmp_path, count=12)
    image = crash_image(wal)  # a crash: the newest is unsealed, the rest sealed by rollovers
    restore_image(image)
    newest = max(image)
    newest.unlink()
    with pytest.raises(CorruptionError, match="sealed by a rollover, but the segment after"
                       ) as caught:
        open_wal(tmp_path)
    assert newest.name in str(caught.value)


def test_a_crash_between_creating_a_segment_and_sealing_the_last_is_no_corruption(tmp_path):
    wal, _ = many_segments(tmp_path, count=12)
    image = crash_image(wal)
    paths = sorted(image)
    unsealed = bytearray(image[paths[-2]])
    unsealed[32:64] = bytes(32)  # as if the crash came before the rollover sealed it
    image[paths[-2]] = bytes(unsealed)
    restore_image(image)
    wal, replayed = open_wal(tmp_path)
    assert [lsn for lsn, _ in replayed] == list(range(1, 13))
    wal.close()
    # Its end is still pinned, by the next segment's header: a cut is detected.
    paths[-2].write_bytes(bytes(unsealed)[:HEADER + 120])
    with pytest.raises(CorruptionError, match="truncated") as caught:
        open_wal(tmp_path)
    assert paths[-2].name in str(caught.value)


def test_missing_records_between_applied_lsn_and_the_wal_are_corruption(tmp_path):
    wal, _ = many_segments(tmp_path)
    wal.remove_segments_through(20)
    first = wal.segments()[0][0]
    wal.close()
    with pytest.raises(CorruptionError, match=f"records 6..{first - 1} are missing"):
        open_wal(tmp_path, applied=5)


def test_a_damaged_header_or_seal_is_corruption(tmp_path):
    wal, segments = many_segments(tmp_path, count=12)
    wal.close()
    path = segments[1][1]
    full = path.read_bytes()
    for offset, match in ((9, "header is damaged"), (40, "seal is damaged")):
        damaged = bytearray(full)
        damaged[offset] ^= 0x04
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptionError, match=match) as caught:
            open_wal(tmp_path)
        assert path.name in str(caught.value) and f"offset {offset // 32 * 32}" in str(
            caught.value)
    path.write_bytes(full)


def test_segments_written_before_headers_are_still_read(tmp_path):
    # Format 1: no header, no seal, no FORMAT file (as the WAL was written before).
    old = [(1, [b"a", b"b", b"c"]), (4, [b"d", b"e"])]
    for first, payloads in old:
        (tmp_path / segment_name(first)).write_bytes(
            b"".join(ref.frame_record(first + n, p) for n, p in enumerate(payloads)))
    wal, replayed = open_wal(tmp_path, applied=1)
    assert replayed == [(2, b"b"), (3, b"c"), (4, b"d"), (5, b"e")]
    assert wal.append(b"f") == 6
    wal.close()
    assert (tmp_path / FORMAT_FILE).read_text() == "tessera-wal 2 6\n"
    wal, replayed = open_wal(tmp_path, applied=1)
    assert [lsn for lsn, _ in replayed] == [2, 3, 4, 5, 6]
    wal.close()
    # The old newest segment's end is pinned by the format-2 segment after it.
    legacy = tmp_path / segment_name(4)
    legacy.write_bytes(ref.frame_record(4, b"d"))
    with pytest.raises(CorruptionError, match="truncated") as caught:
        open_wal(tmp_path, applied=1)
    assert legacy.name in str(caught.value)


def test_a_format_2_segment_emptied_entirely_is_corruption(tmp_path):
    wal, _ = open_wal(tmp_path)
    for n in range(3):
        wal.append(b"%d" % n)
    wal.close()
    (segment,) = sorted(tmp_path.glob("*.wal"))
    segment.write_bytes(b"")
    with pytest.raises(CorruptionError, match="shorter than its 64-byte header") as caught:
        open_wal(tmp_path)
    assert segment.name in str(caught.value)
