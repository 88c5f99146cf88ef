"""The dashboard's analysis cache at the database level: the filtered runs' fingerprint moves when,
and only when, a run of the view finishes; rows are kept once per key, a view's new answer drops its
older ones, and old rows are dropped; the migrations that add the table and the team index go down
and up."""

from __future__ import annotations

import datetime as dt

from alembic.script import ScriptDirectory
from dbtest_helpers import make_run
from sqlalchemy import inspect
from test_db_scores import finish, with_scores

from kbit.db import analysiscache, queries, queue, session_scope
from kbit.db.migrate import alembic_config, head_revision, run_migration
from kbit.db.models import AnalysisCache


def fingerprint(engine, **filters):
    with session_scope(engine) as s:
        return queries.frontier_fingerprint(s, **filters)


def test_fingerprint_moves_when_a_run_of_the_view_finishes(engine, team_token):
    finish(engine, [make_run(0), make_run(1)], [with_scores, with_scores], name="a")
    sweep_a = fingerprint(engine, sweeps=(1,))
    assert sweep_a["runs"] == 2
    assert fingerprint(engine, sweeps=(1,)) == sweep_a  # nothing changed: the same

    # A queued run changes nothing; once finished, it changes its own team's view, not sweep 1's.
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="vision", name="b", spec={"b": 1}, runs=[make_run(2, cache_key="other")])
    assert fingerprint(engine, sweeps=(1,)) == sweep_a
    before_b = fingerprint(engine, teams=("vision",))
    assert before_b["runs"] == 0
    with session_scope(engine) as s:
        claimed = queue.claim_runs(s, worker="w", limit=10)
    with session_scope(engine) as s:
        queue.complete_run(s, claimed[0].run_id, with_scores(claimed[0].config), worker="w")
    assert fingerprint(engine, sweeps=(1,)) == sweep_a  # another sweep's run
    after_b = fingerprint(engine, teams=("vision",))
    assert after_b["runs"] == 1 and after_b != before_b
    assert fingerprint(engine, teams=("nlp",))["runs"] == 2
    assert fingerprint(engine, families=("kbit-micro",))["runs"] == 3


def test_a_key_is_stored_once_and_replaces_its_views_older_rows(engine):
    with session_scope(engine) as s:
        analysiscache.write(s, "k1", "view-a", "analysis", b"first")
    with session_scope(engine) as s:
        analysiscache.write(s, "k1", "view-a", "analysis", b"second")  # another reader computed it too
        analysiscache.write(s, "k9", "view-b", "analysis", b"other view")
    with session_scope(engine) as s:
        assert analysiscache.read(s, "k1") == b"first"
        assert analysiscache.read(s, "k2") is None
    with session_scope(engine) as s:
        analysiscache.write(s, "k2", "view-a", "analysis", b"after a run finished")
    with session_scope(engine) as s:
        assert analysiscache.read(s, "k1") is None  # the view's older answer
        assert analysiscache.read(s, "k2") == b"after a run finished"
        assert analysiscache.read(s, "k9") == b"other view"


def test_rows_older_than_max_age_are_dropped(engine):
    with session_scope(engine) as s:
        analysiscache.write(s, "k1", "view-a", "analysis", b"old")
    with session_scope(engine) as s:
        s.get(AnalysisCache, "k1").created_at = dt.datetime.now(dt.timezone.utc) - analysiscache.MAX_AGE * 2
    with session_scope(engine) as s:
        analysiscache.write(s, "k2", "view-b", "points", b"new")
    with session_scope(engine) as s:
        assert analysiscache.read(s, "k1") is None
        assert analysiscache.read(s, "k2") == b"new"


def test_the_cache_migration_goes_down_and_up(engine):
    head = head_revision()
    previous = ScriptDirectory.from_config(alembic_config()).get_revision("0006").down_revision  # 0005
    run_migration(engine, "downgrade", previous)
    inspector = inspect(engine)
    assert "analysis_cache" not in inspector.get_table_names()
    assert "ix_runs_team_status" not in {i["name"] for i in inspector.get_indexes("runs")}
    run_migration(engine, "upgrade", head)
    inspector = inspect(engine)
    assert "analysis_cache" in inspector.get_table_names()
    assert "view" in {c["name"] for c in inspector.get_columns("analysis_cache")}
    assert "ix_runs_team_status" in {i["name"] for i in inspector.get_indexes("runs")}
