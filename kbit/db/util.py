"""Small shared helpers: canonical JSON, hashes and the clock the queue's leases run on."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.sql import func


def canonical_json(data) -> str:
    """One string per value: sorted keys, no whitespace (so equal dicts hash equal)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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
