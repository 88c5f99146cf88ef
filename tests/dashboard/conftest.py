"""Fixtures for the dashboard tests: a seeded SQLite database (see dashtest_seed.py) and an empty one."""

from __future__ import annotations

import pytest
from dashtest_seed import seed

from kbit.db import connect


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory):
    """(url, ids) of a SQLite database holding the three seeded sweeps."""
    url = f"sqlite:///{tmp_path_factory.mktemp('seeded')}/kbit.db"
    return url, seed(url)


@pytest.fixture(scope="session")
def empty_db_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('empty')}/kbit.db"
    connect(url).dispose()
    return url


@pytest.fixture(autouse=True)
def no_warming_thread(monkeypatch):
    """Pages in these tests compute only what they are asked (a background thread warming sweeps'
    pages would race the tests that count analyses); kbit.dashboard.warm is tested on its own."""
    monkeypatch.setenv("KBIT_DASHBOARD_WARM_SWEEPS", "0")
