"""`kbit report`: RESULTS.md (or JSON) from the database, never typed by hand. Only the text is
made here; every number, interval and verdict comes from `kbit.analysis.findings`."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np

from kbit.analysis import FINDINGS, Findings, Interval, better_word, findings, format_bits, k_of, rows_to_frame, verdict_text
from kbit.analysis.frontier import by_family, by_method
from kbit.analysis.resample import DOCUMENTS, NO_NOISE, STDERR
from kbit.analysis.teams import row_interval
from kbit.analysis.units import sixteen_bit_share_text

DEFAULT_METRICS = ("mean_zero_shot/acc", "kbit_heldout/bits_per_byte")
AXIS_WORDS = {"total": "total model", "quantized": "quantized-weight", "paper": "paper (every parameter at the config's k)"}


def load_findings(session, task: str, metric: str, sweeps=None, x_axis: str = "total", method: str | None = None) -> Findings:
    """The analysis of `task/metric` over the finished runs (of `sweeps`; of one rounding `method`
    and the 16-bit runs, when given), with their per-document scores."""
    return split_findings(session, task, metric, sweeps, x_axis, only=method)[0][1]


def split_findings(session, task: str, metric: str, sweeps=None, x_axis: str = "total", only: str | None = None):
    """[(title, Findings)]: one analysis per family when the runs hold several (never pooled), and
    within it one per rounding method when the runs use several (RTN and GPTQ compared within
    themselves, each against the same 16-bit runs)."""
    from kbit.db import queries

    rows = queries.frontier_rows(session, task=task, metric=metric, sweeps=sweeps)
    scores = queries.document_scores(session, [r["run_id"] for r in rows], task, metric)
    name = f"{task}/{metric}"
    out = []
    for family, runs in by_family(rows_to_frame(rows)).items():
        parts = by_method(runs)
        if only is not None:
            parts = {only: parts.get(only, runs[(runs["bits"] == 16) | (runs.get("method") == only)])}
        for m, part in parts.items():
            title = name + (f" [{family}]" if family else "") + (f" ({m})" if m else "")
            out.append((title, findings(part, name, scores, x_axis=x_axis, family_runs=runs)))
    return out


def analysed_sections(session, wanted, sweeps=None, x_axis: str = "total", method: str | None = None):
    """[(title, Findings)] for each wanted 'task/metric' the finished runs have (mean zero-shot
    accuracy always), one per rounding method; what RESULTS.md renders."""
    from kbit.db import queries

    available = {f"{t}/{m}" for t, m in queries.list_metrics(session)}
    return [
        section
        for task, metric in (m.split("/", 1) for m in wanted)
        if f"{task}/{metric}" in available or (task, metric) == ("mean_zero_shot", "acc")
        for section in split_findings(session, task, metric, sweeps, x_axis=x_axis, only=method)
    ]


def method_of(title: str) -> str | None:
    """'kbit_heldout/bits_per_byte (gptq)' -> 'gptq'; None for a title without a method."""
    return title.rsplit(" (", 1)[1].rstrip(")") if title.endswith(")") else None


def short(model: str) -> str:
    return model.split("/")[-1]


def number(value, digits: int = 4) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def interval_text(margin: Interval | None) -> str:
    """'+0.0123 [-0.0040, +0.0290]'; the interval is left out when no noise is known."""
    if margin is None or not math.isfinite(margin.value):
        return "–"
    if not math.isfinite(margin.low):
        return f"{margin.value:+.4f}"
    return f"{margin.value:+.4f} [{margin.low:+.4f}, {margin.high:+.4f}]"


def p_value_text(p: float | None) -> str:
    """A Holm-adjusted p as the report shows it: '0.012'; '< 0.001' below that."""
    if p is None:
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p: float | None) -> str:
    return "" if p is None else f"; Holm p {p_value_text(p)}"


def band_level(table) -> float:
    """The pointwise level of the budget table's simultaneous 95% band (one level for the table)."""
    levels = table["band_level"].dropna() if "band_level" in table else []
    return float(levels.iloc[0]) if len(levels) else 0.95


