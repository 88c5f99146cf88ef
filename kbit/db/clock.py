"""The clock the queue's leases run on: the database server's on Postgres, the local one on SQLite."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.sql import func


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def now_value(session: Session):
    """`now` for a statement's values or filters: the server's `now()` on Postgres (no extra round
    trip, one clock for every node), the local clock on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return func.now()
    return utcnow()


def db_now(session: Session) -> dt.datetime:
    """The database server's clock on Postgres (workers on several nodes share one lease clock),
    the local clock on SQLite (embedded: one machine)."""
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(select(func.now())).scalar_one()
    return utcnow()
