"""Evaluating a bound ConditionExpression / FilterExpression against one item.

Semantics (Developer Guide, "Condition and filter expressions, operators, and functions";
the cases below were checked against DynamoDB by the Alternator test suite):

- A comparison is typed: values of different types are never equal, and ``<``/``<=``/
  ``>``/``>=``/BETWEEN hold only between two values of the same ordered type (N
  numerically, S by UTF-8 bytes, B bytewise). A BOOL is not a number.
- A path that does not resolve (missing attribute, map key, or a list index past the end)
  makes every comparison false — except ``<>``, which is true whenever either side is
  missing (DynamoDB: an unset attribute is "not equal" to anything, even another unset one).
- A wrong type coming from the *item* gives false; a wrong type written into the
  *request* (an ExpressionAttributeValue, i.e. a :class:`Literal`) is a
  ValidationException: ``a < :list``, BETWEEN with literal bounds out of order or of
  different types, ``begins_with(a, :number)``, ``attribute_type(a, :unknown)``.
  :func:`check_condition` finds these without an item, so a request fails whatever items
  it would meet (call it once per request); :func:`evaluate` raises them too when it meets
  them.
- ``size`` is the UTF-8 length in bytes of an S, the length of a B, the element count of a
  set, L or M; any other type (N, BOOL, NULL) has no size and the comparison is false.
- ``contains(a, v)``: substring of an S, byte substring of a B, a member of a set, an
  element of a list (typed equality). ``begins_with``: prefix of an S or a B.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ..errors import ValidationException
from .ast import (
    COMPARATORS,
    And,
    Arithmetic,
    Between,
    Call,
    Compare,
    Condition,
    In,
    Literal,
    Not,
    Operand,
    Or,
    Path,
    ValueRef,
)
from .values import ORDERED_TYPES, TYPE_NAMES, compare, type_of, values_equal

__all__ = ["evaluate", "compile_condition", "check_condition", "resolve", "MISSING",
           "format_path"]


class _Missing:
    """The value of a path that does not resolve (a singleton)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

_SIZED_TYPES = frozenset({"S", "B", "SS", "NS", "BS", "L", "M"})


def format_path(path: Path) -> str:
    """``a.b[1]`` for messages."""
    text = ""
    for element in path.elements:
        if isinstance(element, int):
            text += f"[{element}]"
        else:
            text += element if not text else f".{element}"
    return text


def resolve(item: dict, path: Path) -> Any:
    """The value at ``path`` in ``item``, or :data:`MISSING`. Names step into maps, indexes
    into lists; a name on a list, an index on a map or an index past the end is missing."""
    value: Any = item
    for element in path.elements:
        if type(element) is int:
            if not isinstance(value, list) or element >= len(value):
                return MISSING
            value = value[element]
        else:
            if not isinstance(value, dict):
                return MISSING
            value = value.get(element, MISSING)
            if value is MISSING:
                return MISSING
    return value


def evaluate(condition: Condition, item: dict | None, *, kind: str = "ConditionExpression") -> bool:
    """True if ``condition`` holds for ``item`` (None: the item does not exist, so every
    path is missing). ``kind`` names the expression in error messages."""
    return _holds(condition, item if item is not None else {}, kind)


def check_condition(condition: Condition, *, kind: str = "ConditionExpression") -> None:
    """Raise the ValidationException DynamoDB gives for this condition whatever the item:
    wrong operand shapes, request values of types an operator refuses, unknown functions."""
    if isinstance(condition, (And, Or)):
        check_condition(condition.left, kind=kind)
        check_condition(condition.right, kind=kind)
    elif isinstance(condition, Not):
        check_condition(condition.operand, kind=kind)
    elif isinstance(condition, Compare):
        if condition.op not in COMPARATORS:
            raise ValidationException(f"Invalid {kind}: unknown comparator {condition.op!r}")
        for operand in (condition.left, condition.right):
            _check_operand(operand, kind)
            if condition.op not in ("=", "<>"):
                _check_orderable_literal(operand, condition.op, kind)
    elif isinstance(condition, Between):
        for operand in (condition.operand, condition.low, condition.high):
            _check_operand(operand, kind)
            _check_orderable_literal(operand, "BETWEEN", kind)
        if isinstance(condition.low, Literal) and isinstance(condition.high, Literal):
            _check_between_bounds(condition.low.value, condition.high.value, kind)
    elif isinstance(condition, In):
        if not condition.options:
            raise ValidationException(f"Invalid {kind}: IN needs at least one operand")
        for operand in (condition.operand, *condition.options):
            _check_operand(operand, kind)
    elif isinstance(condition, Call):
        _check_function(condition, kind)
    else:
        raise ValidationException(f"Invalid {kind}: not a condition: {condition!r}")


