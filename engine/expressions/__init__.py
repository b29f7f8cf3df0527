"""DynamoDB's expression language: parse once, bind per request, evaluate per item.

- :func:`parse_condition`, :func:`parse_update`, :func:`parse_projection`: text to an
  unbound tree (:mod:`engine.expressions.ast`), cached by text (:func:`parse_cache_info`).
- :class:`Placeholders` and :func:`bind`: one request's ExpressionAttributeNames / Values
  resolved into the tree, unused ones reported by :meth:`Placeholders.check_all_used`.
- :func:`key_condition`: a bound KeyConditionExpression checked against a key schema,
  as ``(partition_value, sort_condition)``; :func:`check_filter_keys` and
  :func:`check_key_paths`: a Query's other expressions against the key attributes.
- :func:`evaluate`, :func:`apply_update`, :func:`project`: bound trees applied to items.
"""

from __future__ import annotations

from engine.expressions.ast import (
    AddAction,
    And,
    Arithmetic,
    Between,
    Call,
    Compare,
    DeleteAction,
    In,
    Literal,
    Not,
    Or,
    Path,
    Projection,
    RemoveAction,
    SetAction,
    Update,
    ValueRef,
)
from engine.expressions.cache import parse_cache_info
from engine.expressions.keycondition import check_filter_keys, check_key_paths, key_condition
from engine.expressions.parser import bind, parse_condition, parse_projection, parse_update
from engine.expressions.placeholders import Placeholders

__all__ = [
    # parsing and binding
    "parse_condition",
    "parse_update",
    "parse_projection",
    "parse_cache_info",
    "Placeholders",
    "bind",
    "key_condition",
    "check_filter_keys",
    "check_key_paths",
    # the tree
    "Path",
    "ValueRef",
    "Literal",
    "Call",
    "Arithmetic",
    "Compare",
    "Between",
    "In",
    "And",
    "Or",
    "Not",
    "SetAction",
    "RemoveAction",
    "AddAction",
    "DeleteAction",
    "Update",
    "Projection",
]

# The evaluator half is written alongside; export it once it is importable.
try:
    from engine.expressions.evaluate import evaluate
    from engine.expressions.projection import project
    from engine.expressions.tuples import condition_from_tuples, update_from_tuples
    from engine.expressions.update import apply_update
except ImportError:  # pragma: no cover - only while the evaluator is being written
    pass
else:
    __all__ += [
        "evaluate",
        "apply_update",
        "project",
        "condition_from_tuples",
        "update_from_tuples",
    ]
