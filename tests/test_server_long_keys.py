"""DynamoDB's full key limits through a real server and boto3 (key format 2): partition
keys up to 2048 bytes and sort keys up to 1024 bytes (S counted in UTF-8 bytes, B in raw
bytes) are stored, read, updated and deleted; one byte more is refused with DynamoDB's
exact messages by every operation that takes a key, and nothing is written; Query over
many long sort keys sharing their first couple of hundred bytes (so the engine stores
them compacted, in one "bucket") answers in DynamoDB's sort-key order for every key
condition, both directions, paged; Scan pages over long keys visit every item once."""

from __future__ import annotations

import random

import pytest
from botocore.exceptions import ClientError
from test_server_http import (  # noqa: F401  (module-scoped fixtures: engine, app, server, client)
    app,
    client,
    engine,
    error_code,
    new_table,
    server,
)

HASH_TOO_LONG = ("One or more parameter values were invalid: Size of hashkey has exceeded the "
                 "maximum size limit of2048 bytes")
RANGE_TOO_LONG = ("One or more parameter values were invalid: Aggregated size of all range "
                  "keys has exceeded the size limit of 1024 bytes")

LONGEST_PK = {"S": "p" * 2048, "B": b"\x00" * 2048}
LONGEST_SK = {"S": "s" * 1024, "B": b"\x00" * 1024}


def message(caught: pytest.ExceptionInfo) -> str:
    return caught.value.response["Error"]["Message"]


def utf8_len(value: str) -> int:
    return len(value.encode("utf-8"))


@pytest.fixture(scope="module")
def tables(client):  # noqa: F811
    """One table per key shape: hash-only S and B, hash+range S/S and B/B."""
    return {
        ("S", None): new_table(client, hash_type="S", sort_type=None),
        ("B", None): new_table(client, hash_type="B", sort_type=None),
        ("S", "S"): new_table(client, hash_type="S", sort_type="S"),
        ("B", "B"): new_table(client, hash_type="B", sort_type="B"),
    }


def scan_all(client, table: str, limit: int | None = None) -> list[dict]:  # noqa: F811
    """Every item of ``table``, following LastEvaluatedKey to the end."""
    items, start = [], None
    while True:
        arguments = {"TableName": table}
        if limit is not None:
            arguments["Limit"] = limit
        if start is not None:
            arguments["ExclusiveStartKey"] = start
        page = client.scan(**arguments)
        items.extend(page["Items"])
        start = page.get("LastEvaluatedKey")
        if start is None:
            return items


# --- the longest keys work ----------------------------------------------------------------


@pytest.mark.parametrize("key_type, value", [
    ("S", "p" * 2048),
    ("S", "\u00e9" * 1024),  # 1024 characters, 2048 UTF-8 bytes
    ("S", "\U0001f600" * 512),  # 4-byte characters
    ("B", b"\x00" * 2048),  # every byte escaped by the key codec: its worst case
    ("B", b"\xff" * 2048),
])
def test_crud_with_the_longest_partition_key(client, tables, key_type, value):  # noqa: F811
    assert (utf8_len(value) if key_type == "S" else len(value)) == 2048
    table = tables[(key_type, None)]
    key = {"pk": {key_type: value}}
    # a neighbour differing only in its last byte/character is a different item
    neighbour_value = value[:-1] + ("q" if key_type == "S" else b"\x01")
    neighbour = {"pk": {key_type: neighbour_value}}
    client.put_item(TableName=table, Item={**key, "v": {"N": "1"}})
    client.put_item(TableName=table, Item={**neighbour, "v": {"N": "2"}})
    got = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
    assert got == {**key, "v": {"N": "1"}}
    updated = client.update_item(TableName=table, Key=key, UpdateExpression="SET v = v + :one",
                                 ExpressionAttributeValues={":one": {"N": "10"}},
                                 ReturnValues="ALL_NEW")["Attributes"]
    assert updated == {**key, "v": {"N": "11"}}
    assert client.get_item(TableName=table, Key=key)["Item"]["v"] == {"N": "11"}
    old = client.delete_item(TableName=table, Key=key, ReturnValues="ALL_OLD")["Attributes"]
    assert old == {**key, "v": {"N": "11"}}
    assert "Item" not in client.get_item(TableName=table, Key=key, ConsistentRead=True)
    assert client.get_item(TableName=table, Key=neighbour)["Item"]["v"] == {"N": "2"}
    # UpdateItem creates an item under the longest key too
    client.update_item(TableName=table, Key=key, UpdateExpression="SET w = :w",
                       ExpressionAttributeValues={":w": {"S": "made"}})
    assert client.get_item(TableName=table, Key=key)["Item"] == {**key, "w": {"S": "made"}}
    client.delete_item(TableName=table, Key=key)
    client.delete_item(TableName=table, Key=neighbour)