def winner_text(row: dict) -> str:
    """The budget's verdict (analysis.verdict_text) with its config: '**4-bit** (nf4-b64)' when
    decided, 'undecided (4-bit ahead) nf4-b64' when not."""
    text = verdict_text(row.get("winner"), row.get("decided"), row.get("missing"))
    if text == "–":
        return text
    return f"**{text}** ({row['winner_label']})" if row["decided"] else f"{text} {row['winner_label']}"


def render_report(analysed: list[tuple[str, Findings]]) -> str:
    """RESULTS.md: a header, the paper's findings against every metric at a glance, then one section
    per analysed metric. Nothing in it depends on when or where it was made (no date, no path), so
    the same runs give the same file digit for digit."""
    head = [
        "# kbit results",
        "",
        "Generated by `kbit report` from the results database; do not edit by hand. Every margin is shown "
        "with a 95% bootstrap interval. The findings of a metric that have data are decided together at 5% "
        "(Holm's step-down, p shown), and the budgets of a table share one simultaneous 95% band, so no verdict "
        "comes from making many at once; what is not decided is *undecided*.",
        "",
    ]
    judged = [(metric, f) for metric, f in analysed if f.n_runs]
    if judged:
        head += [
            "## The paper's findings, metric by metric",
            "",
            "| finding of Dettmers & Zettlemoyer (2023) | " + " | ".join(f"`{m}`" for m, _ in judged) + " |",
            "|---|" + "---|" * len(judged),
        ]
        without = []
        for finding_id, claim in FINDINGS.items():
            found = [f.finding(finding_id) for _, f in judged]
            if all(x.margin is None for x in found):
                without.append(claim)
                continue
            cells = [f"{x.verdict} ({interval_text(x.margin)}{p_text(x.p)})" for x in found]
            head.append(f"| {claim} | " + " | ".join(cells) + " |")
        head += ["", "Margins are in the metric's units, positive where the data agrees with the paper. "
                 "Each is worked out in the metric's section below."
                 + (f" No runs yet that test: {'; '.join(without)} (what each compares is said below the "
                    "findings of each metric; examples/gptq.yaml runs both rounding methods)." if without else ""), ""]
    return "\n".join(head) + "\n" + "\n".join(render_section(metric, f) for metric, f in analysed)


def evidence_text(f: Findings) -> str:
    return evidence_counts_text(f.precision.evidence)


def evidence_counts_text(counts: dict) -> str:
    """'Evidence: 12 runs resampled over their documents ...' from resample's evidence counts."""
    parts = []
    if counts.get(DOCUMENTS):
        parts.append(f"{counts[DOCUMENTS]} runs resampled over their documents (paired: one count per document for every config and size)")
    if counts.get(STDERR):
        parts.append(f"{counts[STDERR]} runs known only by value and stderr (resampled from a normal)")
    if counts.get(NO_NOISE):
        parts.append(f"{counts[NO_NOISE]} runs with no noise estimate (nothing involving them is decided)")
    return "Evidence: " + "; ".join(parts) + "." if parts else ""


def render_section(metric: str, f: Findings) -> str:
    out = [f"# `{metric}`", ""]
    if not f.n_runs:
        out.append(f"No finished runs with `{metric}` yet: run `kbit demo` first.")
        return "\n".join(out) + "\n"
    noise = f" The median standard error of one score is {f.median_stderr:.4f}." if f.median_stderr else ""
    out += [
        f"{better_word(metric).capitalize()} is better. {f.n_runs} runs of {len(f.models)} models: "
        + ", ".join(f"{m} ({n / 1e6:.2f}M params)" for n, m in f.models) + "." + noise + " " + evidence_text(f),
        "",
        *scope_lines(f),
        *precision_section(f),
        *parallel_section(f),
        *findings_section(f),
        *scaling_section(f),
        *frontier_section(f, metric),
    ]
    return "\n".join(out) + "\n"


def scope_lines(f: Findings) -> list[str]:
    """Which family and sweeps the section is about, and how much of each model's bits is not k."""
    where = (f"Family `{f.family}`" if f.family else "Runs") + (
        f", from sweep{'s' if len(f.sweeps) > 1 else ''} {', '.join(map(str, f.sweeps))}." if f.sweeps else ".")
    out = [where]
    if f.sixteen_bit_share:
        shares = sixteen_bit_share_text(f.sixteen_bit_share)
        out[0] += (" Share of a quantized run's total bits kept at 16 bits (embeddings, head, norms): " + shares
                   + "; `--x-axis paper` charges every parameter at the config's bits instead.")
    if f.seeds:
        out.append("Training seeds per size: " + ", ".join(f"{m} {n}" for m, n in f.seeds.items())
                   + ". The seeds of a size are one point per config (their mean); every bootstrap replicate "
                   "resamples them, with replacement, before the documents, so the intervals hold the seeds' spread.")
    return out + [""]


