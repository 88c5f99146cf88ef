"""Frontier page: a metric against total model bits, one line per k across model sizes (the
paper's Figure 2) with each k's curve from the parallel-curves fit, the Pareto frontier, which precision wins at
equal bits (decided or undecided, with intervals) and the paper's findings."""

from __future__ import annotations

import streamlit as st

from kbit.analysis import frontier
from kbit.dashboard import charts, tables, urlstate
from kbit.dashboard.ui import common
from kbit.errors import TooManyRuns


@st.cache_data(ttl=common.TTL, show_spinner=False)
def chart_spec(url, task, metric, filters: tuple, facets: tuple, lower: bool) -> dict:
    """The page's chart as a Vega-Lite spec, built once per view: Altair's building and checking
    of it cost more than the rest of a warm page."""
    points = common.cached_points(url, task, metric, filters, "bits", facets, lower)["points"]
    # the fit is on the analysis' x axis (None unless that is total bits, the chart's)
    fits = None if facets else common.cached_analysis(url, task, metric, **dict(filters))["fits"]
    chart = charts.scaling_chart(points, y_title=charts.metric_title(task, metric, lower), lower=lower, fits=fits)
    return chart.to_dict()


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
    try:
        result = common.cached_points(url, task, name, filters, "bits", tuple(facets), lower)
    except TooManyRuns as exc:
        st.info(str(exc))
        return current
    points = result["points"]
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
    found = common.cached_analysis(url, task, name, **dict(filters))
    fits = None if facets else found["fits"]
    st.vega_lite_chart(chart_spec(url, task, name, filters, tuple(facets), lower))
    if common.updating_note(result, found):
        chart_spec.clear(url, task, name, filters, tuple(facets), lower)  # drawn from a previous answer
    if fits is not None and not fits.empty:
        st.caption("Dotted: each k's fitted curve from the parallel-curves model (one shared curve plus the k's "
                   "offset), over the bits that k was measured on.")

    st.subheader("Which precision wins at equal bits")
    st.caption(
        "Each k's score at a budget, read off its curve across model sizes (linear in log bits, never "
        "extrapolated; empty where a k's curve does not reach the budget), its config chosen on half the "
        "documents and scored on the other half. The margin is the leader's lead over the best other k with "
        "a 95% bootstrap band that holds for all budgets at once; a lead whose band includes zero is "
        "undecided, and a budget some k does not reach is partial (never decided). The findings are decided "
        "together (Holm at 5%); their indented parts are exploratory. All filtered runs, whatever the facets. "
        + found["share_caption"]
    )
    table = found["equal_bits"]
    common.whole_table(table, tables.display_formats(table))
    common.downloads(table, "equal_bits")
    st.subheader("The paper's findings")
    findings = found["findings"]
    common.whole_table(findings, tables.display_formats(findings))
    if found["parallel"] is not None:
        st.subheader("Parallel curves")
        st.caption(found["parallel_caption"])
        shared = found["parallel"]
        common.whole_table(shared, tables.display_formats(shared))
    st.subheader("Take a winner home")
    # The commands in a narrow table of their own: as a column they would cut the equal-bits table.
    exports = found["exports"]
    st.caption("Per budget, `kbit export` of the winning config's run nearest the budget: its packed k-bit "
               "checkpoint, loadable with `kbit.kernels.load_quantized` (README, \"Take the winner home\").")
    common.whole_table(exports, tables.display_formats(exports))
    with st.expander(f"The {len(points):,} points on the chart"):
        common.table(common.with_run_links(points), column_config={"run": common.run_link_column()})
        common.downloads(points, "frontier_points")
    return current
