"""What reading through a secondary index costs through the server: a Query by a GSI and
by an LSI beside a Query by the table's own key, over the same items.

Run: ``pytest bench/bench_server_indexes.py --benchmark-group-by=param:limit -s``.

The table's items have ``g == pk`` and ``n == sk``, and both indexes project ALL, so
``g = :p`` on the GSI ``byG`` (g, n), ``pk = :p`` on the LSI ``byN`` (pk, n) and
``pk = :p`` on the table return the same items in the same order (checked once before
timing). The difference is the index path: the GSI's own partitions (and, for its
entries, keys that carry the base key), the LSI's database in the base partition, and the
server's index handling (IndexName lookup, index capacity, the longer pagination key).
"""

from __future__ import annotations

import random

import pytest
from served import served_client

from engine import Engine

SEED = 20261130
PARTITION_KEYS = 5
ITEMS_PER_PK = 400


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    opened = Engine.open(tmp_path_factory.mktemp("bench-indexes") / "data")
    opened.create_table(
        "bench", partition_key=("pk", "S"), sort_key=("sk", "N"), partitions=4,
        local_indexes=[{"name": "byN", "key_schema": [("pk", "S"), ("n", "N")]}],
        global_indexes=[{"name": "byG", "key_schema": [("g", "S"), ("n", "N")]}])
    rng = random.Random(SEED)
    rows = [{"pk": f"p{index % PARTITION_KEYS}", "sk": index, "g": f"p{index % PARTITION_KEYS}",
             "n": index, "payload": rng.randbytes(100).hex()}
            for index in range(PARTITION_KEYS * ITEMS_PER_PK)]
    table = opened.table("bench")
    for start in range(0, len(rows), 25):
        table.batch_write(puts=rows[start:start + 25])
    opened.wait_for_index_catch_up("bench")
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def client(engine):
    with served_client(engine) as served:
        yield served


READS = {
    "table": {"KeyConditionExpression": "pk = :p"},
    "lsi": {"IndexName": "byN", "KeyConditionExpression": "pk = :p"},
    "gsi": {"IndexName": "byG", "KeyConditionExpression": "g = :p"},
}


def _query(client, path: str, limit: int) -> dict:
    return client.query(TableName="bench", Limit=limit,
                        ExpressionAttributeValues={":p": {"S": "p2"}}, **READS[path])


@pytest.mark.parametrize("limit", [1, 100])
@pytest.mark.parametrize("path", list(READS))
def test_query(benchmark, client, path, limit):
    reference = [item["sk"] for item in _query(client, "table", limit)["Items"]]
    assert [item["sk"] for item in _query(client, path, limit)["Items"]] == reference
    benchmark.group = f"server query, Limit {limit}"
    benchmark(_query, client, path, limit)
