"""Answers the dashboard keeps in the database (the `analysis_cache` table, kbit.db.analysiscache),
so the next cold page reads one row instead of every run and the whole analysis.

An answer is a dict of DataFrames and plain values. Its key is a digest of what it was computed
from: the filtered runs' fingerprint (`queries.frontier_fingerprint`: a new finished run changes
it), the view's parameters (metric, filters, facets), and `VERSION`, a hash of the code that
computes it (kbit/analysis and the dashboard modules that shape it), so an edit of the analysis
never serves an answer it would no longer give. Frames travel as Parquet, values as JSON: a row
holds data, never code.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
from pathlib import Path

import pandas as pd
from sqlalchemy.exc import DBAPIError

import kbit.analysis
from kbit.db import analysiscache, session_scope

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


def stored(engine, kind: str, fingerprint: dict, params: dict, compute) -> dict:
    """The answer under (kind, fingerprint, params): read from the database, else `compute()`d and
    written there for the next reader. A database the dashboard may not write to (a read-only
    role) still gets its answer, computed each time."""
    digest = key(kind, fingerprint, params)
    with session_scope(engine) as session:
        payload = analysiscache.read(session, digest)
    if payload is not None:
        return decode(payload)
    answer = compute()
    try:
        with session_scope(engine) as session:
            analysiscache.write(session, digest, view(kind, params), kind, encode(answer))
    except DBAPIError:
        pass
    return answer
