"""The expression language through the server, per expression kind, from the Developer
Guide's examples and rules ("Using expressions in DynamoDB"): update actions on nested
documents, conditions with every comparator and function and their precedence,
projections of nested paths, placeholders and their errors, reserved words, size
limits. Semantics live in engine.expressions; these tests check that the server hands
requests to it and answers in DynamoDB's shapes and error types."""

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

from engine.expressions.cache import parse_cache_info


def message(caught: pytest.ExceptionInfo) -> str:
    return caught.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def table(client):  # noqa: F811
    return new_table(client, sort_type=None)


_keys = iter(range(10**6))

# The Developer Guide's ProductCatalog item (abridged), in typed JSON.
PRODUCT = {
    "Title": {"S": "Bicycle 123"},
    "Price": {"N": "500"},
    "Color": {"L": [{"S": "Red"}, {"S": "Black"}]},
    "ProductCategory": {"S": "Bicycle"},
    "Tags": {"SS": ["road", "sport"]},  # sets come back sorted
    "Pictures": {"M": {
        "FrontView": {"S": "http://example.com/front.jpg"},
        "RearView": {"S": "http://example.com/rear.jpg"},
    }},
    "ProductReviews": {"M": {
        "FiveStar": {"L": [{"S": "Excellent!"}, {"S": "Great value"}]},
        "OneStar": {"L": [{"S": "Terrible"}]},
    }},
    "Quantity": {"N": "10"},
}


def product(client, table) -> dict:  # noqa: F811
    key = {"pk": {"S": f"product-{next(_keys)}"}}
    client.put_item(TableName=table, Item={**key, **PRODUCT})
    return key


def item(client, table, key) -> dict:  # noqa: F811
    return client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]


# --- UpdateExpression -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "values", "check"),
    [
        ("SET Price = Price - :p", {":p": {"N": "15"}}, lambda i: i["Price"] == {"N": "485"}),
        ("SET Price = :p + Quantity", {":p": {"N": "1"}}, lambda i: i["Price"] == {"N": "11"}),
        ("SET Color = list_append(Color, :c)", {":c": {"L": [{"S": "White"}]}},
         lambda i: [c["S"] for c in i["Color"]["L"]] == ["Red", "Black", "White"]),
        ("SET Color = list_append(:c, Color)", {":c": {"L": [{"S": "White"}]}},
         lambda i: [c["S"] for c in i["Color"]["L"]] == ["White", "Red", "Black"]),
        ("SET Stock = if_not_exists(Stock, :zero) + :n", {":zero": {"N": "0"}, ":n": {"N": "3"}},
         lambda i: i["Stock"] == {"N": "3"}),
        ("SET Price = if_not_exists(Price, :p)", {":p": {"N": "1"}},
         lambda i: i["Price"] == {"N": "500"}),
        ("SET Pictures.SideView = :s", {":s": {"S": "side"}},
         lambda i: i["Pictures"]["M"]["SideView"] == {"S": "side"}),
        ("SET ProductReviews.FiveStar[0] = :r", {":r": {"S": "Best"}},
         lambda i: i["ProductReviews"]["M"]["FiveStar"]["L"][0] == {"S": "Best"}),
        ("SET Color[5] = :c", {":c": {"S": "Appended"}},
         lambda i: i["Color"]["L"][-1] == {"S": "Appended"} and len(i["Color"]["L"]) == 3),
        ("SET Title = ProductCategory", None, lambda i: i["Title"] == {"S": "Bicycle"}),
        ("REMOVE Pictures.RearView, Color[0]", None,
         lambda i: "RearView" not in i["Pictures"]["M"] and i["Color"]["L"] == [{"S": "Black"}]),
        ("REMOVE ProductReviews.FiveStar[1], Quantity", None,
         lambda i: len(i["ProductReviews"]["M"]["FiveStar"]["L"]) == 1 and "Quantity" not in i),
        ("ADD Quantity :n, Tags :t", {":n": {"N": "-2"}, ":t": {"SS": ["new"]}},
         lambda i: i["Quantity"] == {"N": "8"} and set(i["Tags"]["SS"]) == {"sport", "road",
                                                                             "new"}),
        ("DELETE Tags :t", {":t": {"SS": ["road"]}}, lambda i: i["Tags"] == {"SS": ["sport"]}),
        ("SET a = :v REMOVE Quantity ADD n :one DELETE Tags :t",
         {":v": {"S": "x"}, ":one": {"N": "1"}, ":t": {"SS": ["sport", "road"]}},
         lambda i: i["a"] == {"S": "x"} and "Quantity" not in i and i["n"] == {"N": "1"}
         and "Tags" not in i),
    ],
)
def test_update_actions(client, table, expression, values, check):  # noqa: F811
    key = product(client, table)
    extra = {"ExpressionAttributeValues": values} if values else {}
    client.update_item(TableName=table, Key=key, UpdateExpression=expression, **extra)
    assert check(item(client, table, key))


