"""The rounding method of a run (rtn, gptq): a column copied from its config (rtn for configs from
before GPTQ, and for the rows migration 0004 found), in the frontier and results views, a frontier
filter and a filter choice."""

from __future__ import annotations

from alembic import command
from dbtest_helpers import CONFIGS, done_result, make_run
from sqlalchemy import text

from kbit.db import queries, queue, session_scope
from kbit.db.migrate import alembic_config, upgrade_to_head

GPTQ = {**CONFIGS[0], "bits": 3, "method": "gptq"}
OLD = CONFIGS[0]  # a config dict from before GPTQ: no method


def fill(engine) -> None:
    runs = [make_run(0, config=OLD), make_run(1, config=GPTQ), make_run(2, config=CONFIGS[3])]
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="gptq", spec={"g": 1}, runs=runs)
    with session_scope(engine) as s:
        claimed = queue.claim_runs(s, worker="w", limit=10)
    with session_scope(engine) as s:
        for r in claimed:
            queue.complete_run(s, r.run_id, done_result(r.config), worker="w")


def test_the_method_is_a_column_of_every_view(engine, team_token):
    fill(engine)
    with session_scope(engine) as s:
        rows = queries.frontier_rows(s)
        assert [(r["label"], r["method"]) for r in rows] == [("nf4-b64", "rtn"), ("nf3-b64-gptq", "gptq"),
                                                            ("16bit", "rtn")]
        assert [r["run_id"] for r in queries.frontier_rows(s, methods=["gptq"])] == [2]
        assert [r["run_id"] for r in queries.frontier_rows(s, methods=["rtn"])] == [1, 3]  # the baseline counts as rtn
        assert [r["method"] for r in queries.results_rows(s)] == ["rtn", "gptq", "rtn"]
        assert queries.filter_options(s)["methods"] == ["gptq", "rtn"]
        assert queries.run_detail(s, 2)["method"] == "gptq"


def test_migration_0004_gives_existing_runs_rtn(engine, team_token):
    fill(engine)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    with engine.connect() as conn:
        assert "method" not in conn.execute(text("SELECT * FROM runs")).keys()
    upgrade_to_head(engine)
    with engine.connect() as conn:
        assert [m for (m,) in conn.execute(text("SELECT method FROM runs ORDER BY id"))] == ["rtn"] * 3
