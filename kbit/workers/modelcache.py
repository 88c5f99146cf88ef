"""The models a long-lived worker keeps loaded between groups: least recently used first out,
within a memory budget.

Generic (no torch): the evaluator passes the key, how to load on a miss, and how to size what it
loaded. The budget counts the models kept loaded beside the one in use, so a worker's memory is
the budget plus one model being evaluated. The model in use is never evicted while in use; one
bigger than the whole budget is used for its group and dropped after it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager


class ModelCache:
    """`with cache.use(key, load, size) as model:`; `held()` names what stays loaded."""

    def __init__(self, budget_bytes: int, on_evict: Callable[[object], None] = lambda model: None):
        if budget_bytes < 0:
            raise ValueError(f"ModelCache: budget_bytes must be >= 0, got {budget_bytes}")
        self.budget_bytes = int(budget_bytes)
        self.on_evict = on_evict  # e.g. torch.cuda.empty_cache after the last reference goes
        self._entries: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = {"loads": 0, "hits": 0, "evictions": 0}

    @contextmanager
    def use(self, key: Hashable, load: Callable[[], object], size: Callable[[object], int],
            expected_bytes: int = 0) -> Iterator[object]:
        """The model under `key`, loaded on a miss; on a miss, kept models are first evicted down to
        budget - `expected_bytes` (when the caller knows how big the new one will be)."""
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None:
            with self._lock:
                self._evict_down_to(max(0, self.budget_bytes - int(expected_bytes)))
            model = load()
            entry = (model, int(size(model)))
            self.stats["loads"] += 1
        else:
            self.stats["hits"] += 1
        try:
            yield entry[0]
        finally:
            with self._lock:
                self._entries[key] = entry
                self._evict_down_to(self.budget_bytes)

    def _evict_down_to(self, budget: int) -> None:
        # Oldest first; the entry just used was re-inserted last, so it goes last (or alone when too big).
        while self._entries and sum(nbytes for _, nbytes in self._entries.values()) > budget:
            _, (model, _) = self._entries.popitem(last=False)
            self.stats["evictions"] += 1
            self.on_evict(model)

    def held(self) -> list:
        """Keys of the loaded models, least recently used first."""
        with self._lock:
            return list(self._entries)

    def held_bytes(self) -> int:
        with self._lock:
            return sum(nbytes for _, nbytes in self._entries.values())