# ------------------------------------------------------------------ static checks
def _check_operand(operand: Operand, kind: str) -> None:
    if isinstance(operand, (Path, Literal)):
        return
    if isinstance(operand, ValueRef):
        raise ValidationException(
            f"Invalid {kind}: the value placeholder {operand.name} was not bound")
    if isinstance(operand, Arithmetic):
        raise ValidationException(
            f"Invalid {kind}: The operator {operand.op} is allowed only in an UpdateExpression")
    if isinstance(operand, Call):
        if operand.name == "size":
            _check_size_call(operand, kind)
            return
        if operand.name in ("if_not_exists", "list_append") or operand.name in (
            "attribute_exists", "attribute_not_exists", "attribute_type", "begins_with",
            "contains",
        ):
            raise ValidationException(
                f"Invalid {kind}: The function is not allowed to be used this way in an "
                f"expression; function: {operand.name}")
        raise ValidationException(f"Invalid {kind}: Invalid function name; function: "
                                  f"{operand.name}")
    raise ValidationException(f"Invalid {kind}: not an operand: {operand!r}")


def _check_size_call(call: Call, kind: str) -> None:
    if len(call.args) != 1:
        raise ValidationException(
            f"Invalid {kind}: Incorrect number of operands for operator or function; "
            f"operator or function: size, number of operands: {len(call.args)}")
    (arg,) = call.args
    if isinstance(arg, Literal):
        value_type = type_of(arg.value)
        if value_type not in _SIZED_TYPES:
            raise ValidationException(
                f"Invalid {kind}: Incorrect operand type for operator or function; "
                f"operator or function: size, operand type: {value_type}")
    elif not isinstance(arg, Path):
        _check_operand(arg, kind)
        raise ValidationException(
            f"Invalid {kind}: Operator or function requires a document path; "
            f"operator or function: size")


def _check_orderable_literal(operand: Operand, operator: str, kind: str) -> None:
    if isinstance(operand, Literal):
        value_type = type_of(operand.value)
        if value_type not in ORDERED_TYPES:
            raise ValidationException(
                f"Invalid {kind}: Incorrect operand type for operator or function; "
                f"operator or function: {operator}, operand type: {value_type}")


def _check_between_bounds(low: Any, high: Any, kind: str) -> None:
    order = compare(low, high)
    if order is None:
        raise ValidationException(
            f"Invalid {kind}: The BETWEEN operator requires same data type for lower and "
            f"upper bounds; lower bound operand: {type_of(low)}, upper bound operand: "
            f"{type_of(high)}")
    if order > 0:
        raise ValidationException(
            f"Invalid {kind}: The BETWEEN operator requires upper bound to be greater than "
            f"or equal to lower bound; lower bound operand: {low!r}, upper bound operand: "
            f"{high!r}")


def _arity(call: Call, count: int, kind: str) -> None:
    if len(call.args) != count:
        raise ValidationException(
            f"Invalid {kind}: Incorrect number of operands for operator or function; "
            f"operator or function: {call.name}, number of operands: {len(call.args)}")


