"""Keys longer than LMDB stores (511 bytes encoded) are refused as bad input — a
ValidationException naming the limit, nothing written — never an internal error.

DynamoDB accepts partition keys up to 2048 bytes and sort keys up to 1024; storing those
is issue 12's open part (README: compatibility). Until then the refusal must be clean.
"""

from __future__ import annotations

import pytest

from engine import Engine, ValidationException
from engine.errors import MAX_STORAGE_KEY_BYTES


@pytest.fixture
def table(tmp_path):
    with Engine.open(tmp_path / "data", map_size_bytes=1 << 26) as engine:
        engine.create_table("Keys", partition_key=("pk", "S"), sort_key=("sk", "B"),
                            partitions=2)
        yield engine.table("Keys")


def test_the_longest_storable_key_round_trips(table):
    pk = "p" * 400
    table.put_item({"pk": pk, "sk": b"s", "v": 1})
    assert table.get_item({"pk": pk, "sk": b"s"}) == {"pk": pk, "sk": b"s", "v": 1}


@pytest.mark.parametrize("length", [MAX_STORAGE_KEY_BYTES, 1024, 2048])
def test_a_key_over_the_limit_is_refused_and_changes_nothing(table, length):
    key = {"pk": "p" * length, "sk": b"s"}
    table.put_item({"pk": "kept", "sk": b"s"})
    with pytest.raises(ValidationException, match="shorten the key"):
        table.put_item({**key, "v": 1})
    with pytest.raises(ValidationException, match="shorten the key"):
        table.update_item(key, "SET v = :v", values={":v": 1})
    assert table.get_item(key) is None  # such an item cannot exist: reads find nothing
    assert table.delete_item(key, return_values="ALL_OLD") is None
    assert list(table.iter_items()) == [{"pk": "kept", "sk": b"s"}]
