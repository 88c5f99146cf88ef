"""Scaling page: the paper's Figure 3 views. At one k, one line per data type or per block size
across model sizes, each line the best config of its kind for each model."""

from __future__ import annotations

import streamlit as st

from kbit.analysis import frontier
from kbit.dashboard import charts
from kbit.dashboard.ui import common

LINE_TITLES = {"dtype": "data type", "block": "block size"}


def render(url: str | None, opts: dict) -> dict:
    st.header("Scaling by data type and block size")
    metric = common.metric_picker(opts["metrics"])
    ks = [k for k in opts["bits"] if k != 16]
    at = common.pick_one("at k bits", "at", ks, fallback=4)
    by = common.pick_one("one line per", "by", ["dtype", "block"], fmt=LINE_TITLES.get)
    filters_view, filters = common.run_filters(opts, with_bits=False)
    current = {"metric": metric, "at": at, "by": by, **filters_view}
    if metric is None or at is None:
        st.info(common.EMPTY_HELP)
        return current
    task, name = metric.split("/", 1)
    lower = frontier.lower_is_better(name)
    filters = tuple((key, (at,) if key == "bits" else value) for key, value in filters)
    result = common.cached_points(url, task, name, filters, by, (), lower)
    points = result["points"]
    if points.empty:
        st.info(f"No finished {at}-bit run has {metric} (with a bit report) under these filters.")
        return current
    other = "block size" if by == "dtype" else "data type"
    st.caption(f"{at}-bit runs, one line per {LINE_TITLES[by]}; for each model the best {other} of that line is "
               f"shown ({result['n_runs']:,} runs). Use the sidebar filters to hold the {other} fixed.")
    chart = charts.scaling_chart(
        points, y_title=charts.metric_title(task, name, lower), line=by, line_title=LINE_TITLES[by],
        lower=lower, frontier=False,
    )
    st.altair_chart(chart)
    common.updating_note(result)
    summary = (
        points.groupby(by)["value"].agg(["mean", "min", "max", "count"])
        .rename(columns={"count": "models"}).sort_values("mean", ascending=lower).reset_index()
    )
    st.subheader(f"Mean over models, by {LINE_TITLES[by]}")
    common.table(summary)
    common.downloads(points, f"scaling_k{at}_by_{by}")
    return current
