"""Throwaway databases on a real PostgreSQL server, for the tests and the benchmarks."""

from __future__ import annotations

import os
import secrets
import subprocess
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def postgres_server(arg: str | None = None) -> str:
    """The server: `arg`, else $KBIT_TEST_POSTGRES_URL, else scripts/ensure_postgres.sh's (which
    starts a throwaway server when none answers)."""
    url = arg or os.environ.get("KBIT_TEST_POSTGRES_URL")
    if url:
        return url
    script = Path(__file__).resolve().parents[2] / "scripts" / "ensure_postgres.sh"
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


@contextmanager
def fresh_postgres(server_url: str, prefix: str = "kbit_test"):
    """A new database `<prefix>_<random>` on the server for the block, dropped afterwards."""
    server = make_url(server_url)
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