@pytest.mark.parametrize("key_type, sort_value", [
    ("S", "s" * 1024),
    ("S", "\u00e9" * 512),
    ("S", "\u00e9" * 511 + "ab"),
    ("B", b"\x00" * 1024),
    ("B", bytes(range(256)) * 4),
])
def test_crud_with_the_longest_sort_key(client, tables, key_type, sort_value):  # noqa: F811
    table = tables[(key_type, key_type)]
    key = {"pk": {key_type: LONGEST_PK[key_type]}, "sk": {key_type: sort_value}}
    client.put_item(TableName=table, Item={**key, "v": {"S": "one"}})
    assert client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"] == \
        {**key, "v": {"S": "one"}}
    updated = client.update_item(
        TableName=table, Key=key, UpdateExpression="SET v = :v", ConditionExpression="v = :old",
        ExpressionAttributeValues={":v": {"S": "two"}, ":old": {"S": "one"}},
        ReturnValues="ALL_NEW")["Attributes"]
    assert updated == {**key, "v": {"S": "two"}}
    query = client.query(TableName=table, KeyConditionExpression="pk = :p AND sk = :s",
                         ExpressionAttributeValues={":p": key["pk"], ":s": key["sk"]})
    assert query["Items"] == [{**key, "v": {"S": "two"}}]
    batch = client.batch_get_item(RequestItems={table: {"Keys": [key]}})
    assert batch["Responses"][table] == [{**key, "v": {"S": "two"}}]
    assert client.delete_item(TableName=table, Key=key, ReturnValues="ALL_OLD")["Attributes"] \
        == {**key, "v": {"S": "two"}}
    assert "Item" not in client.get_item(TableName=table, Key=key, ConsistentRead=True)


# --- one byte more is refused ---------------------------------------------------------------

TOO_LONG = [  # (key type, which key, value one byte over its limit)
    ("S", "pk", "p" * 2049),
    ("S", "pk", "\u00e9" * 1024 + "a"),
    ("S", "pk", "\u00e9" * 1025),
    ("B", "pk", b"\x00" * 2049),
    ("S", "sk", "s" * 1025),
    ("S", "sk", "\u00e9" * 512 + "a"),
    ("S", "sk", "\U0001f600" * 256 + "a"),
    ("B", "sk", b"\x00" * 1025),
]
OPERATIONS = ["put_item", "get_item", "delete_item", "update_item", "batch_write_put",
              "batch_write_delete", "batch_get_item", "query"]


def over_long_key(key_type: str, which: str, value) -> dict:
    if which == "pk":
        return {"pk": {key_type: value}, "sk": {key_type: LONGEST_SK[key_type]}}
    return {"pk": {key_type: LONGEST_PK[key_type]}, "sk": {key_type: value}}


