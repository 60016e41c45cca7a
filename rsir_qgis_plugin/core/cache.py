"""Costly objects kept between queries (onnxruntime sessions, open index readers), and their release.

A KeyedCache keeps a few values by key, the least recently used going first when it is full. Every
cache registers itself here, so release_shared() frees them all (at plugin unload, between tests)
without this module importing the modules that own them.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

_CACHES: weakref.WeakSet[KeyedCache] = weakref.WeakSet()


class KeyedCache(Generic[V]):
    """Up to `size` values by key, made on first use; thread-safe.

    A value evicted to make room is dropped, not closed: a search in another thread may still hold it,
    and it is freed with its last reference. clear() empties the cache and closes each value with
    `close` (when given), for a release when no work is left running.
    """

    def __init__(self, size: int, close: Callable[[V], object] | None = None):
        if size < 1:
            raise ValueError(f"a cache keeps at least one value, not {size}")
        self.size = size
        self._close = close
        self._values: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        _CACHES.add(self)

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value kept for `key`, else make()'s, kept. make() runs under the cache's lock, so threads
        asking at once wait for one value instead of each making its own (a session takes seconds)."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            value = make()
            self._values[key] = value
            while len(self._values) > self.size:
                self._values.popitem(last=False)
            return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def clear(self) -> None:
        """Forget every value and close each (in the order they were last used)."""
        with self._lock:
            values = list(self._values.values())
            self._values.clear()
        if self._close is not None:
            for value in values:
                self._close(value)


def release_shared() -> None:
    """Clear every cache: onnxruntime sessions and their memory go, open index readers close their
    catalogs and memory-mapped vectors (Windows keeps a folder with an open or mapped file locked).

    The next query makes its session and opens its index afresh.
    """
    for cache in list(_CACHES):
        cache.clear()
