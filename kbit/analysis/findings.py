"""The paper's findings, checked against one metric's runs: pure pandas, no text.

`findings(frame, metric, scores)` takes rows_to_frame's runs (and their per-document scores, when
stored) and returns what the report, the demo and the JSON output show: precisions compared at
equal bits (`equalbits.compare`, one row per budget with the winner, its margin and interval),
the parallel-curves fit (the family's scaling law), and a verdict on each finding as the paper
states it:

- four_bit_optimal: 4-bit against each other k at equal bits: from the parallel-curves offsets when the
  curves are parallel (one lead per k, every point used, no chords), else averaged over the budgets
  both cover;
- small_blocks: at k = 3..5, the best config with blocks of 64-128 against larger blocks;
- quantile_float_beat_int_dynamic: each of the paper's pairs (quantile vs int, quantile vs dynamic,
  fp vs int, fp vs dynamic) at k = 3 and 4; k = 5, where the paper reports the opposite, and nf (not
  in the paper's comparison) on rows of their own that do not count;
- gptq_beats_rtn: GPTQ against round-to-nearest at k = 3 and 4, at equal bits within each k (the
  family's runs of both methods; other k on rows that do not count);
- outliers_help_low_bits: proxy (outlier) quantization against none at k = 3 and 4, at equal bits,
  the 16-bit outlier columns counted in the bits.

A claim made of several comparisons is tested so that taking the best of them cannot decide it:
it can `agree` only when every comparison agrees (an intersection-union test, which needs no
correction: its p-value is the largest of theirs), and `differ` only when some comparison goes
against it after a Bonferroni correction over the comparisons (so with m rivals truly tied, `differs`
comes up at most 5% of the time). A one-comparison claim has its own bootstrap p-value. The three
findings that have data are then decided together, by Holm's step-down at 5% (`multiplicity`): a
report makes up to five headline claims per metric and the chance that any of them is wrong stays at
5%. A finding not
decided is `undecided` (or `not enough data` when the runs cannot answer it). Its margin is the lead
over the closest rival (per bootstrap replicate, the smallest of the comparisons) with a 95% interval;
the rows under a finding are exploratory, each at 95% on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kbit.analysis import equalbits, multiplicity, parallel, seeds
from kbit.analysis.equalbits import Comparison, Interval
from kbit.analysis.frontier import frontier_view, plottable, sixteen_bit_share
from kbit.analysis.metrics import lower_is_better

FINDINGS = {
    "four_bit_optimal": "4-bit is almost always optimal for a fixed total of model bits",
    "small_blocks": "small blocks (64-128) help at 3-5 bits",
    "quantile_float_beat_int_dynamic": "quantile and float beat integer and dynamic exponent",
    "gptq_beats_rtn": "GPTQ beats round-to-nearest at 3 and 4 bits",
    "outliers_help_low_bits": "outlier (proxy) quantization helps at 3 and 4 bits",
}
VERDICTS = ("agrees", "differs", "undecided", "not enough data")
SMALL_K = (3, 4, 5)
SMALL_BLOCK = 128  # the paper's small blocks are 64 and 128
GOOD_DTYPES, WEAK_DTYPES = ("quantile", "fp"), ("int", "dynamic")
DTYPE_PAIRS = tuple((good, weak) for good in GOOD_DTYPES for weak in WEAK_DTYPES)
DTYPE_K = (3, 4)  # where the paper finds quantile and float ahead; at k = 5 it reports the opposite
LOW_K = (3, 4)  # where the paper finds GPTQ and outlier quantization worth it


@dataclass
class Finding:
    """One of the paper's claims against this data: the margin (positive: the data agrees) with its
    interval, the verdict, and rows for the parts it is made of (per k, and nf on its own)."""

    id: str
    claim: str
    verdict: str
    margin: Interval | None
    rows: list[dict] = field(default_factory=list)  # {"name", "margin": Interval | None, "verdict"}
    p: float | None = None  # Holm-adjusted over the findings (before decide_together: this one's own)
    direction: str | None = None  # the verdict it gets if decided: "agrees" or "differs"
    basis: str | None = None  # four_bit_optimal: "offsets" (parallel curves) or "budgets"


@dataclass
class Findings:
    metric: str
    lower: bool
    x_axis: str
    n_runs: int
    models: list[tuple[float, str]]  # (parameters, model id), smallest first
    median_stderr: float | None
    precision: Comparison  # groups "3-bit", "4-bit", ..., "16-bit" at equal bits
    frontier: pd.DataFrame  # the runs on the Pareto frontier, by total bits
    findings: list[Finding]
    family: str | None = None  # the one family analysed (None: the runs do not say, or several)
    sweeps: list[int] = field(default_factory=list)  # the sweeps whose runs were used
    sixteen_bit_share: dict[str, tuple[float, float]] = field(default_factory=dict)  # frontier.sixteen_bit_share
    parallel: "parallel.ParallelFit | None" = None  # the parallel-curves model (one family only)
    seeds: dict[str, int] = field(default_factory=dict)  # {model: its training seeds} when any has several

    @property
    def budgets(self) -> pd.DataFrame:
        """The equal-bits table: one row per budget (see equalbits.budget_table)."""
        return self.precision.table

    @property
    def verdicts(self) -> list[str]:
        return [f.verdict for f in self.findings]

    def finding(self, finding_id: str) -> Finding:
        return next(f for f in self.findings if f.id == finding_id)


def verdict_of(margin: Interval | None) -> str:
    if margin is None or not np.isfinite(margin.value):
        return "not enough data"
    if not margin.decided:
        return "undecided"
    return "agrees" if margin.low > 0 else "differs"


def k_name(k: int) -> str:
    return f"{int(k)}-bit"


def k_of(name: str) -> int:
    """'4-bit' -> 4: the precision of a group k_name named."""
    return int(name.split("-")[0])


def verdict_text(winner, decided, missing=()) -> str:
    """How every output names a budget's result: the winner ('4-bit') only when decided, else
    'undecided (4-bit ahead)', or 'partial, no 3-bit (8-bit ahead)' where compared groups do not
    reach the budget; '–' where no two groups were compared."""
    if not isinstance(winner, str):
        return "–"
    if isinstance(missing, (list, tuple)) and missing:
        return f"partial, no {', '.join(missing)} ({winner} ahead)"
    return winner if decided else f"undecided ({winner} ahead)"


def precision_groups(frame: pd.DataFrame) -> dict[str, pd.Series]:
    return {k_name(k): frame["bits"] == k for k in sorted(frame["bits"].dropna().unique())}


def combined_draws(parts: list[np.ndarray]) -> np.ndarray | None:
    """The mean of several per-replicate advantages (each already averaged over its budgets)."""
    parts = [p for p in parts if p is not None]
    return np.mean(np.stack(parts), axis=0) if parts else None


def advantage_draws(comp: Comparison, group: str, others: list[str]) -> np.ndarray | None:
    """(R + 1,) `group`'s advantage over the best of `others`, averaged over the budgets both cover."""
    rivals = [o for o in others if o in comp.score]
    if group not in comp.score or not rivals:  # e.g. a sweep without dynamic: that pair has no data
        return None
    adv = comp.advantage(group, rivals)
    covered = np.isfinite(adv[0])
    return adv[:, covered].mean(axis=1) if covered.any() else None


