"""What expressions cost: a Query with a FilterExpression and a conditional UpdateItem,
through the engine and through the server, each beside the same call without an
expression (the baseline in the same run); and the parser on its own, cached and not.

Run: ``pytest bench/bench_expressions.py --benchmark-group-by=param:operation -s``.

* ``test_engine_call`` / ``test_server_call`` — each group holds the plain call and the
  call with an expression (``query`` vs ``query+filter``, ``update`` vs
  ``update+condition``), so the ratio is the expression's cost per request.
* ``test_parse`` — ``parse_condition`` / ``parse_update`` of the same texts with the
  parse cache cold (cleared every round) and warm; ``bind`` is included in both, as every
  request binds its placeholders.
"""

from __future__ import annotations

import random

import pytest
from served import served_client

from engine import Engine
from engine.expressions import Placeholders, bind, parse_condition, parse_update
from engine.expressions.cache import clear_parse_cache

SEED = 20261130
ITEMS_PER_PK = 200

FILTER = "#st = :open AND size(tags) > :n AND attribute_exists(assignee)"
CONDITION = "attribute_exists(pk) AND version = :v"
UPDATE = "SET version = version + :one, assignee = :assignee REMOVE draft ADD hits :one"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    opened = Engine.open(tmp_path_factory.mktemp("bench-expr") / "data")
    opened.create_table("bench", partition_key=("pk", "S"), sort_key=("sk", "N"), partitions=4)
    rng = random.Random(SEED)
    rows = [
        {"pk": f"p{index % 5}", "sk": index, "status": rng.choice(["open", "closed"]),
         "tags": {f"t{n}" for n in range(rng.randint(1, 4))}, "assignee": "x",
         "version": 0, "payload": rng.randbytes(100).hex()}
        for index in range(5 * ITEMS_PER_PK)
    ]
    table = opened.table("bench")
    for start in range(0, len(rows), 25):
        table.batch_write(puts=rows[start:start + 25])
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def client(engine):
    with served_client(engine) as served:
        yield served


def _engine_calls(table):
    versions = {"v": 0}

    def update_plain():
        table.update_item({"pk": "p1", "sk": 1}, [("ADD", "hits", 1)])

    def update_conditional():
        version = versions["v"]
        table.update_item({"pk": "p1", "sk": 6}, UPDATE, condition=CONDITION,
                          values={":v": version, ":one": 1, ":assignee": "y"})
        versions["v"] = version + 1

    return {
        "query": lambda: table.query_page("p2", limit=100),
        "query+filter": lambda: table.query_page(
            "p2", limit=100, filter=FILTER, names={"#st": "status"},
            values={":open": "open", ":n": 1}),
        "update": update_plain,
        "update+condition": update_conditional,
    }


@pytest.mark.parametrize("operation", ["query", "query+filter", "update",
                                       "update+condition"])
def test_engine_call(benchmark, engine, operation):
    call = _engine_calls(engine.table("bench"))[operation]
    benchmark.group = f"engine {operation.split('+')[0]}"
    benchmark(call)


def _server_calls(client):
    versions = {"v": 0}

    def update_conditional():
        version = versions["v"]
        client.update_item(
            TableName="bench", Key={"pk": {"S": "p3"}, "sk": {"N": "8"}},
            UpdateExpression=UPDATE, ConditionExpression=CONDITION,
            ExpressionAttributeValues={":v": {"N": str(version)}, ":one": {"N": "1"},
                                       ":assignee": {"S": "y"}})
        versions["v"] = version + 1

    key_condition = {"KeyConditionExpression": "pk = :p",
                     "ExpressionAttributeValues": {":p": {"S": "p2"}}}
    return {
        "query": lambda: client.query(TableName="bench", Limit=100, **key_condition),
        "query+filter": lambda: client.query(
            TableName="bench", Limit=100, KeyConditionExpression="pk = :p",
            FilterExpression=FILTER, ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={":p": {"S": "p2"}, ":open": {"S": "open"},
                                       ":n": {"N": "1"}}),
        "update": lambda: client.update_item(
            TableName="bench", Key={"pk": {"S": "p3"}, "sk": {"N": "3"}},
            UpdateExpression="ADD hits :one", ExpressionAttributeValues={":one": {"N": "1"}}),
        "update+condition": update_conditional,
    }


@pytest.mark.parametrize("operation", ["query", "query+filter", "update",
                                       "update+condition"])
def test_server_call(benchmark, client, operation):
    call = _server_calls(client)[operation]
    benchmark.group = f"server {operation.split('+')[0]}"
    benchmark(call)


def _parse_and_bind():
    condition = parse_condition(FILTER, "FilterExpression")
    update = parse_update(UPDATE)
    placeholders = Placeholders({"#st": "status"}, {":open": "open", ":n": 1, ":one": 1,
                                                    ":assignee": "y"})
    bind(condition, placeholders, "FilterExpression")
    bind(update, placeholders, "UpdateExpression")


@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_parse(benchmark, cache):
    benchmark.group = "parse + bind (filter and update)"
    if cache == "cold":
        benchmark.pedantic(_parse_and_bind, setup=clear_parse_cache, rounds=2000)
    else:
        _parse_and_bind()
        benchmark(_parse_and_bind)
