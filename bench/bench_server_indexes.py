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
import threading
import time

import boto3
import pytest
import uvicorn
from botocore.config import Config

from engine import Engine
from engine.server import create_app

SEED = 20261130
ACCESS_KEY, SECRET = "bench", "bench-secret"
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
    app = create_app(engine, credentials={ACCESS_KEY: SECRET})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield boto3.client(
        "dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )
    server.should_exit = True
    thread.join(timeout=10)


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
