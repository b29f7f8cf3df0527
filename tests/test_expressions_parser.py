"""engine.expressions parser: text to unbound trees, with DynamoDB's syntax and messages.

Expected texts come from DynamoDB's documented grammar (Developer Guide, "Condition and
filter expressions, operators, and functions", "Update expressions", "Projection
expressions", "Reserved words") and the messages DynamoDB returns.
"""

from __future__ import annotations

import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ValidationException
from engine.expressions import (
    AddAction,
    And,
    Arithmetic,
    Between,
    Call,
    Compare,
    DeleteAction,
    In,
    Not,
    Or,
    Path,
    Placeholders,
    Projection,
    RemoveAction,
    SetAction,
    Update,
    ValueRef,
    bind,
    key_condition,
    parse_cache_info,
    parse_condition,
    parse_projection,
    parse_update,
)
from engine.expressions.cache import ParseCache
from engine.expressions.reserved import RESERVED_WORDS, is_reserved


def P(*elements):
    return Path(tuple(elements))


V = ValueRef


def error_of(parse, *args) -> str:
    with pytest.raises(ValidationException) as caught:
        parse(*args)
    return caught.value.message


# --- conditions: what parses ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a = :v", Compare("=", P("a"), V(":v"))),
        (":v = a", Compare("=", V(":v"), P("a"))),
        ("a<>:v", Compare("<>", P("a"), V(":v"))),
        ("a < b", Compare("<", P("a"), P("b"))),
        ("a <= :v", Compare("<=", P("a"), V(":v"))),
        ("a > :v", Compare(">", P("a"), V(":v"))),
        ("a >= :v", Compare(">=", P("a"), V(":v"))),
        ("a BETWEEN :lo AND :hi", Between(P("a"), V(":lo"), V(":hi"))),
        ("a between :lo and :hi", Between(P("a"), V(":lo"), V(":hi"))),
        ("a IN (:x)", In(P("a"), (V(":x"),))),
        ("a in (:x, b, :z)", In(P("a"), (V(":x"), P("b"), V(":z")))),
        ("attribute_exists(a)", Call("attribute_exists", (P("a"),))),
        ("attribute_not_exists (#a)", Call("attribute_not_exists", (P("#a"),))),
        ("attribute_type(a, :t)", Call("attribute_type", (P("a"), V(":t")))),
        ("begins_with(a, :p)", Call("begins_with", (P("a"), V(":p")))),
        ("contains(a, b)", Call("contains", (P("a"), P("b")))),
        ("size(a) > :n", Compare(">", Call("size", (P("a"),)), V(":n"))),
        (":n < size(a.b)", Compare("<", V(":n"), Call("size", (P("a", "b"),)))),
        # document paths: names, placeholders, list indexes, in any mix
        ("a.b[2].c = :v", Compare("=", P("a", "b", 2, "c"), V(":v"))),
        ("#n.#m[0] = :v", Compare("=", P("#n", "#m", 0), V(":v"))),
        ("a [ 1 ] [ 22 ] . b = :v", Compare("=", P("a", 1, 22, "b"), V(":v"))),
        # precedence: NOT > AND > OR
        (
            "a = :x OR b = :y AND c = :z",
            Or(
                Compare("=", P("a"), V(":x")),
                And(Compare("=", P("b"), V(":y")), Compare("=", P("c"), V(":z"))),
            ),
        ),
        (
            "NOT a = :x AND b = :y",
            And(Not(Compare("=", P("a"), V(":x"))), Compare("=", P("b"), V(":y"))),
        ),
        (
            "NOT (a = :x AND b = :y)",
            Not(And(Compare("=", P("a"), V(":x")), Compare("=", P("b"), V(":y")))),
        ),
        ("not not attribute_exists(a)", Not(Not(Call("attribute_exists", (P("a"),))))),
        (
            "a = :x AND b = :y AND c = :z",
            And(
                And(Compare("=", P("a"), V(":x")), Compare("=", P("b"), V(":y"))),
                Compare("=", P("c"), V(":z")),
            ),
        ),
        (
            "a = :x AND (b = :y OR c = :z)",
            And(
                Compare("=", P("a"), V(":x")),
                Or(Compare("=", P("b"), V(":y")), Compare("=", P("c"), V(":z"))),
            ),
        ),
        # BETWEEN's AND binds to BETWEEN, then AND joins conditions
        (
            "a BETWEEN :x AND :y AND b = :z",
            And(Between(P("a"), V(":x"), V(":y")), Compare("=", P("b"), V(":z"))),
        ),
        # parentheses around the whole, nested, and boto3's style
        ("(a = :v)", Compare("=", P("a"), V(":v"))),
        (
            "((#n0 = :v0) AND (#n1 BETWEEN :v1 AND :v2))",
            And(Compare("=", P("#n0"), V(":v0")), Between(P("#n1"), V(":v1"), V(":v2"))),
        ),
        (
            "((#n0 = :v0 AND #n1 = :v1) AND #n2 = :v2)",
            And(
                And(Compare("=", P("#n0"), V(":v0")), Compare("=", P("#n1"), V(":v1"))),
                Compare("=", P("#n2"), V(":v2")),
            ),
        ),
        ("(NOT #n0 = :v0)", Not(Compare("=", P("#n0"), V(":v0")))),
        # parentheses around an operand
        ("(a) = :v", Compare("=", P("a"), V(":v"))),
        ("(size(a)) > :n", Compare(">", Call("size", (P("a"),)), V(":n"))),
        ("((a) = (:v))", Compare("=", P("a"), V(":v"))),
        # whitespace of every kind, or none where tokens split themselves
        ("\ta\n=\r\n:v ", Compare("=", P("a"), V(":v"))),
        ("a=:v AND(b<>:w)", And(Compare("=", P("a"), V(":v")), Compare("<>", P("b"), V(":w")))),
    ],
)
def test_condition_parses(text, tree):
    assert parse_condition(text) == tree
    assert parse_condition(text, "FilterExpression") == tree


