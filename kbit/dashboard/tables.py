"""The analysis tables the Frontier page shows, shaped from kbit.analysis's Findings: pure pandas,
no Streamlit. A winner is named only where its interval excludes zero; elsewhere the row says
'undecided' and which precision is ahead, so no table rounds noise into a verdict."""

from __future__ import annotations

import pandas as pd

from kbit.analysis import Findings, format_bits, k_of, verdict_text
from kbit.analysis.units import sixteen_bit_share_text

MARGINS = ("margin", "margin_low", "margin_high", "offset", "offset_low", "offset_high", "drift", "drift_low",
           "drift_high")


def equal_bits_table(found: Findings) -> pd.DataFrame:
    """One row per budget: each k's score, the verdict, the winning config and the margin's interval."""
    table = found.budgets
    columns = ["budget_bits", *found.precision.groups, "verdict", "config", "margin", "margin_low", "margin_high"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    out = table[["budget_bits", *found.precision.groups, "margin", "margin_low", "margin_high"]].copy()
    verdicts = [verdict_text(w, d, m) for w, d, m in zip(table["winner"], table["decided"], table["missing"])]
    out.insert(len(found.precision.groups) + 1, "verdict", verdicts)
    out.insert(len(found.precision.groups) + 2, "config", table["winner_label"])
    return out[columns]


def share_caption(found: Findings) -> str:
    """How much of each model's total bits stays at 16 bits in its quantized runs (the x axis is
    mostly not k on small models), and the training seeds of each size where some has several, as
    the report says them."""
    parts = []
    if found.sixteen_bit_share:
        shares = sixteen_bit_share_text(found.sixteen_bit_share)
        parts.append(f"Share of a quantized run's total bits kept at 16 bits (embeddings, head, norms): {shares}.")
    if found.seeds:
        parts.append("Training seeds per size: " + ", ".join(f"{m} {n}" for m, n in found.seeds.items())
                     + " (a size's seeds are one point, resampled before the documents).")
    return " ".join(parts)


def findings_table(found: Findings) -> pd.DataFrame:
    """The paper's three findings and their parts: verdict, margin (positive: agrees) and interval."""
    rows = []
    for finding in found.findings:
        parts = [(finding.claim, finding.verdict, finding.margin, finding.p)] + [
            (f"  {r['name']}", f"{r['verdict']} (exploratory)", r["margin"], None) for r in finding.rows
        ]
        for name, word, margin, p in parts:
            rows.append({"finding": name, "verdict": word, "margin": margin.value if margin else None,
                         "margin_low": margin.low if margin else None, "margin_high": margin.high if margin else None,
                         "holm_p": p})
    return pd.DataFrame(rows, columns=["finding", "verdict", "margin", "margin_low", "margin_high", "holm_p"])


def parallel_table(found: Findings) -> pd.DataFrame:
    """The parallel-curves model per k: its offset behind the leader (the leader: its lead over the
    next) with the interval, its best config, and how far its residuals drift across its range."""
    fit = found.parallel
    rows = []
    for group in sorted(fit.offsets, key=k_of):
        offset = fit.shown(group)
        drift = fit.drift.get(group)
        rows.append({"k": group, "offset": offset.value, "offset_low": offset.low, "offset_high": offset.high,
                     "config": fit.labels[group], "drift": drift.value if drift else None,
                     "drift_low": drift.low if drift else None, "drift_high": drift.high if drift else None})
    return pd.DataFrame(rows)


def parallel_caption(found: Findings) -> str:
    fit = found.parallel
    verdict = fit.winner if fit.margin.decided else f"undecided ({fit.winner} ahead)"
    shape = ("parallel within the noise" if fit.parallel else
             "not parallel (a k drifts by more than the leader's margin): read the table above instead")
    return (f"One shared monotone curve of score against log2 bits plus one offset per k (positive is better; the "
            f"leader's row is its lead over the next k), fitted to {fit.n_points} points with the bootstrap around "
            f"the whole fit. Which k wins at every budget: {verdict}. The curves are {shape}.")


def display_formats(table: pd.DataFrame) -> dict:
    """How the Frontier page shows these tables, as `kbit report` does: budgets in bits (633.76
    kbit), margins signed (+0.0056); other number columns take the dashboard's default."""
    formats = {c: "{:+.4f}" for c in MARGINS if c in table}
    if "holm_p" in table:
        formats["holm_p"] = "{:.3f}"
    if "budget_bits" in table:
        formats["budget_bits"] = format_bits
    return formats


EXPORTABLE = ("done", "cached")


def export_command(run_id: int, label: str) -> str:
    """The command that writes a run's k-bit model as a loadable checkpoint (`kbit export`)."""
    return f"kbit export {int(run_id)} --output {label}-run{int(run_id)}"


def with_export_commands(table: pd.DataFrame, runs: pd.DataFrame, x_bits: pd.Series) -> pd.DataFrame:
    """The equal-bits table with an `export` column: per budget, the command for the run of the
    winning config whose bits (`x_bits`, the table's axis) are nearest the budget (log scale)."""
    import numpy as np

    commands = []
    for budget, label in zip(table["budget_bits"], table["config"]):
        mine = runs.index[runs["label"] == label] if isinstance(label, str) else []
        if len(mine) == 0:
            commands.append(None)
            continue
        distance = (np.log2(x_bits.loc[mine].astype(float)) - np.log2(float(budget))).abs()
        run = runs.loc[distance.idxmin()]
        commands.append(export_command(run["run_id"], label))
    return table.assign(export=commands)
