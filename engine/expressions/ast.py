"""The parsed form of DynamoDB's five expression kinds — the contract between the parser
(:mod:`engine.expressions.parser`) and the evaluator (:mod:`engine.expressions.evaluate`,
:mod:`engine.expressions.update`, :mod:`engine.expressions.projection`).

Two stages, so parsing can be cached by the expression's text alone:

- **unbound** (what the parser returns and the cache keeps): path elements may be
  ``#name`` placeholders (a ``str`` starting with ``#``), value operands are
  :class:`ValueRef` (``:value`` placeholders).
- **bound** (what :func:`engine.expressions.parser.bind` returns for one request's
  ExpressionAttributeNames / ExpressionAttributeValues): every path element is a real
  attribute name (``str``) or list index (``int``), every value a :class:`Literal` holding
  the engine's Python value (``str``, ``int``/``Decimal``, ``bytes``, ``bool``, ``None``,
  ``set``, ``list``, ``dict`` — SPEC §2).

The evaluator only ever sees bound trees. Nodes are frozen dataclasses: hashable, safe to
share between threads and requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: One step of a document path: an attribute / map key name, or a list index.
PathElement = str | int


@dataclass(frozen=True, slots=True)
class Path:
    """A document path: ``a.b[2].c`` is ``Path(("a", "b", 2, "c"))``. The first element is
    always a name (a top-level attribute)."""

    elements: tuple[PathElement, ...]


@dataclass(frozen=True, slots=True)
class ValueRef:
    """An unbound ``:placeholder`` (ExpressionAttributeValues key, e.g. ``":v"``)."""

    name: str


@dataclass(frozen=True, slots=True)
class Literal:
    """A bound value: the engine's Python value of an ExpressionAttributeValues entry."""

    value: Any


@dataclass(frozen=True, slots=True)
class Call:
    """A function call. Operand functions: ``size(path)`` (in conditions),
    ``if_not_exists(path, operand)`` and ``list_append(a, b)`` (in SET). Condition
    functions (:data:`CONDITION_FUNCTIONS`) are :class:`Call` nodes used as conditions."""

    name: str
    args: tuple[Operand, ...]


@dataclass(frozen=True, slots=True)
class Arithmetic:
    """``left + right`` or ``left - right`` — only on the right of a SET action."""

    op: str  # "+" or "-"
    left: Operand
    right: Operand


#: Anything that yields a value.
Operand = Path | ValueRef | Literal | Call | Arithmetic


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # one of COMPARATORS
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True)
class Between:
    operand: Operand
    low: Operand
    high: Operand


@dataclass(frozen=True, slots=True)
class In:
    operand: Operand
    options: tuple[Operand, ...]  # 1..100 operands


@dataclass(frozen=True, slots=True)
class And:
    left: Condition
    right: Condition


@dataclass(frozen=True, slots=True)
class Or:
    left: Condition
    right: Condition


@dataclass(frozen=True, slots=True)
class Not:
    operand: Condition


#: A boolean expression: ConditionExpression, FilterExpression, KeyConditionExpression.
#: A :class:`Call` here is one of CONDITION_FUNCTIONS.
Condition = Compare | Between | In | And | Or | Not | Call

COMPARATORS = ("=", "<>", "<", "<=", ">", ">=")
CONDITION_FUNCTIONS = (
    "attribute_exists", "attribute_not_exists", "attribute_type", "begins_with", "contains",
)
OPERAND_FUNCTIONS = ("size", "if_not_exists", "list_append")


@dataclass(frozen=True, slots=True)
class SetAction:
    path: Path
    value: Operand  # Path, value, if_not_exists / list_append Call, or Arithmetic


@dataclass(frozen=True, slots=True)
class RemoveAction:
    path: Path


@dataclass(frozen=True, slots=True)
class AddAction:
    path: Path
    value: Operand  # a value: a number or a set


@dataclass(frozen=True, slots=True)
class DeleteAction:
    path: Path
    value: Operand  # a value: a set


UpdateAction = SetAction | RemoveAction | AddAction | DeleteAction


@dataclass(frozen=True, slots=True)
class Update:
    """An UpdateExpression: its actions in the order written (each clause keyword appears
    at most once, but clauses may come in any order)."""

    actions: tuple[UpdateAction, ...]


@dataclass(frozen=True, slots=True)
class Projection:
    """A ProjectionExpression (or legacy AttributesToGet): the paths to keep."""

    paths: tuple[Path, ...]
