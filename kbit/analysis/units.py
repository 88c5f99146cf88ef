"""How a number of bits is written for people: '5.54 Mbit' (the report, the demo and the dashboard)."""

from __future__ import annotations


def format_bits(bits: float) -> str:
    for unit, size in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if bits >= size:
            return f"{bits / size:.2f} {unit}"
    return f"{bits:.0f} bit"
