"""A bounded, thread-safe store of computed values, shared by the app's sessions.

:class:`Memo` is the :data:`fairvlm.audit.Memo` the app hands to
:func:`fairvlm.audit.run_audit`: ``memo(key, compute)`` returns the value stored under ``key``
or computes, stores and returns it, dropping the least recently used value beyond
``max_entries``. Values are shared, so callers must treat them as read-only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class Memo:
    """Least-recently-used memo of up to ``max_entries`` values.

    ``compute`` runs outside the lock, so a slow stage does not block other keys; two
    sessions asking for the same new key at once may both compute it (the results are equal,
    one is kept). An exception from ``compute`` propagates and stores nothing.
    """

    def __init__(self, max_entries: int = 128) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries: expected at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                self.hits += 1
                return self._values[key]
            self.misses += 1
        value = compute()
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.max_entries:
                self._values.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        """Forget every stored value."""
        with self._lock:
            self._values.clear()