def part(name: str, draws: np.ndarray | None) -> dict:
    margin = Interval.of(draws) if draws is not None else None
    return {"name": name, "margin": margin, "verdict": verdict_of(margin)}


def all_of(finding_id: str, comparisons: dict[str, np.ndarray | None], rows: list[dict]) -> Finding:
    """A claim that holds only if it holds against every one of `comparisons` (name -> draws of the
    claim's advantage, positive: it holds): the intersection-union test described above, as a
    p-value (`decide_together` turns it into a verdict at the level Holm gives the finding)."""
    found = {name: d for name, d in comparisons.items() if d is not None and np.isfinite(d[0])}
    if not found:
        return Finding(finding_id, FINDINGS[finding_id], "not enough data", None, rows)
    closest = Interval.of(np.min(np.stack(list(found.values())), axis=0))
    p_agrees = max(multiplicity.p_positive(d) for d in found.values())
    p_differs = min(1.0, len(found) * min(multiplicity.p_negative(d) for d in found.values()))
    return Finding(finding_id, FINDINGS[finding_id], "undecided", closest, rows,
                   p=min(p_agrees, p_differs), direction="agrees" if p_agrees <= p_differs else "differs")


def one_comparison(finding_id: str, draws: np.ndarray | None, rows: list[dict]) -> Finding:
    """A claim made of one comparison, as its own bootstrap p-value (decided by `decide_together`)."""
    if draws is None or not np.isfinite(draws[0]):
        return Finding(finding_id, FINDINGS[finding_id], "not enough data", None, rows)
    p_agrees, p_differs = multiplicity.p_positive(draws), multiplicity.p_negative(draws)
    return Finding(finding_id, FINDINGS[finding_id], "undecided", Interval.of(draws), rows,
                   p=min(p_agrees, p_differs), direction="agrees" if p_agrees <= p_differs else "differs")


