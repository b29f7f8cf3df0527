"""The engine's older tuple forms of conditions and updates, converted to bound trees, so
callers written against them (the server's expression subset, tests, tools) keep working
and every condition and update runs through the one evaluator.

Conditions: a list of clauses that must all hold (joined by AND)::

    ("attribute_exists", name) | ("attribute_not_exists", name)
    | (op, name, value)            op one of = <> < <= > >=
    | ("between", name, low, high) | ("begins_with", name, prefix) | ("contains", name, value)

Update actions, on top-level attributes, in order::

    ("SET", name, value) | ("SET_IF_NOT_EXISTS", name, value) | ("INCREMENT", name, number)
    | ("REMOVE", name) | ("ADD", name, number_or_set) | ("DELETE", name, set)

``INCREMENT`` is ``SET name = name + :number`` (the attribute must exist);
``SET_IF_NOT_EXISTS`` is ``SET name = if_not_exists(name, :value)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ValidationException
from .ast import (
    COMPARATORS,
    AddAction,
    And,
    Arithmetic,
    Between,
    Call,
    Compare,
    Condition,
    DeleteAction,
    Literal,
    Path,
    RemoveAction,
    SetAction,
    Update,
    UpdateAction,
)

__all__ = ["condition_from_tuples", "update_from_tuples"]


def _name_path(name: object, what: str) -> Path:
    if not isinstance(name, str) or not name:
        raise ValidationException(f"{what}: the attribute name must be a non-empty str, "
                                  f"got {name!r}")
    return Path((name,))


def _clause(clause: object) -> Condition:
    if not isinstance(clause, (tuple, list)) or not clause:
        raise ValidationException(f"invalid condition clause {clause!r}")
    op, args = clause[0], tuple(clause[1:])
    if op in ("attribute_exists", "attribute_not_exists") and len(args) == 1:
        return Call(op, (_name_path(args[0], op),))
    if op in COMPARATORS and len(args) == 2:
        return Compare(op, _name_path(args[0], op), Literal(args[1]))
    if op in ("between", "BETWEEN") and len(args) == 3:
        return Between(_name_path(args[0], "between"), Literal(args[1]), Literal(args[2]))
    if op in ("begins_with", "contains") and len(args) == 2:
        return Call(op, (_name_path(args[0], op), Literal(args[1])))
    raise ValidationException(
        f"invalid condition clause {clause!r}: use attribute_exists, attribute_not_exists, "
        f"= <> < <= > >= (name, value), between (name, low, high), begins_with or contains")


def condition_from_tuples(clauses: Sequence) -> Condition | None:
    """The clauses joined by AND, or None for an empty list (no condition)."""
    if not clauses:
        return None
    tree = _clause(clauses[0])
    for clause in clauses[1:]:
        tree = And(tree, _clause(clause))
    return tree


def _action(action: object) -> UpdateAction:
    if not isinstance(action, (tuple, list)) or len(action) < 2:
        raise ValidationException(f"invalid update action {action!r}")
    verb = action[0]
    path = _name_path(action[1], f"update action {verb}")
    if verb == "REMOVE" and len(action) == 2:
        return RemoveAction(path)
    if len(action) == 3:
        value = Literal(action[2])
        if verb == "SET":
            return SetAction(path, value)
        if verb == "SET_IF_NOT_EXISTS":
            return SetAction(path, Call("if_not_exists", (path, value)))
        if verb == "INCREMENT":
            return SetAction(path, Arithmetic("+", path, value))
        if verb == "ADD":
            return AddAction(path, value)
        if verb == "DELETE":
            return DeleteAction(path, value)
    raise ValidationException(
        f"invalid update action {action!r}: use SET, SET_IF_NOT_EXISTS, INCREMENT, REMOVE, "
        f"ADD or DELETE")


def update_from_tuples(actions: Sequence) -> Update:
    """The actions as one Update (ValidationException for an empty list)."""
    if not actions:
        raise ValidationException("an update needs at least one action")
    return Update(tuple(_action(action) for action in actions))
