"""Text to tree for DynamoDB's expressions (the parsing stage; binding is the next one).

Two stages (the contract is in :mod:`engine.expressions.ast`):

- :func:`parse_condition`, :func:`parse_update`, :func:`parse_projection` turn text into an
  *unbound* tree and apply the checks that depend on the text alone: syntax, redundant
  parentheses, reserved words, list index range, function names and where each function
  may appear, the 4 KB and 300-operator limits, and for conditions and projections arity,
  document-path operands, path depth and IN's 100 operands; for a KeyConditionExpression
  also its shape. Results are cached by ``(kind, text)`` (:mod:`engine.expressions.cache`).
- :func:`bind` (defined in :mod:`engine.expressions.placeholders`, re-exported here)
  resolves ``#names`` and ``:values`` for one request and applies the checks that need
  them: undefined placeholders, overlapping and conflicting paths of an update or
  projection, operands that must differ, and the operand types DynamoDB rejects before
  reading any item (``ADD a :s`` with a string, ``BETWEEN`` bounds out of order, ...).
  An update's arity, document-path operands and path depth are checked there too
  (:func:`check_update_action`), because DynamoDB checks them after the overlaps.

Checks run in DynamoDB's order and the first problem is reported: syntax first (the
token where reading stopped), then a walk of the tree in the order it is written.

Grammar and precedence follow the Developer Guide's "Condition and filter expressions,
operators, and functions" (``NOT`` binds tighter than ``AND``, ``AND`` tighter than ``OR``;
comparisons, ``BETWEEN`` and ``IN`` tighter than all three) and "Update expressions".
Keywords are case-insensitive; function names are case-sensitive ("These function names
are case sensitive"), so ``BEGINS_WITH(a, :p)`` is an unknown function. Error texts are
DynamoDB's, as its validation reports them.
"""

from __future__ import annotations

from typing import Any

from engine.errors import ValidationException
from engine.expressions.ast import (
    COMPARATORS,
    CONDITION_FUNCTIONS,
    AddAction,
    And,
    Arithmetic,
    Between,
    Call,
    Compare,
    Condition,
    DeleteAction,
    In,
    Not,
    Operand,
    Or,
    Path,
    Projection,
    RemoveAction,
    SetAction,
    Update,
    UpdateAction,
    ValueRef,
)
from engine.expressions.cache import cached_parse
from engine.expressions.keycondition import key_terms
from engine.expressions.placeholders import bind, path_string
from engine.expressions.reserved import is_reserved
from engine.expressions.tokens import (
    MAX_EXPRESSION_BYTES,
    Token,
    syntax_error_message,
    tokenize,
)

__all__ = [
    "CONDITION_KINDS",
    "MAX_IN_OPERANDS",
    "MAX_OPERATORS",
    "MAX_PATH_DEPTH",
    "MAX_LIST_INDEX",
    "KEYWORDS",
    "check_update_action",
    "parse_condition",
    "parse_update",
    "parse_projection",
    "bind",
    "path_string",
]

#: The expression kinds :func:`parse_condition` accepts (they name the expression in errors).
CONDITION_KINDS = ("ConditionExpression", "FilterExpression", "KeyConditionExpression")
#: "a IN (b, c, d) ... The list can contain up to 100 values, separated by commas."
MAX_IN_OPERANDS = 100
#: Developer Guide, "Nested attribute depth": "DynamoDB supports nested attributes up to 32
#: levels deep."
MAX_PATH_DEPTH = 32
#: Developer Guide, "Expression parameters": at most 300 operators or functions in one
#: expression.
MAX_OPERATORS = 300
# Parentheses, NOT and function calls nested deeper than this are refused as a syntax error
# at the token that goes too deep: the parser is recursive and must never overflow the stack.
_MAX_NESTING = 64