def decide_together(found: list[Finding]) -> list[Finding]:
    """The headline verdicts at a 5% error rate for all of them together: Holm's step-down over the
    findings that have data; each keeps its Holm-adjusted p."""
    tested = {f.id: f.p for f in found if f.p is not None}
    adjusted = multiplicity.holm(tested)
    for f in found:
        if f.id in adjusted:
            f.p = adjusted[f.id]
            f.verdict = f.direction if f.p < multiplicity.ALPHA else "undecided"
    return found


def four_bit_finding(precision: Comparison, shared_curve: "parallel.ParallelFit | None" = None) -> Finding:
    """4-bit against each other k: the differences of their parallel-curves offsets when the curves
    are parallel (the paper's reading, no interpolation), else the per-budget advantages averaged
    over the budgets both cover."""
    others = [g for g in precision.groups if g != "4-bit"]
    if shared_curve is not None and shared_curve.parallel and "4-bit" in shared_curve.offsets:
        offsets = shared_curve.offsets
        pairwise = {g: offsets["4-bit"] - offsets[g] for g in others if g in offsets}
        rows = [part(f"4-bit vs {g} (offsets)", d) for g, d in pairwise.items()]
        found = all_of("four_bit_optimal", pairwise, rows)
        found.basis = "offsets"
        return found
    pairwise = {g: advantage_draws(precision, "4-bit", [g]) for g in others}
    rows = [part(f"4-bit vs {g}", d) for g, d in pairwise.items()]
    found = all_of("four_bit_optimal", pairwise if "4-bit" in precision.score else {}, rows)
    found.basis = "budgets" if found.margin is not None else None
    return found


def low_k_finding(finding_id: str, frame, metric, scores, x_axis, n_boot, sides: dict[str, pd.Series],
                  name: str, drawn=None) -> Finding:
    """`sides` (two masks, the claim's side first) compared at equal bits within each k that has
    both; the claim must hold at every k of LOW_K that has data (all_of); other k are rows that
    do not count."""
    (mine, mine_mask), (theirs, theirs_mask) = sides.items()
    counted, rows = {}, []
    for k in sorted(int(k) for k in frame["bits"].dropna().unique() if k < 16):
        at_k = frame["bits"] == k
        groups = {mine: mine_mask & at_k, theirs: theirs_mask & at_k}
        if not all(mask.any() for mask in groups.values()):
            continue
        comp = equalbits.compare(frame[at_k], metric, {g: m[at_k] for g, m in groups.items()}, scores,
                                 x_axis=x_axis, n_boot=n_boot, drawn=drawn)
        draws = advantage_draws(comp, mine, [theirs])
        counts = k in LOW_K
        rows.append(part(f"k={k}: {name}" + ("" if counts else " (does not count)"), draws))
        if counts:
            counted[f"k={k}"] = draws
    rows = [r for r in rows if r["margin"] is not None]
    return all_of(finding_id, counted, rows)