@pytest.mark.parametrize("word", ["AND", "and", "And", "aNd"])
def test_keywords_are_case_insensitive(word):
    tree = parse_condition(f"a = :x {word} NOT b = :y")
    assert tree == And(Compare("=", P("a"), V(":x")), Not(Compare("=", P("b"), V(":y"))))


# --- conditions: what DynamoDB refuses ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # syntax errors name the token and the text around it (previous token to next one)
        ("foo", 'Syntax error; token: "<EOF>", near: "foo"'),
        ("a+:delta<b", 'Syntax error; token: "+", near: "a+:delta"'),
        ("attribute_type()", 'Syntax error; token: ")", near: "()"'),
        ("contains (themes, :theme", 'Syntax error; token: "<EOF>", near: ":theme"'),
        ("a > 4", 'Syntax error; token: "4", near: "> 4"'),
        ("a = :v AND", 'Syntax error; token: "<EOF>", near: "AND"'),
        ("(a = :v", 'Syntax error; token: "<EOF>", near: ":v"'),
        ("a = :v)", 'Syntax error; token: ")", near: ":v)"'),
        ("a = :v $", 'Syntax error; token: "$", near: ":v $"'),
        ("a = 'x'", "Syntax error; token: \"'\", near: \"= 'x\""),
        ("a < b < c", 'Syntax error; token: "<", near: "b < c"'),
        ("a IN ()", 'Syntax error; token: ")", near: "()"'),
        ("a BETWEEN :x", 'Syntax error; token: "<EOF>", near: ":x"'),
        ("a BETWEEN :x OR :y", 'Syntax error; token: "OR", near: ":x OR :y"'),
        ("a[x] = :v", 'Syntax error; token: "x", near: "[x]"'),
        ("a[-1] = :v", 'Syntax error; token: "-", near: "[-1"'),
        ("a[01] = :v", 'Syntax error; token: "1", near: "01]"'),
        ("_x1 = :v", 'Syntax error; token: "_", near: "_x1"'),
        ("1a = :v", 'Syntax error; token: "1", near: "1a"'),
        ("set = :v", 'Syntax error; token: "set", near: "set ="'),
        ("a.remove = :v", 'Syntax error; token: "remove", near: ".remove ="'),
        ("a. = :v", 'Syntax error; token: "=", near: ". = :v"'),
        ("a = #", 'Syntax error; token: "#", near: "= #"'),
        ("a = :", 'Syntax error; token: ":", near: "= :"'),
        ("my-attr = :v", 'Syntax error; token: "-", near: "my-attr"'),
        ("and = :v", 'Syntax error; token: "and", near: "and ="'),
        ("a.in = :v", 'Syntax error; token: "in", near: ".in ="'),
        ("NOT", 'Syntax error; token: "<EOF>", near: "NOT"'),
        ("a = :v b = :w", 'Syntax error; token: "b", near: ":v b ="'),
        # function names are case-sensitive
        ("BEGINS_WITH(a, :p)", "Invalid function name; function: BEGINS_WITH"),
        ("Attribute_Exists(a)", "Invalid function name; function: Attribute_Exists"),
        ("foo(a)", "Invalid function name; function: foo"),
        ("a = bar(b)", "Invalid function name; function: bar"),
        # functions in the wrong place
        ("if_not_exists(a, :v) = :v", "The function is not allowed in a condition expression; "
         "function: if_not_exists"),
        ("list_append(a, :v)", "The function is not allowed in a condition expression; "
         "function: list_append"),
        ("size(a)", "The function is not allowed to be used this way in an expression; "
         "function: size"),
        ("NOT size(a)", "The function is not allowed to be used this way in an expression; "
         "function: size"),
        ("attribute_exists(a) = :v", "The function is not allowed to be used this way in an "
         "expression; function: attribute_exists"),
        ("contains(begins_with(a, :p), :v)", "The function is not allowed to be used this way "
         "in an expression; function: begins_with"),
        # arity and operand kinds
        ("attribute_exists(a, b)", "Incorrect number of operands for operator or function; "
         "operator or function: attribute_exists, number of operands: 2"),
        ("begins_with(a)", "Incorrect number of operands for operator or function; "
         "operator or function: begins_with, number of operands: 1"),
        ("size(a, b) > :n", "Incorrect number of operands for operator or function; "
         "operator or function: size, number of operands: 2"),
        ("attribute_exists(:v)", "Operator or function requires a document path; "
         "operator or function: attribute_exists"),
        ("attribute_type(:v, :t)", "Operator or function requires a document path; "
         "operator or function: attribute_type"),
        ("attribute_not_exists(size(a))", "Operator or function requires a document path; "
         "operator or function: attribute_not_exists"),
        # reserved words as bare names, as written
        ("status = :s", "Attribute name is a reserved keyword; reserved keyword: status"),
        ("a.Name = :s", "Attribute name is a reserved keyword; reserved keyword: Name"),
        ("begins_with(data, :p)", "Attribute name is a reserved keyword; reserved keyword: data"),
        # redundant parentheses
        ("((a = :v))", "The expression has redundant parentheses;"),
        ("((a)) = :v", "The expression has redundant parentheses;"),
        ("NOT ((a = :v))", "The expression has redundant parentheses;"),
        ("(((a = :v) AND b = :w))", "The expression has redundant parentheses;"),
        # ...reported as soon as it is read, before a later syntax error
        ("((a = :v)) AND", "The expression has redundant parentheses;"),
        # list indexes are Java ints
        ("a[2147483648] = :v", "List index is not within the allowable range; "
         "index: [2147483648]"),
        # the first problem in the order written wins
        ("status = :v AND foo(a)", "Attribute name is a reserved keyword; reserved keyword: "
         "status"),
        ("foo(a) AND status = :v", "Invalid function name; function: foo"),
    ],
)
def test_condition_errors(text, message):
    assert error_of(parse_condition, text) == f"Invalid ConditionExpression: {message}"


@pytest.mark.parametrize("kind", ["ConditionExpression", "FilterExpression"])
def test_errors_name_the_expression_kind(kind):
    assert error_of(parse_condition, "a =", kind).startswith(f"Invalid {kind}: Syntax error;")
    assert error_of(parse_condition, "", kind) == (
        f"Invalid {kind}: The expression can not be empty;"
    )


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_condition("a = :v", "UpdateExpression")


@pytest.mark.parametrize("text", ["", " ", "\t\n "])
def test_empty_expressions(text):
    for parse, kind in (
        (parse_condition, "ConditionExpression"),
        (parse_update, "UpdateExpression"),
        (parse_projection, "ProjectionExpression"),
    ):
        assert error_of(parse, text) == f"Invalid {kind}: The expression can not be empty;"


def test_not_a_string_is_refused():
    assert error_of(parse_condition, 5) == "ConditionExpression must be a string"


def test_expression_size_limit_counts_utf8_bytes():
    # 4 KB (4096 bytes) is allowed; one more byte is not. A multi-byte character counts
    # for its UTF-8 length.
    base = "a = :v OR b IN (:x)"
    padding = 4096 - len(base)
    assert parse_condition(base + " " * padding) == parse_condition(base)
    assert error_of(parse_condition, base + " " * (padding + 1)) == (
        "Invalid ConditionExpression: Expression size has exceeded the maximum allowed size; "
        "expression size: 4097"
    )
    message = error_of(parse_update, "SET a = :v" + " " * 2043 + "é" * 1022)
    assert message.endswith("expression size: 4097")


def test_in_takes_up_to_100_operands():
    options = ", ".join(f":v{i}" for i in range(100))
    assert len(parse_condition(f"a IN ({options})").options) == 100
    assert error_of(parse_condition, f"a IN ({options}, :v100)") == (
        "Invalid ConditionExpression: The IN operator is provided with too many operands; "
        "number of operands: 101"
    )


def test_operator_limit():
    text = " AND ".join(["a = :v"] * 150)  # 150 comparisons + 149 ANDs
    assert isinstance(parse_condition(text), And)
    assert error_of(parse_condition, text + " AND b = :w") == (
        "Invalid ConditionExpression: The expression contains too many operators; "
        "operator count: 301"
    )


