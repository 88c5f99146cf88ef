"""connect(): URL resolution, SQLite settings, upgrade to head from any cwd, unreachable databases."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from kbit.db import connect, session_scope, teams
from kbit.db.engine import mask_url, resolve_url
from kbit.db.migrate import alembic_config, current_revision
from kbit.errors import DatabaseUnreachable

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_default_is_sqlite_under_kbit_home_in_wal_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("KBIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KBIT_DATABASE_URL", raising=False)
    engine = connect()
    assert engine.url.database == str(tmp_path / "home" / "kbit.db")
    assert (tmp_path / "home" / "kbit.db").exists()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert current_revision(engine) == HEAD
    assert {"teams", "sweeps", "runs", "results", "bit_reports", "samples"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_env_url_overrides_default(tmp_path, monkeypatch):
    monkeypatch.setenv("KBIT_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    assert resolve_url() == f"sqlite:///{tmp_path / 'other.db'}"
    assert resolve_url("sqlite:///explicit.db") == "sqlite:///explicit.db"
    connect().dispose()
    assert (tmp_path / "other.db").exists()


def test_connect_twice_keeps_data(engine):
    with session_scope(engine) as s:
        teams.create_team(s, "nlp")
    again = connect(engine.url.render_as_string(hide_password=False))
    assert current_revision(again) == HEAD
    with session_scope(again) as s:
        assert teams.list_teams(s) == ["nlp"]
    if again is not engine:
        again.dispose()


def test_migrations_found_from_any_cwd(tmp_path):
    # The package's migrations are located from the package, not from the working directory.
    code = textwrap.dedent(
        """
        from kbit.db import connect
        from kbit.db.migrate import current_revision
        print(current_revision(connect("sqlite:///here.db")))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == HEAD
    assert (tmp_path / "here.db").exists()


def test_mask_url_hides_password():
    assert mask_url("postgresql+psycopg://bob:s3cret@db:5432/kbit") == "postgresql+psycopg://bob:***@db:5432/kbit"
    assert "s3cret" not in mask_url("postgresql://bob:s3cret@db/kbit")


def test_unreachable_postgres_names_url_without_password():
    url = "postgresql+psycopg://bob:s3cret@127.0.0.1:1/kbit"
    with pytest.raises(DatabaseUnreachable) as err:
        connect(url)
    message = str(err.value)
    assert "postgresql+psycopg://bob:***@127.0.0.1:1/kbit" in message
    assert "s3cret" not in message
    assert "KBIT_DATABASE_URL" in message


def test_unopenable_sqlite_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DatabaseUnreachable, match="a-file"):
        connect(f"sqlite:///{blocker / 'kbit.db'}")


def test_unknown_driver_is_a_clear_error():
    with pytest.raises(DatabaseUnreachable, match="no driver"):
        connect("nosuchdb://host/x")


def test_wrong_database_name_on_live_server(postgres_url):
    from sqlalchemy.engine import make_url

    missing = make_url(postgres_url).set(database="kbit_no_such_db").render_as_string(hide_password=False)
    with pytest.raises(DatabaseUnreachable, match="kbit_no_such_db"):
        connect(missing)


def test_session_scope_rolls_back_on_error(engine):
    with pytest.raises(RuntimeError):
        with session_scope(engine) as s:
            teams.create_team(s, "nlp")
            raise RuntimeError("boom")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM teams")).scalar() == 0


def test_connection_lost_midway_is_unreachable_and_rolls_back(postgres_engine, postgres_url):
    from sqlalchemy import create_engine

    from kbit.db.models import Base

    with postgres_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(t.name for t in Base.metadata.sorted_tables)} RESTART IDENTITY CASCADE"))
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with pytest.raises(DatabaseUnreachable, match="Check that the server is running"):
        with session_scope(postgres_engine) as s:
            teams.create_team(s, "nlp")
            pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with admin.connect() as conn:  # the server drops this session's connection
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            teams.create_team(s, "vision")
    admin.dispose()
    with session_scope(postgres_engine) as s:  # the pool recovers; nothing was half-written
        assert teams.list_teams(s) == []


def test_a_reader_never_creates_or_migrates_the_schema(tmp_path):
    from kbit.db import connect_reader
    from kbit.errors import SchemaMissing

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with pytest.raises(SchemaMissing, match="has no kbit schema yet.*`kbit demo`"):
        connect_reader(url)
    probe = connect(url, upgrade=False)
    assert inspect(probe).get_table_names() == []  # nothing written by the reader
    probe.dispose()
    connect(url).dispose()  # a writer upgrades ...
    reader = connect_reader(url)  # ... then the reader opens it
    assert "runs" in inspect(reader).get_table_names()
    reader.dispose()


def test_postgres_connections_have_keepalives_and_a_statement_timeout(postgres_url):
    engine = connect(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "2min"
            params = conn.connection.dbapi_connection.info.get_parameters()  # what libpq was given
            assert (params["keepalives"], params["keepalives_idle"]) == ("1", "30")
    finally:
        engine.dispose()
