"""The DynamoDB endpoint's cost per request: against the same engine call made directly,
and against moto's DynamoDB server under the same client workload.

Run: ``pytest bench/bench_server.py --benchmark-group-by=param:operation -s``.

* ``test_request_cost`` — each group holds the direct engine call (the baseline) and the
  same operation through boto3 -> HTTP -> SigV4 check -> JSON -> worker thread -> engine.
* ``test_workload_vs_moto`` — one fixed-seed, fixed-count PutItem/GetItem/Query mix from
  ``CLIENT_THREADS`` boto3 threads, run against ``tessera serve`` and then against
  ``moto_server`` (both child processes on loopback, so neither shares the clients' GIL);
  prints requests/s, p50/p99 of each and the ratio. ``TESSERA_BENCH_SERVER_OPS`` sets the
  operations per thread (default 1000).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from served import served_client  # noqa: E402
from server_process import ACCESS_KEY as SERVER_KEY  # noqa: E402
from server_process import SECRET as SERVER_SECRET  # noqa: E402
from server_process import free_port, start_server  # noqa: E402

SEED = 20240611


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
    with served_client(engine) as served:
        yield served


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


# --- the same workload against tessera serve and moto -----------------------------------

CLIENT_THREADS = 4
OPS_PER_THREAD = int(os.environ.get("TESSERA_BENCH_SERVER_OPS", "1000"))
WORKLOAD_TABLE = "workload"


def workload(thread: int) -> list[tuple]:
    """Fixed-seed operations of one client thread: 45% PutItem, 45% GetItem (of an item
    this thread put), 10% Query (one partition key, at most ~OPS/20 items)."""
    rng = random.Random(SEED + thread)
    operations: list[tuple] = []
    put: list[tuple[str, int]] = []
    for index in range(OPS_PER_THREAD):
        kind = rng.choices(["put", "get", "query"], weights=[45, 45, 10])[0]
        if kind != "put" and not put:
            kind = "put"
        if kind == "put":
            key = (f"t{thread}-{rng.randrange(10)}", index)
            put.append(key)
            operations.append(("put", *key, rng.randbytes(rng.randrange(50, 400)).hex()))
        elif kind == "get":
            operations.append(("get", *rng.choice(put)))
        else:
            operations.append(("query", f"t{thread}-{rng.randrange(10)}"))
    return operations


def run_workload(client_for_thread, label: str) -> dict:
    """Create the table, run every thread's operations; returns requests/s and latencies."""
    admin = client_for_thread()
    admin.create_table(
        TableName=WORKLOAD_TABLE,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    plans = [workload(thread) for thread in range(CLIENT_THREADS)]
    clients = [client_for_thread() for _ in range(CLIENT_THREADS)]
    latencies: list[list[float]] = [[] for _ in range(CLIENT_THREADS)]
    errors: list[str] = []
    barrier = threading.Barrier(CLIENT_THREADS + 1)

    def run(thread: int) -> None:
        client, timings = clients[thread], latencies[thread]
        barrier.wait()
        for operation in plans[thread]:
            started = time.perf_counter()
            try:
                if operation[0] == "put":
                    _, pk, sk, payload = operation
                    client.put_item(
                        TableName=WORKLOAD_TABLE,
                        Item={"pk": {"S": pk}, "sk": {"N": str(sk)}, "payload": {"S": payload}},
                    )
                elif operation[0] == "get":
                    _, pk, sk = operation
                    got = client.get_item(
                        TableName=WORKLOAD_TABLE, Key={"pk": {"S": pk}, "sk": {"N": str(sk)}}
                    )
                    assert "Item" in got
                else:
                    client.query(
                        TableName=WORKLOAD_TABLE,
                        KeyConditionExpression="pk = :p",
                        ExpressionAttributeValues={":p": {"S": operation[1]}},
                    )
            except Exception as err:  # noqa: BLE001 - reported below, fails the benchmark
                errors.append(f"{label} {operation[0]}: {err!r}")
                return
            timings.append(time.perf_counter() - started)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    assert not errors, errors[:5]
    every = sorted(x for timings in latencies for x in timings)
    return {
        "requests": len(every),
        "seconds": elapsed,
        "requests_per_s": len(every) / elapsed,
        "p50_ms": every[len(every) // 2] * 1000,
        "p99_ms": every[min(len(every) - 1, int(len(every) * 0.99))] * 1000,
    }


def _client_factory(endpoint: str, access_key: str, secret: str):
    session = boto3.session.Session()  # one per factory: creating clients is not thread-safe
    return lambda: session.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, max_pool_connections=CLIENT_THREADS),
    )


def _start_moto(log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not start: {log_path.read_text()}") from None
            time.sleep(0.05)


def test_workload_vs_moto(tmp_path):
    pytest.importorskip("moto.server")
    results = {}
    server = start_server(tmp_path / "tessera")
    try:
        client_for_thread = _client_factory(server.endpoint, SERVER_KEY, SERVER_SECRET)
        results["tessera"] = run_workload(client_for_thread, "tessera")
    finally:
        server.kill()
    moto, endpoint = _start_moto(tmp_path / "moto.log")
    try:
        results["moto"] = run_workload(_client_factory(endpoint, "testing", "testing"), "moto")
    finally:
        moto.kill()
        moto.wait(timeout=10)
    print(f"\n{CLIENT_THREADS} boto3 threads x {OPS_PER_THREAD} ops (45% put, 45% get, 10% query)")
    for name, result in results.items():
        print(
            f"  {name:8s} {result['requests_per_s']:8.0f} req/s   p50 {result['p50_ms']:6.2f} ms"
            f"   p99 {result['p99_ms']:6.2f} ms   ({result['requests']} in {result['seconds']:.2f} s)"
        )
    ratio = results["tessera"]["requests_per_s"] / results["moto"]["requests_per_s"]
    print(f"  tessera / moto requests/s: {ratio:.2f}x")
