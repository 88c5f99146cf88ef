"""A migration keeps the data: on SQLite, a migration that alters `runs` copies the table and
drops the old one, which with foreign keys enforced deleted every result, score and bit report
(ON DELETE CASCADE); `kbit.db.migrate` turns enforcement off while it migrates."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from dbtest_helpers import make_run
from sqlalchemy import func, select
from test_db_scores import finish, with_scores

from kbit.db import session_scope
from kbit.db.migrate import alembic_config, current_revision, head_revision, run_migration
from kbit.db.models import DocumentScore, Result, Run, RunBits


def counts(engine) -> tuple[int, ...]:
    with session_scope(engine) as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (Run, Result, RunBits, DocumentScore))


def test_every_migration_down_and_up_keeps_finished_results(engine, team_token):
    finish(engine, [make_run(0), make_run(1)], [with_scores, with_scores])
    before = counts(engine)
    assert before == (2, 6, 2, 8)  # two runs, each with its results, bit report and scores
    head = head_revision()
    previous = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
    run_migration(engine, "downgrade", previous)
    assert current_revision(engine) == previous
    assert counts(engine) == before
    run_migration(engine, "upgrade", "head")
    assert current_revision(engine) == head
    assert counts(engine) == before
