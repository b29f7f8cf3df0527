"""Query and Scan through a real server and boto3, as the API Reference pages them: Limit
counts evaluated items (before the filter), the 1 MB page cap, Count / ScannedCount,
Select and its interplay with projections, ScanIndexForward, ExclusiveStartKey checks,
parallel-scan segment rules, and filters that may not name key attributes."""

from __future__ import annotations

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

ITEMS_PER_PARTITION = 12


def message(caught: pytest.ExceptionInfo) -> str:
    return caught.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def table(client):  # noqa: F811
    """pk S, sk N; partitions "a" and "b" with sk 0..11; odd sk items have colour red."""
    name = new_table(client, sort_type="N")
    for pk in ("a", "b"):
        for sk in range(ITEMS_PER_PARTITION):
            client.put_item(TableName=name, Item={
                "pk": {"S": pk}, "sk": {"N": str(sk)},
                "colour": {"S": "red" if sk % 2 else "blue"},
                "doc": {"M": {"tags": {"L": [{"S": f"t{sk}"}, {"S": "all"}]},
                              "size": {"N": str(sk * 10)}}},
            })
    return name


def query(client, table, **kwargs):  # noqa: F811
    return client.query(TableName=table, KeyConditionExpression="pk = :p",
                        ExpressionAttributeValues={":p": {"S": "a"}, **kwargs.pop("values", {})},
                        **kwargs)


def sort_keys(response: dict) -> list[int]:
    return [int(item["sk"]["N"]) for item in response["Items"]]


# --- Limit, filter, counts --------------------------------------------------------------


def test_limit_counts_items_evaluated_before_the_filter(client, table):  # noqa: F811
    page = query(client, table, Limit=4, FilterExpression="colour = :red",
                 values={":red": {"S": "red"}})
    assert page["ScannedCount"] == 4
    assert page["Count"] == 2
    assert sort_keys(page) == [1, 3]
    assert page["LastEvaluatedKey"] == {"pk": {"S": "a"}, "sk": {"N": "3"}}


def test_last_evaluated_key_even_when_the_filter_dropped_the_last_item(client, table):  # noqa: F811
    page = query(client, table, Limit=3, FilterExpression="colour = :red",
                 values={":red": {"S": "red"}})
    assert sort_keys(page) == [1]
    assert page["LastEvaluatedKey"] == {"pk": {"S": "a"}, "sk": {"N": "2"}}


def test_paging_with_a_filter_visits_everything(client, table):  # noqa: F811
    seen, start, pages = [], None, 0
    while True:
        extra = {"ExclusiveStartKey": start} if start else {}
        page = query(client, table, Limit=5, FilterExpression="colour = :red",
                     values={":red": {"S": "red"}}, **extra)
        seen += sort_keys(page)
        pages += 1
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert seen == list(range(1, ITEMS_PER_PARTITION, 2))
    assert pages == 3  # 5 + 5 + 2 evaluated; the last page ends the range


def test_limit_equal_to_the_rest_still_returns_a_last_key(client, table):  # noqa: F811
    # DynamoDB stops at Limit and reports a LastEvaluatedKey without looking further.
    page = query(client, table, Limit=ITEMS_PER_PARTITION)
    assert page["Count"] == ITEMS_PER_PARTITION
    assert "LastEvaluatedKey" in page
    after = query(client, table, ExclusiveStartKey=page["LastEvaluatedKey"])
    assert after["Count"] == 0 and "LastEvaluatedKey" not in after


