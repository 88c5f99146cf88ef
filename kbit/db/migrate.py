"""Run the package's Alembic migrations programmatically (works from an installed package, any cwd)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant: every process upgrading the same Postgres database waits on this lock.
PG_MIGRATION_LOCK = 0x6B626974


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the newest revision in one transaction (a no-op when already there)."""
    run_migration(engine, "upgrade", "head")


def run_migration(engine: Engine, direction: str, revision: str) -> None:
    """`alembic upgrade|downgrade REVISION` on `engine`, in one transaction.

    On SQLite a migration that alters a table copies it and drops the old one (batch mode), and
    with foreign keys enforced that drop deletes every row that references it (results, scores,
    bit reports: ON DELETE CASCADE). So, as SQLite's own ALTER TABLE procedure says, enforcement is
    off while migrating (the pragma has no effect inside a transaction: it is set before it) and the
    references are checked before the transaction commits."""
    cfg = alembic_config()
    step = command.upgrade if direction == "upgrade" else command.downgrade
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
                cfg.attributes["connection"] = conn
                step(cfg, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration to {revision} left {len(broken)} broken references "
                                           f"(first: {tuple(broken[0])}); the database was not changed")
        finally:
            if sqlite:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
