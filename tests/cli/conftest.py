"""Fixtures of the CLI tests: an embedded KBIT_HOME with nothing of kbit's in the environment, and a
fresh database with team `lab` that commands find through the environment."""

from __future__ import annotations

import pytest

from kbit.db import connect, session_scope, teams


@pytest.fixture
def kbit_env(tmp_path, monkeypatch):
    """KBIT_HOME in a temporary folder (returned), no database URL, cluster, token or team set."""
    monkeypatch.setenv("KBIT_HOME", str(tmp_path))
    for var in ("KBIT_DATABASE_URL", "KBIT_RAY_ADDRESS", "KBIT_TOKEN", "KBIT_TEAM"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def engine(kbit_env):
    """The embedded SQLite database of kbit_env (migrated)."""
    engine = connect()
    yield engine
    engine.dispose()


@pytest.fixture()
def target(tmp_path, monkeypatch):
    """A fresh database with team `lab`, selected through the environment."""
    url = f"sqlite:///{tmp_path}/target.db"
    engine = connect(url)
    with session_scope(engine) as s:
        token = teams.create_team(s, "lab")
    monkeypatch.setenv("KBIT_DATABASE_URL", url)
    monkeypatch.setenv("KBIT_TOKEN", token)
    yield engine
    engine.dispose()
