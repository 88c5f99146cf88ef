"""Shared fixtures for the cluster tests: databases with a team, sweeps, a real Ray head."""

from __future__ import annotations

import pytest

from kbit.db import connect, session_scope, teams


@pytest.fixture
def db(tmp_path):
    """(engine, url, team, token) on a fresh SQLite file."""
    url = f"sqlite:///{tmp_path / 'kbit.db'}"
    engine = connect(url)
    with session_scope(engine) as s:
        token = teams.create_team(s, "nlp")
    yield engine, url, "nlp", token
    engine.dispose()


@pytest.fixture(scope="session")
def ray_head(offline_env):
    """A real Ray head on 127.0.0.1 with the default scheduler, started like `kbit up` (which this
    also tests), on free ports; stopped with `kbit down` after the session."""
    import os

    from clustertest_helpers import free_port

    from kbit.cli import localcluster

    # Several schedulers share this head's 2 CPUs one test after another: a scheduler's idle workers
    # give their CPU back after 3 s, not a minute, so the next test's workers find room.
    os.environ["KBIT_WORKER_IDLE_S"] = "3"
    try:
        state = localcluster.up(gcs_port=free_port(), client_port=free_port(), num_cpus=2, dashboard=False,
                                say=lambda *_: None)
    finally:
        del os.environ["KBIT_WORKER_IDLE_S"]
    yield state
    assert localcluster.down(say=lambda *_: None)
    assert localcluster.read_state() is None
    assert localcluster.session_processes(state["head_pid"]) == []  # head, raylet, workers, scheduler: all gone
