"""What Postgres needs to keep the queue fast: vacuum. Every claim, start, renewal and result
leaves a dead version of a run's row that only vacuum clears, and a claim's index walks step over
them (100,000 no-op runs on 64 workers: 5.8-5.9 ms per run with autovacuum off, 0.7-1.3 ms with it
on; benchmarks/scale.md). With autovacuum off (a server's setting), the scheduler warns
(`upkeep_warning`) and vacuums the runs table itself every KBIT_VACUUM_S seconds (`vacuum_runs`).
"""

from __future__ import annotations

from sqlalchemy import Engine

from kbit.db.engine import mask_url


def autovacuum_off(engine: Engine) -> bool:
    """Whether the database is Postgres with autovacuum off (SQLite keeps no dead row versions)."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return conn.exec_driver_sql("SHOW autovacuum").scalar() != "on"


def upkeep_warning(engine: Engine) -> str | None:
    """What the database lacks to keep the queue fast, or None: Postgres with autovacuum off."""
    if not autovacuum_off(engine):
        return None
    return (
        f"the database {mask_url(engine.url.render_as_string(hide_password=False))} has autovacuum off: the runs "
        "table keeps every dead row version its queue leaves, and claims slow down as they pile up (100,000 "
        "no-op runs on 64 workers: 5.8-5.9 ms per run with it off, 0.7-1.3 ms with it on; benchmarks/scale.md). "
        "The scheduler vacuums the runs table itself every KBIT_VACUUM_S seconds meanwhile; turn autovacuum on "
        "(ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();) to cover every table."
    )


def vacuum_runs(engine: Engine, analyze: bool = True) -> None:
    """VACUUM the runs table: its dead row versions cleared (and with `analyze` its statistics
    made current). Outside a transaction, as VACUUM must be; through PgBouncer's transaction
    pooling it is one statement like any other. At 1M runs: 0.1 s with nothing to clear, 0.3 s
    after 1,000 rewritten rows, ANALYZE 0.5 s more."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE) runs" if analyze else "VACUUM runs")