def _check_function(call: Call, kind: str) -> None:
    name = call.name
    if name in ("attribute_exists", "attribute_not_exists"):
        _arity(call, 1, kind)
        if not isinstance(call.args[0], Path):
            raise ValidationException(
                f"Invalid {kind}: Operator or function requires a document path; "
                f"operator or function: {name}")
    elif name == "attribute_type":
        _arity(call, 2, kind)
        _check_operand(call.args[0], kind)
        type_arg = call.args[1]
        if not isinstance(type_arg, Literal):
            raise ValidationException(
                f"Invalid {kind}: Incorrect operand type for operator or function; "
                f"operator or function: attribute_type, operand type: a document path "
                f"(the type must be an ExpressionAttributeValue)")
        _check_type_name(type_arg.value, kind)
    elif name in ("begins_with", "contains"):
        _arity(call, 2, kind)
        for arg in call.args:
            _check_operand(arg, kind)
        if name == "begins_with":
            for arg in call.args:
                if isinstance(arg, Literal) and type_of(arg.value) not in ("S", "B"):
                    raise ValidationException(
                        f"Invalid {kind}: Incorrect operand type for operator or function; "
                        f"operator or function: begins_with, operand type: "
                        f"{type_of(arg.value)}")
    elif name in ("size", "if_not_exists", "list_append"):
        raise ValidationException(
            f"Invalid {kind}: The function is not allowed to be used this way in an "
            f"expression; function: {name}")
    else:
        raise ValidationException(f"Invalid {kind}: Invalid function name; function: {name}")


def _check_type_name(type_name: Any, kind: str) -> None:
    if not isinstance(type_name, str) or type_name not in TYPE_NAMES:
        raise ValidationException(
            f"Invalid {kind}: Invalid attribute type name found; type: {type_name}, "
            f"valid types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}")


# ------------------------------------------------------------------ evaluation
def _value(operand: Operand, item: dict, kind: str) -> Any:
    """An operand's value in ``item``, or MISSING (also for ``size`` of a sizeless type)."""
    if isinstance(operand, Path):
        return resolve(item, operand)
    if isinstance(operand, Literal):
        return operand.value
    if isinstance(operand, Call) and operand.name == "size":
        _check_size_call(operand, kind)
        value = _value(operand.args[0], item, kind)
        if value is MISSING:
            return MISSING
        value_type = type_of(value)
        if value_type == "S":
            return len(value.encode("utf-8"))
        if value_type in _SIZED_TYPES:
            return len(value)
        return MISSING  # N, BOOL, NULL have no size: every comparison is false
    _check_operand(operand, kind)  # raises the precise error for anything else
    raise ValidationException(f"Invalid {kind}: not an operand: {operand!r}")


def _holds(condition: Condition, item: dict, kind: str) -> bool:
    node_type = type(condition)
    if node_type is Compare:
        return _compare(condition, item, kind)
    if node_type is And:
        return _holds(condition.left, item, kind) and _holds(condition.right, item, kind)
    if node_type is Or:
        return _holds(condition.left, item, kind) or _holds(condition.right, item, kind)
    if node_type is Not:
        return not _holds(condition.operand, item, kind)
    if node_type is Call:
        return _function(condition, item, kind)
    if node_type is Between:
        return _between(condition, item, kind)
    if node_type is In:
        value = _value(condition.operand, item, kind)
        if value is MISSING:
            return False
        for option in condition.options:
            candidate = _value(option, item, kind)
            if candidate is not MISSING and values_equal(value, candidate):
                return True
        return False
    raise ValidationException(f"Invalid {kind}: not a condition: {condition!r}")


def _compare(condition: Compare, item: dict, kind: str) -> bool:
    op = condition.op
    left = _value(condition.left, item, kind)
    right = _value(condition.right, item, kind)
    if op == "=":
        return left is not MISSING and right is not MISSING and values_equal(left, right)
    if op == "<>":
        return left is MISSING or right is MISSING or not values_equal(left, right)
    if op not in COMPARATORS:
        raise ValidationException(f"Invalid {kind}: unknown comparator {op!r}")
    _check_orderable_literal(condition.left, op, kind)
    _check_orderable_literal(condition.right, op, kind)
    if left is MISSING or right is MISSING:
        return False
    order = compare(left, right)
    if order is None:
        return False
    if op == "<":
        return order < 0
    if op == "<=":
        return order <= 0
    if op == ">":
        return order > 0
    return order >= 0