def test_path_depth_limit_is_32():
    ok = "a" + ".b" * 31
    assert len(parse_condition(f"{ok} = :v").left.elements) == 32
    assert error_of(parse_condition, f"{ok}[0] = :v") == (
        "Invalid ConditionExpression: The document path has too many nesting levels; "
        "nesting levels: 33"
    )
    assert error_of(parse_projection, ok + ".c").endswith("nesting levels: 33")


def test_deep_nesting_is_a_syntax_error_not_a_crash():
    text = "(" * 200 + "a = :v" + ")" * 200
    assert error_of(parse_condition, text).startswith(
        'Invalid ConditionExpression: Syntax error; token: "("'
    )
    assert error_of(parse_condition, "NOT " * 200 + "a = :v").startswith(
        'Invalid ConditionExpression: Syntax error; token: "NOT"'
    )


# --- reserved words -----------------------------------------------------------------------


def test_reserved_word_list_is_the_documented_one():
    assert len(RESERVED_WORDS) == 573
    for word in ("ABORT", "STATUS", "NAME", "DATA", "TTL", "ZONE", "FLATTERN", "SIZE"):
        assert word in RESERVED_WORDS
    assert is_reserved("Status") and is_reserved("status") and not is_reserved("statuses")


@pytest.mark.parametrize("word", sorted(RESERVED_WORDS)[::37])
def test_reserved_words_need_a_placeholder(word):
    lowered = word.lower()
    if word in {"AND", "OR", "NOT", "BETWEEN", "IN"}:
        return  # keywords: a syntax error rather than a reserved-word error
    assert error_of(parse_condition, f"{lowered} = :v") == (
        f"Invalid ConditionExpression: Attribute name is a reserved keyword; "
        f"reserved keyword: {lowered}"
    )
    assert parse_condition("#w = :v") == Compare("=", P("#w"), V(":v"))


def test_function_names_are_not_reserved_word_uses():
    # SIZE is reserved, but size(...) is the function
    assert parse_condition("size(a) = :n") == Compare("=", Call("size", (P("a"),)), V(":n"))