@pytest.mark.parametrize(
    ("expression", "values", "fragment"),
    [
        ("SET Price = Title + :p", {":p": {"N": "1"}}, "incorrect data type"),
        ("SET Absent = Nothing + :p", {":p": {"N": "1"}}, "does not exist in the item"),
        ("SET Pictures.A.B = :p", {":p": {"N": "1"}}, "document path provided in the update"),
        ("ADD Title :p", {":p": {"N": "1"}}, None),
        ("ADD Quantity :s", {":s": {"S": "x"}}, None),
        ("SET Color = list_append(Color, :s)", {":s": {"S": "x"}}, None),
        ("SET a = :p, a = :p", {":p": {"N": "1"}}, "overlap"),
        ("SET Pictures = :p REMOVE Pictures.FrontView", {":p": {"N": "1"}}, "overlap"),
        ("SET a = :p SET b = :p", {":p": {"N": "1"}}, None),
        ("SET a = :undefined", None, "not defined"),
        ("SET #undefined = :p", {":p": {"N": "1"}}, "not defined"),
        ("REMOVE", None, None),
        ("SET Name = :p", {":p": {"N": "1"}}, "reserved keyword"),
        ("DELETE Quantity :t", {":t": {"SS": ["x"]}}, None),
    ],
)
def test_update_errors(client, table, expression, values, fragment):  # noqa: F811
    key = product(client, table)
    extra = {"ExpressionAttributeValues": values} if values else {}
    with pytest.raises(ClientError) as caught:
        client.update_item(TableName=table, Key=key, UpdateExpression=expression, **extra)
    assert error_code(caught) == "ValidationException"
    if fragment:
        assert fragment in message(caught)
    assert item(client, table, key) == {**key, **PRODUCT}  # nothing written


# --- ConditionExpression ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "values", "holds"),
    [
        ("Price = :p", {":p": {"N": "500"}}, True),
        ("Price <> :p", {":p": {"N": "500"}}, False),
        ("Price < :p", {":p": {"N": "600"}}, True),
        ("Price <= :p", {":p": {"N": "499"}}, False),
        ("Price > :p", {":p": {"N": "499"}}, True),
        ("Price >= :p", {":p": {"N": "501"}}, False),
        ("Price BETWEEN :lo AND :hi", {":lo": {"N": "100"}, ":hi": {"N": "500"}}, True),
        ("ProductCategory IN (:a, :b)", {":a": {"S": "Car"}, ":b": {"S": "Bicycle"}}, True),
        ("attribute_exists(Pictures.SideView)", None, False),
        ("attribute_not_exists(Manufacturer)", None, True),
        ("attribute_type(Color, :t)", {":t": {"S": "L"}}, True),
        ("begins_with(Pictures.FrontView, :p)", {":p": {"S": "http://"}}, True),
        ("contains(Color, :c)", {":c": {"S": "Red"}}, True),
        ("contains(Tags, :c)", {":c": {"S": "mountain"}}, False),
        ("size(ProductReviews.FiveStar) = :n", {":n": {"N": "2"}}, True),
        ("size(Title) > :n", {":n": {"N": "20"}}, False),
        ("Color[1] = :c", {":c": {"S": "Black"}}, True),
        ("NOT Price = :p AND Quantity = :q", {":p": {"N": "1"}, ":q": {"N": "10"}}, True),
        ("Price = :p OR Quantity = :p AND Title = :p",
         {":p": {"N": "500"}}, True),  # AND binds tighter than OR
        ("(Price = :p OR Quantity = :p) AND Title = :p", {":p": {"N": "500"}}, False),
        ("NOT (Price = :p OR Quantity = :q)", {":p": {"N": "1"}, ":q": {"N": "1"}}, True),
        ("Price = Quantity", None, False),
        ("Absent <> :p", {":p": {"N": "1"}}, True),
        ("Absent = :p", {":p": {"N": "1"}}, False),
    ],
)
def test_conditions(client, table, expression, values, holds):  # noqa: F811
    key = product(client, table)
    extra = {"ExpressionAttributeValues": values} if values else {}
    call = lambda: client.delete_item(  # noqa: E731
        TableName=table, Key=key, ConditionExpression=expression, **extra)
    if holds:
        call()
        assert "Item" not in client.get_item(TableName=table, Key=key)
    else:
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == "ConditionalCheckFailedException"


@pytest.mark.parametrize(
    ("expression", "values", "fragment"),
    [
        ("Price = ", None, "Syntax error"),
        ("BEGINS_WITH(Title, :p)", {":p": {"S": "B"}}, "Invalid function name"),
        ("unknown_function(Title)", None, "Invalid function name"),
        ("Price < :l", {":l": {"L": []}}, None),
        ("Price BETWEEN :hi AND :lo", {":lo": {"N": "1"}, ":hi": {"N": "9"}}, None),
        ("begins_with(Title, :n)", {":n": {"N": "1"}}, None),
        ("attribute_type(Title, :t)", {":t": {"S": "X"}}, None),
        ("size(Title)", None, None),
        ("Price = :p", {":p": {"N": "1"}, ":extra": {"N": "2"}}, "unused"),
        ("Status = :p", {":p": {"N": "1"}}, "reserved keyword"),
        ("((Price = :p))", {":p": {"N": "1"}}, "redundant parentheses"),
    ],
)
def test_condition_errors(client, table, expression, values, fragment):  # noqa: F811
    key = product(client, table)
    extra = {"ExpressionAttributeValues": values} if values else {}
    with pytest.raises(ClientError) as caught:
        client.delete_item(TableName=table, Key=key, ConditionExpression=expression, **extra)
    assert error_code(caught) == "ValidationException"
    if fragment:
        assert fragment in message(caught)


