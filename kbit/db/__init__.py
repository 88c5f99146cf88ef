"""The durable store and job queue: SQLAlchemy models, Alembic migrations, queue operations
and the read queries. Imports no torch, no ray and no kbit part but spec's settings and errors.

    from kbit.db import connect, session_scope, queue, teams, queries
    engine = connect()                      # $KBIT_DATABASE_URL or SQLite under $KBIT_HOME, upgraded to head
    with session_scope(engine) as s:
        queue.claim_runs(s, worker="node-1:123", limit=16)
"""

from kbit.db import queries, queue, teams, upkeep
from kbit.db.engine import connect, connect_reader, mask_url, resolve_url, session_scope
from kbit.db.upkeep import upkeep_warning

__all__ = ["connect", "connect_reader", "session_scope", "queue", "teams", "queries", "upkeep", "mask_url",
           "resolve_url", "upkeep_warning"]
