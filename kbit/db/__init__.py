"""The durable store and job queue: SQLAlchemy models, Alembic migrations, queue operations
and the dashboard's read queries. Imports no torch and no other kbit part.

    from kbit.db import connect, session_scope, queue, teams, queries
    engine = connect()                      # $KBIT_DATABASE_URL or SQLite under $KBIT_HOME, upgraded to head
    with session_scope(engine) as s:
        queue.claim_runs(s, worker="node-1:123", limit=16)
"""

from kbit.db import errors, queries, queue, teams
from kbit.db.engine import connect, mask_url, resolve_url, session_scope

__all__ = ["connect", "session_scope", "queue", "teams", "queries", "errors", "mask_url", "resolve_url"]
