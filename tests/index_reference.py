"""The reference for secondary-index tests: every index rebuilt from a full scan of the
base table, in plain Python, compared with what the engine's index holds.

Independent of engine.indexes: an item is in an index iff it has every index key
attribute with the declared type (S: non-empty str, N: number, B: non-empty bytes); its
entry is the item cut to the projection (ALL; KEYS_ONLY: table + index keys; INCLUDE:
those + non_key_attributes).
"""

from __future__ import annotations

from decimal import Decimal

_TYPES = {"S": (str,), "N": (int, Decimal), "B": (bytes, bytearray)}


def _fits(value, key_type: str) -> bool:
    if value is None or isinstance(value, bool) or not isinstance(value, _TYPES[key_type]):
        return False
    return key_type == "N" or len(value) > 0


def expected_entries(items, table_keys, definition: dict) -> list[dict]:
    """The entries a fresh build of ``definition`` over ``items`` holds, canonically sorted."""
    keys = [tuple(pair) for pair in definition["key_schema"]]
    projection = definition.get("projection", "ALL")
    if isinstance(projection, str):
        projection = {"type": projection}
    names = {name for name, _ in [*table_keys, *keys]}
    if projection["type"] == "INCLUDE":
        names |= set(projection["non_key_attributes"])
    result = []
    for item in items:
        if not all(_fits(item.get(name), key_type) for name, key_type in keys):
            continue
        if projection["type"] == "ALL":
            result.append(dict(item))
        else:
            result.append({name: item[name] for name in names if name in item})
    return sorted(result, key=canonical)


def canonical(item: dict) -> str:
    return repr(sorted((name, repr(value)) for name, value in item.items()))


def index_entries(engine, table_name: str, index_name: str) -> list[dict]:
    """Every entry of the engine's index, canonically sorted."""
    return sorted(engine.index(table_name, index_name).iter_entries(), key=canonical)


def check_query_order(engine, table_name: str, definition: dict, table_keys) -> None:
    """For every index partition key value present, a Query returns the entries in
    DynamoDB's order: index sort key, then the table's key."""
    keys = [tuple(pair) for pair in definition["key_schema"]]
    handle = engine.index(table_name, definition["name"])
    entries = list(handle.iter_entries())
    hash_name = keys[0][0]
    for value in {entry[hash_name] for entry in entries}:
        got = []
        start = None
        while True:  # small pages: the pagination keys are exercised too
            page = handle.query_page(value, limit=3, exclusive_start_key=start)
            got.extend(page.items)
            start = page.last_evaluated_key
            if start is None:
                break
        order = [name for name, _ in keys[1:]] + [name for name, _ in table_keys]
        want = sorted((e for e in entries if e[hash_name] == value),
                      key=lambda e: tuple(_order_key(e[name]) for name in order))
        assert [tuple(e[n] for n in order) for e in got] == \
            [tuple(e[n] for n in order) for e in want], (definition["name"], value)


def _order_key(value):
    if isinstance(value, str):
        return value.encode()
    return value
