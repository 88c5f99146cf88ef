"""Fixtures for the workers tests: one offline environment and one built micro family per session."""

from __future__ import annotations

import os

import pytest

from kbit.workers.family import ensure_family


@pytest.fixture(scope="session")
def offline_home(tmp_path_factory):
    """A temporary KBIT_HOME and HF_HOME with the Hugging Face hub and datasets offline."""
    env = {
        "KBIT_HOME": str(tmp_path_factory.mktemp("kbit-home")),
        "HF_HOME": str(tmp_path_factory.mktemp("hf-home")),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env["KBIT_HOME"]
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def micro(offline_home):
    """The micro family, built once for the session: {model id: folder}."""
    from kbit.workers.family import family_members

    return dict(zip(family_members("micro"), ensure_family("micro", offline_home)))
