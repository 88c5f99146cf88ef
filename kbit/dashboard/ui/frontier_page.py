"""Frontier page: a metric against total model bits, one line per k across model sizes (the
paper's Figure 2), the Pareto frontier, and the best precision at each bit budget."""

from __future__ import annotations

import streamlit as st

from kbit.analysis import frontier
from kbit.dashboard import charts, urlstate
from kbit.dashboard.ui import common


def render(url: str | None, opts: dict) -> dict:
    """Draw the page; return its part of the URL view."""
    st.header("Scaling frontier: score against total model bits")
    metric = common.metric_picker(opts["metrics"])
    facets = common.pick_many("facets", "facet", list(urlstate.FACETS),
                              help="one panel per value of each chosen field (16-bit runs appear in every panel)")
    filters_view, filters = common.run_filters(opts)
    current = {"metric": metric, "facet": facets, **filters_view}
    if metric is None:
        st.info(common.EMPTY_HELP)
        return current
    task, name = metric.split("/", 1)
    lower = frontier.lower_is_better(name)
    result = common.cached_points(url, task, name, filters, "bits", tuple(facets), lower)
    points, table = result["points"], result["table"]
    if points.empty:
        if result["n_runs"]:
            st.info(f"{result['n_runs']} finished run(s) have {metric} but no bit report yet, so they cannot be "
                    "placed on the bits axis; they appear once their bit report is stored.")
        else:
            st.info(f"No finished run has {metric} under these filters. Clear some filters in the sidebar, or "
                    "pick another metric.")
        return current

    st.caption(
        f"{result['n_runs']:,} runs → {result['n_points']:,} points (repeat runs of a config averaged; per k "
        f"and model the best config shown). Black dashed line: Pareto frontier; faded points are dominated."
        + (" Lower is better for this metric." if lower else "")
        + (f" {result['n_unplottable']} run(s) without a bit report are left out." if result["n_unplottable"] else "")
        + (f" Thinned to {len(points):,} points for drawing." if len(points) < result["n_points"] else "")
    )
    chart = charts.scaling_chart(points, y_title=charts.metric_title(task, name, lower), lower=lower)
    st.altair_chart(chart)

    st.subheader("Best precision at each bit budget")
    st.caption("At each budget where the frontier moves: the winning config, and the best score each k reaches "
               "within that many bits.")
    common.table(common.with_run_links(table), column_config={
        "run": common.run_link_column(), "budget_bits": st.column_config.NumberColumn(format="compact"),
    })
    common.downloads(table, "best_per_budget")
    with st.expander(f"The {len(points):,} points on the chart"):
        common.table(common.with_run_links(points), column_config={"run": common.run_link_column()})
        common.downloads(points, "frontier_points")
    return current
