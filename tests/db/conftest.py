"""Fixtures for the db tests: every test runs on SQLite and on a real PostgreSQL.

Postgres comes from tests/conftest.py (never skipped: no Postgres is a loud failure). Each test
session gets its own fresh database (kbit_test_<random>), dropped at the end; each test starts
from empty tables.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kbit.db import connect
from kbit.db.models import Base

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def postgres_url(fresh_postgres_database):
    """A fresh database on the test server for this session (tests/conftest.py), dropped at the end."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_engine(postgres_url):
    engine = connect(postgres_url)
    yield engine
    engine.dispose()


def _empty_tables(engine) -> None:
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def db_url(backend, tmp_path, request) -> str:
    """The URL of an empty, migrated database of `backend` (for tests that start processes)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'kbit.db'}"
        connect(url).dispose()
        return url
    _empty_tables(request.getfixturevalue("postgres_engine"))
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(backend, tmp_path, request):
    """A connected engine on an empty, migrated database of `backend`."""
    if backend == "sqlite":
        engine = connect(f"sqlite:///{tmp_path / 'kbit.db'}")
        yield engine
        engine.dispose()
        return
    engine = request.getfixturevalue("postgres_engine")
    _empty_tables(engine)
    yield engine


@pytest.fixture
def team_token(engine):
    from kbit.db import session_scope, teams

    with session_scope(engine) as s:
        return {"nlp": teams.create_team(s, "nlp"), "vision": teams.create_team(s, "vision")}
