"""Partition maps: routing agrees with a linear search; bad maps are refused."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ValidationException
from engine.partition_map import (
    PartitionInterval,
    PartitionMap,
    build_map,
    hash_boundaries,
    key_successor,
)

keys = st.binary(max_size=12)


@st.composite
def maps(draw):
    starts = sorted(set(draw(st.lists(st.binary(min_size=1, max_size=6), max_size=12))))
    boundaries = [b""] + starts
    return build_map([f"p{i}" for i in range(len(boundaries))], boundaries)


@given(maps(), keys)
def test_lookup_matches_linear_search(pmap, key):
    owners = [interval for interval in pmap if interval.contains(key)]
    assert len(owners) == 1  # no gap, no overlap
    assert pmap.lookup(key) == owners[0]


@given(maps(), keys, keys)
def test_intersecting_matches_linear_search(pmap, a, b):
    lo, hi = min(a, b), max(a, b)
    expected = [interval for interval in pmap if interval.intersects(lo, hi)]
    assert pmap.intersecting(lo, hi) == expected or lo == hi


@given(maps())
def test_json_round_trip(pmap):
    assert PartitionMap.from_json(pmap.to_json()) == pmap


@given(st.integers(1, 64))
def test_hash_boundaries_split_evenly(count):
    boundaries = hash_boundaries(count)
    assert len(boundaries) == count and boundaries[0] == b""
    assert boundaries == sorted(boundaries)
    build_map([str(i) for i in range(count)], boundaries)


def test_gap_overlap_and_bounds_are_refused():
    with pytest.raises(ValidationException, match="gap"):
        PartitionMap([PartitionInterval("a", b"", b"m"), PartitionInterval("b", b"n", None)])
    with pytest.raises(ValidationException, match="overlap"):
        PartitionMap([PartitionInterval("a", b"", b"n"), PartitionInterval("b", b"m", None)])
    with pytest.raises(ValidationException, match="beginning"):
        PartitionMap([PartitionInterval("a", b"x", None)])
    with pytest.raises(ValidationException, match="end of the key space"):
        PartitionMap([PartitionInterval("a", b"", b"x")])
    with pytest.raises(ValidationException, match="twice"):
        PartitionMap([PartitionInterval("a", b"", b"m"), PartitionInterval("a", b"m", None)])
    with pytest.raises(ValidationException):
        hash_boundaries(0)


@given(st.binary(min_size=1, max_size=8), st.binary(max_size=4))
def test_key_successor_bounds_every_extension(prefix, suffix):
    successor = key_successor(prefix)
    assert successor is None or prefix + suffix < successor
    if successor is not None:
        assert successor > prefix