def precision_section(f: Findings) -> list[str]:
    table = f.budgets
    out = [
        "## Which precision wins at equal bits",
        "",
        f"Each k's score at a budget of {AXIS_WORDS[f.x_axis]} bits, read "
        "off its curve across model sizes (linear in log bits between measured sizes, never extrapolated; – where "
        "a k's curve does not reach the budget). A k's config is chosen on one half of the documents and scored "
        "on the other, so a k tried in more configs does not win by selection. The margin is the winner's lead "
        "over the best other k, with a 95% band that holds for every budget of the table at once (each interval "
        "at the pointwise level given below the table). A budget that some compared k does not reach is "
        "*partial*: its lead is shown but never decided, so coverage alone makes no winner.",
        "",
    ]
    if table.empty:
        return out + ["No two precisions cover a common range of bits yet (each needs two model sizes).", ""]
    groups = f.precision.groups
    out.append("| budget | " + " | ".join(groups) + " | winner | margin [95% simultaneous band] |")
    out.append("|---|" + "---|" * len(groups) + "---|---|")
    for row in table.to_dict("records"):
        cells = [number(row[g]) for g in groups]
        margin = Interval(row["margin"], row["margin_low"], row["margin_high"]) if isinstance(row.get("winner"), str) else None
        out.append(f"| {format_bits(row['budget_bits'])} | " + " | ".join(cells) + f" | {winner_text(row)} | {interval_text(margin)} |")
    decided = table[table["decided"].fillna(False).astype(bool)]
    wins = decided["winner"].value_counts().to_dict()
    full = int((~table["partial"].astype(bool)).sum())
    out += ["", f"Decided at {len(decided)} of the {full} budgets every k reaches"
            + (": " + ", ".join(f"{g} {n}" for g, n in sorted(wins.items())) if wins else "")
            + f" ({len(table) - full} more partial, never counted). The band is each budget's "
            f"{100 * band_level(table):.2f}% interval.", ""]
    return out


def parallel_section(f: Findings) -> list[str]:
    fit = f.parallel
    if fit is None:
        return []
    decided = fit.margin.decided
    out = ["## Parallel curves", "",
           "One shared curve of the score against log2 bits (monotone: a quadratic spline that never gets worse "
           "with more bits) plus one offset per k, its best config's (chosen on half the documents, scored on the "
           f"other): if the curves are parallel the k with the highest offset wins at every budget. {fit.n_points} "
           f"points; RMS residual {fit.rms_residual:.4f}. Offsets are behind the leader (positive is better), with "
           "95% intervals; a k's drift is how far its residuals move across its own range of bits.", "",
           "| k | offset behind the leader [95% interval] | config | drift across its range [95% interval] |",
           "|---|---|---|---|"]
    for group in sorted(fit.offsets, key=k_of):
        shown = f"leads by {interval_text(fit.margin)}" if group == fit.winner else interval_text(fit.offset(group))
        out.append(f"| {group} | {shown} | {fit.labels[group]} | {interval_text(fit.drift.get(group))} |")
    verdict = f"**{fit.winner}**" if decided else f"undecided ({fit.winner} ahead)"
    shape = ("The curves are parallel within the noise: no k drifts by more than the leader's margin."
             if fit.parallel else "The curves are **not parallel**: some k drifts by more than the leader's margin, "
             "so the offsets do not say which k wins everywhere; read the per-budget table above.")
    return out + ["", f"Which k wins at every budget: {verdict}, by {interval_text(fit.margin)}. {shape}", ""]


def parallel_json(f: Findings) -> dict | None:
    fit = f.parallel
    if fit is None:
        return None
    groups = []
    for group in sorted(fit.offsets, key=k_of):
        offset, drift = fit.offset(group), fit.drift.get(group)
        groups.append({"group": group, "bits": k_of(group), "config": fit.labels[group],
                       **{f"offset{k[6:]}": v for k, v in interval_json(offset).items()},
                       **{f"drift{k[6:]}": v for k, v in interval_json(drift).items()}})
    return {"winner": fit.winner, "winner_bits": k_of(fit.winner), "decided": fit.margin.decided,
            **interval_json(fit.margin), "parallel": fit.parallel, "n_points": fit.n_points,
            "rms_residual": fit.rms_residual, "groups": groups}