def call(client, operation: str, table: str, key: dict, marker: str):  # noqa: F811
    """Run ``operation`` on ``key``; writes carry ``marker``, and the batch write also a
    valid item (DynamoDB refuses the whole batch, so it must not be written either)."""
    item = {**key, "marker": {"S": marker}}
    if operation == "put_item":
        return client.put_item(TableName=table, Item=item)
    if operation == "get_item":
        return client.get_item(TableName=table, Key=key)
    if operation == "delete_item":
        return client.delete_item(TableName=table, Key=key)
    if operation == "update_item":
        return client.update_item(TableName=table, Key=key, UpdateExpression="SET marker = :m",
                                  ExpressionAttributeValues={":m": {"S": marker}})
    key_type = next(iter(key["pk"]))
    companion = {"pk": {key_type: LONGEST_PK[key_type]},
                 "sk": {key_type: "companion" if key_type == "S" else b"companion"}}
    if operation == "batch_write_put":
        return client.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {**companion, "marker": {"S": marker}}}},
            {"PutRequest": {"Item": item}}]})
    if operation == "batch_write_delete":
        return client.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {**companion, "marker": {"S": marker}}}},
            {"DeleteRequest": {"Key": key}}]})
    if operation == "batch_get_item":
        return client.batch_get_item(RequestItems={table: {"Keys": [companion, key]}})
    assert operation == "query"
    return client.query(TableName=table, KeyConditionExpression="pk = :p AND sk = :s",
                        ExpressionAttributeValues={":p": key["pk"], ":s": key["sk"]})


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("key_type, which, value", TOO_LONG)
def test_one_byte_over_is_refused_and_nothing_is_written(client, tables, operation,  # noqa: F811
                                                         key_type, which, value):
    table = tables[(key_type, key_type)]
    marker = f"{operation}-{which}-{key_type}-{len(value)}"
    with pytest.raises(ClientError) as caught:
        call(client, operation, table, over_long_key(key_type, which, value), marker)
    assert error_code(caught) == "ValidationException"
    assert message(caught) == (HASH_TOO_LONG if which == "pk" else RANGE_TOO_LONG)
    written = client.scan(TableName=table, FilterExpression="marker = :m",
                          ExpressionAttributeValues={":m": {"S": marker}})
    assert written["Items"] == []


@pytest.mark.parametrize("key_type, value", [("S", "p" * 2049), ("S", "\u00e9" * 1024 + "a"),
                                             ("B", b"\x00" * 2049)])
@pytest.mark.parametrize("operation", ["put_item", "get_item", "delete_item", "update_item"])
def test_hash_only_tables_refuse_a_partition_key_one_byte_over(client, tables, key_type,  # noqa: F811
                                                               value, operation):
    table = tables[(key_type, None)]
    key = {"pk": {key_type: value}}
    with pytest.raises(ClientError) as caught:
        if operation == "put_item":
            client.put_item(TableName=table, Item={**key, "marker": {"S": "over"}})
        elif operation == "update_item":
            client.update_item(TableName=table, Key=key, UpdateExpression="SET marker = :m",
                               ExpressionAttributeValues={":m": {"S": "over"}})
        else:
            getattr(client, operation)(TableName=table, Key=key)
    assert error_code(caught) == "ValidationException"
    assert message(caught) == HASH_TOO_LONG
    assert client.scan(TableName=table, FilterExpression="marker = :m",
                       ExpressionAttributeValues={":m": {"S": "over"}})["Items"] == []


@pytest.mark.parametrize("expression", ["sk = :s", "sk < :s", "sk <= :s", "sk > :s",
                                        "sk >= :s", "sk BETWEEN :s AND :s",
                                        "sk BETWEEN :short AND :s"])
def test_query_with_an_over_long_sort_key_operand_is_refused(client, tables,  # noqa: F811
                                                             expression):
    table = tables[("S", "S")]
    with pytest.raises(ClientError) as caught:
        client.query(TableName=table, KeyConditionExpression=f"pk = :p AND {expression}",
                     ExpressionAttributeValues={":p": {"S": "p"}, ":s": {"S": "s" * 1025},
                                                ":short": {"S": "a"}}
                     if ":short" in expression else
                     {":p": {"S": "p"}, ":s": {"S": "s" * 1025}})
    assert error_code(caught) == "ValidationException"
    assert message(caught) == RANGE_TOO_LONG


