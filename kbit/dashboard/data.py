"""Everything the dashboard reads, as plain functions of (database URL, filters) -> DataFrame or dict.

Thin compositions of kbit.db's queries and kbit.analysis. No Streamlit here: the app wraps each
function in `st.cache_data`, whose key is exactly these arguments (URL, team, filters), so filters
are tuples and None means "all". A view of many runs (its chart points, its analysis) is also kept
in the database under its runs' fingerprint (kbit.dashboard.stored), and no view reads more than
KBIT_DASHBOARD_MAX_RUNS runs.
"""

from __future__ import annotations

import functools

import pandas as pd

from kbit import settings
from kbit.analysis import findings, frontier_view
from kbit.analysis.equalbits import x_bits
from kbit.analysis.frontier import plottable, rows_to_frame, thin
from kbit.dashboard import charts, stored, tables
from kbit.db import connect_reader, queries, queue, session_scope
from kbit.errors import NotFound, TooManyRuns
from kbit.settings import RUN_STATES as STATE_COLUMNS

# Runs read (as dicts) at once: 20,000 are ~45 MB; all of a 200,000-run family would be ~450 MB.
CHUNK_ROWS = 20_000


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


def fingerprint(url: str | None, **filters) -> dict:
    """queries.frontier_fingerprint of the filtered finished runs; TooManyRuns past
    KBIT_DASHBOARD_MAX_RUNS, so no view reads (or analyses) an unbounded share of the store."""
    with session_scope(engine_for(url)) as s:
        found = queries.frontier_fingerprint(s, **filters)
    limit = settings.dashboard_max_runs()
    if found["runs"] > limit:
        raise TooManyRuns(
            f"{found['runs']:,} finished runs pass these filters, more than the dashboard analyses at once "
            f"({limit:,}, KBIT_DASHBOARD_MAX_RUNS); pick a sweep, a model family or a team."
        )
    return found


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
    filters = {"teams": teams, "sweeps": sweeps, "families": families, "dtypes": dtypes, "blocksizes": blocksizes,
               "bits": bits, "methods": methods}
    fingerprint(url, **filters)
    with session_scope(engine_for(url)) as s:
        frames = [rows_to_frame(chunk) for chunk in queries.frontier_row_chunks(s, task, metric, CHUNK_ROWS, **filters)]
    if not frames:
        return rows_to_frame([])
    numbers = {c for f in frames for c in f.columns if pd.api.types.is_numeric_dtype(f[c])}
    frame = pd.concat(frames, ignore_index=True).sort_values("run_id", kind="stable", ignore_index=True)
    # A chunk whose number column is all None has it as objects, and so has the concatenation:
    # numbers (and gaps) again, as one frame of every row would have them.
    for column in numbers:
        if frame[column].dtype == "object":
            frame[column] = pd.to_numeric(frame[column])
    return frame


def view_filters(teams=(), sweeps=(), families=(), dtypes=(), blocksizes=(), bits=(), methods=()) -> tuple:
    """The hashable filter tuple of a page's view (None: all), the argument `points` takes."""
    chosen = {"teams": teams, "sweeps": sweeps, "families": families, "dtypes": dtypes, "blocksizes": blocksizes,
              "bits": bits, "methods": methods}
    return tuple((name, tuple(values) or None) for name, values in chosen.items())


def baseline_in_every_method(frame: pd.DataFrame) -> pd.DataFrame:
    """Faceted by rounding method, the 16-bit runs (stored as rtn: nothing is rounded) are the
    reference of every method's panel, as they are of every data type's."""
    baseline = frame["bits"] == 16
    methods = [m for m in frame.loc[~baseline, "method"].dropna().unique() if m != "rtn"]
    copies = [frame[baseline].assign(method=m) for m in methods]
    return pd.concat([frame, *copies], ignore_index=True) if copies and baseline.any() else frame


def points(url: str | None, task: str, metric: str, filters: tuple, line: str, panels: tuple, lower: bool,
           group: str | None = None, wait: bool = True) -> dict | None:
    """A chart's points and counts for one view (`filters`: view_filters' tuple): the runs averaged
    per config, the best per line and panel, thinned for drawing. Kept in the database; wait=False:
    only computed in the background when not stored yet (stored.stored), None returned."""
    found = fingerprint(url, **dict(filters))
    params = {"task": task, "metric": metric, "filters": filters, "line": line, "panels": panels, "lower": lower,
              "group": group}

    def compute() -> dict:
        frame = frontier(url, task, metric, **dict(filters))
        usable = plottable(frame)
        if "method" in panels:
            usable = baseline_in_every_method(usable)
        if group == "sweep":
            usable = usable.assign(sweep="#" + usable["sweep_id"].astype(str) + " " + usable["sweep"].astype(str))
        every = frontier_view(usable, metric, line, list(panels))
        return {"points": thin(every, line, lower), "n_runs": len(frame), "n_unplottable": len(frame) - len(usable),
                "n_points": len(every)}

    return stored.stored(engine_for(url), "points", found, params, compute, wait=wait)


def analysis(
    url: str | None, task: str, metric: str, teams: tuple | None = None, sweeps: tuple | None = None,
    families: tuple | None = None, dtypes: tuple | None = None, blocksizes: tuple | None = None, bits: tuple | None = None,
    methods: tuple | None = None, wait: bool = True,
) -> dict | None:
    """What the Frontier page shows of kbit.analysis.findings of the filtered runs (with their
    per-document scores), kept in the database: the analysis' x axis (`x_axis`), the equal-bits
    table (`equal_bits`), the paper's findings (`findings`), the parallel-curves fit (`parallel`,
    `parallel_caption`, and `fits`, its curves on the total-bits axis; None without a fit), the
    16-bit share and seeds caption (`share_caption`), and per budget the `kbit export` command of
    the winner's run nearest it (`exports`). Kept in the database, like `points` (and `wait` as there)."""
    filters = {"teams": teams, "sweeps": sweeps, "families": families, "dtypes": dtypes, "blocksizes": blocksizes,
               "bits": bits, "methods": methods}
    found = fingerprint(url, **filters)

    def compute() -> dict:
        runs = frontier(url, task, metric, **filters)
        with session_scope(engine_for(url)) as s:
            scores = queries.document_scores(s, runs["run_id"].tolist(), task, metric)
        answer = findings(runs, f"{task}/{metric}", scores)
        del scores
        table = tables.equal_bits_table(answer)
        exports = tables.with_export_commands(table, runs, x_bits(runs, answer.x_axis))
        fit = answer.parallel
        return {
            "x_axis": answer.x_axis, "share_caption": tables.share_caption(answer), "equal_bits": table,
            "findings": tables.findings_table(answer), "exports": exports[["budget_bits", "config", "export"]],
            "parallel": tables.parallel_table(answer) if fit is not None else None,
            "parallel_caption": tables.parallel_caption(answer) if fit is not None else None,
            "fits": charts.fit_lines(fit) if fit is not None and answer.x_axis == "total" else None,
        }

    return stored.stored(engine_for(url), "analysis", found, {"task": task, "metric": metric, "filters": filters},
                         compute, wait=wait)


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