def findings_section(f: Findings) -> list[str]:
    out = ["## Beside the paper", "", "| finding of Dettmers & Zettlemoyer (2023) | margin [95% interval] | Holm p | verdict |",
           "|---|---|---|---|"]
    for finding in f.findings:
        out.append(f"| **{finding.claim}** | {interval_text(finding.margin)} | {p_value_text(finding.p)} | **{finding.verdict}** |")
        for row in finding.rows:
            out.append(f"| &nbsp;&nbsp;{row['name']} | {interval_text(row['margin'])} | | {row['verdict']} (exploratory) |")
    four = f.finding("four_bit_optimal")
    basis = ("its offset against each other k's on the parallel curves (the curves are parallel)"
             if four.basis == "offsets" else "each other k over the budgets both cover")
    out += ["", f"4-bit is compared with {basis}; it can *agree* only if 4-bit "
            "beats every other k (an intersection-union test), and *differ* only if some k beats 4-bit after a "
            "Bonferroni correction over the other k, so trying more rivals cannot decide it by chance; its "
            "margin is the lead over the closest rival. Data types: each of the paper's pairs at k = 3 and 4, "
            "tested the same way; block sizes within each k of 3 to 5; GPTQ against round-to-nearest and "
            "outliers against none at k = 3 and 4; each side's best config at equal bits. "
            "The findings that have data are decided together: Holm's step-down over their bootstrap p-values "
            "at 5%. The indented rows are exploratory (each at 95% on its own); k = 5 data types (where the paper "
            "reports the opposite) and nf (not one of the paper's compared types) do not count toward a verdict.", ""]
    return out


def scaling_budgets(f: Findings) -> np.ndarray:
    """Where the scaling section reads the parallel fit: the per-budget table's budgets."""
    return np.asarray(f.precision.budgets, dtype=float)