def _between(condition: Between, item: dict, kind: str) -> bool:
    for operand in (condition.operand, condition.low, condition.high):
        _check_orderable_literal(operand, "BETWEEN", kind)
    if isinstance(condition.low, Literal) and isinstance(condition.high, Literal):
        _check_between_bounds(condition.low.value, condition.high.value, kind)
    value = _value(condition.operand, item, kind)
    low = _value(condition.low, item, kind)
    high = _value(condition.high, item, kind)
    if value is MISSING or low is MISSING or high is MISSING:
        return False
    above_low = compare(low, value)
    below_high = compare(value, high)
    return above_low is not None and below_high is not None and above_low <= 0 \
        and below_high <= 0


def _function(call: Call, item: dict, kind: str) -> bool:
    name = call.name
    if name == "attribute_exists" or name == "attribute_not_exists":
        _check_function(call, kind)
        exists = resolve(item, call.args[0]) is not MISSING
        return exists if name == "attribute_exists" else not exists
    _check_function(call, kind)
    if name == "attribute_type":
        value = _value(call.args[0], item, kind)
        return value is not MISSING and type_of(value) == call.args[1].value
    return _function_values(name, _value(call.args[0], item, kind),
                            _value(call.args[1], item, kind))


# ------------------------------------------------------------------ compiled form
def compile_condition(condition: Condition, *,
                      kind: str = "FilterExpression") -> Callable[[dict], bool]:
    """``condition`` as a function of one item, for evaluating it over many (a Query or
    Scan page's filter): the request-side checks run once here (:func:`check_condition`)
    instead of at every item, and the tree is walked once into closures. Same answers as
    :func:`evaluate` for every item (a hypothesis test holds the two together)."""
    check_condition(condition, kind=kind)
    return _compile(condition)


def _compile(condition: Condition) -> Callable[[dict], bool]:
    node_type = type(condition)
    if node_type is Compare:
        return _compile_compare(condition)
    if node_type is And:
        left, right = _compile(condition.left), _compile(condition.right)
        return lambda item: left(item) and right(item)
    if node_type is Or:
        left, right = _compile(condition.left), _compile(condition.right)
        return lambda item: left(item) or right(item)
    if node_type is Not:
        operand = _compile(condition.operand)
        return lambda item: not operand(item)
    if node_type is Between:
        return _compile_between(condition)
    if node_type is In:
        return _compile_in(condition)
    return _compile_function(condition)  # check_condition allowed only functions here


def _compile_operand(operand: Operand) -> Callable[[dict], Any]:
    if type(operand) is Literal:
        value = operand.value
        return lambda item: value
    if type(operand) is Path:
        elements = operand.elements
        if len(elements) == 1:  # a top-level attribute: one dict lookup
            name = elements[0]
            return lambda item: item.get(name, MISSING)
        return lambda item: resolve(item, operand)
    inner = _compile_operand(operand.args[0])  # size(path): the only other operand

    def size(item: dict) -> Any:
        value = inner(item)
        if value is MISSING:
            return MISSING
        value_type = type_of(value)
        if value_type == "S":
            return len(value.encode("utf-8"))
        if value_type in _SIZED_TYPES:
            return len(value)
        return MISSING  # N, BOOL, NULL have no size: every comparison is false

    return size


_ORDER_TESTS: dict[str, Callable[[int], bool]] = {
    "<": lambda order: order < 0, "<=": lambda order: order <= 0,
    ">": lambda order: order > 0, ">=": lambda order: order >= 0,
}


