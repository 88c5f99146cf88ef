"""Fixtures every test folder shares: one offline environment per session, and fresh databases
on a real PostgreSQL server.

Postgres comes from $KBIT_TEST_POSTGRES_URL, else from scripts/ensure_postgres.sh (which starts a
throwaway server when none answers). It never skips: no Postgres is a loud failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get("KBIT_TEST_POSTGRES_URL", "").strip()
    if url:
        return url
    out = subprocess.run(
        ["bash", "scripts/ensure_postgres.sh"], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    if out.returncode != 0 or not out.stdout.strip():
        pytest.fail(
            "these tests need PostgreSQL: set KBIT_TEST_POSTGRES_URL or make scripts/ensure_postgres.sh work "
            f"(it said: {out.stderr.strip() or out.stdout.strip()})",
            pytrace=False,
        )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def fresh_postgres_database(postgres_server_url):
    """A context manager: a new database (kbit_test_<random>) on the server, dropped afterwards."""

    @contextlib.contextmanager
    def make():
        server = make_url(postgres_server_url)
        name = f"kbit_test_{secrets.token_hex(6)}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # noqa: BLE001 - any failure here must stop the session loudly
            pytest.fail(f"cannot create a test database on {server.render_as_string()}: {exc}", pytrace=False)
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    return make


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
