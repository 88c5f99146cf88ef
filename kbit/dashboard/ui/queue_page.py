"""Queue page: live progress of sweeps (a fragment that refreshes itself), counts by state, ETA,
and the failed runs with their errors."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from kbit import settings
from kbit.dashboard import charts
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


# What the Sweeps table shows, narrow enough that the page never cuts it at the right: the runs by
# state as one text ("1 done, 2 running, 3 queued of 6"); every count is in the chart above it and
# in the CSV / JSON downloads.
SWEEP_COLUMNS = ("sweep", "team", "status", "progress", "runs", "priority", "submitter", "created")


def runs_text(row) -> str:
    """'1 done, 2 running, 3 queued of 6': the states a sweep has runs in, and its total."""
    parts = [f"{int(row[s])} {s}" for s in STATE_COLUMNS if row[s]]
    return f"{', '.join(parts) or 'no runs'} of {int(row['total'])}"


def status_text(row) -> str:
    """The sweep's status, with its ETA while runs are queued or running."""
    active = row["queued"] + row["running"]
    return f"{row['status']}, {eta_text(row['eta_s'])}" if active else str(row["status"])


def sweeps_shown(sweeps):
    """The Sweeps table: SWEEP_COLUMNS of every sweep."""
    return sweeps.assign(
        runs=[runs_text(r) for _, r in sweeps.iterrows()], status=[status_text(r) for _, r in sweeps.iterrows()],
        created=minutes(sweeps["created_at"]),
    )[list(SWEEP_COLUMNS)]


def minutes(times):
    """'2026-11-28 23:20': a time column to the minute, as a table shows it."""
    return times.astype(str).str.replace("T", " ", regex=False).str.slice(0, 16).where(times.notna(), "")


# The Failed runs table, as narrow as the Sweeps one: the run link first, the error given the room.
FAILED_COLUMNS = ("run", "sweep_id", "model", "label", "attempts", "error_type", "error", "finished")


def failed_shown(failed):
    return common.with_run_links(failed).assign(finished=minutes(failed["finished_at"]))[list(FAILED_COLUMNS)]


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
    st.subheader("Sweeps")
    st.altair_chart(charts.progress_chart(sweeps.head(40)))
    # The bar is the share of runs finished, in the colour the chart gives done runs.
    bar = st.column_config.ProgressColumn("finished", min_value=0, max_value=1, color=charts.STATE_COLORS["done"])
    common.table(sweeps_shown(sweeps), column_config={"progress": bar})
    common.downloads(sweeps.drop(columns=["sweep"]), "sweeps")

    with_failures = tuple(sweeps.loc[sweeps["failed"] > 0, "sweep_id"].head(FAILED_SWEEPS_SHOWN))
    st.subheader("Failed runs")
    if not with_failures:
        st.caption("No failed runs.")
        return
    failed = common.cached_failed(url, with_failures)
    common.table(failed_shown(failed), column_config={
        "run": common.run_link_column(), "sweep_id": st.column_config.NumberColumn("sweep"),
        "error": st.column_config.TextColumn(width=340, help="the first lines; the run's page has all of it"),
    })
    common.downloads(failed, "failed_runs")