def test_begins_with_an_over_long_prefix_matches_nothing(client, tables):  # noqa: F811
    """begins_with with a 1025-byte operand: DynamoDB's documentation does not say whether
    it is refused; ours answers no items (no key can be that long). Either DynamoDB's
    range-key error or an empty answer is right; a 500 or a match is not."""
    table = tables[("S", "S")]
    longest = "s" * 1024
    client.put_item(TableName=table, Item={"pk": {"S": "bw"}, "sk": {"S": longest}})
    try:
        for operand in (longest + "s", "\u00e9" * 513):
            try:
                answer = client.query(
                    TableName=table, KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
                    ExpressionAttributeValues={":p": {"S": "bw"}, ":s": {"S": operand}})
            except ClientError as err:
                assert err.response["Error"] == {"Code": "ValidationException",
                                                 "Message": RANGE_TOO_LONG}
            else:
                assert answer["Items"] == []
        whole = client.query(
            TableName=table, KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
            ExpressionAttributeValues={":p": {"S": "bw"}, ":s": {"S": longest}})
        assert [i["sk"]["S"] for i in whole["Items"]] == [longest]
    finally:
        client.delete_item(TableName=table, Key={"pk": {"S": "bw"}, "sk": {"S": longest}})


def test_query_with_an_over_long_partition_key_is_refused(client, tables):  # noqa: F811
    for key_type, value in (("S", "p" * 2049), ("B", b"\x00" * 2049)):
        with pytest.raises(ClientError) as caught:
            client.query(TableName=tables[(key_type, key_type)], KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {key_type: value}})
        assert error_code(caught) == "ValidationException"
        assert message(caught) == HASH_TOO_LONG


# --- Query order over keys stored compacted -------------------------------------------------

S_PREFIX = "k" * 120 + "\u00e9" * 60  # 240 UTF-8 bytes shared by (almost) every sort key
B_PREFIX = b"\x00" * 120 + b"\xff" * 100  # 220 bytes, the 0x00s escaped by the key codec
S_ALPHABET = ["a", "b", "\u00e9", "\uffff", "\U0001f600", "z"]  # UTF-8 order != UTF-16 order
B_ALPHABET = [b"\x00", b"\x01", b"\x7f", b"\xfe", b"\xff"]


def size(value) -> int:
    return utf8_len(value) if isinstance(value, str) else len(value)


def order_key(value):
    """DynamoDB's order: S by UTF-8 bytes, B bytewise."""
    return value.encode("utf-8") if isinstance(value, str) else value


def long_sort_keys(key_type: str) -> list:
    """About 60 distinct sort keys of 300..1024 bytes, almost all sharing their first 220+
    bytes (one bucket), some prefixes of others, plus a few outside the bucket; sorted."""
    rng = random.Random(20261130 + (key_type == "B"))
    prefix, alphabet = (S_PREFIX, S_ALPHABET) if key_type == "S" else (B_PREFIX, B_ALPHABET)
    keys = set()
    while len(keys) < 48:
        target = rng.randint(300, 1024)
        value = prefix
        while True:
            more = value + rng.choice(alphabet)
            if size(more) > target:
                break
            value = more
        keys.add(value)
    family = max(keys, key=size)  # prefixes of one long key diverge deep in the bucket
    for cut in (400, 600, 800, 1000):
        shorter = family
        while size(shorter) > cut:
            shorter = shorter[:-1]
        keys.add(shorter)
    filler = alphabet[0]
    keys.add(family + filler if size(family + filler) <= 1024 else family[:-1] + filler)
    full = prefix
    while size(full + filler) <= 1024:
        full += filler
    keys.add(full)  # exactly 1024 bytes (both alphabets' first symbol is one byte)
    keys.add(prefix)  # the bucket's prefix itself, and keys outside the bucket
    keys.add(prefix[:150])
    keys.add(prefix[:10])
    keys.add(full[:-1] + alphabet[-1])
    ordered = sorted(keys, key=order_key)
    assert all(size(k) <= 1024 for k in ordered) and size(full) == 1024
    return ordered


