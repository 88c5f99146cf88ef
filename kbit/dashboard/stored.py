"""Answers the dashboard keeps in the database (the `analysis_cache` table, kbit.db.analysiscache),
so the next cold page reads one row instead of every run and the whole analysis.

An answer is a dict of DataFrames and plain values. Its key is a digest of what it was computed
from: the filtered runs' fingerprint (`queries.frontier_fingerprint`: a new finished run changes
it), the view's parameters (metric, filters, facets), and `VERSION`, a hash of the code that
computes it (kbit/analysis and the dashboard modules that shape it), so an edit of the analysis
never serves an answer it would no longer give. Frames travel as Parquet, values as JSON: a row
holds data, never code.

A view whose runs changed since its answer was stored (a run of it finished) is not made to wait
for the whole analysis again (15 s for a 200,000-run family): the page gets the view's previous
answer at once, marked `updating` with the runs it counts and the runs finished now, while the
current one is computed in the background and stored for the next visit. Background answers
(these updates, and views warmed before anyone asks: kbit.dashboard.warm) are computed one at a
time per process.
"""

from __future__ import annotations

import base64
import ctypes
import functools
import hashlib
import io
import json
import logging
import queue
import threading
from concurrent.futures import Future
from pathlib import Path

import pandas as pd
from sqlalchemy.exc import DBAPIError

import kbit.analysis
from kbit.db import analysiscache, session_scope

log = logging.getLogger(__name__)

DASHBOARD = Path(__file__).resolve().parent
# The code an answer depends on: the analysis, and how the dashboard shapes it into tables and points.
SOURCES = (Path(kbit.analysis.__file__).resolve().parent, DASHBOARD / "data.py", DASHBOARD / "tables.py",
           DASHBOARD / "charts.py", DASHBOARD / "stored.py")


@functools.lru_cache(maxsize=1)
def version() -> str:
    """sha256 over the SOURCES' relative paths and bytes (first 16 hex digits)."""
    digest = hashlib.sha256()
    files = sorted(p for source in SOURCES for p in ([source] if source.is_file() else source.glob("*.py")))
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def key(kind: str, fingerprint: dict, params: dict) -> str:
    """The digest an answer is stored under."""
    return _digest([kind, version(), fingerprint, params])


def view(kind: str, params: dict) -> str:
    """The digest of what was asked, whatever the runs: a view's new answer replaces its older ones."""
    return _digest([kind, params])


def _digest(parts: list) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def encode(answer: dict) -> bytes:
    frames, values = {}, {}
    for name, value in answer.items():
        if isinstance(value, pd.DataFrame):
            buffer = io.BytesIO()
            value.reset_index(drop=True).to_parquet(buffer, index=False)
            frames[name] = base64.b64encode(buffer.getvalue()).decode()
        else:
            values[name] = value
    return json.dumps({"frames": frames, "values": values}).encode()


def decode(payload: bytes) -> dict:
    data = json.loads(payload)
    answer = dict(data["values"])
    for name, text in data["frames"].items():
        answer[name] = pd.read_parquet(io.BytesIO(base64.b64decode(text)))
    return answer


def stored(engine, kind: str, fingerprint: dict, params: dict, compute, *, wait: bool = True) -> dict | None:
    """The answer under (kind, fingerprint, params), with `updating` added: None for the answer of
    the current runs (read from the database, else `compute()`d here and written there for the
    next reader), or {"runs": the finished runs it counts, "now": those finished now, "failed": why
    the last try to compute the current one failed, or None} for the view's previous answer while
    the current one is computed in the background. wait=False (warming a view nobody waits for):
    only make sure the answer is stored or being computed in the background; returns None.
    A database the dashboard may not write to (a read-only role) still gets its answer, computed
    each time."""
    digest = key(kind, fingerprint, params)
    with session_scope(engine) as session:
        payload = analysiscache.read(session, digest)
        previous = None if payload is not None or not wait else analysiscache.latest(session, view(kind, params))
    if payload is not None:
        return {**decode(payload), "updating": None} if wait else None
    if not wait:
        _computing(engine, digest, kind, fingerprint, params, compute)
        return None
    if previous is not None:
        answer = decode(previous)
        if answer.get("code_version") == version():  # an older analysis' answer is never shown
            _computing(engine, digest, kind, fingerprint, params, compute)
            updating = {"runs": answer["runs_counted"], "now": fingerprint["runs"], "failed": _FAILED.get(digest)}
            return {**answer, "updating": updating}
    with _JOBS_LOCK:
        job = _JOBS.get(digest)
    if job is not None and job.running():  # the same answer being computed in the background: wait for it
        return {**job.result(), "updating": None}
    # Computed here, not after the background's queue (a queued job for it then finds it stored).
    return {**_compute_and_store(engine, digest, kind, fingerprint, params, compute), "updating": None}


