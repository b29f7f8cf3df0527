"""The 400 KB item limit is DynamoDB's: measured by its item size formula
(engine.itemsize.item_size), not by our storage encoding, for put, update and batch write.
"""

from __future__ import annotations

import pytest
from engine._itemcodec import encode_item
from hypothesis import given
from hypothesis import strategies as st

from engine import ValidationException
from engine.itemsize import MAX_ITEM_SIZE_BYTES, item_size

LIMIT = 400 * 1024
MESSAGE = "Item size has exceeded the maximum allowed size"


@pytest.fixture
def music(engine):
    engine.create_table("Music", partition_key=("pk", "S"), sort_key=("sk", "N"), partitions=2)
    return engine.table("Music")


def item_of_size(size: int, sk: int = 1) -> dict:
    # "pk" + "a" (3) + "sk" + 1 (2 + 2) + "v" (1) = 8 bytes besides the value
    item = {"pk": "a", "sk": sk, "v": "x" * (size - 8)}
    assert item_size(item) == size
    return item


def test_the_limit_is_400_kib():
    assert MAX_ITEM_SIZE_BYTES == LIMIT


def test_an_item_of_exactly_400_kib_is_stored_and_one_byte_more_is_refused(music):
    music.put_item(item_of_size(LIMIT))
    assert len(music.get_item({"pk": "a", "sk": 1})["v"]) == LIMIT - 8
    with pytest.raises(ValidationException, match=MESSAGE):
        music.put_item(item_of_size(LIMIT + 1, sk=2))
    music.batch_write(puts=[item_of_size(LIMIT, sk=3)])
    with pytest.raises(ValidationException, match=MESSAGE):
        music.batch_write(puts=[item_of_size(LIMIT + 1, sk=4)])
    assert music.get_item({"pk": "a", "sk": 2}) is None
    assert music.get_item({"pk": "a", "sk": 4}) is None


def test_an_update_may_not_grow_an_item_past_the_limit(music):
    music.put_item(item_of_size(LIMIT - 2))
    music.update_item({"pk": "a", "sk": 1}, [("SET", "w", "")])  # +1 byte: the name
    with pytest.raises(ValidationException, match=MESSAGE):
        music.update_item({"pk": "a", "sk": 1}, [("SET", "y", "z")])  # +2 bytes
    assert "y" not in music.get_item({"pk": "a", "sk": 1})


def test_items_small_when_encoded_but_over_the_limit_by_the_formula_are_refused(music):
    """A list of NULLs costs 2 bytes an element by DynamoDB's formula, 1 encoded."""
    item = {"pk": "a", "sk": 5, "l": [None] * 210_000}
    assert len(encode_item(item)) < LIMIT < item_size(item)
    with pytest.raises(ValidationException, match=MESSAGE):
        music.put_item(item)
    with pytest.raises(ValidationException, match=MESSAGE):
        music.batch_write(puts=[{"pk": "a", "sk": 6}, item])
    assert music.stats()[0] == 0


def test_items_large_when_encoded_but_within_the_limit_are_stored(music):
    """A 38-digit number costs 20 bytes by the formula and 21 encoded."""
    item = {"pk": "a", "sk": 7, "ns": {int(f"1{i:036d}1") for i in range(20_400)}}
    assert item_size(item) <= LIMIT < len(encode_item(item))
    music.put_item(item)
    music.batch_write(puts=[{**item, "sk": 8}])
    assert len(music.get_item({"pk": "a", "sk": 8})["ns"]) == 20_400


values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10 ** 40 + 1, 10 ** 40 - 1).filter(
        lambda n: len(str(abs(n)).rstrip("0")) <= 38), st.text(max_size=4),
        st.binary(max_size=4), st.sets(st.text(max_size=3), min_size=1, max_size=3)),
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.text(min_size=1, max_size=3), children, max_size=3)),
    max_leaves=20,
)


@given(st.dictionaries(st.text(min_size=1, max_size=3), values, min_size=1, max_size=4))
def test_an_items_size_is_at_most_twice_its_encoded_length(item):
    """What lets batch_write's native router check encoded lengths against half the limit."""
    assert item_size(item) <= 2 * len(encode_item(item))
