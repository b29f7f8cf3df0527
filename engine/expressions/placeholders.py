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


#: Developer Guide, "Expression parameters": an expression attribute name or value
#: placeholder is at most 255 bytes.
MAX_PLACEHOLDER_BYTES = 255


def _check_key_length(map_name: str, key: Any) -> None:
    if isinstance(key, str):
        size = len(key.encode("utf-8", "surrogatepass"))
        if size > MAX_PLACEHOLDER_BYTES:
            raise ValidationException(
                f"{map_name} contains invalid key: The expression attribute map contains a "
                f"key that is too long; size of key: {size}"
            )


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
                _check_key_length("ExpressionAttributeNames", key)
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
                _check_key_length("ExpressionAttributeValues", key)
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
        after every expression of the request has been bound. Names are checked first."""
        unused_names = [key for key in self._names if key not in self.used_names]
        if unused_names:
            raise ValidationException(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {"
                + ", ".join(_java_set_order(unused_names, len(self._names)))
                + "}"
            )
        unused_values = [key for key in self._values if key not in self.used_values]
        if unused_values:
            raise ValidationException(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {"
                + ", ".join(_java_set_order(unused_values, len(self._values)))
                + "}"
            )

    def __repr__(self) -> str:
        return f"Placeholders(names={self._names!r}, values={sorted(self._values)!r})"


def _java_set_order(keys: list[str], total: int) -> list[str]:
    """``keys`` in the order a Java ``HashSet`` built from ``total`` keys iterates them,
    the order DynamoDB (a Java service) lists unused placeholders in: by bucket
    (``String.hashCode`` spread as ``HashMap`` does, over a power-of-two table of at least
    16 buckets and ``total / 0.75 + 1``), then in insertion order."""
    capacity = 1
    wanted = max(int(total / 0.75) + 1, 16)
    while capacity < wanted:
        capacity *= 2

    def bucket(key: str) -> int:
        code = 0
        units = key.encode("utf-16-be", "surrogatepass")
        for index in range(0, len(units), 2):
            code = (31 * code + (units[index] << 8 | units[index + 1])) & 0xFFFFFFFF
        return (code ^ (code >> 16)) & (capacity - 1)

    order = sorted(range(len(keys)), key=lambda index: (bucket(keys[index]), index))
    return [keys[index] for index in order]


def bind(tree: Tree, placeholders: Placeholders, kind: str) -> Tree:
    """The same tree with every ``#name`` replaced by its attribute name and every
    :class:`~engine.expressions.ast.ValueRef` by a :class:`~engine.expressions.ast.Literal`,
    marking the placeholders used in ``placeholders``.

    Raises DynamoDB's errors for an undefined placeholder, for two paths of an update or a
    projection that overlap (``a`` and ``a.b``) or conflict (``a.b`` and ``a[1]``), for
    operands that must differ (``a = a``), and for operand types refused before any item
    is read. ``kind`` names the expression in errors.

    An update is checked in DynamoDB's order: the names in its actions' paths, then the
    paths' overlaps, then, from the last action back to the first, the remaining names,
    each action's arity and operands, and its values with their types.
    """
    binder = _Binder(placeholders, kind)
    if isinstance(tree, Update):
        return _bind_update(tree, binder, kind)
    if isinstance(tree, Projection):
        bound_projection = Projection(tuple(binder.path(path) for path in tree.paths))
        _check_paths(list(bound_projection.paths), kind)
        return bound_projection
    bound = binder.condition(tree)
    _ConditionTypes(kind).condition(bound)
    return bound


def path_string(path: Path) -> str:
    """A path as DynamoDB prints it in errors: ``[a, b, [2], c]``."""
    return "[" + ", ".join(
        f"[{element}]" if isinstance(element, int) else element for element in path.elements
    ) + "]"


# attribute_type's second operand: DynamoDB's type descriptors, and the lists it prints.
_ATTRIBUTE_TYPES = ("S", "SS", "N", "NS", "B", "BS", "BOOL", "NULL", "L", "M")
_VALID_TYPES_TEXT = "{N,BS,L,B,NULL,M,S,SS,NS,BOOL}"
_ANY_TYPE_TEXT = (
    "{SS,M,DECIMAL,DOUBLESET,HDS,N,B,DICT,INTSET,BOOL,HD,BS,INT,DECIMALSET,NULL,FLOAT,FS,S,"
    "L,NS,DOUBLE}"
)
# How ADD / DELETE name a value's type in "Incorrect operand type ...; operator: ADD, ...".
_LONG_TYPE_NAMES = {
    "S": "STRING", "N": "NUMBER", "B": "BINARY", "NULL": "NULL", "BOOL": "BOOLEAN",
    "L": "LIST", "M": "MAP", "SS": "STRING_SET", "NS": "NUMBER_SET", "BS": "BINARY_SET",
}
_ORDERED_TYPES = ("S", "N", "B")
_SIZED_TYPES = ("S", "B", "SS", "NS", "BS", "L", "M")


# --- binding ---------------------------------------------------------------------------


class _Binder:
    """Rebuilds trees with placeholders resolved through one :class:`Placeholders`."""

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

    def operand(self, operand: Operand, values: bool = True) -> Operand:
        """``operand`` with its names resolved, and its values too unless ``values`` is
        false (an update resolves all its names before any value)."""
        if isinstance(operand, Path):
            return self.path(operand)
        if isinstance(operand, ValueRef):
            if not values:
                return operand
            return Literal(self.placeholders.value(operand.name, self.kind))
        if isinstance(operand, Call):
            return Call(operand.name, tuple(self.operand(arg, values) for arg in operand.args))
        if isinstance(operand, Arithmetic):
            return Arithmetic(
                operand.op, self.operand(operand.left, values), self.operand(operand.right, values)
            )
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


def _bind_update(tree: Update, binder: _Binder, kind: str) -> Update:
    # Imported here: the parser imports this module (to re-export bind).
    from engine.expressions.parser import check_update_action

    actions = tree.actions
    paths = [binder.path(action.path) for action in actions]
    _check_paths(paths, kind)
    named: list[Operand | None] = [None] * len(actions)
    for index in reversed(range(len(actions))):
        action = actions[index]
        if not isinstance(action, RemoveAction):
            named[index] = binder.operand(action.value, values=False)
    bound: list[UpdateAction] = [RemoveAction(path) for path in paths]
    for index in reversed(range(len(actions))):
        action = actions[index]
        check_update_action(action, kind)
        if isinstance(action, RemoveAction):
            continue
        value = binder.operand(named[index])
        if isinstance(action, SetAction):
            _check_set_operand_types(value, kind)
            bound[index] = SetAction(paths[index], value)
            continue
        operator = "ADD" if isinstance(action, AddAction) else "DELETE"
        operand_type = _type_of(value)
        allowed = ("N", "SS", "NS", "BS") if operator == "ADD" else ("SS", "NS", "BS")
        if operand_type is not None and operand_type not in allowed:
            raise ValidationException(
                f"Invalid {kind}: Incorrect operand type for operator or function; operator: "
                f"{operator}, operand type: {_LONG_TYPE_NAMES[operand_type]}, typeSet: "
                f"ALLOWED_FOR_{operator}_OPERAND"
            )
        bound[index] = (AddAction if operator == "ADD" else DeleteAction)(paths[index], value)
    return Update(tuple(bound))


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
    """The type an operand has whatever the item: a value's, N for ``size()``; None for a
    path or anything whose type depends on the item."""
    if isinstance(operand, Call) and operand.name == "size":
        return "N"
    if not isinstance(operand, Literal):
        return None
    try:
        return value_type(operand.value)
    except TypeError:  # not an engine value: left to the evaluator to refuse
        return None


def _operand_type_error(kind: str, function: str, operand_type: str) -> ValidationException:
    return ValidationException(
        f"Invalid {kind}: Incorrect operand type for operator or function; operator or "
        f"function: {function}, operand type: {operand_type}"
    )


class _ConditionTypes:
    """The checks on a bound condition, in the order written: operands that must differ
    and operand types DynamoDB refuses whatever the item."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def condition(self, node: Condition) -> None:
        if isinstance(node, (And, Or)):
            self.condition(node.left)
            self.condition(node.right)
        elif isinstance(node, Not):
            self.condition(node.operand)
        elif isinstance(node, Compare):
            self.operands(node.left, node.right)
            self.distinct(node.op, node.left, (node.right,))
            if node.op not in ("=", "<>"):
                self.ordered(node.op, (node.left, node.right))
        elif isinstance(node, Between):
            self.operands(node.operand, node.low, node.high)
            self.distinct("BETWEEN", node.operand, (node.low, node.high))
            self.ordered("BETWEEN", (node.operand, node.low, node.high))
            self.bounds(node.low, node.high)
        elif isinstance(node, In):
            self.operands(node.operand, *node.options)
            self.distinct("IN", node.operand, node.options)
        elif isinstance(node, Call):
            self.call(node)

    def operands(self, *operands: Operand) -> None:
        for operand in operands:
            if isinstance(operand, Call):
                self.call(operand)

    def call(self, call: Call) -> None:
        self.operands(*call.args)
        if call.name not in ("size", "list_append") and len(call.args) > 1:
            self.distinct(call.name, call.args[0], call.args[1:])
        if call.name == "size":
            operand_type = _type_of(call.args[0])
            if operand_type is not None and operand_type not in _SIZED_TYPES:
                raise _operand_type_error(self.kind, "size", operand_type)
        elif call.name == "begins_with":
            for arg in call.args:
                operand_type = _type_of(arg)
                if operand_type is not None and operand_type not in ("S", "B"):
                    raise _operand_type_error(self.kind, call.name, operand_type)
        elif call.name == "attribute_type" and len(call.args) == 2:
            second = call.args[1]
            if not isinstance(second, Literal):
                shown = "N" if isinstance(second, Call) else _ANY_TYPE_TEXT
                raise _operand_type_error(self.kind, call.name, shown)
            operand_type = _type_of(second)
            if operand_type != "S":
                raise _operand_type_error(self.kind, call.name, str(operand_type))
            if second.value not in _ATTRIBUTE_TYPES:
                raise ValidationException(
                    f"Invalid {self.kind}: Invalid attribute type name found; type: "
                    f"{second.value}, valid types: {_VALID_TYPES_TEXT}"
                )

    def distinct(self, operator: str, first: Operand, rest: tuple[Operand, ...]) -> None:
        if isinstance(first, Path) and first in rest:
            raise ValidationException(
                f"Invalid {self.kind}: The first operand must be distinct from the remaining "
                f"operands for this operator or function; operator: {operator}, first "
                f"operand: {path_string(first)}"
            )

    def ordered(self, operator: str, operands: tuple[Operand, ...]) -> None:
        """``<``, ``<=``, ``>``, ``>=`` and BETWEEN compare strings, numbers and binaries."""
        for operand in operands:
            operand_type = _type_of(operand)
            if operand_type is not None and operand_type not in _ORDERED_TYPES:
                raise _operand_type_error(self.kind, operator, operand_type)

    def bounds(self, low: Operand, high: Operand) -> None:
        if not (isinstance(low, Literal) and isinstance(high, Literal)):
            return
        low_type, high_type = _type_of(low), _type_of(high)
        if low_type is None or high_type is None:
            return
        shown = (
            f"lower bound operand: {_attribute_value_text(low.value, low_type)}, "
            f"upper bound operand: {_attribute_value_text(high.value, high_type)}"
        )
        if low_type != high_type:
            raise ValidationException(
                f"Invalid {self.kind}: The BETWEEN operator requires same data type for lower "
                f"and upper bounds; {shown}"
            )
        if _sort_key(low.value, low_type) > _sort_key(high.value, high_type):
            raise ValidationException(
                f"Invalid {self.kind}: The BETWEEN operator requires upper bound to be "
                f"greater than or equal to lower bound; {shown}"
            )


