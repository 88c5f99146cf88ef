"""The scaling frontier in pandas: runs -> chart points -> Pareto frontier.

Pure functions on DataFrames (no Streamlit, no database): what the charts draw and the frontier
tables list. Which precision *wins* at a budget is not read off these points (a frontier of point
estimates rewards noise); `kbit.analysis.equalbits` decides that, with intervals.
The browser only draws what these return, so a page stays fast at 100,000 runs: repeat runs are
averaged, each (line, model) cell keeps its best config, and what is still too many for a chart
is thinned on a log-bits grid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kbit.analysis import seeds
from kbit.analysis.metrics import lower_is_better

PER_TENSOR = "per-tensor"
MAX_CHART_POINTS = 4000  # below Altair's 5,000-row limit, with room for the frontier layer

# The columns kbit.db.queries.frontier_rows returns that the dashboard uses.
ROW_COLUMNS = (
    "run_id", "sweep_id", "sweep", "team", "model", "family", "n_params", "bits", "dtype", "blocksize",
    "exponent_bits", "outlier_fraction", "label", "bits_per_param", "total_bits", "value", "stderr",
)
BASELINE_METHOD = "rtn"  # the 16-bit runs round nothing; they are every method's reference
CONFIG_KEYS = ("model", "family", "label", "bits", "dtype", "block")


def block_label(blocksize) -> str:
    """'b64' for a block size, 'per-tensor' for one scale per tensor (blocksize None)."""
    if blocksize is None or (isinstance(blocksize, float) and np.isnan(blocksize)) or blocksize is pd.NA:
        return PER_TENSOR
    return f"b{int(blocksize)}"


def block_order(labels) -> list[str]:
    """Block labels sorted by size, per-tensor last."""
    return sorted(set(labels), key=lambda b: (b == PER_TENSOR, int(b[1:]) if b != PER_TENSOR else 0))


def rows_to_frame(rows: list[dict]) -> pd.DataFrame:
    """frontier_rows dicts -> a typed DataFrame with a `block` column; empty input keeps the columns."""
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys([*ROW_COLUMNS, *(rows[0] if rows else ())])))
    frame["bits"] = pd.to_numeric(frame["bits"]).astype("Int64")
    frame["blocksize"] = pd.to_numeric(frame["blocksize"]).astype("Int64")
    for column in ("total_bits", "value", "stderr", "bits_per_param", "n_params"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    sizes = frame["blocksize"]
    frame["block"] = ("b" + sizes.astype(str)).where(sizes.notna(), PER_TENSOR).astype(object)
    return frame


def by_method(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{rounding method: its quantized runs plus every 16-bit run}, or {"": frame} when the runs
    use one method (or do not say)."""
    if "method" not in frame or frame.empty:
        return {"": frame}
    baseline = frame["bits"] == 16
    methods = sorted(frame.loc[~baseline, "method"].dropna().unique())
    if len(methods) <= 1:
        return {"": frame}
    return {m: frame[baseline | (frame["method"] == m)] for m in methods}


def by_family(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{family: its runs}, or {"": frame} when the runs are of one family (or do not say): a report
    is about one family at a time and never pools two silently."""
    if "family" not in frame or frame.empty or frame["family"].nunique(dropna=True) <= 1:
        return {"": frame}
    return {str(f): part for f, part in frame.groupby("family", sort=True)}


def sixteen_bit_share(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """{model: (lowest, highest) share of its quantized runs' total bits spent on the parameters
    kept at 16 bits (embeddings, head, norms)}: how much of the x axis is not the k being compared."""
    runs = frame[(frame["bits"] < 16) & frame["total_bits"].gt(0) & frame["n_quantized"].notna()]
    share = 16.0 * (runs["n_params"] - runs["n_quantized"].astype(float)) / runs["total_bits"]
    return {str(m): (float(s.min()), float(s.max())) for m, s in share.groupby(runs["model"], sort=True)}


def frontier_view(frame: pd.DataFrame, metric: str, line: str = "bits", panels=()) -> pd.DataFrame:
    """The chart points of rows_to_frame's runs for `metric`: the best config per (panel, line,
    model), with `on_frontier`."""
    return chart_points(plottable(frame), line, list(panels), lower_is_better(metric))


def plottable(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that can be placed on the chart: a metric value and a positive total bit count."""
    keep = frame["value"].notna() & frame["total_bits"].notna() & (frame["total_bits"] > 0)
    return frame[keep]


def average_repeats(frame: pd.DataFrame, keys=CONFIG_KEYS) -> pd.DataFrame:
    """One row per config of a model: runs of the same (model, config) in several sweeps averaged.

    `n_runs` counts them; `run_id` is the lowest, so a point links to one run; `stderr` is the mean
    stderr (the repeats measure the same thing, so it is not shrunk).
    """
    keys = [k for k in dict.fromkeys(keys) if k in frame.columns]
    if frame.empty:
        return frame.assign(n_runs=pd.Series(dtype=int))
    grouped = frame.groupby(keys, dropna=False, sort=False)
    out = grouped.agg(
        value=("value", "mean"), stderr=("stderr", "mean"), total_bits=("total_bits", "mean"),
        bits_per_param=("bits_per_param", "mean"), n_params=("n_params", "first"), run_id=("run_id", "min"),
        n_runs=("run_id", "size"),
    ).reset_index()
    return out


