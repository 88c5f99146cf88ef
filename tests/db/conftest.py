"""Fixtures for the db tests: every test runs on SQLite and on a real PostgreSQL.

Postgres comes from $KBIT_TEST_POSTGRES_URL, else from scripts/ensure_postgres.sh (which starts a
throwaway server when none answers). It never skips: no Postgres is a loud failure. Each test
session gets its own fresh database (kbit_test_<random>), dropped at the end; each test starts
from empty tables.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from kbit.db import connect
from kbit.db.models import Base

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("sqlite", "postgres")


def _server_url() -> str:
    url = os.environ.get("KBIT_TEST_POSTGRES_URL", "").strip()
    if url:
        return url
    out = subprocess.run(
        ["bash", "scripts/ensure_postgres.sh"], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    if out.returncode != 0 or not out.stdout.strip():
        pytest.fail(
            "the db tests need PostgreSQL: set KBIT_TEST_POSTGRES_URL or make scripts/ensure_postgres.sh work "
            f"(it said: {out.stderr.strip() or out.stdout.strip()})",
            pytrace=False,
        )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh database on the test server for this session, dropped at the end."""
    server = make_url(_server_url())
    name = f"kbit_test_{secrets.token_hex(6)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure here must stop the session loudly
        pytest.fail(f"cannot create test database on {server.render_as_string()}: {exc}", pytrace=False)
    url = server.set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


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
