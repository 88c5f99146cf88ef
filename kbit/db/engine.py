"""The engine from a URL, and the session scope every operation runs in.

`connect()` resolves the URL (argument, then $KBIT_DATABASE_URL, then a SQLite file under
$KBIT_HOME), checks the database answers, and upgrades the schema to the newest migration.
SQLite runs in WAL mode with a busy timeout, and every transaction there starts with
`BEGIN IMMEDIATE`: SQLite has no `FOR UPDATE SKIP LOCKED`, so writers take turns instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session

from kbit import settings
from kbit.db.migrate import current_revision, head_revision, upgrade_to_head
from kbit.errors import DatabaseUnreachable, SchemaMissing

SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 10
# A connection to a server that vanished (network cut, failover) is noticed in about a minute by
# TCP keepalives instead of hanging for hours; no statement runs longer than 120 s. That timeout is a
# session setting: behind PgBouncer (transaction pooling) it is ignored, and the server's own
# statement_timeout holds instead (docker-compose.yml sets it; docs/operations.md).
PG_CONNECT_ARGS = {
    "connect_timeout": PG_CONNECT_TIMEOUT_S, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
    "keepalives_count": 3, "options": "-c statement_timeout=120000",
}


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the argument, else $KBIT_DATABASE_URL, else sqlite:///$KBIT_HOME/kbit.db."""
    return url or settings.database_url()


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, safe to show in messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _unreachable(url: str, reason: str) -> DatabaseUnreachable:
    return DatabaseUnreachable(
        f"cannot open the database {mask_url(url)}: {reason}. "
        "Check that the server is running and reachable, or point KBIT_DATABASE_URL at one that is "
        "(e.g. postgresql+psycopg://user:password@host:5432/kbit); unset it to use the embedded SQLite file "
        "under KBIT_HOME."
    )


def _first_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return text[0] if text else type(inner).__name__


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        try:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unreachable(url, f"cannot create its folder ({exc.strerror or exc})") from exc
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take transaction control from the sqlite3 module, so our BEGIN IMMEDIATE is the only BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _closes_prepared_statements() -> bool:
    """Whether this psycopg (and its libpq, 17 or later) closes prepared statements with the
    protocol's Close message, which PgBouncer >= 1.22 tracks in transaction pooling."""
    try:
        import psycopg

        return bool(psycopg.capabilities.has_send_close_prepared())
    except (ImportError, AttributeError):  # a psycopg older than 3.2 has no capabilities
        return False


def pg_connect_args() -> dict:
    """psycopg's connection arguments: PG_CONNECT_ARGS, and no prepared statements where this
    psycopg would close them with DEALLOCATE (it prepares after 5 runs; behind PgBouncer's
    transaction pooling a DEALLOCATE reaches another connection and fails)."""
    args = dict(PG_CONNECT_ARGS)
    if not _closes_prepared_statements():
        args["prepare_threshold"] = None
    return args


def make_engine(url: str, pool_size: int | None = None) -> Engine:
    """An engine for `url` without touching the schema (see `connect`). `pool_size` caps the
    connections it opens on a server database (no overflow): a long-lived worker holds one, so a
    cluster of N workers holds N of the server's max_connections, not N x 15."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise _unreachable(url, "the URL is not valid") from exc
    try:
        if backend == "sqlite":
            return _sqlite_engine(url)
        connect_args = pg_connect_args() if backend == "postgresql" else {}
        pool = {} if pool_size is None else {"pool_size": pool_size, "max_overflow": 0}
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool)
    except (ArgumentError, ImportError) as exc:
        raise _unreachable(url, f"no driver for it ({exc})") from exc


def connect(url: str | None = None, *, upgrade: bool = True, pool_size: int | None = None) -> Engine:
    """Open the database (see `resolve_url`), check it answers, and upgrade its schema to head.

    Only what writes (the service, `kbit` commands that write) upgrades; a reader passes
    upgrade=False (see `connect_reader`). Raises DatabaseUnreachable, naming the URL without its
    password, when it cannot be opened.
    """
    url = resolve_url(url)
    engine = make_engine(url, pool_size)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        if upgrade:
            upgrade_to_head(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise _unreachable(url, _first_line(exc)) from exc
    return engine


def connect_reader(url: str | None = None) -> Engine:
    """Open the database for reading only (the dashboard): never migrates it; SchemaMissing when
    its schema is not the one this kbit reads."""
    engine = connect(url, upgrade=False)
    try:
        found, wanted = current_revision(engine), head_revision()
    except DBAPIError as exc:
        engine.dispose()
        raise _unreachable(resolve_url(url), _first_line(exc)) from exc
    if found != wanted:
        engine.dispose()
        state = "has no kbit schema yet" if found is None else f"is at schema {found}, this kbit reads {wanted}"
        raise SchemaMissing(
            f"the database {mask_url(resolve_url(url))} {state}. Run a kbit command that writes "
            "(`kbit submit`, `kbit demo`, `kbit up`, or the service) once to create or upgrade it."
        )
    return engine


@contextlib.contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block ends normally and rolls back on any error.

    Losing the connection midway (server restarted or gone) raises DatabaseUnreachable; nothing of
    the block is committed.
    """
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except DBAPIError as exc:
        with contextlib.suppress(DBAPIError):
            session.rollback()
        if exc.connection_invalidated:
            raise _unreachable(engine.url.render_as_string(hide_password=False), _first_line(exc)) from exc
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