# --- updates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "actions"),
    [
        ("SET a = :v", [SetAction(P("a"), V(":v"))]),
        ("set a=:v,b=c", [SetAction(P("a"), V(":v")), SetAction(P("b"), P("c"))]),
        ("SET a = a + :n", [SetAction(P("a"), Arithmetic("+", P("a"), V(":n")))]),
        ("SET a = :n - b.c", [SetAction(P("a"), Arithmetic("-", V(":n"), P("b", "c")))]),
        (
            "SET a = if_not_exists(a, :z) + :n",
            [SetAction(
                P("a"), Arithmetic("+", Call("if_not_exists", (P("a"), V(":z"))), V(":n"))
            )],
        ),
        (
            "SET l = list_append(if_not_exists(l, :empty), :more)",
            [SetAction(P("l"), Call(
                "list_append", (Call("if_not_exists", (P("l"), V(":empty"))), V(":more"))
            ))],
        ),
        ("SET a = (b + :n)", [SetAction(P("a"), Arithmetic("+", P("b"), V(":n")))]),
        ("SET a = (b) + (:n)", [SetAction(P("a"), Arithmetic("+", P("b"), V(":n")))]),
        ("SET a = (b)", [SetAction(P("a"), P("b"))]),
        ("SET a[0].#b = :v", [SetAction(P("a", 0, "#b"), V(":v"))]),
        ("REMOVE a, b[1], c.d", [RemoveAction(P("a")), RemoveAction(P("b", 1)),
                                 RemoveAction(P("c", "d"))]),
        ("ADD n :one, s :set", [AddAction(P("n"), V(":one")), AddAction(P("s"), V(":set"))]),
        ("DELETE s :set", [DeleteAction(P("s"), V(":set"))]),
        # clauses in any order, actions kept in the order written
        (
            "REMOVE r SET s = :v ADD n :n DELETE d :d",
            [RemoveAction(P("r")), SetAction(P("s"), V(":v")), AddAction(P("n"), V(":n")),
             DeleteAction(P("d"), V(":d"))],
        ),
        (
            "delete d :d add n :n remove r set s = :v, t = :w",
            [DeleteAction(P("d"), V(":d")), AddAction(P("n"), V(":n")), RemoveAction(P("r")),
             SetAction(P("s"), V(":v")), SetAction(P("t"), V(":w"))],
        ),
    ],
)
def test_update_parses(text, actions):
    assert parse_update(text) == Update(tuple(actions))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("whatever", 'Syntax error; token: "whatever", near: "whatever"'),
        ("SET", 'Syntax error; token: "<EOF>", near: "SET"'),
        ("SET a = :v,", 'Syntax error; token: "<EOF>", near: ","'),
        ("set a", 'Syntax error; token: "<EOF>", near: "a"'),
        ("set a b", 'Syntax error; token: "b", near: "a b"'),
        ("set a=set", 'Syntax error; token: "set", near: "=set"'),
        ("set :a = b", 'Syntax error; token: ":a", near: "set :a ="'),
        ("remove a = b", 'Syntax error; token: "=", near: "a = b"'),
        ("remove a b", 'Syntax error; token: "b", near: "a b"'),
        ("add a b", 'Syntax error; token: "b", near: "a b"'),
        ("delete a if_not_exists(b)", 'Syntax error; token: "if_not_exists", '
         'near: "a if_not_exists("'),
        ("set a = b / c", 'Syntax error; token: "/", near: "b / c"'),
        ("set a = b + c + d", 'Syntax error; token: "+", near: "c + d"'),
        ("set a[1] = \"eight\"", "Syntax error; token: \"\"\", near: \"= \"eight\""),
        ("SET if_not_exists(a, b) = a", 'Syntax error; token: "(", near: "if_not_exists(a"'),
        ("set (a = (b + c))", 'Syntax error; token: "(", near: "set (a"'),
        ("SET a = :v SET b = :w", 'The "SET" section can only be used once in an update '
         "expression;"),
        ("remove a set b = c REMOVE d", 'The "REMOVE" section can only be used once in an '
         "update expression;"),
        ("SET a = if_not_exist(a, :v)", "Invalid function name; function: if_not_exist"),
        ("SET a = size(b)", "The function is not allowed in an update expression; "
         "function: size"),
        ("SET a = attribute_exists(b)", "The function is not allowed in an update expression; "
         "function: attribute_exists"),
        ("SET a = if_not_exists(a, list_append(a, :l))", "The function is not allowed to be "
         "used this way in an expression; function: list_append"),
        ("SET a = list_append(a, :l) + :n", "The function is not allowed to be used this way "
         "in an expression; function: list_append"),
        (" remove Absolute ", "Attribute name is a reserved keyword; reserved keyword: Absolute"),
        # a section's actions are read before the section's repetition is reported
        ("SET a = :v SET b = status", "Attribute name is a reserved keyword; reserved "
         "keyword: status"),
        ("SET a = :v REMOVE b SET c = :w REMOVE status", 'The "SET" section can only be '
         "used once in an update expression;"),
        ("set #c = :c, x = abOrt", "Attribute name is a reserved keyword; reserved keyword: "
         "abOrt"),
    ],
)
def test_update_errors(text, message):
    assert error_of(parse_update, text) == f"Invalid UpdateExpression: {message}"


@pytest.mark.parametrize(
    "text",
    [
        "set a = if_not_exists(c)",
        "set a = list_append(c)",
        "set a = if_not_exists(:a, c)",
        "set a = if_not_exists(if_not_exists(a, b), c)",
        "set a" + ".b" * 32 + " = :v",
    ],
)
def test_update_checks_that_wait_for_the_overlap_check(text):
    # DynamoDB checks an update's arity, document-path operands and depth only after its
    # paths' overlaps (which needs the names): bind does (test_expressions_placeholders).
    assert isinstance(parse_update(text), Update)


def test_update_clause_keywords_are_case_insensitive():
    expected = Update((SetAction(P("a"), V(":v")), RemoveAction(P("b"))))
    for text in ("SET a = :v REMOVE b", "set a = :v remove b", "Set a = :v ReMoVe b"):
        assert parse_update(text) == expected


# --- projections --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "paths"),
    [
        ("a", [P("a")]),
        ("a, #b,c.d[3]", [P("a"), P("#b"), P("c", "d", 3)]),
        ("a, a", [P("a"), P("a")]),  # overlap is a binding-time check (names may alias)
    ],
)
def test_projection_parses(text, paths):
    assert parse_projection(text) == Projection(tuple(paths))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,, b", 'Syntax error; token: ",", near: ",, b"'),
        ("a,", 'Syntax error; token: "<EOF>", near: ","'),
        ("a b", 'Syntax error; token: "b", near: "a b"'),
        ("l[a]", 'Syntax error; token: "a", near: "[a]"'),
        ("size(a)", 'Syntax error; token: "(", near: "size(a"'),
        (":v", 'Syntax error; token: ":v", near: ":v"'),
        ("name", "Attribute name is a reserved keyword; reserved keyword: name"),
        ("and, b", 'Syntax error; token: "and", near: "and,"'),
    ],
)
def test_projection_errors(text, message):
    assert error_of(parse_projection, text) == f"Invalid ProjectionExpression: {message}"


