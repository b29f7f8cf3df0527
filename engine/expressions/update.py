"""Applying a bound UpdateExpression to an item.

DynamoDB's rules (Developer Guide, "Using update expressions"; cases checked against
DynamoDB by the Alternator test suite):

- Every operand is read from the item *as it was before the update*: ``SET a = :v, b = a``
  copies the old ``a``; ``REMOVE a SET b = a`` works. List indexes too refer to the old
  list: ``REMOVE a[1] SET a[3] = :v`` replaces the old fourth element and removes the old
  second one, whatever order the clauses come in.
- SET to a list index past the end appends; several such SETs append in index order.
  SET (and ADD, DELETE) into a nested path needs the parent map or list to exist: "The
  document path provided in the update expression is invalid for update". REMOVE of a
  missing leaf does nothing, of a leaf under a missing or wrong-typed parent is the same
  error — except on an item that does not exist, where it does nothing.
- ``+``/``-`` take numbers only, exact to 38 digits; a path that does not resolve is "The
  provided expression refers to an attribute that does not exist in the item"; a wrong
  type is "An operand in the update expression has an incorrect data type" (from the
  item) or "Incorrect operand type for operator or function" (from the request).
- ``list_append`` takes two lists (either order); ``if_not_exists(path, operand)``.
- ADD: number addition (a missing attribute counts as 0) or set union (a missing
  attribute becomes the set). DELETE: set difference; removing the last member removes
  the attribute (sets are never empty). Missing attribute: nothing to delete.
- Two paths may not overlap (one a prefix of the other) or conflict (a name and an index
  at the same place); key attributes cannot be updated.
- All or nothing: every check runs before anything is written to the copy that becomes
  the new item, and the input item is never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ValidationException
from .ast import (
    AddAction,
    Arithmetic,
    Call,
    DeleteAction,
    Literal,
    Operand,
    Path,
    RemoveAction,
    SetAction,
    Update,
    ValueRef,
)
from .evaluate import MISSING, resolve
from .values import (
    add_numbers,
    deep_copy,
    is_number,
    set_type,
    subtract_numbers,
    type_of,
)

__all__ = ["apply_update", "check_update_paths"]

_REMOVE = object()  # a write that removes its path

_MISSING_ATTRIBUTE = ("The provided expression refers to an attribute that does not exist "
                      "in the item")
_WRONG_DATA_TYPE = "An operand in the update expression has an incorrect data type"
_INVALID_PATH = "The document path provided in the update expression is invalid for update"

# The long type names DynamoDB uses in ADD / DELETE operand messages.
_LONG_TYPE_NAMES = {
    "S": "STRING", "N": "NUMBER", "B": "BINARY", "BOOL": "BOOLEAN", "NULL": "NULL",
    "SS": "STRING_SET", "NS": "NUMBER_SET", "BS": "BINARY_SET", "L": "LIST", "M": "MAP",
}


def _path_list(path: Path) -> str:
    """DynamoDB's rendering of a path in overlap messages: ``[a, b, [1]]``."""
    return "[" + ", ".join(f"[{e}]" if isinstance(e, int) else e for e in path.elements) + "]"


def check_update_paths(update: Update, key_names: Sequence[str]) -> None:
    """Key attributes untouched; no two paths overlapping or conflicting. An update with no
    actions is DynamoDB's UpdateItem without an update: it creates the key-only item."""
    paths = [action.path for action in update.actions]
    for path in paths:
        if not path.elements or not isinstance(path.elements[0], str):
            raise ValidationException(
                f"Invalid UpdateExpression: a path must start with an attribute name: {path!r}")
        if path.elements[0] in key_names:
            raise ValidationException(
                f"One or more parameter values were invalid: Cannot update attribute "
                f"{path.elements[0]}. This attribute is part of the key")
    for first_index, first in enumerate(paths):
        for second in paths[first_index + 1:]:
            _check_pair(first, second)


def _check_pair(first: Path, second: Path) -> None:
    for one, two in zip(first.elements, second.elements, strict=False):
        if one == two and type(one) is type(two):
            continue
        if type(one) is not type(two):
            raise ValidationException(
                f"Invalid UpdateExpression: Two document paths conflict with each other; "
                f"must remove or rewrite one of these paths; path one: {_path_list(first)}, "
                f"path two: {_path_list(second)}")
        return  # they part here: no overlap
    raise ValidationException(
        f"Invalid UpdateExpression: Two document paths overlap with each other; must remove "
        f"or rewrite one of these paths; path one: {_path_list(first)}, path two: "
        f"{_path_list(second)}")


