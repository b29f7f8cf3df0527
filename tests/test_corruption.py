"""Corrupt and torn WALs seen through the engine: a flipped byte stops the open with the
partition, file and offset named; a torn tail is cut and the earlier writes kept."""

import pytest

from engine import CorruptionError, Engine


def make_engine(path):
    return Engine.open(path, wal_segment_bytes=1 << 20, map_size_bytes=1 << 28)


def newest_segment(path):
    segments = sorted((path / "tables").glob("*/p0000/wal/*.wal"))
    return segments[-1]


def test_flipped_byte_in_wal_is_reported_with_partition_file_and_offset(tmp_path):
    with make_engine(tmp_path) as engine:
        engine.create_table("Music", partition_key=("pk", "S"), partitions=1)
        for n in range(20):
            engine.table("Music").put_item({"pk": f"k{n}", "v": "x" * 50})
    segment = newest_segment(tmp_path)
    data = bytearray(segment.read_bytes())
    assert len(data) > 500
    data[300] ^= 0x10
    segment.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as caught:
        make_engine(tmp_path)
    message = str(caught.value)
    assert "Music/p0000" in message and segment.name in message and "offset" in message


def test_torn_tail_keeps_earlier_writes(tmp_path):
    with make_engine(tmp_path) as engine:
        engine.create_table("Music", partition_key=("pk", "S"), partitions=1)
        table = engine.table("Music")
        for n in range(10):
            table.put_item({"pk": f"k{n}"})
    segment = newest_segment(tmp_path)
    size = segment.stat().st_size
    # Simulate a crash mid-append of an 11th record: half a record at the end.
    with open(segment, "ab") as handle:
        handle.write(b"\x40\x00\x00\x00\x0b\x00\x00\x00\x00\x00\x00\x00\x99")
    with make_engine(tmp_path) as engine:
        keys = sorted(item["pk"] for item in engine.table("Music").iter_items())
        assert keys == sorted(f"k{n}" for n in range(10))
        engine.table("Music").put_item({"pk": "after"})
    assert segment.stat().st_size > size  # the torn bytes were cut, then a new record written
    with make_engine(tmp_path) as engine:
        assert engine.table("Music").get_item({"pk": "after"}) == {"pk": "after"}
