"""Read queries for the dashboard, the CLI and the analysis: the frontier, flat per-run results,
one run's detail, sweeps with their counts, per-document scores. Plain dicts out; a cached run
reports its source run's metrics, bit report and scores, so teams see shared results as their own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session, aliased

from kbit import settings
from kbit.db.models import DocumentScore, Result, Run, RunBits, Sweep, Team
from kbit.db.scorecodec import decode_scores
from kbit.errors import NotFound
from kbit.settings import RUN_STATES as STATES

# The run whose results a run shows: itself, or the run it was cached from.
SOURCE = func.coalesce(Run.cached_from_id, Run.id)
FINISHED = ("done", "cached")
# Run ids per IN list: far below every backend's limit on bound parameters.
CHUNK = 500


def _dicts(session: Session, query) -> list[dict]:
    """Rows as plain dicts, through Core (the ORM's row loading costs more than the query on 100k rows)."""
    result = session.connection().execute(query)
    keys = list(result.keys())
    return [dict(zip(keys, row)) for row in result]


def _iso(value):
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _in_filter(column, values):
    """`column IN values`, where a None among the values also matches NULL (e.g. blocksize=None)."""
    values = list(values)
    present = [v for v in values if v is not None]
    clauses = [column.in_(present)] if present else []
    if len(present) < len(values):
        clauses.append(column.is_(None))
    return or_(*clauses)


def _filtered(query, teams, sweeps, families, dtypes, blocksizes, bits, methods):
    """`query` over the done or cached runs that pass the filters. A sweep, family or team filter
    is on the runs' own columns, each led by an index (ix_runs_sweep_status, ix_runs_frontier,
    ix_runs_team_status), so a page of one of them reads that one's runs only."""
    query = query.where(Run.status.in_(FINISHED))
    if teams is not None:
        query = query.where(Run.team_id.in_(select(Team.id).where(Team.name.in_(list(teams)))))
    for column, values in (
        (Run.sweep_id, sweeps), (Run.family, families), (Run.dtype, dtypes),
        (Run.blocksize, blocksizes), (Run.bits, bits), (Run.method, methods),
    ):
        if values is not None:
            query = query.where(_in_filter(column, values))
    return query


def _frontier_query(query, task, metric, *filters):
    """`query` over the filtered finished runs that have `task/metric`, with their bit reports."""
    query = (
        query.join(Result, and_(Result.run_id == SOURCE, Result.task == task, Result.metric == metric))
        .outerjoin(RunBits, RunBits.run_id == SOURCE)
    )
    return _filtered(query, *filters)


def _frontier_select(task, metric, filters: dict):
    return _frontier_query(
        select(
            Run.id.label("run_id"), Run.sweep_id, Sweep.name.label("sweep"), Team.name.label("team"), Run.model,
            Run.revision, Run.family, RunBits.n_params, Run.bits, Run.dtype, Run.blocksize, Run.exponent_bits,
            Run.outlier_fraction, Run.method, Run.label, RunBits.n_quantized, RunBits.bits_per_param,
            RunBits.total_bits, Result.value,
            Result.stderr, Run.status, Run.cached_from_id.label("cached_from"),
        )
        .join(Sweep, Sweep.id == Run.sweep_id)
        .join(Team, Team.id == Sweep.team_id),
        task, metric, *(filters.get(k) for k in FILTERS),
    )


FILTERS = ("teams", "sweeps", "families", "dtypes", "blocksizes", "bits", "methods")


def frontier_rows(
    session: Session,
    task: str = "mean_zero_shot",
    metric: str = "acc",
    teams=None,
    sweeps=None,
    families=None,
    dtypes=None,
    blocksizes=None,
    bits=None,
    methods=None,
) -> list[dict]:
    """One dict per done or cached run that has `task/metric`: the scaling-frontier points.

    Filters take iterables (None = all): team names, sweep ids, families, dtypes, block sizes
    (None in the list matches per-tensor scaling), bits, rounding methods (rtn, gptq). One SQL query.
    """
    filters = {"teams": teams, "sweeps": sweeps, "families": families, "dtypes": dtypes, "blocksizes": blocksizes,
               "bits": bits, "methods": methods}
    # Sorted here, not in SQL: Postgres would spill a 100k-row sort of wide rows to disk.
    return sorted(_dicts(session, _frontier_select(task, metric, filters)), key=lambda row: row["run_id"])


def frontier_row_chunks(session: Session, task: str, metric: str, size: int = 20_000, **filters) -> Iterator[list[dict]]:
    """frontier_rows' dicts (in no order), `size` at a time: a reader that turns each chunk into
    columns holds one chunk of dicts at once, not all of them (200,000 dicts are ~450 MB)."""
    result = session.connection().execution_options(stream_results=True).execute(
        _frontier_select(task, metric, filters))
    keys = list(result.keys())
    while chunk := result.fetchmany(size):
        yield [dict(zip(keys, row)) for row in chunk]


def frontier_fingerprint(
    session: Session, teams=None, sweeps=None, families=None, dtypes=None, blocksizes=None, bits=None, methods=None,
) -> dict:
    """What identifies frontier_rows' answer under these filters (for any metric) without reading
    it: how many finished runs pass them, and the sum, smallest and largest of their ids; from the
    filter's index alone. A run that finishes (done, or cached from another) changes it: runs are
    only added, a run finishes once, a done run's results, bit report and scores are written in
    the transaction that finishes it, a cached run's source is done before it and set with it, and
    none of them is rewritten after."""
    query = _filtered(select(func.count(Run.id), func.sum(Run.id), func.min(Run.id), func.max(Run.id)),
                      teams, sweeps, families, dtypes, blocksizes, bits, methods)
    names = ("runs", "run_ids", "first", "last")
    return {name: int(value or 0) for name, value in zip(names, session.execute(query).one())}


def document_scores(session: Session, run_ids, task: str, metric: str) -> dict[int, dict]:
    """{run id: {task: {"doc_ids": int64 array, "values": float64 array, "weights": float64
    array or None}}} for each of `run_ids` that has stored scores of `task/metric` (a cached run
    gets its source run's, under its own id); runs without them are absent. The task's reported
    metric is sum(values)/sum(weights), or mean(values) without weights.

    `mean_zero_shot/acc` gives every task's `acc` of the run: the mean zero-shot accuracy is the
    mean of those (group tasks have no per-document scores, so none is counted twice).
    One query per 500 run ids."""
    every_task = task == "mean_zero_shot" and metric == "acc"
    ids = sorted({int(r) for r in run_ids})
    out: dict[int, dict] = {}
    for start in range(0, len(ids), CHUNK):
        query = (
            select(Run.id, DocumentScore.task, DocumentScore.doc_ids, DocumentScore.values, DocumentScore.weights)
            .join(DocumentScore, DocumentScore.run_id == SOURCE)
            .where(Run.id.in_(ids[start:start + CHUNK]), DocumentScore.metric == metric)
        )
        if not every_task:
            query = query.where(DocumentScore.task == task)
        for run_id, name, doc_ids, values, weights in session.connection().execute(query):
            out.setdefault(run_id, {})[name] = decode_scores(doc_ids, values, weights)
    return out


# Each next (task, metric) pair found by one lookup in ix_results_task_metric (a loose index scan):
# a DISTINCT would read every result, 0.5 s at 3M results, for the dozen pairs there are.
_METRIC_PAIRS = text("""
WITH RECURSIVE pairs(task, metric) AS (
  SELECT * FROM (SELECT task, metric FROM results ORDER BY task, metric LIMIT 1) AS first_pair
  UNION ALL
  SELECT (SELECT r.task FROM results r WHERE (r.task, r.metric) > (p.task, p.metric)
          ORDER BY r.task, r.metric LIMIT 1),
         (SELECT r.metric FROM results r WHERE (r.task, r.metric) > (p.task, p.metric)
          ORDER BY r.task, r.metric LIMIT 1)
  FROM pairs p WHERE p.task IS NOT NULL
)
SELECT task, metric FROM pairs WHERE task IS NOT NULL ORDER BY task, metric
""")


def list_metrics(session: Session) -> list[tuple[str, str]]:
    """Every (task, metric) pair that has at least one result, sorted."""
    return [(task, metric) for task, metric in session.execute(_METRIC_PAIRS)]


def sweep_families(session: Session, sweep_id: int) -> list[str]:
    """The model families of a sweep's finished runs, sorted."""
    query = select(Run.family).where(Run.sweep_id == sweep_id, Run.status.in_(FINISHED), Run.family.is_not(None))
    return sorted(session.scalars(query.distinct()))


def filter_options(session: Session) -> dict[str, list]:
    """The distinct values of the frontier's filters among finished runs (for the dashboard's widgets):
    families, dtypes, blocksizes, bits, methods, and every team. One pass over ix_runs_frontier,
    which holds all five columns (the runs' rows are never read)."""
    keys = ("families", "dtypes", "bits", "blocksizes", "methods")
    columns = (Run.family, Run.dtype, Run.bits, Run.blocksize, Run.method)
    values = {key: set() for key in keys}
    for row in session.execute(select(*columns).where(Run.status.in_(FINISHED)).distinct()):
        for key, value in zip(keys, row):
            values[key].add(value)
    out = {key: sorted(found, key=lambda v: (v is None, v)) for key, found in values.items()}
    out["teams"] = list(session.scalars(select(Team.name).order_by(Team.name)))
    return out


def _run_columns():
    return (
        Run.id.label("run_id"), Run.sweep_id, Sweep.name.label("sweep"), Team.name.label("team"), Run.model,
        Run.revision, Run.family, Run.label, Run.bits, Run.dtype, Run.blocksize, Run.exponent_bits,
        Run.outlier_fraction, Run.method, Run.config, Run.eval, Run.cache_key, Run.status, Run.attempts,
        Run.max_attempts,
        Run.error_type, Run.error, Run.cached_from_id.label("cached_from"), Run.worker, Run.device,
        Run.created_at, Run.started_at, Run.finished_at, Run.wall_time_s, Run.peak_memory_bytes,
        RunBits.n_params, RunBits.n_quantized, RunBits.bits_per_param, RunBits.total_bits,
    )


def _runs_query(*columns):
    return (
        select(*columns)
        .join(Sweep, Sweep.id == Run.sweep_id)
        .join(Team, Team.id == Sweep.team_id)
        .outerjoin(RunBits, RunBits.run_id == SOURCE)
    )


def results_rows(session: Session, sweep_id: int | None = None) -> list[dict]:
    """One flat dict per run (all runs, or one sweep's): config fields, bit report, status, error,
    timings, and a "task/metric" key per metric (its stderr under "task/metric_stderr")."""
    query = _runs_query(*_run_columns()).order_by(Run.id)
    metrics = select(Run.id, Result.task, Result.metric, Result.value, Result.stderr).join(
        Result, Result.run_id == SOURCE
    )
    if sweep_id is not None:
        query = query.where(Run.sweep_id == sweep_id)
        metrics = metrics.where(Run.sweep_id == sweep_id)
    rows = {}
    for row in _dicts(session, query):
        rows[row["run_id"]] = {key: _iso(value) for key, value in row.items()}
    for run_id, task, metric, value, stderr in session.connection().execute(metrics):
        rows[run_id][f"{task}/{metric}"] = value
        rows[run_id][f"{task}/{metric}_stderr"] = stderr
    return list(rows.values())


def run_detail(session: Session, run_id: int) -> dict:
    """Everything about one run: config, eval, bits, metrics, provenance, error, timings."""
    row = session.execute(_runs_query(*_run_columns(), Run.provenance).where(Run.id == run_id)).mappings().first()
    if row is None:
        raise NotFound(f"run {run_id} does not exist; check the run id")
    detail = {key: _iso(value) for key, value in row.items()}
    source = row["cached_from"] or run_id
    if row["cached_from"]:
        detail["provenance"] = session.scalar(select(Run.provenance).where(Run.id == source))
    detail["bits_report"] = (
        None if row["n_params"] is None else
        {k: row[k] for k in settings.BIT_FIELDS}
    )
    detail["metrics"] = [
        {"task": t, "metric": m, "value": v, "stderr": e}
        for t, m, v, e in session.execute(
            select(Result.task, Result.metric, Result.value, Result.stderr)
            .where(Result.run_id == source)
            .order_by(Result.task, Result.metric)
        )
    ]
    return detail


def list_sweeps(session: Session, team: str | None = None) -> list[dict]:
    """Sweeps, newest first, each with run counts by status and an overall status
    (queued / running / done / cancelled)."""
    counted = aliased(Run)
    counts_q = select(counted.sweep_id, counted.status, func.count()).group_by(counted.sweep_id, counted.status)
    query = (
        select(
            Sweep.id.label("sweep_id"), Sweep.name, Team.name.label("team"), Sweep.status, Sweep.priority,
            Sweep.submitter, Sweep.code_version, Sweep.created_at, Sweep.cancelled_at,
        )
        .join(Team, Team.id == Sweep.team_id)
        .order_by(Sweep.id.desc())
    )
    if team is not None:
        query = query.where(Team.name == team)
        counts_q = counts_q.join(Sweep, Sweep.id == counted.sweep_id).join(Team).where(Team.name == team)
    counts: dict[int, dict[str, int]] = {}
    for sweep_id, status, n in session.execute(counts_q):
        counts.setdefault(sweep_id, {})[status] = n
    out = []
    for row in _dicts(session, query):
        item = {key: _iso(value) for key, value in row.items()}
        c = {s: counts.get(row["sweep_id"], {}).get(s, 0) for s in STATES}
        item.update(c, total=sum(c.values()))
        if row["status"] != "cancelled":
            item["status"] = "running" if c["running"] else "queued" if c["queued"] else "done"
        out.append(item)
    return out


# Devices a run reports that are not a GPU (kbit.workers.run.device_name writes "cpu").
NOT_GPU_DEVICES = ("cpu", "none", "")


def learned_memory_bytes(session: Session, model: str, revision: str) -> int | None:
    """The largest peak GPU memory (bytes) measured by a run of `model` at `revision` that finished
    (`done`) on a GPU, or None when none has. One aggregate over the `ix_runs_group` index
    (status, model, revision, ...). The peak is torch's allocated bytes on the run's first device:
    it leaves out the CUDA context and the allocator's cache, so a placement adds headroom."""
    peak = session.scalar(
        select(func.max(Run.peak_memory_bytes)).where(
            Run.status == "done", Run.model == model, Run.revision == revision,
            Run.device.is_not(None), Run.device.not_in(NOT_GPU_DEVICES),
        )
    )
    return None if peak is None else int(peak)