# --- the parse cache ----------------------------------------------------------------------


def test_repeated_texts_are_parsed_once():
    text = "cache_probe_attribute = :v AND size(b) > :n"
    before = parse_cache_info()
    first = parse_condition(text)
    second = parse_condition(text)
    after = parse_cache_info()
    assert first is second
    assert after.hits >= before.hits + 1
    assert after.currsize <= after.maxsize
    # the kind is part of the key: the same text as a filter is a separate entry
    assert parse_condition(text, "FilterExpression") is not first


def test_parse_cache_is_bounded_and_lru():
    cache = ParseCache(maxsize=2)
    calls = []

    def parse(text):
        calls.append(text)
        return (text,)

    cache.get_or_parse("k", "a", parse)
    cache.get_or_parse("k", "b", parse)
    cache.get_or_parse("k", "a", parse)  # a is now the most recent
    cache.get_or_parse("k", "c", parse)  # evicts b
    cache.get_or_parse("k", "a", parse)
    cache.get_or_parse("k", "b", parse)
    assert calls == ["a", "b", "c", "b"]
    info = cache.info()
    assert (info.hits, info.misses, info.maxsize, info.currsize) == (2, 4, 2, 2)


def test_failed_parses_are_not_cached():
    cache = ParseCache(maxsize=4)

    def parse(text):
        raise ValidationException("bad")

    for _ in range(2):
        with pytest.raises(ValidationException):
            cache.get_or_parse("k", "x", parse)
    assert cache.info().currsize == 0 and cache.info().misses == 2


def test_cache_is_shared_safely_between_threads():
    texts = [f"t{i} = :v{i} OR attribute_exists(u{i})" for i in range(50)]
    results: list[list] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def work(slot):
        try:
            for _ in range(5):
                results[slot].append([parse_condition(text) for text in texts])
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    expected = [parse_condition(text) for text in texts]
    assert all(run == expected for slot in results for run in slot)


# --- generated trees round-trip through text ----------------------------------------------

_plain_names = st.sampled_from(["a", "b", "c1", "x_y", "Foo", "k_", "item9"])
_hash_names = st.from_regex(r"#[A-Za-z0-9_]{1,4}", fullmatch=True)
_values = st.from_regex(r":[A-Za-z0-9_]{1,4}", fullmatch=True)


@st.composite
def paths(draw):
    elements = [draw(st.one_of(_plain_names, _hash_names))]
    for _ in range(draw(st.integers(0, 3))):
        elements.append(draw(st.one_of(_plain_names, _hash_names, st.integers(0, 99))))
    return Path(tuple(elements))


_value_refs = _values.map(ValueRef)
_plain_operands = st.one_of(paths(), _value_refs)
_condition_operands = st.one_of(
    paths(), _value_refs, paths().map(lambda path: Call("size", (path,)))
)


def _condition_calls():
    return st.one_of(
        paths().map(lambda path: Call("attribute_exists", (path,))),
        paths().map(lambda path: Call("attribute_not_exists", (path,))),
        st.tuples(paths(), _value_refs).map(lambda args: Call("attribute_type", args)),
        st.tuples(_plain_operands, _plain_operands).map(lambda a: Call("begins_with", a)),
        st.tuples(_plain_operands, _condition_operands).map(lambda a: Call("contains", a)),
    )


_atoms = st.one_of(
    st.builds(Compare, st.sampled_from(["=", "<>", "<", "<=", ">", ">="]),
              _condition_operands, _condition_operands),
    st.builds(Between, _condition_operands, _condition_operands, _condition_operands),
    st.builds(In, _condition_operands,
              st.lists(_condition_operands, min_size=1, max_size=4).map(tuple)),
    _condition_calls(),
)
conditions = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.builds(And, inner, inner), st.builds(Or, inner, inner), st.builds(Not, inner)
    ),
    max_leaves=8,
)