def apply_update(
    update: Update, item: dict | None, key: dict, key_names: Sequence[str]
) -> tuple[dict, list[Path]]:
    """The item after ``update`` and the paths it wrote (as written, for UPDATED_OLD /
    UPDATED_NEW: project the old or new item on them).

    ``item`` None means the item does not exist: it is created from ``key``. ``item`` is
    never modified; on any error nothing is returned."""
    check_update_paths(update, key_names)
    current = item if item is not None else dict(key)
    # Phase 1: every value, read from the item as it was.
    writes: list[tuple[Path, Any]] = []
    for action in update.actions:
        path = action.path
        action_type = type(action)
        if action_type is SetAction:
            _check_parent(current, path)
            value = _set_value(action.value, current)
            if isinstance(value, (set, frozenset)):
                set_type(value)  # refuses an empty set
            writes.append((path, value))
        elif action_type is RemoveAction:
            if len(path.elements) > 1 and item is not None:
                _check_parent(current, path)
            if resolve(current, path) is not MISSING:
                writes.append((path, _REMOVE))
        elif action_type is AddAction:
            _check_parent(current, path)
            writes.append((path, _add_value(action.value, resolve(current, path))))
        elif action_type is DeleteAction:
            _check_parent(current, path)
            result = _delete_value(action.value, resolve(current, path))
            if result is not None:
                writes.append((path, result))
        else:
            raise ValidationException(f"Invalid UpdateExpression: not an action: {action!r}")
    # Phase 2: write them into a copy. Paths never overlap, so no write sees another's
    # effect except through list positions, handled by ordering: replacements, then
    # appends in index order, then removals from the highest index down.
    new = dict(current)
    for name in {path.elements[0] for path, _ in writes if len(path.elements) > 1}:
        new[name] = deep_copy(new[name])
    appends: list[tuple[Path, Any]] = []
    removals: list[Path] = []
    for path, value in writes:
        if value is _REMOVE:
            removals.append(path)
            continue
        parent, last = _container(new, path)
        if type(last) is int and last >= len(parent):
            appends.append((path, value))
        else:
            parent[last] = value
    for path, value in sorted(appends, key=lambda write: write[0].elements[-1]):
        parent, _ = _container(new, path)
        parent.append(value)
    for path in sorted(removals, key=_removal_order, reverse=True):
        parent, last = _container(new, path)
        del parent[last]
    return new, [action.path for action in update.actions]


def _removal_order(path: Path) -> tuple:
    # Names and indexes never meet at one position (conflicting paths are refused), but
    # the key keeps tuple comparison well-defined anyway.
    return tuple((1, e) if isinstance(e, int) else (0, e) for e in path.elements)


def _container(item: dict, path: Path) -> tuple[Any, Any]:
    """The map or list holding ``path``'s last element, and that element."""
    parent: Any = item
    for element in path.elements[:-1]:
        parent = parent[element]
    return parent, path.elements[-1]


def _check_parent(item: dict, path: Path) -> None:
    """A nested path's parent must exist and be a map (for a name) or a list (an index)."""
    if len(path.elements) == 1:
        return
    parent = resolve(item, Path(path.elements[:-1]))
    wanted = list if isinstance(path.elements[-1], int) else dict
    if not isinstance(parent, wanted):
        raise ValidationException(_INVALID_PATH)


# ------------------------------------------------------------------ SET values
def _set_value(operand: Operand, item: dict) -> Any:
    if isinstance(operand, Arithmetic):
        return _arithmetic(operand, item)
    return _operand(operand, item)


def _operand(operand: Operand, item: dict) -> Any:
    """A SET operand's value (never MISSING: a missing path is an error)."""
    if isinstance(operand, Literal):
        return operand.value
    if isinstance(operand, Path):
        value = resolve(item, operand)
        if value is MISSING:
            raise ValidationException(_MISSING_ATTRIBUTE)
        return deep_copy(value)
    if isinstance(operand, Call):
        return _call(operand, item)
    if isinstance(operand, ValueRef):
        raise ValidationException(
            f"Invalid UpdateExpression: the value placeholder {operand.name} was not bound")
    if isinstance(operand, Arithmetic):
        raise ValidationException(
            f"Invalid UpdateExpression: Syntax error; token: \"{operand.op}\" (an arithmetic "
            f"operand may not itself be arithmetic)")
    raise ValidationException(f"Invalid UpdateExpression: not an operand: {operand!r}")