def gptq_finding(frame, metric, scores, x_axis, n_boot, drawn=None) -> Finding:
    if "method" not in frame:
        return Finding("gptq_beats_rtn", FINDINGS["gptq_beats_rtn"], "not enough data", None)
    method = frame["method"].fillna("rtn")
    return low_k_finding("gptq_beats_rtn", frame, metric, scores, x_axis, n_boot,
                         {"gptq": method == "gptq", "rtn": method == "rtn"}, "GPTQ vs RTN", drawn)


def outlier_finding(frame, metric, scores, x_axis, n_boot, drawn=None) -> Finding:
    fraction = pd.to_numeric(frame["outlier_fraction"], errors="coerce").fillna(0.0)
    return low_k_finding("outliers_help_low_bits", frame, metric, scores, x_axis, n_boot,
                         {"outliers": fraction > 0, "none": fraction == 0}, "outliers vs none", drawn)


def within_k(frame, metric, scores, x_axis, n_boot, build, drawn=None) -> tuple[list[dict], list[np.ndarray]]:
    """For each k in 3..5: `build(runs of k)` -> (groups, [(row name, group, rivals, counts)]) ->
    compare at equal bits; the rows and the draws that count toward the finding."""
    rows, counted = [], []
    for k in SMALL_K:
        runs = frame[frame["bits"] == k]
        if runs.empty:
            continue
        groups, parts = build(runs)
        if sum(mask.any() for mask in groups.values()) < 2:
            continue
        comp = equalbits.compare(runs, metric, groups, scores, x_axis=x_axis, n_boot=n_boot, drawn=drawn)
        for name, group, rivals, counts in parts:
            draws = advantage_draws(comp, group, rivals)
            rows.append(part(f"k={k}: {name}", draws))
            if counts and draws is not None:
                counted.append(draws)
    return rows, counted


def block_groups(runs: pd.DataFrame):
    small = runs["blocksize"].notna() & (runs["blocksize"].fillna(0) <= SMALL_BLOCK)
    return {"small": small, "large": ~small}, [("blocks <= 128 vs larger", "small", ["large"], True)]


def dtype_finding(frame, metric, scores, x_axis, n_boot, drawn=None) -> Finding:
    """Each of the paper's data-type pairs at equal bits within k = 3 and 4 (averaged over the two),
    all of which must hold; k = 5 and nf shown on rows that do not count."""
    by_k = {}
    for k in (*DTYPE_K, 5):
        runs = frame[frame["bits"] == k]
        groups = {d: runs["dtype"] == d for d in (*GOOD_DTYPES, *WEAK_DTYPES, "nf") if (runs["dtype"] == d).any()}
        if len(groups) >= 2:
            by_k[k] = equalbits.compare(runs, metric, groups, scores, x_axis=x_axis, n_boot=n_boot, drawn=drawn)
    pairs, rows = {}, []
    for good, weak in DTYPE_PAIRS:
        draws = [advantage_draws(by_k[k], good, [weak]) for k in DTYPE_K if k in by_k]
        draws = [d for d in draws if d is not None]
        pairs[f"{good} vs {weak}"] = np.mean(np.stack(draws), axis=0) if draws else None
        rows.append(part(f"k={'+'.join(map(str, DTYPE_K))}: {good} vs {weak}", pairs[f"{good} vs {weak}"]))
    if 5 in by_k:
        rows += [part(f"k=5: {good} vs {weak} (exploratory; the paper reports the opposite)",
                      advantage_draws(by_k[5], good, [weak])) for good, weak in DTYPE_PAIRS]
    for k in DTYPE_K:
        if k in by_k:
            rows.append(part(f"k={k}: nf vs int/dynamic (not in the paper's comparison)",
                             advantage_draws(by_k[k], "nf", list(WEAK_DTYPES))))
    rows = [r for r in rows if r["margin"] is not None]
    return all_of("quantile_float_beat_int_dynamic", pairs, rows)


def findings(
    frame: pd.DataFrame, metric: str, scores: dict | None = None, x_axis: str = "total",
    n_boot: int = equalbits.N_BOOT, family_runs: pd.DataFrame | None = None,
) -> Findings:
    """The analysis of `frame` (one family's runs of one rounding method, or whatever the caller
    chose); `family_runs`, when the caller split the family by method, holds all of them, for the
    comparison of the methods."""
    lower = lower_is_better(metric)
    # the seeds of one size are one point from here on (seeds.py); a no-op with one seed per size
    usable = seeds.points(plottable(frame))
    family_runs = seeds.points(family_runs) if family_runs is not None else None
    points = frontier_view(usable, metric)
    front = points[points["on_frontier"]].sort_values("total_bits") if not points.empty else points
    stderrs = sorted(float(s) for s in usable["stderr"].dropna() if s) if "stderr" in usable else []
    models = sorted({(float(n) if pd.notna(n) else 0.0, m) for n, m in zip(usable["n_params"], usable["model"])})
    groups = precision_groups(usable)
    both_methods = plottable(family_runs) if family_runs is not None else usable
    # every comparison below is of a subset of these runs: resample them once
    drawn = equalbits.draws_of(both_methods, metric, scores, x_axis, n_boot)
    precision = equalbits.compare(usable, metric, groups, scores, x_axis=x_axis, n_boot=n_boot, drawn=drawn)
    # The shared curve is a family's: across families only the measured comparison is made.
    one_family = "family" not in usable or usable["family"].nunique() <= 1
    shared_curve = parallel_fit(usable, precision, x_axis, lower) if one_family else None
    found = [four_bit_finding(precision, shared_curve)]
    rows, counted = within_k(usable, metric, scores, x_axis, n_boot, block_groups, drawn)
    found.append(one_comparison("small_blocks", combined_draws(counted), rows))
    found.append(dtype_finding(usable, metric, scores, x_axis, n_boot, drawn))
    found.append(gptq_finding(both_methods, metric, scores, x_axis, n_boot, drawn))
    found.append(outlier_finding(usable, metric, scores, x_axis, n_boot, drawn))
    decide_together(found)
    return Findings(
        metric=metric, lower=lower, x_axis=x_axis, n_runs=len(usable), models=models,
        median_stderr=stderrs[len(stderrs) // 2] if stderrs else None, precision=precision, frontier=front,
        findings=found,
        family=str(usable["family"].iloc[0]) if one_family and "family" in usable and len(usable) else None,
        sweeps=sorted(int(s) for s in usable["sweep_id"].dropna().unique()) if "sweep_id" in usable else [],
        sixteen_bit_share=sixteen_bit_share(usable) if "n_quantized" in usable else {},
        parallel=shared_curve, seeds=seeds.counts(usable),
    )


def parallel_fit(usable, precision: Comparison, x_axis, lower) -> parallel.ParallelFit | None:
    """The parallel-curves model of one family's runs, precisions as groups (see `parallel`), on the
    draws the precision comparison made of the same configs."""
    if usable.empty:
        return None
    placed = usable.assign(x=equalbits.x_bits(usable, x_axis))
    configs = equalbits.one_run_per_config(placed[placed["x"] > 0])
    draws = precision.draws
    labels = {k_name(k): sorted(runs["label"].unique()) for k, runs in configs.groupby("bits")}
    return parallel.fit(configs, draws, labels, lower)
