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


def compare_chart(points: pd.DataFrame, *, group: str, y_title: str, width: int = 640, height: int = 360):
    """Several teams or sweeps on the same axes: every point coloured by `group`, each group's own
    Pareto frontier drawn as a line, dominated points faded."""
    base = alt.Chart(points)
    x, y = bits_axis(points), value_axis(y_title)
    color = alt.Color(f"{group}:N", title=group)
    dots = base.mark_circle(size=50).encode(
        x=x, y=y, color=color,
        opacity=alt.condition("datum.on_frontier", alt.value(1.0), alt.value(FADED)),
        tooltip=_tooltip(points, extra=((group, "N", group),)),
    )
    fronts = (
        base.transform_filter("datum.on_frontier")
        .mark_line(interpolate="step-after", strokeWidth=2)
        .encode(x=x, y=y, color=color, detail=f"{group}:N")
    )
    return alt.layer(dots, fronts).properties(width=width, height=height)


def difference_chart(diff: pd.DataFrame, *, x_title: str, width: int = 640):
    """One bar per (model, config): `delta` = sweep B minus sweep A, green where B is better."""
    height = max(120, min(16 * len(diff), 1200))
    return (
        alt.Chart(diff)
        .mark_bar()
        .encode(
            x=alt.X("delta:Q", title=x_title),
            y=alt.Y("row:N", sort=alt.EncodingSortField("delta", order="descending"), title=None),
            color=alt.condition("datum.better", alt.value("#2ca02c"), alt.value("#d62728")),
            tooltip=[alt.Tooltip(c, format=".4f" if c in ("a", "b", "delta") else "")
                     for c in ("model", "label", "a", "b", "delta") if c in diff.columns],
        )
        .properties(width=width, height=height)
    )


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
            color=alt.Color("state:N", scale=alt.Scale(domain=list(STATE_COLORS), range=list(STATE_COLORS.values()))),
            order=alt.Order("state:N"),
            tooltip=["sweep", "state", "runs"],
        )
        .properties(height=alt.Step(26), width="container")
    )


def fit_lines(fits: dict, points: int = 24) -> pd.DataFrame:
    """Each fitted scaling law (kbit.analysis.scaling.Fit by group name '4-bit') as points over the
    bits it was fitted on: columns bits (k), total_bits, value, fit (its formula)."""
    rows = []
    for name, fit in fits.items():
        k = k_of(name)
        for total in np.geomspace(fit.low, fit.high, points):
            rows.append({"bits": k, "total_bits": float(total), "value": float(fit.predict(total)),
                         "fit": f"{fit.a:.4f} {fit.b:+.4f}·log2(bits)"})
    return pd.DataFrame(rows, columns=["bits", "total_bits", "value", "fit"])