def scaling_section(f: Findings) -> list[str]:
    """The family's scaling law, from the parallel curves: each k's lead over 4-bit (d_k - d_4) and
    its fitted score at the table's budgets, only inside the bits it was measured on."""
    fit = f.parallel
    if fit is None:
        return []
    groups = sorted(fit.offsets, key=k_of)
    out = ["## Scaling", "", "The parallel curves as a scaling law: score = g(log2 bits) + d_k. Each k's lead over "
           "4-bit, d_k − d_4 (positive: better than 4-bit at every budget, if the curves are parallel), with its 95% "
           "interval, and the bits it was measured on; a fitted score is given only inside that range.", "",
           "| k | d_k − d_4 [95% interval] | measured from | to |", "|---|---|---|---|"]
    for group in groups:
        low, high = fit.ranges[group]
        lead = fit.versus(group, "4-bit") if group != "4-bit" else None
        out.append(f"| {group} | {interval_text(lead) if group != '4-bit' else 'reference'} | "
                   f"{format_bits(low)} | {format_bits(high)} |")
    budgets = scaling_budgets(f)
    if budgets.size:
        fitted = {g: fit.predict(g, budgets)[0] for g in groups}
        out += ["", "Fitted score at each budget (– where a k was not measured):", "",
                "| budget | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
        for i, budget in enumerate(budgets):
            out.append(f"| {format_bits(budget)} | " + " | ".join(number(fitted[g][i]) for g in groups) + " |")
    return out + [""]


def scaling_json(f: Findings) -> dict | None:
    fit = f.parallel
    if fit is None:
        return None
    budgets = scaling_budgets(f)
    groups = sorted(fit.offsets, key=k_of)
    fitted = {g: fit.predict(g, budgets)[0] for g in groups}
    return {
        "reference": "4-bit" if "4-bit" in fit.offsets else None,
        "groups": [{"group": g, "bits": k_of(g), "measured_bits": list(fit.ranges[g]),
                    **interval_json(fit.versus(g, "4-bit") if g != "4-bit" else None)} for g in groups],
        "fitted": [{"budget_bits": float(b), "scores": {g: (float(fitted[g][i]) if math.isfinite(fitted[g][i]) else None)
                                                         for g in groups}} for i, b in enumerate(budgets)],
    }


def frontier_section(f: Findings, metric: str) -> list[str]:
    out = ["## The frontier", "", f"Runs on the Pareto frontier of total model bits against `{metric}` "
           "(point estimates; see the intervals above before reading a winner off it):", "",
           "| total bits | model | config | score |", "|---|---|---|---|"]
    for r in f.frontier.to_dict("records"):
        out.append(f"| {format_bits(r['total_bits'])} | {r['model']} | {r['label']} | {r['value']:.4f} |")
    return out + [""]


def interval_json(margin: Interval | None) -> dict:
    def clean(x):
        return None if x is None or not math.isfinite(x) else float(x)

    if margin is None:
        return {"margin": None, "margin_low": None, "margin_high": None}
    return {"margin": clean(margin.value), "margin_low": clean(margin.low), "margin_high": clean(margin.high)}


def report_json(metric: str, f: Findings) -> dict:
    """The analysis of one metric as plain JSON (the shape docs/interfaces.md describes)."""
    budgets = []
    for row in f.budgets.to_dict("records"):
        winner = row.get("winner") if isinstance(row.get("winner"), str) else None
        margin = Interval(row["margin"], row["margin_low"], row["margin_high"]) if winner else None
        budgets.append({
            "budget_bits": row["budget_bits"],
            "winner": winner, "winner_bits": k_of(winner) if winner else None,
            "winner_config": row.get("winner_label") if winner else None,
            "decided": bool(row["decided"]) if winner else False,
            "partial": bool(row["partial"]),
            "compared": [k_of(g) for g in row["compared"]],
            "missing": [k_of(g) for g in row["missing"]],
            **interval_json(margin),
            "scores": {g: (row[g] if math.isfinite(row[g]) else None) for g in f.precision.groups},
        })
    return {
        "metric": f.metric,
        "family": f.family,
        "method": method_of(metric),
        "sweeps": f.sweeps,
        "models": [{"model": m, "n_params": n, "sixteen_bit_share": list(f.sixteen_bit_share.get(m, ())) or None,
                    "seeds": f.seeds.get(m, 1)}
                   for n, m in f.models],
        "lower_is_better": f.lower,
        "x_axis": f.x_axis,
        "n_runs": f.n_runs,
        "evidence": f.precision.evidence,
        "band_level": band_level(f.budgets) if not f.budgets.empty else None,
        "budgets": budgets,
        "findings": [
            {"id": x.id, "claim": x.claim, "verdict": x.verdict, **interval_json(x.margin), "p_holm": x.p,
             "basis": x.basis,
             "parts": [{"name": r["name"], "verdict": r["verdict"], **interval_json(r["margin"])} for r in x.rows]}
            for x in f.findings
        ],
        "parallel": parallel_json(f),
        "scaling": scaling_json(f),
    }


# ---- `kbit report --compare A,B`: two teams or sweeps compared; numbers from kbit.analysis.teams ----


def load_comparison(session, task: str, metric: str, a, b, x_axis: str = "total"):
    """kbit.analysis.teams.compare_sides of `task/metric` over the finished runs of sides `a` and `b`
    (Side), with their per-document scores."""
    from kbit.analysis.teams import compare_sides
    from kbit.db import queries

    rows = {r["run_id"]: r for side in (a, b) for r in queries.frontier_rows(session, task=task, metric=metric, **side.filters())}
    ordered = [rows[i] for i in sorted(rows)]
    scores = queries.document_scores(session, list(rows), task, metric)
    return compare_sides(rows_to_frame(ordered), f"{task}/{metric}", a, b, scores, x_axis=x_axis)


def compared_text(c, verdict: str, delta: Interval | None) -> str:
    """'**vision better**' when decided, else the plain verdict ('undecided (vision ahead)')."""
    text = c.text(verdict, delta)
    return f"**{text}**" if verdict in ("A better", "B better") else text


def render_comparison(analysed: list) -> str:
    """Markdown of kbit.analysis.teams.SideComparison, one section per metric."""
    first = analysed[0][1]
    head = [
        f"# kbit comparison: {first.a.key} (A) against {first.b.key} (B)",
        "",
        f"Generated by `kbit report --compare {first.a.key},{first.b.key}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} "
        "UTC. Every difference is B − A in the metric's units with its 95% bootstrap interval; a verdict is "
        "*A better* or *B better* only when the interval excludes zero, else *undecided*. A run reused from the "
        "cache is its source's measurement: where both sides have the same one it is *shared* (*same runs*) and "
        "is never counted as agreement.",
        "",
    ]
    return "\n".join(head) + "\n" + "\n".join(comparison_section(metric, c) for metric, c in analysed)


def comparison_section(metric: str, c) -> str:
    a, b = c.a.name, c.b.name
    runs = c.runs
    out = [f"## `{metric}`", ""]
    if runs.empty:
        return "\n".join(out + [f"Neither {a} nor {b} has a finished run with `{metric}`.", ""]) + "\n"
    counts = []
    for side, name in (("A", a), ("B", b)):
        mine = runs[runs["side"].isin([side, "A and B"])]
        reused = int(mine["cached_from"].notna().sum())
        counts.append(f"{name} (A)" if side == "A" else f"{name} (B)")
        counts[-1] += f": {len(mine)} runs ({reused} reused from the cache, {int(mine['shared'].sum())} shared with the other side)"
    out += [f"{better_word(metric).capitalize()} is better. " + "; ".join(counts) + ". " + evidence_counts_text(c.evidence), ""]
    o = c.overall
    out += [f"**At equal bits, overall: {c.text(o['verdict'], o['delta'])}** — Δ (B − A) {interval_text(o['delta'])}, "
            f"averaged over {o['n_budgets']} budgets both cover (each side's best config at each budget, chosen on "
            "half the documents and scored on the other).", ""]
    if not c.per_k.empty:
        out += ["| k | at equal bits | Δ (B − A) [95% interval] | budgets |", "|---|---|---|---|"]
        for row in c.per_k.to_dict("records"):
            delta = row_interval(row)
            out.append(f"| {row['k']} | {compared_text(c, row['verdict'], delta)} | {interval_text(delta)} | {row['n_budgets']} |")
        out.append("")
    if not c.budgets.empty:
        out += ["| budget | A: score (config) | B: score (config) | Δ (B − A) [95% interval] | verdict |",
                "|---|---|---|---|---|"]
        for row in c.budgets.to_dict("records"):
            delta = row_interval(row)
            cells = [f"{number(row[s])} ({row[s + '_config']})" if row[s + "_config"] else "–" for s in ("a", "b")]
            out.append(f"| {format_bits(row['budget_bits'])} | {cells[0]} | {cells[1]} | {interval_text(delta)} | "
                       f"{compared_text(c, row['verdict'], delta)} |")
        out.append("")
    m = c.matched
    out += ["### Configs both ran", ""]
    if not m["n"]:
        out += ["None: the two sides ran no config on the same model.", ""]
    else:
        out += [f"{m['n']} (model, config) pairs: {c.a.name} better on {m['A better']}, {c.b.name} better on "
                f"{m['B better']}, undecided on {m['undecided']}, shared (the same cached run) on {m['same runs']}. "
                f"Mean Δ (B − A) over the {m['n'] - m['same runs']} pairs measured twice: {interval_text(m['delta'])}.",
                "", "| model | config | A | B | Δ (B − A) [95% interval] | verdict |", "|---|---|---|---|---|---|"]
        for row in c.pairs.to_dict("records"):
            delta = row_interval(row)
            verdict = f"shared: {row['shared']}" if row["shared"] else compared_text(c, row["verdict"], delta)
            out.append(f"| {row['model']} | {row['label']} | {number(row['a'])} (run #{row['run_a']}) | "
                       f"{number(row['b'])} (run #{row['run_b']}) | {interval_text(delta)} | {verdict} |")
        out.append("")
    for side, name in (("a", a), ("b", b)):
        only = c.only[side]
        out += [f"### Only in {side.upper()} ({name})", "",
                f"Configs: {', '.join(only['configs']) or 'none'}. Models: {', '.join(only['models']) or 'none'}.", ""]
        if not only["cells"].empty:
            out += ["| model | config | run | score |", "|---|---|---|---|"]
            out += [f"| {r['model']} | {r['label']} | #{r['run_id']} | {number(r['value'])} |"
                    for r in only["cells"].to_dict("records")]
            out.append("")
    return "\n".join(out) + "\n"


def comparison_json(c) -> dict:
    """A SideComparison as plain JSON (the shape docs/interfaces.md describes)."""

    def clean(x):
        return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x

    def verdict(word: str) -> dict:
        return {"verdict": word, "winner": {"A better": c.a.name, "B better": c.b.name}.get(word)}

    def records(frame, fields):
        return [{k: clean(v.item() if hasattr(v, "item") else v) for k, v in r.items() if k in fields}
                for r in frame.to_dict("records")]

    def side(which, s):
        runs = c.runs[c.runs["side"].isin([which, "A and B"])]
        only = c.only[which.lower()]
        return {"side": s.key, "kind": s.kind, "name": s.name, "n_runs": len(runs),
                "n_cached": int(runs["cached_from"].notna().sum()), "n_shared": int(runs["shared"].sum()),
                "only_configs": only["configs"], "only_models": only["models"],
                "only_cells": records(only["cells"], {"model", "label", "bits", "run_id", "value"})}

    interval = ("delta", "delta_low", "delta_high")
    return {
        "kind": "comparison",
        "metric": c.metric, "lower_is_better": c.lower, "x_axis": c.x_axis,
        "difference": "B - A in the metric's units",
        "a": side("A", c.a), "b": side("B", c.b),
        "both": c.both,
        "evidence": c.evidence,
        "overall": {**verdict(c.overall["verdict"]), **interval_json_of(c.overall["delta"]),
                    "n_budgets": c.overall["n_budgets"]},
        "per_k": [{**r, **verdict(r["verdict"])} for r in records(c.per_k, {"k", "verdict", "n_budgets", *interval})],
        "budgets": [{**r, **verdict(r["verdict"])} for r in records(
            c.budgets, {"budget_bits", "a", "b", "a_config", "b_config", "verdict", *interval})],
        "matched": {
            "n": c.matched["n"], "counts": {v: c.matched[v] for v in c.matched if v not in ("n", "delta")},
            **interval_json_of(c.matched["delta"]),
            "pairs": [{**r, **verdict(r["verdict"]), "shared": r["shared"] or None} for r in records(
                c.pairs, {"model", "label", "bits", "run_a", "run_b", "a", "b", "verdict", "shared", "evidence", *interval})],
        },
        "shared_runs": records(c.runs[c.runs["shared"]], {"side", "run_id", "model", "label", "cached_from"}),
    }


def interval_json_of(delta: Interval | None) -> dict:
    out = interval_json(delta)
    return {"delta": out["margin"], "delta_low": out["margin_low"], "delta_high": out["margin_high"]}


def compare_report(session, args) -> str:
    """The text of `kbit report --compare A,B` (markdown, or JSON of one metric) for the parsed
    arguments: the metrics as `kbit report` picks them, each compared between the two sides."""
    from kbit.analysis.teams import parse_sides
    from kbit.db import queries
    from kbit.errors import UsageError

    try:
        a, b = parse_sides(args.compare)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.sweep or args.method:
        raise UsageError("--compare names its sides itself (sweep:ID); --sweep and --method do not apply to it")
    known = {"team": set(queries.filter_options(session)["teams"]),
             "sweep": {str(s["sweep_id"]) for s in queries.list_sweeps(session)}}
    for side in (a, b):
        if side.value not in known[side.kind]:
            raise UsageError(f"--compare: no {side.kind} {side.value!r} in the database; known: "
                             + (", ".join(sorted(known[side.kind])) or "none"))
    as_json = args.format == "json"
    wanted = args.metric or list(DEFAULT_METRICS[:1] if as_json else DEFAULT_METRICS)
    if as_json and len(wanted) > 1:
        raise UsageError("--format json reports one metric; give one --metric (or run it once per metric)")
    bad = [m for m in wanted if "/" not in m]
    if bad:
        raise UsageError(f"--metric {bad[0]!r} is not TASK/METRIC; use e.g. --metric kbit_heldout/bits_per_byte")
    analysed = [(m, load_comparison(session, *m.split("/", 1), a, b, x_axis=args.x_axis)) for m in wanted]
    if as_json:
        import json

        return json.dumps(comparison_json(analysed[0][1]), indent=2, default=float) + "\n"
    return render_comparison(analysed)
