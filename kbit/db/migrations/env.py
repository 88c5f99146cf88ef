"""Alembic environment: migrations run on the connection `kbit.db.migrate` hands in, or on
`sqlalchemy.url` from alembic.ini when run from the `alembic` command line."""

from alembic import context
from sqlalchemy import create_engine

from kbit.db.models import Base

target_metadata = Base.metadata


def run_on(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    from kbit.db.engine import resolve_url

    url = config.get_main_option("sqlalchemy.url") or resolve_url()
    engine = create_engine(url)
    with engine.begin() as conn:
        run_on(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("kbit's migrations run online only: use kbit.db.connect() or `alembic upgrade head`")
main()
