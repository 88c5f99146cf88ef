"""Behind PgBouncer (transaction pooling) a psycopg that cannot close prepared statements with the
protocol's Close message must not prepare any: its DEALLOCATE fails there (benchmarks/pgbouncer_check.md)."""

from __future__ import annotations

from kbit.db import engine as db_engine


def test_a_psycopg_that_cannot_close_prepared_statements_prepares_none(monkeypatch):
    monkeypatch.setattr(db_engine, "_closes_prepared_statements", lambda: False)
    assert db_engine.pg_connect_args()["prepare_threshold"] is None
    monkeypatch.setattr(db_engine, "_closes_prepared_statements", lambda: True)
    assert "prepare_threshold" not in db_engine.pg_connect_args()  # psycopg's default: prepare after 5 runs
    assert db_engine.pg_connect_args()["options"] == "-c statement_timeout=120000"


def test_this_environment_s_psycopg_is_detected():
    import psycopg

    assert db_engine._closes_prepared_statements() == psycopg.capabilities.has_send_close_prepared()
