"""How bits are written for people: '5.54 Mbit', and each model's 16-bit share (the report, the demo and
the dashboard)."""

from __future__ import annotations


def format_bits(bits: float) -> str:
    for unit, size in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if bits >= size:
            return f"{bits / size:.2f} {unit}"
    return f"{bits:.0f} bit"


def sixteen_bit_share_text(shares: dict[str, tuple[float, float]]) -> str:
    """'s1 61%–87%, s2 41%–69%': each model's share of total bits kept at 16 bits (frontier.sixteen_bit_share)."""
    return ", ".join(f"{m.split('/')[-1]} {lo:.0%}" + (f"–{hi:.0%}" if round(hi, 2) != round(lo, 2) else "")
                     for m, (lo, hi) in shares.items())
