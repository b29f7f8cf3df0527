"""Applying a ProjectionExpression to an item, nested paths included.

DynamoDB returns a projected nested path inside its enclosing structure (Developer Guide,
"Using projection expressions"): ``a.b[1]`` on ``{"a": {"b": [x, y, z], "c": 1}}`` gives
``{"a": {"b": [y]}}`` — maps keep only the projected keys, lists only the projected
elements, in index order (their positions are not kept), and paths that do not resolve
are left out. The same projection of the old or new item is what UpdateItem's
UPDATED_OLD / UPDATED_NEW return for the paths an update wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .ast import Path, Projection
from .evaluate import MISSING, resolve

__all__ = ["project", "project_paths"]


_WHOLE = object()  # marks a position where the whole value was projected


def project(item: dict, projection: Projection) -> dict:
    """The parts of ``item`` that ``projection`` names (see the module docstring)."""
    return project_paths(item, projection.paths)


def project_paths(item: dict, paths: Iterable[Path]) -> dict:
    """:func:`project` over any iterable of paths (a path that is a prefix of another
    projects the whole value)."""
    paths = tuple(paths)
    if all(len(path.elements) == 1 for path in paths):
        return {path.elements[0]: item[path.elements[0]]
                for path in paths if path.elements[0] in item}
    # A tree of what to keep: each node maps an element to a subtree, or to _WHOLE.
    tree: dict[Any, Any] = {}
    for path in paths:
        if resolve(item, path) is MISSING:
            continue
        node = tree
        elements = path.elements
        for position, element in enumerate(elements):
            if position == len(elements) - 1:
                node[element] = _WHOLE
                break
            child = node.get(element)
            if child is _WHOLE:
                break  # an ancestor is projected whole already
            if child is None:
                child = node[element] = {}
            node = child
    return _build(item, tree)


def _build(value: Any, tree: dict) -> Any:
    if isinstance(value, list):  # only the projected elements, in index order
        return [value[index] if tree[index] is _WHOLE else _build(value[index], tree[index])
                for index in sorted(tree)]
    return {name: value[name] if subtree is _WHOLE else _build(value[name], subtree)
            for name, subtree in tree.items()}