def _sort_key(value: Any, value_kind: str) -> Any:
    """DynamoDB's order: numbers by value, strings by their UTF-8 bytes (the same order as
    Python's code points), binaries bytewise."""
    if value_kind == "N":
        return Decimal(value)
    if value_kind == "B":
        return bytes(value)
    return value


def _attribute_value_text(value: Any, value_kind: str) -> str:
    """A value as DynamoDB (a Java service) prints it in BETWEEN errors."""
    if value_kind == "N":
        shown = format_number(value)
    elif value_kind == "B":
        length = len(bytes(value))
        shown = f"java.nio.HeapByteBuffer[pos=0 lim={length} cap={length}]"
    else:
        shown = str(value)
    return f"AttributeValue: {{{value_kind}:{shown}}}"


def _check_set_operand_types(operand: Operand, kind: str) -> None:
    """``+``/``-`` take numbers and ``list_append`` lists."""
    if isinstance(operand, Arithmetic):
        for side in (operand.left, operand.right):
            _check_set_operand_types(side, kind)
            operand_type = _type_of(side)
            if operand_type is not None and operand_type != "N":
                raise _operand_type_error(kind, operand.op, operand_type)
    elif isinstance(operand, Call):
        for arg in operand.args:
            _check_set_operand_types(arg, kind)
        if operand.name == "list_append":
            for arg in operand.args:
                operand_type = _type_of(arg)
                if operand_type is not None and operand_type != "L":
                    raise _operand_type_error(kind, operand.name, operand_type)