# --- ProjectionExpression ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "names", "expected"),
    [
        ("Title, Price", None, {"Title": PRODUCT["Title"], "Price": PRODUCT["Price"]}),
        ("Color[1], Pictures.FrontView", None, {
            "Color": {"L": [{"S": "Black"}]},
            "Pictures": {"M": {"FrontView": PRODUCT["Pictures"]["M"]["FrontView"]}},
        }),
        ("ProductReviews.FiveStar[0], ProductReviews.OneStar", None, {"ProductReviews": {"M": {
            "FiveStar": {"L": [{"S": "Excellent!"}]}, "OneStar": {"L": [{"S": "Terrible"}]},
        }}}),
        ("#n, #dot", {"#n": "Quantity", "#dot": "Pictures.FrontView"},
         {"Quantity": PRODUCT["Quantity"]}),
        ("Nothing, Color[7]", None, {}),
    ],
)
def test_projections(client, table, expression, names, expected):  # noqa: F811
    key = product(client, table)
    extra = {"ExpressionAttributeNames": names} if names else {}
    response = client.get_item(TableName=table, Key=key, ProjectionExpression=expression,
                               **extra)
    assert response.get("Item", {}) == expected


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("Title, Title", "overlap"),
        ("Pictures, Pictures.FrontView", "overlap"),
        ("Title,", "Syntax error"),
        ("Size", "reserved keyword"),
        ("a" * 4097, "Expression size has exceeded the maximum allowed size"),
    ],
)
def test_projection_errors(client, table, expression, fragment):  # noqa: F811
    with pytest.raises(ClientError) as caught:
        client.get_item(TableName=table, Key={"pk": {"S": "x"}}, ProjectionExpression=expression)
    assert error_code(caught) == "ValidationException"
    assert fragment in message(caught)


def test_expression_of_exactly_4096_bytes_accepted(client, table):  # noqa: F811
    names = " , ".join(f"a{i}" for i in range(800))
    expression = (names + " , " + "b" * 4096)[:4096].rstrip(" ,")
    expression += "b" * (4096 - len(expression))
    assert len(expression.encode()) == 4096
    client.get_item(TableName=table, Key={"pk": {"S": "x"}}, ProjectionExpression=expression)


# --- placeholders -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "values", "fragment"),
    [
        ({"#t": "Title", "#unused": "x"}, None, "ExpressionAttributeNames unused"),
        ({}, None, "ExpressionAttributeNames must not be empty"),
        ({"t": "Title"}, None, "invalid key"),
        ({"#t": "Title"}, {":v": {"N": "1"}}, "ExpressionAttributeValues unused"),
        (None, {}, "ExpressionAttributeValues must not be empty"),
        (None, {"v": {"N": "1"}}, "invalid key"),
    ],
)
def test_placeholder_errors(server, table, names, values, fragment):  # noqa: F811
    from test_server_items import raw_client

    condition = "attribute_exists(#t)" if names and "#t" in names else "attribute_exists(Title)"
    arguments = {"ConditionExpression": condition}
    if names is not None:
        arguments["ExpressionAttributeNames"] = names
    if values is not None:
        arguments["ExpressionAttributeValues"] = values
    with pytest.raises(ClientError) as caught:
        raw_client(server).delete_item(TableName=table, Key={"pk": {"S": "x"}}, **arguments)
    assert error_code(caught) == "ValidationException"
    assert fragment in message(caught)


def test_one_placeholder_serves_several_expressions(client, table):  # noqa: F811
    key = product(client, table)
    client.update_item(TableName=table, Key=key, UpdateExpression="SET #q = #q + :one",
                       ConditionExpression="#q > :one",
                       ExpressionAttributeNames={"#q": "Quantity"},
                       ExpressionAttributeValues={":one": {"N": "1"}})
    assert item(client, table, key)["Quantity"] == {"N": "11"}


def test_parsed_expressions_are_cached(client, table):  # noqa: F811
    key = product(client, table)
    expression = "SET Quantity = Quantity + :n"
    before = parse_cache_info()
    for _ in range(3):
        client.update_item(TableName=table, Key=key, UpdateExpression=expression,
                           ExpressionAttributeValues={":n": {"N": "1"}})
    after = parse_cache_info()
    assert after.hits - before.hits >= 2
    assert item(client, table, key)["Quantity"] == {"N": "13"}