@pytest.fixture(scope="module")
def ordered(client):  # noqa: F811
    """Per key type: (table, [partition key a, partition key b], sorted sort keys); both
    2048-byte partition keys share their first 2047 bytes and hold the same sort keys."""
    result = {}
    for key_type in ("S", "B"):
        table = new_table(client, hash_type=key_type, sort_type=key_type)
        pks = (["p" * 2047 + "a", "p" * 2047 + "b"] if key_type == "S"
               else [b"\x00" * 2047 + b"\x01", b"\x00" * 2047 + b"\x02"])
        keys = long_sort_keys(key_type)
        requests = [{"PutRequest": {"Item": {"pk": {key_type: pk}, "sk": {key_type: sk},
                                             "owner": {"N": str(owner)}}}}
                    for owner, pk in enumerate(pks) for sk in keys]
        for start in range(0, len(requests), 25):
            answer = client.batch_write_item(RequestItems={table: requests[start:start + 25]})
            assert not answer.get("UnprocessedItems")
        result[key_type] = (table, pks, keys)
    return result


def query_all(client, table: str, key_type: str, pk, condition: str | None,  # noqa: F811
              values: dict, forward: bool, limit: int | None) -> list:
    """The sort keys a Query returns, following LastEvaluatedKey to the end; checks each
    page's LastEvaluatedKey is the key of its last item."""
    expression = "pk = :p" + (f" AND {condition}" if condition else "")
    attribute_values = {":p": {key_type: pk},
                        **{name: {key_type: value} for name, value in values.items()}}
    got, start = [], None
    while True:
        arguments = {"TableName": table, "KeyConditionExpression": expression,
                     "ExpressionAttributeValues": attribute_values, "ScanIndexForward": forward}
        if limit is not None:
            arguments["Limit"] = limit
        if start is not None:
            arguments["ExclusiveStartKey"] = start
        page = client.query(**arguments)
        assert all(item["pk"] == {key_type: pk} for item in page["Items"])
        got.extend(item["sk"][key_type] for item in page["Items"])
        start = page.get("LastEvaluatedKey")
        if start is None:
            return got
        assert page["Items"] and start == {"pk": page["Items"][-1]["pk"],
                                           "sk": page["Items"][-1]["sk"]}


COMPARISONS = {"=": lambda k, v: k == v, "<": lambda k, v: k < v, "<=": lambda k, v: k <= v,
               ">": lambda k, v: k > v, ">=": lambda k, v: k >= v}


def keeps(operator: str | None, operands: tuple, key) -> bool:
    """The model: whether sort key ``key`` meets the condition, in DynamoDB's order."""
    key, operands = order_key(key), [order_key(v) for v in operands]
    if operator is None:
        return True
    if operator == "between":
        return operands[0] <= key <= operands[1]
    if operator == "begins_with":
        return key.startswith(operands[0])
    return COMPARISONS[operator](key, operands[0])


