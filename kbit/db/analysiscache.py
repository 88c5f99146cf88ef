"""The rows of `analysis_cache`: answers the dashboard computed, stored under a digest of their
inputs (kbit/dashboard/stored.py makes the digest and the payload; this module only keeps bytes).

A row is never updated: a change in what it was computed from gives another key, and storing it
drops the view's older rows, so the table holds one row per view (what was asked: kind, metric,
filters). Rows older than `MAX_AGE` are dropped too: the table holds what pages asked for lately.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kbit.db.clock import utcnow
from kbit.db.models import AnalysisCache

MAX_AGE = dt.timedelta(days=30)


def read(session: Session, key: str) -> bytes | None:
    """The payload stored under `key`, or None."""
    return session.scalar(select(AnalysisCache.payload).where(AnalysisCache.key == key))


def latest(session: Session, view: str) -> bytes | None:
    """The newest payload stored for `view` (under whichever key), or None: what a page shows while
    the view's current answer is computed."""
    query = (select(AnalysisCache.payload).where(AnalysisCache.view == view)
             .order_by(AnalysisCache.created_at.desc()).limit(1))
    return session.scalar(query)


def write(session: Session, key: str, view: str, kind: str, payload: bytes) -> None:
    """Store `payload` under `key` (another reader may have stored the same answer first: kept),
    drop the other rows of `view` and rows older than MAX_AGE."""
    now = utcnow()
    try:
        with session.begin_nested():
            session.add(AnalysisCache(key=key, view=view, kind=kind, created_at=now, payload=payload))
    except IntegrityError:
        pass
    session.execute(delete(AnalysisCache).where(AnalysisCache.view == view, AnalysisCache.key != key))
    session.execute(delete(AnalysisCache).where(AnalysisCache.created_at < now - MAX_AGE))
