"""DynamoDB expressions: the subset the engine executes, parsed into the engine's tuples.

Supported (anything else gets a ``ValidationException`` that says what is not supported):

- UpdateExpression: ``SET a = :v``, ``SET a = a + :n`` / ``a - :n`` / ``:n + a``,
  ``SET a = if_not_exists(a, :v)``, ``REMOVE a, b``, ``ADD a :v``, ``DELETE a :v``;
  several actions per clause, several clauses, each clause keyword at most once.
- ConditionExpression / FilterExpression: ``attribute_exists(a)``,
  ``attribute_not_exists(a)``, ``a = :v``, ``a <> :v``, joined by ``AND`` (parentheses
  allowed).
- KeyConditionExpression: ``pk = :v`` optionally ``AND`` one of ``sk = | < | <= | > | >= :v``,
  ``sk BETWEEN :a AND :b``, ``begins_with(sk, :p)``.
- ProjectionExpression: comma-separated top-level names.

Names are plain identifiers or ``#placeholders`` from ExpressionAttributeNames; values are
``:placeholders`` from ExpressionAttributeValues. Only top-level attributes: document paths
(``a.b``, ``a[0]``) are refused, because the engine's actions name top-level attributes.
Unlike DynamoDB, reserved words (``name``, ``status``, ...) are accepted as bare names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.errors import ValidationException
from engine.attrvalue import deserialize, value_type

__all__ = [
    "ExpressionContext",
    "parse_update",
    "parse_condition",
    "parse_key_condition",
    "parse_projection",
    "evaluate_condition",
    "typed_equal",
]


class ExpressionContext:
    """Resolves ``#name`` and ``:value`` placeholders and remembers which were used.

    One context serves every expression of a request, so unused placeholders can be
    reported the way DynamoDB does once all of them are parsed (:meth:`check_all_used`).
    """

    def __init__(self, names: Any = None, values: Any = None) -> None:
        if names is not None and not isinstance(names, dict):
            raise ValidationException("ExpressionAttributeNames must be a map")
        if values is not None and not isinstance(values, dict):
            raise ValidationException("ExpressionAttributeValues must be a map")
        if names is not None and not names:
            raise ValidationException("ExpressionAttributeNames must not be empty")
        if values is not None and not values:
            raise ValidationException("ExpressionAttributeValues must not be empty")
        self._names: dict[str, Any] = names or {}
        self._values: dict[str, Any] = values or {}
        self._decoded: dict[str, Any] = {}
        self.used_names: set[str] = set()
        self.used_values: set[str] = set()

    def name(self, token: str, kind: str) -> str:
        if token not in self._names:
            raise ValidationException(
                f"Invalid {kind}: An expression attribute name used in the document path is not defined; attribute name: {token}"
            )
        resolved = self._names[token]
        if not isinstance(resolved, str) or not resolved:
            raise ValidationException(
                f"ExpressionAttributeNames contains invalid value: empty or not a string for key {token}"
            )
        self.used_names.add(token)
        return resolved

    def value(self, token: str, kind: str) -> Any:
        if token not in self._values:
            raise ValidationException(
                f"Invalid {kind}: An expression attribute value used in expression is not defined; attribute value: {token}"
            )
        if token not in self._decoded:
            self._decoded[token] = deserialize(self._values[token], token)
        self.used_values.add(token)
        return self._decoded[token]

    def check_all_used(self) -> None:
        """Call after every expression of the request is parsed."""
        unused_names = sorted(set(self._names) - self.used_names)
        if unused_names:
            raise ValidationException(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {"
                + ", ".join(unused_names)
                + "}"
            )
        unused_values = sorted(set(self._values) - self.used_values)
        if unused_values:
            raise ValidationException(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {"
                + ", ".join(unused_values)
                + "}"
            )


# --- tokenizer -------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<hashname>\#[A-Za-z0-9_]+)
  | (?P<value>:[A-Za-z0-9_]+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[0-9]+)
  | (?P<op><>|<=|>=|=|<|>|\+|-)
  | (?P<punct>[(),.\[\]])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # hashname, value, name, number, op, punct, eof
    text: str
    position: int


def _tokenize(expression: str, kind: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(expression):
        match = _TOKEN_RE.match(expression, position)
        if match is None:
            raise ValidationException(
                f'Invalid {kind}: Syntax error; token: "{expression[position]}", near: "{_near(expression, position)}"'
            )
        group = match.lastgroup
        assert group is not None
        if group != "space":
            tokens.append(_Token(group, match.group(), position))
        position = match.end()
    tokens.append(_Token("eof", "<EOF>", len(expression)))
    return tokens


def _near(expression: str, position: int) -> str:
    return expression[max(0, position - 10) : position + 10].strip()


class _Parser:
    def __init__(self, expression: Any, kind: str, context: ExpressionContext) -> None:
        if not isinstance(expression, str):
            raise ValidationException(f"{kind} must be a string")
        if not expression.strip():
            raise ValidationException(f"Invalid {kind}: The expression can not be empty;")
        self.expression = expression
        self.kind = kind
        self.context = context
        self.tokens = _tokenize(expression, kind)
        self.index = 0

    # token helpers
    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
        return token

    def is_keyword(self, word: str) -> bool:
        token = self.current
        return token.kind == "name" and token.text.upper() == word

    def accept_punct(self, text: str) -> bool:
        if self.current.kind in ("punct", "op") and self.current.text == text:
            self.advance()
            return True
        return False

    def expect_punct(self, text: str) -> None:
        if not self.accept_punct(text):
            self.syntax_error()

    def syntax_error(self, token: _Token | None = None) -> None:
        token = token or self.current
        raise ValidationException(
            f'Invalid {self.kind}: Syntax error; token: "{token.text}", near: "{_near(self.expression, token.position)}"'
        )

    def unsupported(self, what: str) -> None:
        raise ValidationException(f"Invalid {self.kind}: {what} is not supported by this server")

    def expect_end(self) -> None:
        if self.current.kind != "eof":
            self.syntax_error()

    # grammar pieces
    def path(self) -> str:
        """A top-level attribute name (plain or #placeholder); document paths refused."""
        token = self.current
        if token.kind == "name":
            self.advance()
            name = token.text
        elif token.kind == "hashname":
            self.advance()
            name = self.context.name(token.text, self.kind)
        else:
            self.syntax_error()
        if self.current.kind == "punct" and self.current.text in (".", "["):
            self.unsupported(f"the nested document path starting at {name!r} ({self.current.text})")
        return name

    def value(self) -> Any:
        token = self.current
        if token.kind != "value":
            self.syntax_error()
        self.advance()
        return self.context.value(token.text, self.kind)

    def function_name(self) -> str | None:
        """The lower-cased name if the current token starts a function call ``name(``."""
        token = self.current
        if token.kind != "name":
            return None
        following = self.tokens[self.index + 1]
        if following.kind == "punct" and following.text == "(":
            return token.text.lower()
        return None


def _check_overlap(seen: list[str], name: str, kind: str) -> None:
    if name in seen:
        raise ValidationException(
            f"Invalid {kind}: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [{name}], path two: [{name}]"
        )
    seen.append(name)


def _negate(number: int | Decimal) -> int | Decimal:
    return -number


# --- UpdateExpression ------------------------------------------------------------------

_UPDATE_CLAUSES = ("SET", "REMOVE", "ADD", "DELETE")


def parse_update(expression: Any, context: ExpressionContext) -> list[tuple]:
    """UpdateExpression to the engine's action tuples, in the order written."""
    kind = "UpdateExpression"
    parser = _Parser(expression, kind, context)
    actions: list[tuple] = []
    seen_clauses: set[str] = set()
    seen_paths: list[str] = []
    while parser.current.kind != "eof":
        token = parser.current
        clause = token.text.upper() if token.kind == "name" else ""
        if clause not in _UPDATE_CLAUSES:
            parser.syntax_error()
        if clause in seen_clauses:
            raise ValidationException(
                f'Invalid {kind}: The "{clause}" section can only be used once in an update expression;'
            )
        seen_clauses.add(clause)
        parser.advance()
        while True:
            action = _parse_update_action(parser, clause)
            _check_overlap(seen_paths, action[1], kind)
            actions.append(action)
            if not parser.accept_punct(","):
                break
    return actions


def _parse_update_action(parser: _Parser, clause: str) -> tuple:
    kind = parser.kind
    target = parser.path()
    if clause == "REMOVE":
        return ("REMOVE", target)
    if clause in ("ADD", "DELETE"):
        operand = parser.value()
        operand_type = value_type(operand)
        allowed = ("N", "SS", "NS", "BS") if clause == "ADD" else ("SS", "NS", "BS")
        if operand_type not in allowed:
            raise ValidationException(
                f"Invalid {kind}: Incorrect operand type for operator or function; operator: {clause}, operand type: {operand_type}"
            )
        return (clause, target, operand)
    # SET target = operand [(+|-) operand]
    parser.expect_punct("=")
    first = _parse_set_operand(parser, target)
    if parser.current.kind == "op" and parser.current.text in ("+", "-"):
        operator = parser.advance().text
        second = _parse_set_operand(parser, target)
        return _arithmetic_action(parser, target, first, operator, second)
    if first[0] == "value":
        return ("SET", target, first[1])
    if first[0] == "if_not_exists":
        return ("SET_IF_NOT_EXISTS", target, first[1])
    parser.unsupported(f"copying one attribute into another (SET {target} = {first[1]})")
    raise AssertionError("unreachable")


def _parse_set_operand(parser: _Parser, target: str) -> tuple[str, Any]:
    function = parser.function_name()
    if function is not None:
        if function != "if_not_exists":
            parser.unsupported(f"the function {parser.current.text}")
        parser.advance()
        parser.expect_punct("(")
        checked = parser.path()
        parser.expect_punct(",")
        default = parser.value()
        parser.expect_punct(")")
        if checked != target:
            parser.unsupported(
                f"if_not_exists on an attribute other than the one being set ({checked!r} vs {target!r})"
            )
        return ("if_not_exists", default)
    if parser.current.kind == "value":
        return ("value", parser.value())
    if parser.current.kind in ("name", "hashname"):
        return ("path", parser.path())
    parser.syntax_error()
    raise AssertionError("unreachable")


def _arithmetic_action(
    parser: _Parser, target: str, first: tuple[str, Any], operator: str, second: tuple[str, Any]
) -> tuple:
    kind = parser.kind
    if first == ("path", target) and second[0] == "value":
        number = second[1]
    elif operator == "+" and second == ("path", target) and first[0] == "value":
        number = first[1]
    else:
        parser.unsupported(
            f"this arithmetic form; only SET {target} = {target} + :n, "
            f"{target} - :n and :n + {target} are"
        )
    if value_type(number) != "N":
        raise ValidationException(
            f"Invalid {kind}: Incorrect operand type for operator or function; operator or function: {operator}, operand type: {value_type(number)}"
        )
    return ("INCREMENT", target, number if operator == "+" else _negate(number))


# --- ConditionExpression / FilterExpression --------------------------------------------


def parse_condition(
    expression: Any, context: ExpressionContext, kind: str = "ConditionExpression"
) -> list[tuple]:
    """A conjunction of clauses, each one of the engine's condition tuples."""
    parser = _Parser(expression, kind, context)
    clauses = _parse_conjunction(parser)
    parser.expect_end()
    return clauses


def _parse_conjunction(parser: _Parser) -> list[tuple]:
    clauses = _parse_condition_term(parser)
    while parser.is_keyword("AND"):
        parser.advance()
        clauses.extend(_parse_condition_term(parser))
    if parser.is_keyword("OR"):
        parser.unsupported("OR")
    return clauses


def _parse_condition_term(parser: _Parser) -> list[tuple]:
    if parser.is_keyword("NOT"):
        parser.unsupported("NOT")
    if parser.accept_punct("("):
        clauses = _parse_conjunction(parser)
        parser.expect_punct(")")
        return clauses
    function = parser.function_name()
    if function is not None:
        if function not in ("attribute_exists", "attribute_not_exists"):
            parser.unsupported(f"the function {parser.current.text}")
        parser.advance()
        parser.expect_punct("(")
        name = parser.path()
        parser.expect_punct(")")
        return [(function, name)]
    left = _parse_comparison_operand(parser)
    token = parser.current
    if token.kind == "name" and token.text.upper() in ("BETWEEN", "IN"):
        parser.unsupported(token.text.upper())
    if token.kind != "op" or token.text in ("+", "-"):
        parser.syntax_error()
    if token.text not in ("=", "<>"):
        parser.unsupported(f"the comparator {token.text}")
    parser.advance()
    right = _parse_comparison_operand(parser)
    if left[0] == "path" and right[0] == "value":
        return [(token.text, left[1], right[1])]
    if left[0] == "value" and right[0] == "path":
        return [(token.text, right[1], left[1])]
    parser.unsupported("comparing two attributes or two values")
    raise AssertionError("unreachable")


def _parse_comparison_operand(parser: _Parser) -> tuple[str, Any]:
    if parser.current.kind == "value":
        return ("value", parser.value())
    if parser.current.kind in ("name", "hashname"):
        if parser.function_name() is not None:
            parser.unsupported(f"the function {parser.current.text} as an operand")
        return ("path", parser.path())
    parser.syntax_error()
    raise AssertionError("unreachable")


# --- KeyConditionExpression ------------------------------------------------------------

_REVERSED = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def parse_key_condition(
    expression: Any, context: ExpressionContext, key_schema: list[tuple[str, str]]
) -> tuple[Any, tuple | None]:
    """KeyConditionExpression to ``(partition_key_value, sort_condition | None)``.

    ``key_schema`` is the table's ``[(name, type), ...]``, partition key first.
    """
    kind = "KeyConditionExpression"
    parser = _Parser(expression, kind, context)
    conditions = [_parse_key_term(parser)]
    while parser.is_keyword("AND"):
        parser.advance()
        conditions.append(_parse_key_term(parser))
    if parser.is_keyword("OR"):
        raise ValidationException(f"Invalid operator used in {kind}: OR")
    parser.expect_end()

    pk_name, pk_type = key_schema[0]
    sk_name, sk_type = key_schema[1] if len(key_schema) > 1 else (None, None)
    by_name: dict[str, tuple] = {}
    for name, condition in conditions:
        if name in by_name:
            raise ValidationException(
                f"KeyConditionExpressions must only contain one condition per key: {name}"
            )
        if name not in (pk_name, sk_name):
            raise ValidationException(
                f"Query condition missed key schema element: {pk_name if pk_name not in by_name else sk_name}"
                f" (the condition on {name!r} is not on a key attribute)"
            )
        by_name[name] = condition
    if pk_name not in by_name:
        raise ValidationException(f"Query condition missed key schema element: {pk_name}")
    pk_condition = by_name[pk_name]
    if pk_condition[0] != "=":
        raise ValidationException(
            f"Query key condition not supported: the partition key {pk_name} needs an equality condition"
        )
    _check_key_value(pk_name, pk_type, pk_condition[1])
    sort_condition = by_name.get(sk_name) if sk_name is not None else None
    if sort_condition is not None:
        for operand in sort_condition[1:]:
            _check_key_value(sk_name, sk_type, operand)
        if sort_condition[0] == "begins_with" and sk_type == "N":
            raise ValidationException(
                f"Invalid {kind}: Incorrect operand type for operator or function; operator or function: begins_with, operand type: N"
            )
    return pk_condition[1], sort_condition


def _check_key_value(name: str, expected_type: str, value: Any) -> None:
    actual = value_type(value)
    if actual != expected_type:
        raise ValidationException(
            f"One or more parameter values were invalid: Condition parameter type does not match schema type "
            f"(key {name} is {expected_type}, the value given is {actual})"
        )


def _parse_key_term(parser: _Parser) -> tuple[str, tuple]:
    if parser.accept_punct("("):
        term = _parse_key_term(parser)
        parser.expect_punct(")")
        return term
    function = parser.function_name()
    if function is not None:
        if function != "begins_with":
            raise ValidationException(
                f"Invalid {parser.kind}: Invalid function name; function: {parser.current.text}"
            )
        parser.advance()
        parser.expect_punct("(")
        name = parser.path()
        parser.expect_punct(",")
        prefix = parser.value()
        parser.expect_punct(")")
        return name, ("begins_with", prefix)
    if parser.current.kind == "value":
        value = parser.value()
        token = parser.current
        if token.kind != "op" or token.text not in _REVERSED:
            parser.syntax_error()
        parser.advance()
        name = parser.path()
        return name, (_REVERSED[token.text], value)
    name = parser.path()
    if parser.is_keyword("BETWEEN"):
        parser.advance()
        low = parser.value()
        if not parser.is_keyword("AND"):
            parser.syntax_error()
        parser.advance()
        high = parser.value()
        return name, ("between", low, high)
    token = parser.current
    if token.kind != "op" or token.text not in _REVERSED:
        if token.kind == "op":
            raise ValidationException(
                f"Invalid {parser.kind}: Invalid operator used in KeyConditionExpression: {token.text}"
            )
        parser.syntax_error()
    parser.advance()
    return name, (token.text, parser.value())


# --- ProjectionExpression --------------------------------------------------------------


def parse_projection(expression: Any, context: ExpressionContext) -> list[str]:
    kind = "ProjectionExpression"
    parser = _Parser(expression, kind, context)
    names: list[str] = []
    while True:
        _check_overlap(names, parser.path(), kind)
        if not parser.accept_punct(","):
            break
    parser.expect_end()
    return names


# --- evaluation (FilterExpression runs in the server, after the engine's read) ----------


def typed_equal(left: Any, right: Any) -> bool:
    """DynamoDB equality: same type and same value (``True`` is not ``1``)."""
    try:
        left_type, right_type = value_type(left), value_type(right)
    except TypeError:
        return False
    if left_type != right_type:
        return False
    if left_type == "L":
        return len(left) == len(right) and all(map(typed_equal, left, right))
    if left_type == "M":
        return left.keys() == right.keys() and all(typed_equal(left[k], right[k]) for k in left)
    return left == right


def evaluate_condition(clauses: list[tuple], item: dict[str, Any]) -> bool:
    for clause in clauses:
        operator, name = clause[0], clause[1]
        if operator == "attribute_exists":
            holds = name in item
        elif operator == "attribute_not_exists":
            holds = name not in item
        elif operator == "=":
            holds = name in item and typed_equal(item[name], clause[2])
        elif operator == "<>":
            # DynamoDB: a missing attribute is "not equal" to any value.
            holds = name not in item or not typed_equal(item[name], clause[2])
        else:
            raise ValueError(f"unknown condition operator {operator!r}")
        if not holds:
            return False
    return True
