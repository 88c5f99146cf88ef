"""The one timer the benchmark scripts share: the median of repeated wall-clock runs."""

from __future__ import annotations

import statistics
import time


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    """(median seconds over `repeat` calls of fn, the last call's result)."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out