def _arity(call: Call, count: int) -> None:
    if len(call.args) != count:
        raise ValidationException(
            f"Invalid UpdateExpression: Incorrect number of operands for operator or "
            f"function; operator or function: {call.name}, number of operands: "
            f"{len(call.args)}")


def _call(call: Call, item: dict) -> Any:
    if call.name == "if_not_exists":
        _arity(call, 2)
        path = call.args[0]
        if not isinstance(path, Path):
            raise ValidationException(
                "Invalid UpdateExpression: Operator or function requires a document path; "
                "operator or function: if_not_exists")
        value = resolve(item, path)
        return deep_copy(value) if value is not MISSING else _operand(call.args[1], item)
    if call.name == "list_append":
        _arity(call, 2)
        first, second = (_typed_operand(arg, item, "list_append", ("L",)) for arg in call.args)
        return list(first) + list(second)
    if call.name in ("size", "attribute_exists", "attribute_not_exists", "attribute_type",
                     "begins_with", "contains"):
        raise ValidationException(
            f"Invalid UpdateExpression: The function is not allowed in an update expression; "
            f"function: {call.name}")
    raise ValidationException(f"Invalid UpdateExpression: Invalid function name; function: "
                              f"{call.name}")


def _typed_operand(operand: Operand, item: dict, operator: str, types: tuple[str, ...]) -> Any:
    """An operand that must be of one of ``types``; a request value of another type is an
    "Incorrect operand type", an item value of another type an "incorrect data type"."""
    value = _operand(operand, item)
    value_type = type_of(value)
    if value_type not in types:
        if isinstance(operand, Literal):
            raise ValidationException(
                f"Invalid UpdateExpression: Incorrect operand type for operator or function; "
                f"operator or function: {operator}, operand type: {value_type}")
        raise ValidationException(_WRONG_DATA_TYPE)
    return value


def _arithmetic(operand: Arithmetic, item: dict) -> Any:
    if operand.op not in ("+", "-"):
        raise ValidationException(f"Invalid UpdateExpression: unknown operator {operand.op!r}")
    left = _typed_operand(operand.left, item, operand.op, ("N",))
    right = _typed_operand(operand.right, item, operand.op, ("N",))
    return add_numbers(left, right) if operand.op == "+" else subtract_numbers(left, right)


# ------------------------------------------------------------------ ADD / DELETE
def _literal(operand: Operand, operator: str) -> Any:
    if not isinstance(operand, Literal):
        raise ValidationException(
            f"Invalid UpdateExpression: Syntax error; {operator} takes a path and an "
            f"ExpressionAttributeValue, got {operand!r}")
    return operand.value


def _add_value(operand: Operand, current: Any) -> Any:
    value = _literal(operand, "ADD")
    value_type = type_of(value)
    if value_type == "N":
        if current is MISSING:
            return value
        if not is_number(current):
            raise ValidationException(_WRONG_DATA_TYPE)
        return add_numbers(current, value)
    if value_type in ("SS", "NS", "BS"):
        if current is MISSING:
            return set(value)
        if type_of(current) != value_type:
            raise ValidationException(_WRONG_DATA_TYPE)
        return set(current) | set(value)
    raise ValidationException(
        f"Invalid UpdateExpression: Incorrect operand type for operator or function; "
        f"operator: ADD, operand type: {_LONG_TYPE_NAMES[value_type]}")


def _delete_value(operand: Operand, current: Any) -> Any:
    """The set left after DELETE, _REMOVE when none is left, None when nothing changes."""
    value = _literal(operand, "DELETE")
    value_type = type_of(value)
    if value_type not in ("SS", "NS", "BS"):
        raise ValidationException(
            f"Invalid UpdateExpression: Incorrect operand type for operator or function; "
            f"operator: DELETE, operand type: {_LONG_TYPE_NAMES[value_type]}")
    if current is MISSING:
        return None
    if type_of(current) != value_type:
        raise ValidationException(_WRONG_DATA_TYPE)
    if value_type == "BS":
        removed = {bytes(member) for member in value}
        remaining = {member for member in current if bytes(member) not in removed}
    else:  # str members, or numbers (int and Decimal hash alike when equal)
        remaining = set(current) - set(value)
    return remaining if remaining else _REMOVE