_UPDATE_FUNCTIONS = ("if_not_exists", "list_append")
_ARITY = {
    "attribute_exists": 1,
    "attribute_not_exists": 1,
    "attribute_type": 2,
    "begins_with": 2,
    "contains": 2,
    "size": 1,
    "if_not_exists": 2,
    "list_append": 2,
}
# Functions whose first operand must be a document path (not a value or a function).
_PATH_FIRST = ("attribute_exists", "attribute_not_exists", "attribute_type", "if_not_exists")
#: Words that are tokens of the grammar in every expression kind, so never attribute names
#: (DynamoDB reads all its expressions with one lexer): ``a.set`` is a syntax error in a
#: condition too. Case does not matter.
KEYWORDS = frozenset({"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE"})
_UPDATE_CLAUSES = ("SET", "REMOVE", "ADD", "DELETE")
#: The largest list index DynamoDB accepts in a document path (a Java int).
MAX_LIST_INDEX = 2**31 - 1


# --- public entry points ---------------------------------------------------------------


def parse_condition(text: str, kind: str = "ConditionExpression") -> Condition:
    """A ConditionExpression, FilterExpression or KeyConditionExpression to its unbound tree.

    ``kind`` names the expression in errors ("Invalid FilterExpression: ..."); for
    "KeyConditionExpression" the tree must also have a key condition's shape (only ``AND``,
    comparisons other than ``<>``, ``BETWEEN`` and ``begins_with`` on top-level attributes),
    though which attributes are the keys is checked later by
    :func:`engine.expressions.keycondition.key_condition`.
    """
    if kind not in CONDITION_KINDS:
        raise ValueError(f"kind must be one of {CONDITION_KINDS}, not {kind!r}")
    _check_text(text, kind)
    return cached_parse(kind, text, _CONDITION_PARSERS[kind])


def parse_update(text: str) -> Update:
    """An UpdateExpression to its unbound tree: its actions in the order written."""
    kind = "UpdateExpression"
    _check_text(text, kind)
    return cached_parse(kind, text, _parse_update_uncached)


def parse_projection(text: str) -> Projection:
    """A ProjectionExpression to its unbound tree: the paths in the order written."""
    kind = "ProjectionExpression"
    _check_text(text, kind)
    return cached_parse(kind, text, _parse_projection_uncached)


# --- text checks and parse drivers -----------------------------------------------------


def _check_text(text: Any, kind: str) -> None:
    """The checks that run before the cache is consulted: type, size, emptiness."""
    if not isinstance(text, str):
        raise ValidationException(f"{kind} must be a string")
    # A character is at most 4 UTF-8 bytes: only long texts need encoding to be measured.
    if len(text) * 4 > MAX_EXPRESSION_BYTES:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_EXPRESSION_BYTES:
            raise ValidationException(
                f"Invalid {kind}: Expression size has exceeded the maximum allowed size; "
                f"expression size: {size}"
            )
    if not text.strip():
        raise ValidationException(f"Invalid {kind}: The expression can not be empty;")


def _parse_condition_uncached(text: str, kind: str) -> Condition:
    parser = _Parser(text, kind)
    tree = parser.run(parser.condition_expression)
    checks = _Checks(kind)
    checks.first_pass_condition(tree, as_condition=True)
    checks.second_pass_condition(tree)
    if kind == "KeyConditionExpression":
        key_terms(tree)  # raises for anything but a key condition's shape
    return tree


def _condition_parser(kind: str):
    return lambda text: _parse_condition_uncached(text, kind)


_CONDITION_PARSERS = {kind: _condition_parser(kind) for kind in CONDITION_KINDS}


def _parse_update_uncached(text: str) -> Update:
    kind = "UpdateExpression"
    parser = _Parser(text, kind)
    tree = parser.run(parser.update_expression)
    checks = _Checks(kind)
    # DynamoDB reads an update a section at a time, in the order the sections first
    # appear; a section repeated is refused after the actions of all its clauses are read.
    sections: dict[str, list[tuple[int, int]]] = {}
    for clause, first, end in parser.clauses:
        sections.setdefault(clause, []).append((first, end))
    for clause, spans in sections.items():
        for first, end in spans:
            for action in tree.actions[first:end]:
                checks.first_pass_action(action)
        if len(spans) > 1:
            raise ValidationException(
                f'Invalid {kind}: The "{clause}" section can only be used once in an update '
                "expression;"
            )
    # The rest (arity, document paths, depth) comes after the paths' overlap check, which
    # needs the names: see check_update_action, called by bind.
    return tree


