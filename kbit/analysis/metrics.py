"""A metric's direction: which way is better. The one definition every report, chart and table uses."""

from __future__ import annotations

LOWER_IS_BETTER = ("perplexity", "bits_per_byte", "bpb", "loss")


def lower_is_better(metric: str) -> bool:
    """True for metrics where smaller is better (perplexity, bits per byte, loss); `metric` may be
    'bits_per_byte' or 'task/bits_per_byte'."""
    return any(word in metric.lower() for word in LOWER_IS_BETTER)


def better_word(metric: str) -> str:
    return "lower" if lower_is_better(metric) else "higher"
