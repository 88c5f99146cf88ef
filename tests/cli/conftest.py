"""Fixtures of the CLI tests: an embedded KBIT_HOME with nothing of kbit's in the environment."""

from __future__ import annotations

import pytest

from kbit.db import connect


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