_SWAPPED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_PY_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _compile_scalar_compare(condition: Compare) -> Callable[[dict], bool] | None:
    """``path <op> :literal`` (or the mirror) with an S or N literal — the usual filter —
    as one type test and one Python comparison: for two str, code point order is UTF-8
    byte order, and int/Decimal compare exactly; a bool (Python's int) is excluded by
    ``type``. None for every other shape (the general closures handle it)."""
    left, right, op = condition.left, condition.right, condition.op
    if type(left) is Literal and type(right) is not Literal:
        left, right, op = right, left, _SWAPPED[op]
    if type(right) is not Literal or type(left) is Literal:
        return None
    literal = right.value
    if type(literal) is str:
        kinds: tuple[type, ...] = (str,)
    elif type(literal) in (int, Decimal):
        kinds = (int, Decimal)
    else:
        return None
    value_of = _compile_operand(left)
    if op == "<>":
        return lambda item: not ((v := value_of(item)) is not MISSING
                                 and type(v) in kinds and v == literal)
    test = _PY_ORDER[op]
    return lambda item: (v := value_of(item)) is not MISSING and type(v) in kinds \
        and test(v, literal)


def _compile_compare(condition: Compare) -> Callable[[dict], bool]:
    scalar = _compile_scalar_compare(condition)
    if scalar is not None:
        return scalar
    left, right = _compile_operand(condition.left), _compile_operand(condition.right)
    if condition.op == "=":
        def equal(item: dict) -> bool:
            a, b = left(item), right(item)
            return a is not MISSING and b is not MISSING and values_equal(a, b)
        return equal
    if condition.op == "<>":
        def not_equal(item: dict) -> bool:
            a, b = left(item), right(item)
            return a is MISSING or b is MISSING or not values_equal(a, b)
        return not_equal
    test = _ORDER_TESTS[condition.op]

    def ordered(item: dict) -> bool:
        a, b = left(item), right(item)
        if a is MISSING or b is MISSING:
            return False
        order = compare(a, b)
        return order is not None and test(order)

    return ordered


def _compile_between(condition: Between) -> Callable[[dict], bool]:
    operand = _compile_operand(condition.operand)
    low, high = _compile_operand(condition.low), _compile_operand(condition.high)

    def between(item: dict) -> bool:
        value, lo, hi = operand(item), low(item), high(item)
        if value is MISSING or lo is MISSING or hi is MISSING:
            return False
        above_low, below_high = compare(lo, value), compare(value, hi)
        return above_low is not None and below_high is not None and above_low <= 0 \
            and below_high <= 0

    return between


def _compile_in(condition: In) -> Callable[[dict], bool]:
    operand = _compile_operand(condition.operand)
    options = [_compile_operand(option) for option in condition.options]

    def is_in(item: dict) -> bool:
        value = operand(item)
        if value is MISSING:
            return False
        for option in options:
            candidate = option(item)
            if candidate is not MISSING and values_equal(value, candidate):
                return True
        return False

    return is_in


def _compile_function(call: Call) -> Callable[[dict], bool]:
    name = call.name
    if name in ("attribute_exists", "attribute_not_exists"):
        path = _compile_operand(call.args[0])
        if name == "attribute_exists":
            return lambda item: path(item) is not MISSING
        return lambda item: path(item) is MISSING
    first = _compile_operand(call.args[0])
    if name == "attribute_type":
        wanted = call.args[1].value

        def has_type(item: dict) -> bool:
            value = first(item)
            return value is not MISSING and type_of(value) == wanted

        return has_type
    second = _compile_operand(call.args[1])
    # begins_with / contains: the same code as the tree walk, per item
    return lambda item: _function_values(name, first(item), second(item))


def _function_values(name: str, first: Any, second: Any) -> bool:
    """begins_with / contains on two resolved values (shared by both evaluators)."""
    if first is MISSING or second is MISSING:
        return False
    first_type, second_type = type_of(first), type_of(second)
    if name == "begins_with":
        if first_type != second_type or first_type not in ("S", "B"):
            return False
        if first_type == "B":
            return bytes(first).startswith(bytes(second))
        return first.startswith(second)
    # contains
    if first_type == "S":
        return second_type == "S" and second in first
    if first_type == "B":
        return second_type == "B" and bytes(second) in bytes(first)
    if first_type in ("SS", "NS", "BS"):
        if second_type != first_type[0]:
            return False
        if first_type == "BS":
            return bytes(second) in {bytes(member) for member in first}
        return second in first
    if first_type == "L":
        return any(values_equal(element, second) for element in first)
    return False
