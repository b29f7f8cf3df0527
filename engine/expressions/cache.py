"""A bounded, thread-safe LRU of parsed (unbound) expression trees, keyed by
``(kind, text)``.

Clients send the same few expression strings over and over with different placeholder
values; since the parser's output does not depend on the values (they are bound later, by
:func:`engine.expressions.parser.bind`), each distinct text is parsed once. Trees are frozen
dataclasses, so one cached tree is safely shared by every thread and request. Texts that
fail to parse are not cached (the error is raised again on the next request).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["CacheInfo", "ParseCache", "cached_parse", "parse_cache_info", "clear_parse_cache"]

#: Distinct expression texts kept; each tree is a few hundred bytes to a few KiB.
DEFAULT_MAXSIZE = 4096


class CacheInfo(NamedTuple):
    """Same fields as :func:`functools.lru_cache`'s ``cache_info()``."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class ParseCache:
    """An LRU map ``(kind, text) -> tree`` guarded by one lock. The parse itself runs
    outside the lock, so a slow parse never blocks other threads' hits; two threads
    missing on the same text at once both parse it and the later store wins (the trees
    are equal)."""

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._entries: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get_or_parse(self, kind: str, text: str, parse: Callable[[str], Any]) -> Any:
        key = (kind, text)
        with self._lock:
            tree = self._entries.get(key)
            if tree is not None:
                self._entries.move_to_end(key)
                self._hits += 1
                return tree
            self._misses += 1
        tree = parse(text)  # raises for a bad expression: nothing is stored
        with self._lock:
            self._entries[key] = tree
            self._entries.move_to_end(key)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)
        return tree

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, self._maxsize, len(self._entries))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._hits = 0
            self._misses = 0


_CACHE = ParseCache()


def cached_parse(kind: str, text: str, parse: Callable[[str], Any]) -> Any:
    """The tree for ``text`` from the process-wide cache, parsing it on a miss."""
    return _CACHE.get_or_parse(kind, text, parse)


def parse_cache_info() -> CacheInfo:
    """Hits, misses, maxsize and current size of the process-wide parse cache."""
    return _CACHE.info()


def clear_parse_cache() -> None:
    """Empty the process-wide cache and zero its counters (tests use this)."""
    _CACHE.clear()
