"""Everything the dashboard reads, as plain functions of (database URL, filters) -> DataFrame or dict.

Only kbit.db is used; these are thin compositions of its queries. No Streamlit here: the app
wraps each function in `st.cache_data`, whose key is exactly these arguments (URL, team, filters),
so filters are tuples and None means "all".
"""

from __future__ import annotations

import functools

import pandas as pd

from kbit.analysis import Findings, findings
from kbit.analysis.frontier import rows_to_frame
from kbit.db import connect_reader, queries, queue, session_scope
from kbit.errors import NotFound
from kbit.settings import RUN_STATES as STATE_COLUMNS


@functools.lru_cache(maxsize=8)
def engine_for(url: str | None):
    """One engine per database URL for the life of the process (None: $KBIT_DATABASE_URL or the default).
    The dashboard only reads: it never creates or migrates the schema (SchemaMissing says who does)."""
    return connect_reader(url)


def options(url: str | None) -> dict:
    """Filter choices: teams, sweeps (id, name, team), families, dtypes, block sizes, bits, methods, metrics."""
    with session_scope(engine_for(url)) as s:
        out = queries.filter_options(s)
        out["metrics"] = [f"{task}/{metric}" for task, metric in queries.list_metrics(s)]
        out["sweeps"] = [
            {"sweep_id": row["sweep_id"], "name": row["name"], "team": row["team"],
             "finished": row["done"] + row["cached"]}
            for row in queries.list_sweeps(s)
        ]
    return out


def frontier(
    url: str | None,
    task: str,
    metric: str,
    teams: tuple | None = None,
    sweeps: tuple | None = None,
    families: tuple | None = None,
    dtypes: tuple | None = None,
    blocksizes: tuple | None = None,
    bits: tuple | None = None,
    methods: tuple | None = None,
) -> pd.DataFrame:
    """The finished runs that have `task/metric`, filtered, as rows_to_frame's DataFrame."""
    with session_scope(engine_for(url)) as s:
        rows = queries.frontier_rows(
            s, task=task, metric=metric, teams=teams, sweeps=sweeps, families=families, dtypes=dtypes,
            blocksizes=blocksizes, bits=bits, methods=methods,
        )
    return rows_to_frame(rows)


def baseline_in_every_method(frame: pd.DataFrame) -> pd.DataFrame:
    """Faceted by rounding method, the 16-bit runs (stored as rtn: nothing is rounded) are the
    reference of every method's panel, as they are of every data type's."""
    baseline = frame["bits"] == 16
    methods = [m for m in frame.loc[~baseline, "method"].dropna().unique() if m != "rtn"]
    copies = [frame[baseline].assign(method=m) for m in methods]
    return pd.concat([frame, *copies], ignore_index=True) if copies and baseline.any() else frame


def analysis(
    url: str | None, task: str, metric: str, teams: tuple | None = None, sweeps: tuple | None = None,
    families: tuple | None = None, dtypes: tuple | None = None, blocksizes: tuple | None = None, bits: tuple | None = None,
    methods: tuple | None = None,
) -> Findings:
    """kbit.analysis.findings of the filtered runs, with their per-document scores: the equal-bits
    table, the paper's findings and the parallel-curves fit the Frontier page shows."""
    with session_scope(engine_for(url)) as s:
        rows = queries.frontier_rows(
            s, task=task, metric=metric, teams=teams, sweeps=sweeps, families=families, dtypes=dtypes,
            blocksizes=blocksizes, bits=bits, methods=methods,
        )
        scores = queries.document_scores(s, [r["run_id"] for r in rows], task, metric)
    return findings(rows_to_frame(rows), f"{task}/{metric}", scores)


def sweeps(url: str | None, team: str | None = None) -> pd.DataFrame:
    """Sweeps, newest first, with run counts by state, the sweep's progress fraction and its ETA."""
    with session_scope(engine_for(url)) as s:
        rows = queries.list_sweeps(s, team=team)
        for row in rows:
            if row["queued"] or row["running"]:
                row["eta_s"] = queue.sweep_progress(s, row["sweep_id"])["eta_s"]
            else:
                row["eta_s"] = 0.0
    frame = pd.DataFrame(rows, columns=["sweep_id", "name", "team", "status", "priority", "submitter",
                                        "created_at", *STATE_COLUMNS, "total", "eta_s"])
    finished = frame[["done", "failed", "cancelled", "cached"]].sum(axis=1)
    frame["progress"] = (finished / frame["total"].where(frame["total"] > 0)).fillna(1.0)
    frame["sweep"] = "#" + frame["sweep_id"].astype(str) + " " + frame["name"].astype(str)
    return frame


def results(url: str | None, sweep_ids: tuple) -> pd.DataFrame:
    """One flat row per run of the given sweeps (config, bits, status, error, a column per metric)."""
    rows = []
    with session_scope(engine_for(url)) as s:
        for sweep_id in sweep_ids:
            rows.extend(queries.results_rows(s, sweep_id=sweep_id))
    return pd.DataFrame(rows)


def failed_runs(url: str | None, sweep_ids: tuple) -> pd.DataFrame:
    """The failed runs of the given sweeps with their errors, newest first."""
    frame = results(url, sweep_ids)
    columns = ["run_id", "sweep_id", "team", "model", "label", "attempts", "error_type", "error", "finished_at"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    failed = frame[frame["status"] == "failed"]
    return failed[[c for c in columns if c in failed]].sort_values("run_id", ascending=False).reset_index(drop=True)


def run(url: str | None, run_id: int) -> dict | None:
    """One run's detail (config, bits report, metrics, provenance, error, timings); None if no such run."""
    with session_scope(engine_for(url)) as s:
        try:
            return queries.run_detail(s, run_id)
        except NotFound:
            return None