def conditions(keys: list, key_type: str) -> list[tuple[str | None, dict, str | None, tuple]]:
    """(KeyConditionExpression part, its values, the model's operator and operands)."""
    low = S_ALPHABET[0] if key_type == "S" else B_ALPHABET[0]
    mid, other = keys[len(keys) // 2], keys[len(keys) // 4]
    absent = mid + low if size(mid + low) <= 1024 and mid + low not in keys else mid[:-1]
    assert absent not in keys
    longest = max(keys, key=size)
    deep = longest
    while size(deep) > 700:
        deep = deep[:-1]
    prefix = S_PREFIX if key_type == "S" else B_PREFIX
    cases: list[tuple[str | None, dict, str | None, tuple]] = [(None, {}, None, ())]
    for operand in (mid, absent, longest):
        cases += [(f"sk {operator} :v", {":v": operand}, operator, (operand,))
                  for operator in COMPARISONS]
    lo, hi = sorted((other, absent), key=order_key)
    cases.append(("sk BETWEEN :lo AND :hi", {":lo": lo, ":hi": hi}, "between", (lo, hi)))
    cases.append(("sk BETWEEN :lo AND :hi", {":lo": deep, ":hi": longest}, "between",
                  (deep, longest)))
    short = prefix[:200] if key_type == "B" else prefix[:100]
    for start in (prefix + low, deep, longest, short):
        cases.append(("begins_with(sk, :v)", {":v": start}, "begins_with", (start,)))
    return cases


@pytest.mark.parametrize("key_type", ["S", "B"])
def test_query_returns_long_sort_keys_in_dynamodb_order(client, ordered, key_type):  # noqa: F811
    table, pks, keys = ordered[key_type]
    assert len(keys) >= 55
    for pk in pks:
        assert query_all(client, table, key_type, pk, None, {}, True, None) == keys
        assert query_all(client, table, key_type, pk, None, {}, False, None) == keys[::-1]
        assert query_all(client, table, key_type, pk, None, {}, True, 7) == keys
        assert query_all(client, table, key_type, pk, None, {}, False, 7) == keys[::-1]
        owners = client.query(TableName=table, KeyConditionExpression="pk = :p",
                              ExpressionAttributeValues={":p": {key_type: pk}},
                              ProjectionExpression="#o",
                              ExpressionAttributeNames={"#o": "owner"})["Items"]
        assert {item["owner"]["N"] for item in owners} == {str(pks.index(pk))}


@pytest.mark.parametrize("key_type", ["S", "B"])
def test_key_conditions_with_long_operands_match_the_model(client, ordered, key_type):  # noqa: F811
    table, pks, keys = ordered[key_type]
    pk = pks[0]
    matched_some = 0
    for condition, values, operator, operands in conditions(keys, key_type):
        want = [k for k in keys if keeps(operator, operands, k)]
        matched_some += bool(want) and len(want) < len(keys)
        for forward in (True, False):
            expected = want if forward else want[::-1]
            for limit in (None, 7):
                got = query_all(client, table, key_type, pk, condition, values, forward, limit)
                assert got == expected, (condition, forward, limit)
    assert matched_some >= 12  # the conditions cut the bucket, not all-or-nothing


@pytest.mark.parametrize("key_type", ["S", "B"])
def test_scan_pages_visit_every_long_key_once(client, ordered, key_type):  # noqa: F811
    table, pks, keys = ordered[key_type]
    items = scan_all(client, table, limit=7)
    got = sorted((order_key(i["pk"][key_type]), order_key(i["sk"][key_type])) for i in items)
    want = sorted((order_key(pk), order_key(sk)) for pk in pks for sk in keys)
    assert len(items) == len(want)
    assert got == want


@pytest.mark.parametrize("key_type", ["S", "B"])
def test_batch_get_of_many_long_keys(client, ordered, key_type):  # noqa: F811
    table, pks, keys = ordered[key_type]
    wanted = [{"pk": {key_type: pks[1]}, "sk": {key_type: sk}} for sk in keys[:40]]
    answer = client.batch_get_item(RequestItems={table: {"Keys": wanted}})
    assert not answer.get("UnprocessedKeys")
    got = sorted(order_key(i["sk"][key_type]) for i in answer["Responses"][table])
    assert got == sorted(order_key(sk) for sk in keys[:40])
    assert all(i["owner"] == {"N": "1"} for i in answer["Responses"][table])