def _parse_projection_uncached(text: str) -> Projection:
    kind = "ProjectionExpression"
    parser = _Parser(text, kind)
    tree = parser.run(parser.projection_expression)
    checks = _Checks(kind)
    for path in tree.paths:
        checks.first_pass_path(path)
    for path in tree.paths:
        checks.depth(path)
    return tree


def check_update_action(action: UpdateAction, kind: str = "UpdateExpression") -> None:
    """The text-only checks DynamoDB applies to an update's actions after it has checked
    their paths for overlaps: function arity, operands that must be document paths, and
    path depth. :func:`engine.expressions.placeholders.bind` calls this for each action
    (last to first, as DynamoDB does)."""
    checks = _Checks(kind)
    checks.depth(action.path)
    if isinstance(action, SetAction):
        checks.second_pass_operand(action.value, in_update=True)


# --- the recursive-descent parser ------------------------------------------------------


class _SyntaxError(Exception):
    """Internal: parsing stopped at ``tokens[index]``. Converted to DynamoDB's message by
    :meth:`_Parser.run`; carried as an index so a failed alternative can be compared with
    another (the one that got further is reported)."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class _RedundantParentheses(Exception):
    """Internal: ``((x))`` was read. DynamoDB reports it as soon as it reads the outer
    pair, before any later syntax error, so it is not caught by backtracking."""


class _Parser:
    """One parse of one text. Only syntax (and redundant parentheses) is decided here;
    everything else is checked on the finished tree by :class:`_Checks`, so an alternative
    abandoned by backtracking leaves nothing behind."""

    def __init__(self, text: str, kind: str) -> None:
        self.text = text
        self.kind = kind
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0
        self.operators = 0  # operators and functions so far (MAX_OPERATORS)
        self.matching = _matching_parentheses(self.tokens)
        #: An update's clauses as written: (keyword, first action index, end index).
        self.clauses: list[tuple[str, int, int]] = []

    # -- plumbing

    def run(self, rule):
        try:
            tree = rule()
            if self.peek().kind != "eof":
                raise _SyntaxError(self.pos)
        except _SyntaxError as stop:
            raise ValidationException(
                syntax_error_message(self.kind, self.text, self.tokens, stop.index)
            ) from None
        except _RedundantParentheses:
            raise ValidationException(
                f"Invalid {self.kind}: The expression has redundant parentheses;"
            ) from None
        if self.operators > MAX_OPERATORS:
            # Checked before anything walks the tree: the limit is also what keeps every
            # recursive walk (checks, binding, evaluation) far from Python's stack limit.
            raise ValidationException(
                f"Invalid {self.kind}: The expression contains too many operators; "
                f"operator count: {self.operators}"
            )
        return tree

    def counted(self, node):
        self.operators += 1
        return node

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind != "eof":
            self.pos += 1
        return token

    def fail(self) -> _SyntaxError:
        return _SyntaxError(self.pos)

    def expect_punct(self, text: str) -> int:
        if not self.peek().is_punct(text):
            raise self.fail()
        index = self.pos
        self.advance()
        return index

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise self.fail()

    def leave(self) -> None:
        self.depth -= 1

    def note_redundant(self, open_index: int, close_index: int) -> None:
        """``((x))``: DynamoDB refuses a parenthesis pair directly around another."""
        inner = open_index + 1
        if self.tokens[inner].is_punct("(") and self.matching.get(inner) == close_index - 1:
            raise _RedundantParentheses()

    @staticmethod
    def is_attribute_word(token: Token) -> bool:
        return token.kind == "name" and token.text.upper() not in KEYWORDS

    # -- paths and operands

    def path(self) -> Path:
        token = self.peek()
        if not (token.kind == "hashname" or self.is_attribute_word(token)):
            raise self.fail()
        self.advance()
        elements: list[str | int] = [token.text]
        while True:
            token = self.peek()
            if token.is_punct("."):
                self.advance()
                token = self.peek()
                if not (token.kind == "hashname" or self.is_attribute_word(token)):
                    raise self.fail()
                self.advance()
                elements.append(token.text)
            elif token.is_punct("["):
                self.advance()
                token = self.peek()
                if token.kind != "number":
                    raise self.fail()
                self.advance()
                self.expect_punct("]")
                elements.append(int(token.text))
            else:
                return Path(tuple(elements))

    def operand(self) -> Operand:
        """A path, a ``:value`` or a function call, optionally in one pair of parentheses
        (two pairs are redundant)."""
        token = self.peek()
        if token.is_punct("("):
            self.enter()
            open_index = self.pos
            self.advance()
            inner = self.operand()
            close_index = self.expect_punct(")")
            self.note_redundant(open_index, close_index)
            self.leave()
            return inner
        if token.kind == "value":
            self.advance()
            return ValueRef(token.text)
        if self.is_attribute_word(token) and self.peek(1).is_punct("("):
            return self.call()
        return self.path()

    def call(self) -> Call:
        name = self.advance().text
        self.enter()
        self.expect_punct("(")
        args = [self.operand()]
        while self.peek().is_punct(","):
            self.advance()
            args.append(self.operand())
        self.expect_punct(")")
        self.leave()
        return self.counted(Call(name, tuple(args)))

    # -- conditions

    def condition_expression(self) -> Condition:
        return self.or_condition()

    def or_condition(self) -> Condition:
        left = self.and_condition()
        while self.peek().is_word("OR"):
            self.advance()
            left = self.counted(Or(left, self.and_condition()))
        return left

    def and_condition(self) -> Condition:
        left = self.not_condition()
        while self.peek().is_word("AND"):
            self.advance()
            left = self.counted(And(left, self.not_condition()))
        return left

    def not_condition(self) -> Condition:
        if self.peek().is_word("NOT"):
            self.enter()
            self.advance()
            operand = self.not_condition()
            self.leave()
            return self.counted(Not(operand))
        return self.primary_condition()

    def primary_condition(self) -> Condition:
        if not self.peek().is_punct("("):
            return self.simple_condition()
        # "(" opens either a parenthesized condition or a parenthesized operand, as in
        # "(a) = :v" or "(size(a)) > :n": try the condition first, then the operand; if both
        # fail, report the one that got further.
        start, depth, operators = self.pos, self.depth, self.operators
        try:
            self.enter()
            open_index = self.pos
            self.advance()
            inner = self.or_condition()
            close_index = self.expect_punct(")")
            self.note_redundant(open_index, close_index)
            self.leave()
            if not self.continues_comparison():
                return inner
            first_failure = self.pos
        except _SyntaxError as stop:
            first_failure = stop.index
        self.pos, self.depth, self.operators = start, depth, operators
        try:
            return self.simple_condition()
        except _SyntaxError as stop:
            raise _SyntaxError(max(first_failure, stop.index)) from None

    def continues_comparison(self) -> bool:
        token = self.peek()
        return (token.kind == "op" and token.text in COMPARATORS) or token.is_word(
            "BETWEEN"
        ) or token.is_word("IN")

    def simple_condition(self) -> Condition:
        left = self.operand()
        token = self.peek()
        if token.kind == "op" and token.text in COMPARATORS:
            self.advance()
            return self.counted(Compare(token.text, left, self.operand()))
        if token.is_word("BETWEEN"):
            self.advance()
            low = self.operand()
            if not self.peek().is_word("AND"):
                raise self.fail()
            self.advance()
            return self.counted(Between(left, low, self.operand()))
        if token.is_word("IN"):
            self.advance()
            self.expect_punct("(")
            options = [self.operand()]
            while self.peek().is_punct(","):
                self.advance()
                options.append(self.operand())
            self.expect_punct(")")
            return self.counted(In(left, tuple(options)))
        if isinstance(left, Call):
            return left  # a function used as a condition (which ones may is checked later)
        raise self.fail()

    # -- updates

    def update_expression(self) -> Update:
        actions: list[UpdateAction] = []
        while True:
            token = self.peek()
            clause = token.text.upper() if token.kind == "name" else ""
            if clause not in _UPDATE_CLAUSES:
                raise self.fail()
            self.advance()
            first = len(actions)
            actions.append(self.update_action(clause))
            while self.peek().is_punct(","):
                self.advance()
                actions.append(self.update_action(clause))
            self.clauses.append((clause, first, len(actions)))
            if self.peek().kind == "eof":
                return Update(tuple(actions))

    def update_action(self, clause: str) -> UpdateAction:
        path = self.path()
        if clause == "REMOVE":
            return RemoveAction(path)
        if clause in ("ADD", "DELETE"):
            token = self.peek()
            if token.kind != "value":
                raise self.fail()
            self.advance()
            value = ValueRef(token.text)
            return AddAction(path, value) if clause == "ADD" else DeleteAction(path, value)
        token = self.peek()
        if not (token.kind == "op" and token.text == "="):
            raise self.fail()
        self.advance()
        return SetAction(path, self.set_value())

    def set_value(self) -> Operand:
        """``operand``, ``operand + operand`` or ``operand - operand``, the whole possibly
        in parentheses."""
        if self.peek().is_punct("("):
            start, depth, operators = self.pos, self.depth, self.operators
            try:
                self.enter()
                open_index = self.pos
                self.advance()
                value = self.set_arithmetic()
                close_index = self.expect_punct(")")
                self.note_redundant(open_index, close_index)
                self.leave()
                token = self.peek()
                if not (token.kind == "op" and token.text in ("+", "-")):
                    return value
                first_failure = self.pos
            except _SyntaxError as stop:
                first_failure = stop.index
            self.pos, self.depth, self.operators = start, depth, operators
            try:
                return self.set_arithmetic()
            except _SyntaxError as stop:
                raise _SyntaxError(max(first_failure, stop.index)) from None
        return self.set_arithmetic()

    def set_arithmetic(self) -> Operand:
        left = self.operand()
        token = self.peek()
        if token.kind == "op" and token.text in ("+", "-"):
            self.advance()
            return self.counted(Arithmetic(token.text, left, self.operand()))
        return left

    # -- projections

    def projection_expression(self) -> Projection:
        paths = [self.path()]
        while self.peek().is_punct(","):
            self.advance()
            paths.append(self.path())
        return Projection(tuple(paths))


def _matching_parentheses(tokens: list[Token]) -> dict[int, int]:
    """Index of each "(" token to the index of its ")" (unbalanced ones are left out)."""
    matching: dict[int, int] = {}
    stack: list[int] = []
    for index, token in enumerate(tokens):
        if token.is_punct("("):
            stack.append(index)
        elif token.is_punct(")") and stack:
            matching[stack.pop()] = index
    return matching


# --- checks on the finished (unbound) tree ---------------------------------------------


class _Checks:
    """What DynamoDB refuses in a syntactically valid expression, in its order.

    The first pass walks the tree in the order it is written and stops at the first
    reserved word, out-of-range list index, unknown function, or function in the wrong
    place (and, in conditions, with the wrong number of operands). The second pass (for
    updates, after the paths' overlap check) covers arity, operands that must be document
    paths, path depth and the size of IN lists.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def fail(self, message: str) -> ValidationException:
        return ValidationException(f"Invalid {self.kind}: {message}")

    # -- first pass

    def first_pass_path(self, path: Path) -> None:
        for element in path.elements:
            if isinstance(element, int):
                if element > MAX_LIST_INDEX:
                    raise self.fail(
                        f"List index is not within the allowable range; index: [{element}]"
                    )
            elif not element.startswith("#") and is_reserved(element):
                raise self.fail(
                    f"Attribute name is a reserved keyword; reserved keyword: {element}"
                )

    def first_pass_condition(self, node: Condition | Operand, as_condition: bool) -> None:
        """``as_condition``: whether ``node`` stands where a condition is expected (a call
        there must be a condition function, elsewhere it must not)."""
        if isinstance(node, Path):
            self.first_pass_path(node)
        elif isinstance(node, Call):
            if node.name not in _ARITY:
                raise self.unknown(node)
            if node.name in _UPDATE_FUNCTIONS:
                raise self.fail(
                    "The function is not allowed in a condition expression; "
                    f"function: {node.name}"
                )
            if as_condition != (node.name in CONDITION_FUNCTIONS):
                raise self.misused(node)
            self.arity(node)
            for arg in node.args:
                self.first_pass_condition(arg, as_condition=False)
        elif isinstance(node, (And, Or)):
            self.first_pass_condition(node.left, as_condition=True)
            self.first_pass_condition(node.right, as_condition=True)
        elif isinstance(node, Not):
            self.first_pass_condition(node.operand, as_condition=True)
        elif isinstance(node, (Compare, Between, In)):
            for child in _operands_of(node):
                self.first_pass_condition(child, as_condition=False)

    def first_pass_action(self, action: UpdateAction) -> None:
        self.first_pass_path(action.path)
        if isinstance(action, SetAction):
            self.first_pass_set_operand(action.value, nested=False)

    def first_pass_set_operand(self, operand: Operand, nested: bool) -> None:
        if isinstance(operand, Path):
            self.first_pass_path(operand)
        elif isinstance(operand, Arithmetic):
            self.first_pass_set_operand(operand.left, nested=True)
            self.first_pass_set_operand(operand.right, nested=True)
        elif isinstance(operand, Call):
            if operand.name not in _ARITY:
                raise self.unknown(operand)
            if operand.name not in _UPDATE_FUNCTIONS:
                raise self.fail(
                    "The function is not allowed in an update expression; "
                    f"function: {operand.name}"
                )
            # list_append(if_not_exists(a, :empty), :v) is DynamoDB's documented idiom;
            # list_append inside another function or an arithmetic is not allowed.
            if operand.name == "list_append" and nested:
                raise self.misused(operand)
            for arg in operand.args:
                self.first_pass_set_operand(arg, nested=True)

    def unknown(self, call: Call) -> ValidationException:
        return self.fail(f"Invalid function name; function: {call.name}")

    def misused(self, call: Call) -> ValidationException:
        return self.fail(
            "The function is not allowed to be used this way in an expression; "
            f"function: {call.name}"
        )

    def arity(self, call: Call) -> None:
        if len(call.args) != _ARITY[call.name]:
            raise self.fail(
                "Incorrect number of operands for operator or function; operator or "
                f"function: {call.name}, number of operands: {len(call.args)}"
            )

    # -- second pass

    def depth(self, path: Path) -> None:
        if len(path.elements) > MAX_PATH_DEPTH:
            raise self.fail(
                "The document path has too many nesting levels; "
                f"nesting levels: {len(path.elements)}"
            )

    def second_pass_condition(self, node: Condition) -> None:
        if isinstance(node, (And, Or)):
            self.second_pass_condition(node.left)
            self.second_pass_condition(node.right)
        elif isinstance(node, Not):
            self.second_pass_condition(node.operand)
        elif isinstance(node, Call):
            self.second_pass_operand(node, in_update=False)
        else:
            for child in _operands_of(node):
                self.second_pass_operand(child, in_update=False)
            if isinstance(node, In) and len(node.options) > MAX_IN_OPERANDS:
                raise self.fail(
                    "The IN operator is provided with too many operands; "
                    f"number of operands: {len(node.options)}"
                )

    def second_pass_operand(self, operand: Operand, in_update: bool) -> None:
        if isinstance(operand, Path):
            self.depth(operand)
        elif isinstance(operand, Arithmetic):
            self.second_pass_operand(operand.left, in_update)
            self.second_pass_operand(operand.right, in_update)
        elif isinstance(operand, Call):
            if in_update:
                self.arity(operand)
            for arg in operand.args:
                self.second_pass_operand(arg, in_update)
            if operand.name in _PATH_FIRST and not isinstance(operand.args[0], Path):
                raise self.fail(
                    "Operator or function requires a document path; operator or function: "
                    f"{operand.name}"
                )


def _operands_of(node: Condition) -> tuple[Operand, ...]:
    """A comparison's, BETWEEN's or IN's operands in the order written."""
    if isinstance(node, Compare):
        return (node.left, node.right)
    if isinstance(node, Between):
        return (node.operand, node.low, node.high)
    if isinstance(node, In):
        return (node.operand, *node.options)
    raise TypeError(f"not a comparison: {node!r}")  # pragma: no cover