# Answers nobody waits for (updates, warming) are computed one at a time, in one background
# thread: a family's analysis peaks near 600 MB. A page whose answer nothing has stored computes
# it in its own thread rather than queue behind them. The thread is a daemon, not a
# ThreadPoolExecutor's: at exit an executor runs every job still queued (minutes of warming after
# a Ctrl-C); a job cut short stores nothing (its transaction is never committed).
_QUEUE: queue.SimpleQueue = queue.SimpleQueue()
_WORKER: list[threading.Thread] = []
_JOBS: dict[str, Future] = {}
_JOBS_LOCK = threading.Lock()
_FAILED: dict[str, str] = {}  # digest -> why its last computation failed (until one succeeds)


def _computing(engine, digest: str, kind: str, fingerprint: dict, params: dict, compute) -> Future:
    """The job computing and storing the answer under `digest`: the one already under way, or a new one."""
    with _JOBS_LOCK:
        job = _JOBS.get(digest)
        if job is not None:
            return job
        job = _JOBS[digest] = Future()
        _QUEUE.put((job, lambda: _stored_or_computed(engine, digest, kind, fingerprint, params, compute)))
        if not _WORKER:
            _WORKER.append(threading.Thread(target=_work, name="kbit-answer", daemon=True))
            _WORKER[0].start()
    job.add_done_callback(lambda done: _finished(digest, done))  # outside the lock: it may run at once, here
    return job


def _work() -> None:
    while True:
        job, compute = _QUEUE.get()
        job.set_running_or_notify_cancel()
        try:
            job.set_result(compute())
        except BaseException as exc:  # the job's caller sees it (`job.result()`, the page's note)
            job.set_exception(exc)


def _finished(digest: str, job: Future) -> None:
    failure = job.exception()
    with _JOBS_LOCK:
        if _JOBS.get(digest) is job:
            del _JOBS[digest]
        if failure is None:
            _FAILED.pop(digest, None)
        else:
            _FAILED[digest] = f"{type(failure).__name__}: {failure}"
    if failure is not None:
        log.warning("computing a dashboard answer failed: %r", failure)


def _stored_or_computed(engine, digest: str, kind: str, fingerprint: dict, params: dict, compute) -> dict:
    with session_scope(engine) as session:
        payload = analysiscache.read(session, digest)
    if payload is not None:  # a page computed it while this job waited its turn
        return decode(payload)
    return _compute_and_store(engine, digest, kind, fingerprint, params, compute)


def _compute_and_store(engine, digest: str, kind: str, fingerprint: dict, params: dict, compute) -> dict:
    try:
        answer = {**compute(), "runs_counted": fingerprint["runs"], "code_version": version()}
    finally:
        _release_freed_memory()
    try:
        with session_scope(engine) as session:
            analysiscache.write(session, digest, view(kind, params), kind, encode(answer))
    except DBAPIError:
        pass
    return answer


def _release_freed_memory() -> None:
    """Hand the memory an analysis freed back to the system (glibc's malloc_trim). glibc keeps a
    thread's freed memory in that thread's arena, and answers are computed in several threads (a
    page's, the background one): without this, a foreground answer's 700 MB stayed resident while
    the background thread took 470 MB more for the next (1.2 GB; 0.73 GB with it). A no-op
    without glibc."""
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass


@functools.lru_cache(maxsize=1)
def _libc():
    return ctypes.CDLL("libc.so.6")


def wait_for_updates(timeout: float | None = None) -> None:
    """Wait until the answers being computed in the background are stored (tests, benchmarks)."""
    with _JOBS_LOCK:
        jobs = list(_JOBS.values())
    for job in jobs:
        job.exception(timeout)
