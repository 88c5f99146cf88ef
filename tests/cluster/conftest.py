"""Shared fixtures for the cluster tests: databases with a team, sweeps, a real Ray head."""

from __future__ import annotations

import os

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
def offline_env(tmp_path_factory):
    """KBIT_HOME (with the micro family's build cache) and offline Hugging Face settings for the session."""
    home = tmp_path_factory.mktemp("kbit-home")
    hf = tmp_path_factory.mktemp("hf-home")
    env = {
        "KBIT_HOME": str(home), "HF_HOME": str(hf), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def ray_head(offline_env):
    """A real Ray head on 127.0.0.1 with the default scheduler, started like `kbit up` (which this
    also tests), on free ports; stopped with `kbit down` after the session."""
    from clustertest_helpers import free_port

    from kbit.cluster import localservice

    state = localservice.up(gcs_port=free_port(), client_port=free_port(), num_cpus=2, dashboard=False,
                            say=lambda *_: None)
    yield state
    assert localservice.down(say=lambda *_: None)
    assert localservice.read_state() is None
    assert localservice.session_processes(state["head_pid"]) == []  # head, raylet, workers, scheduler: all gone