def best_per_cell(configs: pd.DataFrame, cell: list[str], lower: bool) -> pd.DataFrame:
    """Keep the best-scoring config in each cell (e.g. one per (k, model)); `n_configs` counts the cell."""
    if configs.empty:
        return configs.assign(n_configs=pd.Series(dtype=int))
    ordered = configs.sort_values(["value", "run_id"], ascending=[lower, True], kind="mergesort")
    best = ordered.drop_duplicates(cell, keep="first")
    sizes = configs.groupby(cell, dropna=False, sort=False).size().rename("n_configs").reset_index()
    return best.merge(sizes, on=cell, how="left").sort_values([*cell, "total_bits"], kind="mergesort")


def chart_points(frame: pd.DataFrame, line: str, panels: list[str], lower: bool) -> pd.DataFrame:
    """The points of a scaling chart: for each panel, line value (e.g. k) and model, the best config.

    `frame` is rows_to_frame output. Adds `panel` (the facet title, "" without facets) and
    `on_frontier` (the point is on its panel's Pareto frontier). The seeds of a model are one point
    (seeds.points): their runs are averaged like repeats.
    """
    usable = seeds.points(plottable(frame))
    configs = average_repeats(usable, keys=[*CONFIG_KEYS, *panels, line])
    if configs.empty:
        points = configs.assign(panel=pd.Series(dtype=str), on_frontier=pd.Series(dtype=bool))
        return points
    configs = with_baseline_in_every_panel(configs, panels)
    points = best_per_cell(configs, [*panels, line, "model"], lower)
    points["panel"] = panel_titles(points, panels)
    points["on_frontier"] = pareto_mask(points, lower, by="panel")
    return points.reset_index(drop=True)


def with_baseline_in_every_panel(configs: pd.DataFrame, panels: list[str]) -> pd.DataFrame:
    """Faceted by dtype or block size, the unquantized 16-bit runs are the reference of every panel
    (as in the paper's figures), not a panel of their own. Family facets stay separate."""
    config_panels = [p for p in panels if p in ("dtype", "block")]
    baseline = configs["bits"] == 16
    if not config_panels or not baseline.any() or baseline.all():
        return configs
    others = [p for p in panels if p not in config_panels]
    combos = configs.loc[~baseline, panels].drop_duplicates()
    copies = configs[baseline].drop(columns=config_panels).merge(combos, on=others, how="inner") if others else (
        configs[baseline].drop(columns=config_panels).merge(combos, how="cross")
    )
    return pd.concat([configs[~baseline], copies[configs.columns]], ignore_index=True)


def panel_titles(points: pd.DataFrame, panels: list[str]) -> pd.Series:
    """'dtype=nf · b64'-style facet titles ('' when there are no facets)."""
    if not panels:
        return pd.Series("", index=points.index)
    parts = []
    for name in panels:
        values = points[name].astype(str)
        parts.append(values if name == "block" else f"{name}=" + values)
    title = parts[0]
    for part in parts[1:]:
        title = title + " · " + part
    return title


def pareto_mask(points: pd.DataFrame, lower: bool, by: str | None = None) -> pd.Series:
    """True where no other point (of the same `by` group) has fewer-or-equal bits and a better score.

    Ties: of two points with equal bits and equal score, the first by run_id counts as the frontier.
    """
    if points.empty:
        return pd.Series(dtype=bool)
    score = -points["value"] if lower else points["value"]  # higher score is better from here on
    order = pd.DataFrame({
        "group": points[by] if by else 0, "bits": points["total_bits"], "score": score,
        "tie": points["run_id"] if "run_id" in points else np.arange(len(points)),
    }, index=points.index)
    order = order.sort_values(["group", "bits", "score", "tie"], ascending=[True, True, False, True], kind="mergesort")
    running_best = order.groupby("group", sort=False)["score"].cummax()
    best_before = running_best.groupby(order["group"], sort=False).shift(1)
    mask = best_before.isna() | (order["score"] > best_before)
    return mask.reindex(points.index)


def thin(points: pd.DataFrame, line: str, lower: bool, max_points: int = MAX_CHART_POINTS, bins: int | None = None) -> pd.DataFrame:
    """At most about `max_points` rows for the chart: frontier points always kept, the others binned
    on a log10(total bits) grid per (panel, line), keeping the best point of each bin."""
    if len(points) <= max_points:
        return points
    groups = points.groupby(["panel", line], sort=False).ngroups
    bins = bins or max(4, max_points // max(groups, 1))
    logbits = np.log10(points["total_bits"].to_numpy(dtype=float))
    lo, hi = logbits.min(), logbits.max()
    bin_id = np.floor((logbits - lo) / max(hi - lo, 1e-12) * (bins - 1)).astype(int)
    binned = points.assign(_bin=bin_id).sort_values("value", ascending=lower, kind="mergesort")
    kept = binned.drop_duplicates(["panel", line, "_bin"], keep="first")
    kept = pd.concat([kept, binned[binned["on_frontier"]]]).drop_duplicates(["panel", line, "model", "_bin"])
    return kept.drop(columns="_bin").sort_values(["panel", line, "total_bits"], kind="mergesort").reset_index(drop=True)
