"""The DynamoDB endpoint's cost per request, against the same engine call made directly.

Run: ``pytest bench/bench_server.py --benchmark-group-by=param:operation``. Each group holds
the direct engine call (the baseline) and the same operation through boto3 -> HTTP ->
SigV4 check -> JSON -> worker thread -> engine, measured in the same run.
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

SEED = 20240611
ACCESS_KEY, SECRET = "bench", "bench-secret"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    opened = Engine.open(tmp_path_factory.mktemp("bench-server"))
    opened.create_table("bench", partition_key=("pk", "S"), sort_key=("sk", "N"), partitions=4)
    rng = random.Random(SEED)
    table = opened.table("bench")
    rows = [
        {"pk": f"p{index % 10}", "sk": index, "payload": rng.randbytes(200).hex()}
        for index in range(1000)
    ]
    for start in range(0, len(rows), 25):
        table.batch_write(puts=rows[start : start + 25])
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
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )
    server.should_exit = True
    thread.join(timeout=10)


def engine_calls(table) -> dict:
    counter = iter(range(10**9))
    payload = random.Random(SEED).randbytes(200).hex()
    return {
        "GetItem": lambda: table.get_item({"pk": "p3", "sk": 503}),
        "PutItem": lambda: table.put_item({"pk": "w", "sk": next(counter), "payload": payload}),
        "Query100": lambda: table.query("p3"),
    }


def http_calls(client) -> dict:
    counter = iter(range(10**9))
    payload = random.Random(SEED).randbytes(200).hex()
    return {
        "GetItem": lambda: client.get_item(
            TableName="bench", Key={"pk": {"S": "p3"}, "sk": {"N": "503"}}
        ),
        "PutItem": lambda: client.put_item(
            TableName="bench",
            Item={"pk": {"S": "w"}, "sk": {"N": str(next(counter))}, "payload": {"S": payload}},
        ),
        "Query100": lambda: client.query(
            TableName="bench",
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "p3"}},
        ),
    }


@pytest.mark.parametrize("via", ["engine", "http"])
@pytest.mark.parametrize("operation", ["GetItem", "PutItem", "Query100"])
def test_request_cost(benchmark, engine, client, operation, via):
    calls = engine_calls(engine.table("bench")) if via == "engine" else http_calls(client)
    benchmark(calls[operation])
