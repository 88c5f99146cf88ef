"""Altair charts of the dashboard: DataFrame in, `alt.Chart` out, no Streamlit and no database.

The frames come from kbit.analysis.frontier (points already aggregated, so a chart never carries
more than a few thousand rows).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from kbit.analysis import k_of
from kbit.analysis.frontier import block_order

FADED = 0.25
TITLE_LIMIT = 2000  # px: Vega cuts axis titles longer than the axis otherwise ("…(lower is bette")
STATE_COLORS = {
    "done": "#2ca02c", "cached": "#98df8a", "running": "#1f77b4", "queued": "#aec7e8",
    "failed": "#d62728", "cancelled": "#7f7f7f",
}


def metric_title(task: str, metric: str, lower: bool) -> str:
    """Axis title such as 'mean_zero_shot / acc' or 'kbit_heldout / perplexity (lower is better)'."""
    return f"{task} / {metric}" + (" (lower is better)" if lower else "")


def bits_axis(points: pd.DataFrame) -> alt.X:
    """Total bits on a log axis that spans the data (with a little room), not whole decades."""
    bits = points["total_bits"] if "total_bits" in points and len(points) else pd.Series(dtype=float)
    bits = bits[bits > 0]
    scale = (alt.Scale(type="log", nice=False, domain=[float(bits.min()) / 1.2, float(bits.max()) * 1.2])
             if len(bits) else alt.Scale(type="log"))
    return alt.X("total_bits:Q", scale=scale, title="total model bits (log)", axis=alt.Axis(format="~s"))


def value_axis(title: str) -> alt.Y:
    return alt.Y("value:Q", title=title, scale=alt.Scale(zero=False), axis=alt.Axis(titleLimit=TITLE_LIMIT))


def _tooltip(points: pd.DataFrame, extra=()) -> list:
    wanted = [
        ("model", "N", "model"), ("label", "N", "config"), ("bits", "O", "k"), ("dtype", "N", "dtype"),
        ("block", "N", "block"), ("method", "N", "method"), ("total_bits", "Q", "total bits"),
        ("bits_per_param", "Q", "bits/param"),
        ("value", "Q", "value"), ("stderr", "Q", "stderr"), ("n_runs", "Q", "runs averaged"),
        ("n_configs", "Q", "configs in cell"), ("run_id", "Q", "run id"), *extra,
    ]
    fmt = {"total_bits": ".4~s", "bits_per_param": ".3f", "value": ".4f", "stderr": ".4f"}
    return [
        alt.Tooltip(f"{name}:{kind}", title=title, **({"format": fmt[name]} if name in fmt else {}))
        for name, kind, title in wanted if name in points.columns
    ]


def _color(field: str, points: pd.DataFrame, title: str) -> alt.Color:
    if field == "block":
        return alt.Color("block:N", sort=block_order(points["block"]), title=title)
    kind = "O" if pd.api.types.is_numeric_dtype(points[field]) else "N"
    # A categorical palette even for ordinal k: neighbouring precisions must be told apart.
    return alt.Color(f"{field}:{kind}", title=title, scale=alt.Scale(scheme="tableau10"))


def _facet(chart, points: pd.DataFrame, columns: int):
    """Facet by the `panel` column when the points have more than one panel."""
    if "panel" in points.columns and points["panel"].nunique() > 1:
        return chart.facet(facet=alt.Facet("panel:N", title=None), columns=columns)
    return chart


def scaling_chart(
    points: pd.DataFrame,
    *,
    y_title: str,
    line: str = "bits",
    line_title: str = "k (bits)",
    lower: bool = False,
    frontier: bool = True,
    columns: int = 3,
    width: int = 420,
    height: int = 340,
    fits: pd.DataFrame | None = None,
):
    """Score against total model bits (log x), one line per `line` value across model sizes
    (the paper's Figures 2 and 3). With `frontier`, the Pareto frontier is drawn as a black step
    line and dominated points are faded. `fits` (fit_lines' frame) adds each k's fitted scaling
    law as a thin dotted line. Facets by `panel` when there is more than one."""
    base = alt.Chart(points)
    x, y = bits_axis(points), value_axis(y_title)
    color = _color(line, points, line_title)
    lines = base.mark_line(strokeWidth=1.5).encode(x=x, y=y, color=color, detail=f"{line}:N")
    opacity = (
        alt.condition("datum.on_frontier", alt.value(1.0), alt.value(FADED)) if frontier and "on_frontier" in points
        else alt.value(0.9)
    )
    dots = base.mark_circle(size=55).encode(
        x=x, y=y, color=color, opacity=opacity, tooltip=_tooltip(points),
    )
    layers = [lines, dots]
    if fits is not None and not fits.empty:
        layers.append(alt.Chart(fits).mark_line(strokeDash=[2, 2], strokeWidth=1, opacity=0.8).encode(
            x=x, y=y, color=color, detail=f"{line}:N",
            tooltip=[alt.Tooltip(f"{line}:O", title="k"), alt.Tooltip("fit:N", title="fit")],
        ))
    if frontier and "on_frontier" in points:
        layers.append(
            base.transform_filter("datum.on_frontier")
            .mark_line(color="black", strokeDash=[5, 3], strokeWidth=1.5, interpolate="step-after")
            .encode(x=x, y=y)
        )
    chart = alt.layer(*layers).properties(width=width, height=height)
    return _facet(chart, points, columns)


# Okabe & Ito's colour-blind-safe palette, blue and orange first: one colour per compared team or sweep.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")
UNDECIDED, SHARED_RUN = "#8c8c8c", "#c7c7c7"


def group_colors(names) -> dict:
    """{team or sweep: its colour}, in the order given (the compared A and B first)."""
    names = list(dict.fromkeys(names))
    return {n: OKABE_ITO[i % len(OKABE_ITO)] for i, n in enumerate(names)}


def compare_chart(points: pd.DataFrame, *, group: str, y_title: str, order=(), width: int = 640, height: int = 360):
    """Several teams or sweeps on the same axes: each group in its own colour and shape from a
    colour-blind-safe palette (`order` first), its own Pareto frontier drawn as a line, its
    dominated points in the same colour, faded."""
    colors = group_colors([*order, *sorted(points[group].dropna().astype(str).unique())] if len(points) else order)
    base = alt.Chart(points)
    x, y = bits_axis(points), value_axis(y_title)
    scale = alt.Scale(domain=list(colors), range=list(colors.values())) if colors else alt.Scale(range=list(OKABE_ITO))
    color = alt.Color(f"{group}:N", title=group, scale=scale)
    shape = alt.Shape(f"{group}:N", title=group, **({"scale": alt.Scale(domain=list(colors))} if colors else {}))
    dots = base.mark_point(size=60, filled=True).encode(
        x=x, y=y, color=color, shape=shape,
        opacity=alt.condition("datum.on_frontier", alt.value(1.0), alt.value(FADED)),
        tooltip=_tooltip(points, extra=((group, "N", group),)),
    )
    fronts = (
        base.transform_filter("datum.on_frontier")
        .mark_line(interpolate="step-after", strokeWidth=2)
        .encode(x=x, y=y, color=color, detail=f"{group}:N")
    )
    return alt.layer(dots, fronts).properties(width=width, height=height)


def delta_format(values) -> str:
    """A d3 format for a difference axis with enough decimals for its span ('+.3f' for ±0.05),
    never the six zeros of a degenerate domain."""
    finite = np.abs(np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float))
    span = float(finite.max()) if finite.size else 0.0
    digits = 3 if span == 0 else int(np.clip(np.ceil(-np.log10(span)) + 1, 1, 6))
    return f"+.{digits}f"


def difference_chart(diff: pd.DataFrame, *, x_title: str, colors: dict, width: int = 560):
    """One row per config both sides ran ('model · config'): the difference B − A as a point with its
    95% interval as a bar, coloured by verdict: a side's colour where that side is decided better,
    grey where undecided (a tie is not a loss), light grey for a shared (cached) run. Every row
    label drawn whole; a rule at zero."""
    values = [*diff["delta"], *diff.get("delta_low", []), *diff.get("delta_high", [])]
    axis = alt.Axis(format=delta_format(values), tickCount=6, labelFlush=False)
    scale = alt.Scale(domain=[*colors, "undecided", "shared"], range=[*colors.values(), UNDECIDED, SHARED_RUN])
    y = alt.Y("row:N", sort=None, title=None, axis=alt.Axis(labelLimit=1000))
    color = alt.Color("verdict:N", scale=scale, title="verdict")
    base = alt.Chart(diff)
    whiskers = base.mark_rule(strokeWidth=2).encode(x=alt.X("delta_low:Q", title=x_title, axis=axis), x2="delta_high:Q",
                                                    y=y, color=color)
    dots = base.mark_point(size=70, filled=True).encode(
        x=alt.X("delta:Q", title=x_title, axis=axis), y=y, color=color,
        tooltip=[alt.Tooltip(c, format=".4f" if c in ("A", "B", "delta", "delta_low", "delta_high") else "")
                 for c in ("model", "config", "A", "B", "delta", "delta_low", "delta_high", "verdict", "shared")
                 if c in diff.columns],
    )
    zero = alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(color="black", strokeDash=[3, 3]).encode(x="zero:Q")
    return alt.layer(zero, whiskers, dots).properties(width=width, height=alt.Step(24))


def progress_chart(sweeps: pd.DataFrame, states=tuple(STATE_COLORS)):
    """A stacked bar of run counts by state for each sweep (Queue page)."""
    long = sweeps.melt(id_vars=["sweep"], value_vars=[s for s in states if s in sweeps], var_name="state", value_name="runs")
    long = long[long["runs"] > 0]
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("runs:Q", stack="zero", title="runs"),
            y=alt.Y("sweep:N", title=None, sort=None),
            # The legend above the bars: beside a chart of one or two sweeps it is taller than the chart, and clipped.
            color=alt.Color("state:N", scale=alt.Scale(domain=list(STATE_COLORS), range=list(STATE_COLORS.values())),
                            legend=alt.Legend(orient="top", direction="horizontal", title=None)),
            order=alt.Order("state:N"),
            tooltip=["sweep", "state", "runs"],
        )
        .properties(height=alt.Step(26), width="container")
    )


def fit_lines(fit, points: int = 24) -> pd.DataFrame:
    """The parallel-curves fit (kbit.analysis.parallel.ParallelFit) as each k's fitted curve,
    g + d_k, over the bits that k was measured on: columns bits (k), total_bits, value, fit."""
    rows = []
    for name, (low, high) in (fit.ranges.items() if fit is not None else ()):
        budgets = np.geomspace(low, high, points)
        for total, value in zip(budgets, fit.predict(name, budgets)[0]):
            rows.append({"bits": k_of(name), "total_bits": float(total), "value": float(value),
                         "fit": f"parallel curves, {fit.offset(name).value:+.4f} vs the leader"})
    return pd.DataFrame(rows, columns=["bits", "total_bits", "value", "fit"])