def test_one_megabyte_page_cap(client):  # noqa: F811
    name = new_table(client, sort_type="N", partitions=1)
    blob = "x" * (100 * 1024)
    for sk in range(15):
        client.put_item(TableName=name, Item={"pk": {"S": "big"}, "sk": {"N": str(sk)},
                                              "blob": {"S": blob}})
    first = client.query(TableName=name, KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": "big"}})
    assert 9 <= first["ScannedCount"] <= 11  # ~1 MB of 100 KB items
    assert "LastEvaluatedKey" in first
    rest = client.query(TableName=name, KeyConditionExpression="pk = :p",
                        ExpressionAttributeValues={":p": {"S": "big"}},
                        ExclusiveStartKey=first["LastEvaluatedKey"])
    assert first["Count"] + rest["Count"] == 15
    scan = client.scan(TableName=name, Select="COUNT")
    assert scan["ScannedCount"] < 15 and "LastEvaluatedKey" in scan


def test_scan_index_forward(client, table):  # noqa: F811
    backwards = query(client, table, ScanIndexForward=False, Limit=3)
    assert sort_keys(backwards) == [11, 10, 9]
    rest = query(client, table, ScanIndexForward=False,
                 ExclusiveStartKey=backwards["LastEvaluatedKey"])
    assert sort_keys(rest) == list(range(8, -1, -1))


def test_consistent_read_accepted(client, table):  # noqa: F811
    assert query(client, table, ConsistentRead=True)["Count"] == ITEMS_PER_PARTITION
    assert client.scan(TableName=table, ConsistentRead=True)["Count"] == 2 * ITEMS_PER_PARTITION


# --- key conditions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("pk = :p AND sk BETWEEN :lo AND :hi", [3, 4, 5]),
        ("(pk = :p) AND (sk BETWEEN :lo AND :hi)", [3, 4, 5]),  # boto3's Key() & Key()
        ("(pk = :p) AND (sk >= :hi)", list(range(5, ITEMS_PER_PARTITION))),
        ("sk < :lo AND pk = :p", [0, 1, 2]),
        (":lo >= sk AND pk = :p", [0, 1, 2, 3]),
    ],
)
def test_key_condition_forms(client, table, expression, expected):  # noqa: F811
    values = {":p": {"S": "a"}, ":lo": {"N": "3"}, ":hi": {"N": "5"}}
    used = {name: value for name, value in values.items() if name in expression}
    page = client.query(TableName=table, KeyConditionExpression=expression,
                        ExpressionAttributeValues=used)
    assert sort_keys(page) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "sk = :lo",  # no partition key
        "pk = :p OR sk = :lo",
        "pk = :p AND colour = :lo",
        "pk < :p",
        "pk = :p AND sk <> :lo",
        "pk = :p AND BEGINS_WITH(sk, :lo)",  # function names are case-sensitive
        "((pk = :p)) AND sk >= :lo",  # DynamoDB refuses redundant parentheses
    ],
)
def test_bad_key_conditions(client, table, expression):  # noqa: F811
    values = {":p": {"S": "a"}, ":lo": {"N": "3"}}
    used = {name: value for name, value in values.items() if name in expression}
    with pytest.raises(ClientError) as caught:
        client.query(TableName=table, KeyConditionExpression=expression,
                     ExpressionAttributeValues=used)
    assert error_code(caught) == "ValidationException"