class _Writer:
    """Writes trees as text with random spacing, keyword case and optional parentheses."""

    def __init__(self, draw):
        self.draw = draw

    def gap(self) -> str:  # where a space is optional
        return self.draw(st.sampled_from(["", "", " ", "  ", "\n", "\t "]))

    def space(self) -> str:  # where one is required
        return self.draw(st.sampled_from([" ", " ", "  ", "\n", " \t"]))

    def word(self, keyword: str) -> str:
        return "".join(
            c.upper() if self.draw(st.booleans()) else c.lower() for c in keyword
        )

    def path(self, path: Path) -> str:
        text = str(path.elements[0])
        for element in path.elements[1:]:
            if isinstance(element, int):
                text += f"{self.gap()}[{self.gap()}{element}{self.gap()}]"
            else:
                text += f"{self.gap()}.{self.gap()}{element}"
        return text

    def operand(self, operand) -> str:
        if isinstance(operand, Path):
            text = self.path(operand)
        elif isinstance(operand, ValueRef):
            text = operand.name
        elif isinstance(operand, Call):
            text = self.call(operand)
        else:
            text = (f"{self.operand(operand.left)}{self.gap()}{operand.op}{self.gap()}"
                    f"{self.operand(operand.right)}")
        if self.draw(st.integers(0, 4)) == 0:
            text = f"({self.gap()}{text}{self.gap()})"
        return text

    def call(self, call: Call) -> str:
        args = f"{self.gap()},{self.gap()}".join(self.operand(arg) for arg in call.args)
        return f"{call.name}{self.gap()}({self.gap()}{args}{self.gap()})"

    _RANK = {Or: 1, And: 2, Not: 3}

    def condition(self, node, needed: int = 0) -> str:
        rank = self._RANK.get(type(node), 4)
        if isinstance(node, Or):
            text = (f"{self.condition(node.left, 1)}{self.space()}{self.word('OR')}"
                    f"{self.space()}{self.condition(node.right, 2)}")
        elif isinstance(node, And):
            text = (f"{self.condition(node.left, 2)}{self.space()}{self.word('AND')}"
                    f"{self.space()}{self.condition(node.right, 3)}")
        elif isinstance(node, Not):
            text = f"{self.word('NOT')}{self.space()}{self.condition(node.operand, 3)}"
        elif isinstance(node, Compare):
            text = (f"{self.operand(node.left)}{self.gap()}{node.op}{self.gap()}"
                    f"{self.operand(node.right)}")
        elif isinstance(node, Between):
            text = (f"{self.operand(node.operand)}{self.space()}{self.word('BETWEEN')}"
                    f"{self.space()}{self.operand(node.low)}{self.space()}{self.word('AND')}"
                    f"{self.space()}{self.operand(node.high)}")
        elif isinstance(node, In):
            options = f"{self.gap()},{self.gap()}".join(map(self.operand, node.options))
            text = (f"{self.operand(node.operand)}{self.space()}{self.word('IN')}{self.gap()}"
                    f"({self.gap()}{options}{self.gap()})")
        else:
            text = self.call(node)
        if rank < needed or self.draw(st.integers(0, 5)) == 0:
            text = f"({self.gap()}{text}{self.gap()})"
        return text


@settings(max_examples=200)
@given(conditions, st.data())
def test_generated_conditions_round_trip(tree, data):
    text = _Writer(data.draw).condition(tree)
    assert parse_condition(text, "FilterExpression") == tree


_set_simple = st.one_of(
    paths(), _value_refs,
    st.tuples(paths(), _plain_operands).map(lambda args: Call("if_not_exists", args)),
)
_set_values = st.one_of(
    _set_simple,
    st.builds(Arithmetic, st.sampled_from(["+", "-"]), _set_simple, _set_simple),
    st.tuples(_set_simple, _set_simple).map(lambda args: Call("list_append", args)),
)
_actions = {
    "SET": st.builds(SetAction, paths(), _set_values),
    "REMOVE": st.builds(RemoveAction, paths()),
    "ADD": st.builds(AddAction, paths(), _value_refs),
    "DELETE": st.builds(DeleteAction, paths(), _value_refs),
}


@settings(max_examples=200)
@given(st.data())
def test_generated_updates_round_trip(data):
    draw = data.draw
    writer = _Writer(draw)
    clauses = draw(st.lists(st.sampled_from(list(_actions)), min_size=1, max_size=4,
                            unique=True))
    actions, parts = [], []
    for clause in clauses:
        clause_actions = draw(st.lists(_actions[clause], min_size=1, max_size=3))
        written = []
        for action in clause_actions:
            target = writer.path(action.path)
            if isinstance(action, SetAction):
                value = writer.operand(action.value)
                if not isinstance(action.value, Arithmetic) or value.startswith("("):
                    pass
                elif draw(st.booleans()):
                    value = f"({value})"
                written.append(f"{target}{writer.gap()}={writer.gap()}{value}")
            elif isinstance(action, RemoveAction):
                written.append(target)
            else:
                written.append(f"{target}{writer.space()}{action.value.name}")
        actions.extend(clause_actions)
        parts.append(writer.word(clause) + writer.space()
                     + f"{writer.gap()},{writer.gap()}".join(written))
    text = writer.gap() + writer.space().join(parts) + writer.gap()
    assert parse_update(text) == Update(tuple(actions))


@settings(max_examples=200)
@given(st.lists(paths(), min_size=1, max_size=5), st.data())
def test_generated_projections_round_trip(path_list, data):
    writer = _Writer(data.draw)
    text = f"{writer.gap()},{writer.gap()}".join(writer.path(path) for path in path_list)
    assert parse_projection(text) == Projection(tuple(path_list))


