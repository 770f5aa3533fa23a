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
    """Least-recently-used memo of up to ``max_entries`` values, computing each key once.

    ``compute`` runs outside the lock, so a slow stage does not block other keys. A thread
    asking for a key another thread is computing waits for that result instead of computing
    it again (two sessions, or a session and a background warm-up, share the work). An
    exception from ``compute`` propagates to its caller and stores nothing; a waiting thread
    then computes the key itself.
    """

    def __init__(self, max_entries: int = 128) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries: expected at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._computing: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        while True:
            with self._lock:
                if key in self._values:
                    self._values.move_to_end(key)
                    self.hits += 1
                    return self._values[key]
                running = self._computing.get(key)
                if running is None:
                    self.misses += 1
                    done = self._computing[key] = threading.Event()
                    break
            running.wait()  # another thread computes it: take its result (or retry)
        try:
            value = compute()
            with self._lock:
                self._values[key] = value
                self._values.move_to_end(key)
                while len(self._values) > self.max_entries:
                    self._values.popitem(last=False)
            return value
        finally:
            with self._lock:
                del self._computing[key]
            done.set()

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        """Forget every stored value."""
        with self._lock:
            self._values.clear()
