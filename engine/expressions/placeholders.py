"""One request's ExpressionAttributeNames and ExpressionAttributeValues, and binding parsed
trees to them.

A single :class:`Placeholders` serves every expression of a request (condition, update,
key condition, filter, projection), records which placeholders were used while they are
bound (:func:`bind`), and, once all of them are bound, reports the unused ones the way
DynamoDB does (:meth:`Placeholders.check_all_used`).

:func:`bind` is the second stage of :mod:`engine.expressions.parser`: the parser's checks
need the text alone (and are cached with it); the checks here need the request's names and
values: undefined placeholders, overlapping or conflicting paths of one update or
projection (after ``#names`` are resolved: ``#a.b`` and ``a`` overlap when ``#a`` is
``a``), and the operand types DynamoDB refuses before reading any item (``ADD a :s`` with
a string, ``BETWEEN`` bounds out of order, ``begins_with`` of a number, ...).

Values arrive already as the engine's Python values: the server decodes DynamoDB's typed
JSON (and reports malformed values) before building this object.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from engine.attrvalue import format_number, value_type
from engine.errors import ValidationException
from engine.expressions.ast import (
    AddAction,
    And,
    Arithmetic,
    Between,
    Call,
    Compare,
    Condition,
    DeleteAction,
    In,
    Literal,
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

__all__ = ["Placeholders", "bind", "path_string"]

#: Any parsed tree :func:`bind` takes.
Tree = Condition | Update | Projection

# The placeholder syntax DynamoDB accepts in the maps' keys (and the lexer in expressions).
_NAME_KEY = re.compile(r"#[A-Za-z0-9_]+\Z")
_VALUE_KEY = re.compile(r":[A-Za-z0-9_]+\Z")


class Placeholders:
    """``#name`` → attribute name and ``:value`` → value for one request.

    Validates both maps as DynamoDB does on arrival: a map given but empty, a key that is
    not a placeholder, an empty attribute name. ``None`` means the map was not given.
    """

    __slots__ = ("_names", "_values", "used_names", "used_values")

    def __init__(
        self, names: Mapping[str, str] | None = None, values: Mapping[str, Any] | None = None
    ) -> None:
        if names is not None:
            if not isinstance(names, Mapping):
                raise ValidationException("ExpressionAttributeNames must be a map")
            if not names:
                raise ValidationException("ExpressionAttributeNames must not be empty")
            for key, name in names.items():
                if not isinstance(key, str) or not _NAME_KEY.match(key):
                    raise ValidationException(
                        f'ExpressionAttributeNames contains invalid key: Syntax error; key: "{key}"'
                    )
                if not isinstance(name, str) or not name:
                    raise ValidationException(
                        "ExpressionAttributeNames contains invalid value: "
                        f"Empty attribute name for key {key}"
                    )
        if values is not None:
            if not isinstance(values, Mapping):
                raise ValidationException("ExpressionAttributeValues must be a map")
            if not values:
                raise ValidationException("ExpressionAttributeValues must not be empty")
            for key in values:
                if not isinstance(key, str) or not _VALUE_KEY.match(key):
                    raise ValidationException(
                        f'ExpressionAttributeValues contains invalid key: Syntax error; key: "{key}"'
                    )
        self._names: dict[str, str] = dict(names) if names else {}
        self._values: dict[str, Any] = dict(values) if values else {}
        #: Placeholders resolved so far, for :meth:`check_all_used`.
        self.used_names: set[str] = set()
        self.used_values: set[str] = set()

    @property
    def names(self) -> Mapping[str, str]:
        return self._names

    @property
    def values(self) -> Mapping[str, Any]:
        return self._values

    def name(self, placeholder: str, kind: str) -> str:
        """The attribute name behind ``#placeholder``; ``kind`` (e.g. "UpdateExpression")
        names the expression in the error."""
        try:
            resolved = self._names[placeholder]
        except KeyError:
            raise ValidationException(
                f"Invalid {kind}: An expression attribute name used in the document path is "
                f"not defined; attribute name: {placeholder}"
            ) from None
        self.used_names.add(placeholder)
        return resolved

    def value(self, placeholder: str, kind: str) -> Any:
        """The value behind ``:placeholder``."""
        try:
            resolved = self._values[placeholder]
        except KeyError:
            raise ValidationException(
                f"Invalid {kind}: An expression attribute value used in expression is not "
                f"defined; attribute value: {placeholder}"
            ) from None
        self.used_values.add(placeholder)
        return resolved

    def check_all_used(self) -> None:
        """Raise DynamoDB's error for placeholders no expression of the request used. Call
        after every expression of the request has been bound. Names are checked first;
        keys are listed in the order the request gave them."""
        unused_names = [key for key in self._names if key not in self.used_names]
        if unused_names:
            raise ValidationException(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {"
                + ", ".join(unused_names)
                + "}"
            )
        unused_values = [key for key in self._values if key not in self.used_values]
        if unused_values:
            raise ValidationException(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {"
                + ", ".join(unused_values)
                + "}"
            )

    def __repr__(self) -> str:
        return f"Placeholders(names={self._names!r}, values={sorted(self._values)!r})"


def bind(tree: Tree, placeholders: Placeholders, kind: str) -> Tree:
    """The same tree with every ``#name`` replaced by its attribute name and every
    :class:`~engine.expressions.ast.ValueRef` by a :class:`~engine.expressions.ast.Literal`,
    marking the placeholders used in ``placeholders``.

    Raises DynamoDB's errors for an undefined placeholder, for two paths of an update or a
    projection that overlap (``a`` and ``a.b``) or conflict (``a.b`` and ``a[1]``), and for
    operand types refused before any item is read.
    """
    binder = _Binder(placeholders, kind)
    if isinstance(tree, Update):
        bound_update = Update(tuple(binder.action(action) for action in tree.actions))
        _check_paths([action.path for action in bound_update.actions], kind)
        _check_update_types(bound_update, kind)
        return bound_update
    if isinstance(tree, Projection):
        bound_projection = Projection(tuple(binder.path(path) for path in tree.paths))
        _check_paths(list(bound_projection.paths), kind)
        return bound_projection
    bound = binder.condition(tree)
    _check_condition_types(bound, kind)
    return bound


def path_string(path: Path) -> str:
    """A path as DynamoDB prints it in errors: ``[a, b, [2], c]``."""
    return "[" + ", ".join(
        f"[{element}]" if isinstance(element, int) else element for element in path.elements
    ) + "]"



# attribute_type's second operand: DynamoDB's type descriptors.
_ATTRIBUTE_TYPES = ("S", "SS", "N", "NS", "B", "BS", "BOOL", "NULL", "L", "M")


# --- binding ---------------------------------------------------------------------------


class _Binder:
    """Rebuilds a tree with placeholders resolved through one :class:`Placeholders`."""

    def __init__(self, placeholders: Placeholders, kind: str) -> None:
        self.placeholders = placeholders
        self.kind = kind

    def path(self, path: Path) -> Path:
        if not any(isinstance(e, str) and e.startswith("#") for e in path.elements):
            return path
        return Path(tuple(
            self.placeholders.name(element, self.kind)
            if isinstance(element, str) and element.startswith("#")
            else element
            for element in path.elements
        ))

    def operand(self, operand: Operand) -> Operand:
        if isinstance(operand, Path):
            return self.path(operand)
        if isinstance(operand, ValueRef):
            return Literal(self.placeholders.value(operand.name, self.kind))
        if isinstance(operand, Call):
            return Call(operand.name, tuple(self.operand(arg) for arg in operand.args))
        if isinstance(operand, Arithmetic):
            return Arithmetic(operand.op, self.operand(operand.left), self.operand(operand.right))
        return operand  # a Literal: already bound

    def condition(self, node: Condition) -> Condition:
        if isinstance(node, And):
            return And(self.condition(node.left), self.condition(node.right))
        if isinstance(node, Or):
            return Or(self.condition(node.left), self.condition(node.right))
        if isinstance(node, Not):
            return Not(self.condition(node.operand))
        if isinstance(node, Compare):
            return Compare(node.op, self.operand(node.left), self.operand(node.right))
        if isinstance(node, Between):
            return Between(
                self.operand(node.operand), self.operand(node.low), self.operand(node.high)
            )
        if isinstance(node, In):
            return In(self.operand(node.operand), tuple(map(self.operand, node.options)))
        if isinstance(node, Call):
            return Call(node.name, tuple(self.operand(arg) for arg in node.args))
        raise TypeError(f"not a condition node: {node!r}")

    def action(self, action: UpdateAction) -> UpdateAction:
        path = self.path(action.path)
        if isinstance(action, RemoveAction):
            return RemoveAction(path)
        value = self.operand(action.value)
        if isinstance(action, SetAction):
            return SetAction(path, value)
        if isinstance(action, AddAction):
            return AddAction(path, value)
        return DeleteAction(path, value)


# --- checks on bound trees -------------------------------------------------------------


def _check_paths(paths: list[Path], kind: str) -> None:
    """DynamoDB refuses two paths of one update or projection where one is a prefix of the
    other ("overlap": ``a`` and ``a.b``, or the same path twice) or where they use one step
    as a map key and as a list index ("conflict": ``a.b`` and ``a[1]``). Each path is
    compared with the ones before it; an overlap is reported before any conflict."""
    conflict: str | None = None
    for position, second in enumerate(paths):
        for first in paths[:position]:
            for left, right in zip(first.elements, second.elements, strict=False):
                if isinstance(left, int) != isinstance(right, int):
                    if conflict is None:
                        conflict = (
                            f"Invalid {kind}: Two document paths conflict with each other; "
                            "must remove or rewrite one of these paths; path one: "
                            f"{path_string(first)}, path two: {path_string(second)}"
                        )
                    break
                if left != right:
                    break
            else:
                raise ValidationException(
                    f"Invalid {kind}: Two document paths overlap with each other; must "
                    "remove or rewrite one of these paths; path one: "
                    f"{path_string(first)}, path two: {path_string(second)}"
                )
    if conflict is not None:
        raise ValidationException(conflict)


def _type_of(operand: Operand) -> str | None:
    """The DynamoDB type of a bound value operand; None for paths and functions."""
    if not isinstance(operand, Literal):
        return None
    try:
        return value_type(operand.value)
    except TypeError:
        return None


def _check_condition_types(node: Condition, kind: str) -> None:
    if isinstance(node, (And, Or)):
        _check_condition_types(node.left, kind)
        _check_condition_types(node.right, kind)
    elif isinstance(node, Not):
        _check_condition_types(node.operand, kind)
    elif isinstance(node, Compare):
        _check_distinct(node.op, node.left, node.right, kind)
    elif isinstance(node, Between):
        _check_between(node.low, node.high, kind)
    elif isinstance(node, Call):
        _check_function_types(node, kind)


def _check_distinct(operator: str, first: Operand, second: Operand, kind: str) -> None:
    if isinstance(first, Path) and first == second:
        raise ValidationException(
            f"Invalid {kind}: The first operand must be distinct from the remaining operands "
            f"for this operator or function; operator: {operator}, first operand: "
            f"{path_string(first)}"
        )


def _check_function_types(call: Call, kind: str) -> None:
    if len(call.args) == 2:
        _check_distinct(call.name, call.args[0], call.args[1], kind)
    if call.name == "begins_with":
        for arg in call.args:
            operand_type = _type_of(arg)
            if operand_type is not None and operand_type not in ("S", "B"):
                raise _operand_type_error(kind, call.name, operand_type)
    elif call.name == "attribute_type" and len(call.args) == 2:
        operand_type = _type_of(call.args[1])
        if operand_type is not None and operand_type != "S":
            raise _operand_type_error(kind, call.name, operand_type)
        if operand_type == "S" and call.args[1].value not in _ATTRIBUTE_TYPES:
            raise ValidationException(
                f"Invalid {kind}: Invalid attribute type name found; type: "
                f"{call.args[1].value}, valid types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}"
            )


def _operand_type_error(kind: str, function: str, operand_type: str) -> ValidationException:
    return ValidationException(
        f"Invalid {kind}: Incorrect operand type for operator or function; operator or "
        f"function: {function}, operand type: {operand_type}"
    )


def _attribute_value_text(value: Any, value_kind: str) -> str:
    """A value as DynamoDB prints it in BETWEEN errors: ``AttributeValue: {N:1}``."""
    if value_kind == "N":
        shown = format_number(value)
    elif value_kind == "B":
        shown = base64.b64encode(bytes(value)).decode("ascii")
    else:
        shown = str(value)
    return f"AttributeValue: {{{value_kind}:{shown}}}"


def _check_between(low: Operand, high: Operand, kind: str) -> None:
    low_type, high_type = _type_of(low), _type_of(high)
    if low_type is None or high_type is None:
        return
    assert isinstance(low, Literal) and isinstance(high, Literal)
    bounds = (
        f"lower bound operand: {_attribute_value_text(low.value, low_type)}, "
        f"upper bound operand: {_attribute_value_text(high.value, high_type)}"
    )
    if low_type != high_type:
        raise ValidationException(
            f"Invalid {kind}: The BETWEEN operator requires same data type for lower and "
            f"upper bounds; {bounds}"
        )
    if low_type in ("S", "N", "B"):
        low_value, high_value = low.value, high.value
        if low_type == "N":
            low_value, high_value = Decimal(low_value), Decimal(high_value)
        elif low_type == "B":
            low_value, high_value = bytes(low_value), bytes(high_value)
        if low_value > high_value:
            raise ValidationException(
                f"Invalid {kind}: The BETWEEN operator requires upper bound to be greater "
                f"than or equal to lower bound; {bounds}"
            )


# How ADD / DELETE name a value's type in "Incorrect operand type ...; operator: ADD, ...".
_UPDATE_TYPE_NAMES = {
    "S": "STRING", "N": "NUMBER", "B": "BINARY", "NULL": "NULL", "BOOL": "BOOLEAN",
    "L": "LIST", "M": "MAP",
}


def _check_update_types(tree: Update, kind: str) -> None:
    """``ADD`` takes a number or a set, ``DELETE`` a set; ``+``/``-`` take numbers and
    ``list_append`` lists. Values of another type are refused up front."""
    for action in tree.actions:
        if isinstance(action, (AddAction, DeleteAction)):
            operand_type = _type_of(action.value)
            operator = "ADD" if isinstance(action, AddAction) else "DELETE"
            allowed = operand_type in (None, "SS", "NS", "BS") or (
                operator == "ADD" and operand_type == "N"
            )
            if not allowed:
                raise ValidationException(
                    f"Invalid {kind}: Incorrect operand type for operator or function; "
                    f"operator: {operator}, operand type: {_UPDATE_TYPE_NAMES[operand_type]}"
                )
    for action in tree.actions:
        if isinstance(action, SetAction):
            _check_set_operand_types(action.value, kind)


def _check_set_operand_types(operand: Operand, kind: str) -> None:
    if isinstance(operand, Arithmetic):
        for side in (operand.left, operand.right):
            operand_type = _type_of(side)
            if operand_type is not None and operand_type != "N":
                raise _operand_type_error(kind, operand.op, operand_type)
            _check_set_operand_types(side, kind)
    elif isinstance(operand, Call):
        if operand.name == "list_append":
            for arg in operand.args:
                operand_type = _type_of(arg)
                if operand_type is not None and operand_type != "L":
                    raise _operand_type_error(kind, operand.name, operand_type)
        for arg in operand.args:
            _check_set_operand_types(arg, kind)