# --- garbage never raises anything but ValidationException -------------------------------

_fragments = st.sampled_from([
    "a", "b.c", "#n", ":v", "[0]", "[", "]", "(", ")", ",", ".", "=", "<>", "<", "<=", ">",
    ">=", "+", "-", "AND", "or", "NOT", "BETWEEN", "in", "SET", "remove", "ADD", "DELETE",
    "size", "begins_with", "if_not_exists", "list_append", "attribute_exists", "contains",
    "attribute_type", "status", "7", "$", "\"", "'", "é", "#", ":", " ", "\t",
])
_garbage = st.one_of(
    st.lists(_fragments, max_size=25).map(" ".join),
    st.lists(_fragments, max_size=25).map("".join),
    st.text(max_size=60),
)


_any_values = st.one_of(
    st.text(max_size=3), st.integers(-3, 3), st.booleans(), st.none(), st.binary(max_size=2),
    st.lists(st.integers(0, 2), max_size=2), st.sets(st.integers(0, 2), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(0, 2), max_size=2),
)


@settings(max_examples=200)
@given(_garbage, st.data())
def test_garbage_only_raises_validation_errors(text, data):
    """Whatever the text, parsing, binding (with every placeholder it names defined) and
    checking a key condition either succeed or raise ValidationException."""
    names = {token: "n" for token in re.findall(r"#[A-Za-z0-9_]+", text)}
    values = {token: data.draw(_any_values) for token in re.findall(r":[A-Za-z0-9_]+", text)}
    for kind in ("ConditionExpression", "FilterExpression", "KeyConditionExpression",
                 "UpdateExpression", "ProjectionExpression"):
        try:
            if kind == "UpdateExpression":
                tree = parse_update(text)
            elif kind == "ProjectionExpression":
                tree = parse_projection(text)
            else:
                tree = parse_condition(text, kind)
            bound = bind(tree, Placeholders(names or None, values or None), kind)
            if kind == "KeyConditionExpression":
                key_condition(bound, ("pk", "S"), ("sk", "N"))
        except ValidationException as err:
            assert err.message


def test_public_api_is_pinned():
    import engine.expressions as package

    assert {
        "parse_condition", "parse_update", "parse_projection", "parse_cache_info",
        "Placeholders", "bind", "key_condition", "check_filter_keys", "check_key_paths",
        "Path", "ValueRef", "Literal", "Call", "Arithmetic", "Compare", "Between", "In",
        "And", "Or", "Not", "SetAction", "RemoveAction", "AddAction", "DeleteAction",
        "Update", "Projection",
    } <= set(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is not None


# --- what boto3 writes --------------------------------------------------------------------


def _boto3_conditions():
    """Conditions as boto3's ConditionExpressionBuilder writes them (names and values all
    placeholders, every AND/OR/NOT in parentheses), with the sort key type for key ones."""
    from boto3.dynamodb.conditions import Attr, Key

    return [
        (Attr("a").eq(1) & Attr("b").is_in([1, 2]), None),
        (Attr("a").exists() | Attr("b").not_exists(), None),
        (Attr("a").attribute_type("S") & Attr("b").size().gt(3), None),
        (~(Attr("a").ne(1) | Attr("b").lt(2)) & Attr("c").begins_with("x"), None),
        (Attr("status").contains("y") & Attr("name.first[1]").between(1, 5), None),
        (Attr("a").lte(1) & Attr("b").gte(2) & Attr("c").gt(3) & ~Attr("d").exists(), None),
        (Key("pk").eq("p"), "N"),
        (Key("pk").eq("p") & Key("sk").between(1, 2), "N"),
        (Key("pk").eq("p") & Key("sk").begins_with("x"), "S"),
        (Key("pk").eq("p") & Key("sk").lt(5), "N"),
    ]


@pytest.mark.parametrize("index", range(10))
def test_boto3_built_expressions_parse_and_bind(index):
    from boto3.dynamodb.conditions import ConditionExpressionBuilder

    condition, sort_type = _boto3_conditions()[index]
    is_key = sort_type is not None
    built = ConditionExpressionBuilder().build_expression(condition, is_key_condition=is_key)
    kind = "KeyConditionExpression" if is_key else "FilterExpression"
    tree = parse_condition(built.condition_expression, kind)
    placeholders = Placeholders(
        built.attribute_name_placeholders, built.attribute_value_placeholders or None
    )
    bound = bind(tree, placeholders, kind)
    placeholders.check_all_used()
    if is_key:
        assert key_condition(bound, ("pk", "S"), ("sk", sort_type))[0] == "p"
