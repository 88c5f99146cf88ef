"""Fixtures every test folder shares: one offline environment per session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def offline_env(tmp_path_factory):
    """A temporary KBIT_HOME (with the micro family's build cache) and HF_HOME, the Hugging Face hub
    and datasets offline, Ray kept on loopback; set for the whole session, restored after it."""
    env = {
        "KBIT_HOME": str(tmp_path_factory.mktemp("kbit-home")), "HF_HOME": str(tmp_path_factory.mktemp("hf-home")),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
