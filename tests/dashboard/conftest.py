"""Fixtures for the dashboard tests: a seeded SQLite database (see dashtest_seed.py) and an empty one."""

from __future__ import annotations

import pytest
import streamlit as st
from dashtest_seed import seed

from kbit.dashboard import data
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


@pytest.fixture
def fresh_db(tmp_path):
    """The URL of a newly seeded SQLite database (dashtest_seed.py), Streamlit's caches emptied."""
    url = f"sqlite:///{tmp_path}/kbit.db"
    seed(url)
    st.cache_data.clear()
    data.engine_for.cache_clear()
    yield url
    data.engine_for.cache_clear()


@pytest.fixture
def analyses(monkeypatch):
    """How many times the page's analysis ran (kbit.analysis.findings through kbit.dashboard.data)."""
    calls = []
    real = data.findings
    monkeypatch.setattr(data, "findings", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls
