"""Fixtures for the workers tests: one offline environment and one built micro family per session."""

from __future__ import annotations

import pytest

from kbit.workers.bundled.family import ensure_family


@pytest.fixture(scope="session")
def offline_home(offline_env):
    """The session's temporary KBIT_HOME (see tests/conftest.py)."""
    return offline_env["KBIT_HOME"]


@pytest.fixture(scope="session")
def micro(offline_home):
    """The micro family, built once for the session: {model id: folder}."""
    from kbit.workers.bundled.family import family_members

    return dict(zip(family_members("micro"), ensure_family("micro", offline_home)))