def test_query_needs_a_key_condition(client, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.query(TableName=table)
    assert error_code(caught) == "ValidationException"
    assert "KeyConditionExpression" in message(caught)


def test_query_on_an_index_this_table_lacks(client, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        query(client, table, IndexName="by-colour")
    assert "does not have the specified index: by-colour" in message(caught)


# --- filters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "values", "expected"),
    [
        ("colour = :red", {":red": {"S": "red"}}, [1, 3, 5, 7, 9, 11]),
        ("NOT colour = :red", {":red": {"S": "red"}}, [0, 2, 4, 6, 8, 10]),
        ("doc.#size BETWEEN :lo AND :hi", {":lo": {"N": "20"}, ":hi": {"N": "40"}}, [2, 3, 4]),
        ("doc.tags[0] IN (:a, :b)", {":a": {"S": "t1"}, ":b": {"S": "t7"}}, [1, 7]),
        ("contains(doc.tags, :t)", {":t": {"S": "t4"}}, [4]),
        ("size(doc.tags) > :n", {":n": {"N": "1"}}, list(range(ITEMS_PER_PARTITION))),
        ("begins_with(doc.tags[0], :pre) AND colour <> :red",
         {":pre": {"S": "t1"}, ":red": {"S": "red"}}, [10]),
        ("attribute_type(doc.#size, :n) OR attribute_exists(nothing)",
         {":n": {"S": "N"}}, list(range(ITEMS_PER_PARTITION))),
        ("(doc.#size < :lo OR doc.#size > :hi) AND colour = :blue",
         {":lo": {"N": "20"}, ":hi": {"N": "90"}, ":blue": {"S": "blue"}}, [0, 10]),
    ],
)
def test_filter_expressions(client, table, expression, values, expected):  # noqa: F811
    names = {"#size": "size"} if "#size" in expression else {}
    extra = {"ExpressionAttributeNames": names} if names else {}
    page = query(client, table, FilterExpression=expression, values=values, **extra)
    assert sort_keys(page) == expected
    assert page["ScannedCount"] == ITEMS_PER_PARTITION


@pytest.mark.parametrize("expression", ["sk > :n", "attribute_exists(pk)", "size(sk) > :n"])
def test_query_filter_may_not_name_key_attributes(client, table, expression):  # noqa: F811
    values = {":n": {"N": "1"}} if ":n" in expression else {}
    with pytest.raises(ClientError) as caught:
        query(client, table, FilterExpression=expression, values=values)
    assert error_code(caught) == "ValidationException"
    assert "Filter Expression can only contain non-primary key attributes" in message(caught)


def test_scan_filter_may_name_key_attributes(client, table):  # noqa: F811
    page = client.scan(TableName=table, FilterExpression="pk = :a AND sk < :n",
                       ExpressionAttributeValues={":a": {"S": "b"}, ":n": {"N": "2"}})
    assert sorted(sort_keys(page)) == [0, 1]
    assert page["ScannedCount"] == 2 * ITEMS_PER_PARTITION


# --- Select and projections -------------------------------------------------------------


def test_select_count(client, table):  # noqa: F811
    page = query(client, table, Select="COUNT", FilterExpression="colour = :red",
                 values={":red": {"S": "red"}})
    assert "Items" not in page
    assert page["Count"] == 6 and page["ScannedCount"] == ITEMS_PER_PARTITION


def test_select_specific_attributes(client, table):  # noqa: F811
    page = query(client, table, Select="SPECIFIC_ATTRIBUTES", ProjectionExpression="sk, doc.#s",
                 ExpressionAttributeNames={"#s": "size"}, Limit=1)
    assert page["Items"] == [{"sk": {"N": "0"}, "doc": {"M": {"size": {"N": "0"}}}}]
    implicit = query(client, table, ProjectionExpression="colour", Limit=1)
    assert implicit["Items"] == [{"colour": {"S": "blue"}}]


def test_projection_and_filter_on_different_attributes(client, table):  # noqa: F811
    page = query(client, table, ProjectionExpression="sk", FilterExpression="colour = :red",
                 values={":red": {"S": "red"}}, Limit=2)
    assert page["Items"] == [{"sk": {"N": "1"}}]


@pytest.mark.parametrize(
    ("select", "projection", "fragment"),
    [
        ("SPECIFIC_ATTRIBUTES", None, "SPECIFIC_ATTRIBUTES"),
        ("ALL_ATTRIBUTES", "colour", "ALL_ATTRIBUTES"),
        ("COUNT", "colour", "COUNT"),
        ("ALL_PROJECTED_ATTRIBUTES", None, "ALL_PROJECTED_ATTRIBUTES"),
    ],
)
def test_select_conflicts(client, table, select, projection, fragment):  # noqa: F811
    extra = {"ProjectionExpression": projection} if projection else {}
    for call in (lambda: query(client, table, Select=select, **extra),
                 lambda: client.scan(TableName=table, Select=select, **extra)):
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == "ValidationException"
        assert fragment in message(caught)


# --- ExclusiveStartKey ------------------------------------------------------------------


@pytest.mark.parametrize(
    "start",
    [
        {"pk": {"S": "a"}},
        {"pk": {"S": "a"}, "sk": {"S": "1"}},
        {"pk": {"S": "a"}, "sk": {"N": "1"}, "colour": {"S": "red"}},
    ],
)
def test_exclusive_start_key_must_match_the_schema(client, table, start):  # noqa: F811
    for call in (lambda: query(client, table, ExclusiveStartKey=start),
                 lambda: client.scan(TableName=table, ExclusiveStartKey=start)):
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == "ValidationException"
        assert "The provided starting key is invalid" in message(caught)


def test_query_start_key_of_another_partition(client, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        query(client, table, ExclusiveStartKey={"pk": {"S": "b"}, "sk": {"N": "1"}})
    assert error_code(caught) == "ValidationException"


def test_query_start_key_outside_the_key_condition(client, table):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.query(TableName=table, KeyConditionExpression="pk = :p AND sk > :n",
                     ExpressionAttributeValues={":p": {"S": "a"}, ":n": {"N": "5"}},
                     ExclusiveStartKey={"pk": {"S": "a"}, "sk": {"N": "2"}})
    assert error_code(caught) == "ValidationException"
    assert "outside query boundaries" in message(caught)
    # A key at the boundary of the range is inside it.
    page = client.query(TableName=table, KeyConditionExpression="pk = :p AND sk >= :n",
                        ExpressionAttributeValues={":p": {"S": "a"}, ":n": {"N": "5"}},
                        ExclusiveStartKey={"pk": {"S": "a"}, "sk": {"N": "5"}})
    assert sort_keys(page) == list(range(6, ITEMS_PER_PARTITION))


# --- parallel scan ----------------------------------------------------------------------


def test_segments_cover_the_table_once(client, table):  # noqa: F811
    seen = []
    for segment in range(3):
        start = None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            page = client.scan(TableName=table, Segment=segment, TotalSegments=3, Limit=4,
                               **extra)
            seen += [(item["pk"]["S"], int(item["sk"]["N"])) for item in page["Items"]]
            start = page.get("LastEvaluatedKey")
            if not start:
                break
    assert sorted(seen) == sorted((pk, sk) for pk in "ab" for sk in range(ITEMS_PER_PARTITION))


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"Segment": 0}, "TotalSegments parameter is required"),
        ({"TotalSegments": 2}, "Segment parameter is required"),
        ({"Segment": 2, "TotalSegments": 2}, "must be less than parameter TotalSegments"),
        ({"Segment": 0, "TotalSegments": 1_000_001}, "totalSegments"),
    ],
)
def test_segment_rules(client, table, arguments, fragment):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.scan(TableName=table, **arguments)
    assert error_code(caught) == "ValidationException"
    assert fragment in message(caught)


def test_segment_resumed_from_a_key_outside_it(client, table):  # noqa: F811
    first = client.scan(TableName=table, Segment=0, TotalSegments=2, Limit=1)
    with pytest.raises(ClientError) as caught:
        client.scan(TableName=table, Segment=1, TotalSegments=2,
                    ExclusiveStartKey=first["LastEvaluatedKey"])
    assert error_code(caught) == "ValidationException"
    assert "does not map to the provided Segment" in message(caught)


def test_limit_must_be_positive(client, table):  # noqa: F811
    import botocore.exceptions

    with pytest.raises((ClientError, botocore.exceptions.ParamValidationError)):
        client.scan(TableName=table, Limit=0)
