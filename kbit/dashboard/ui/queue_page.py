"""Queue page: live progress of sweeps (a fragment that refreshes itself), counts by state, ETA,
and the failed runs with their errors."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from kbit.dashboard import charts
from kbit.spec import settings
from kbit.dashboard.data import STATE_COLUMNS
from kbit.dashboard.ui import common

REFRESH_S = settings.dashboard_refresh_seconds()
FAILED_SWEEPS_SHOWN = 20


def eta_text(seconds) -> str:
    """'ETA 3 min' style text; 'ETA after the first run finishes' before there is a pace to go by."""
    if seconds is None or seconds != seconds:
        return "ETA after the first run finishes"
    if seconds <= 0:
        return "finished"
    return "ETA " + str(dt.timedelta(seconds=round(seconds)))


SWEEP_COLUMNS = ("sweep_id", "name", "team", "progress", *STATE_COLUMNS, "total", "eta", "status", "priority",
                 "submitter", "created_at")


def render(url: str | None, opts: dict) -> dict:
    st.header("Queue")
    choices = ["all teams", *opts["teams"]]
    start = (common.view().get("team") or ["all teams"])[0]
    team = st.sidebar.selectbox("team", choices, index=choices.index(start) if start in choices else 0, key="w_team_q")
    team = None if team == "all teams" else team
    st.caption(f"Refreshes every {REFRESH_S:g} s.")
    live(url, team)
    return {"team": [team] if team else []}


@st.fragment(run_every=REFRESH_S)
def live(url: str | None, team: str | None) -> None:
    sweeps = common.cached_sweeps(url, team)
    if sweeps.empty:
        st.info("No sweeps yet" + (f" for team {team}" if team else "") + ". Submit one with "
                "`kbit submit examples/demo.yaml --team <team>`; its runs show up here as they are queued and run.")
        return
    totals = sweeps[list(STATE_COLUMNS)].sum()
    for column, state in zip(st.columns(len(STATE_COLUMNS)), STATE_COLUMNS):
        column.metric(state, f"{int(totals[state]):,}")

    active = sweeps[(sweeps["queued"] + sweeps["running"]) > 0]
    st.subheader(f"In progress ({len(active)})")
    if active.empty:
        st.caption("Nothing queued or running.")
    for row in active.itertuples():
        finished = row.done + row.cached + row.failed + row.cancelled
        st.progress(float(row.progress), text=f"{row.sweep} ({row.team}): {finished}/{row.total} finished, "
                                              f"{row.running} running, {row.queued} queued; {eta_text(row.eta_s)}")
    st.altair_chart(charts.progress_chart(sweeps.head(40)))
    st.subheader("Sweeps")
    # Counts first, so the narrow page never cuts one off; raw seconds and the label column left out.
    shown = sweeps.assign(eta=[eta_text(s) for s in sweeps["eta_s"]])[list(SWEEP_COLUMNS)]
    common.table(shown, column_config={"progress": st.column_config.ProgressColumn(min_value=0, max_value=1)})
    common.downloads(shown, "sweeps")

    with_failures = tuple(sweeps.loc[sweeps["failed"] > 0, "sweep_id"].head(FAILED_SWEEPS_SHOWN))
    st.subheader("Failed runs")
    if not with_failures:
        st.caption("No failed runs.")
        return
    failed = common.cached_failed(url, with_failures)
    common.table(common.with_run_links(failed), column_config={"run": common.run_link_column()})
    common.downloads(failed, "failed_runs")
