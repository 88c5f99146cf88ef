"""Read queries: frontier rows and their filters, flat results, run detail, sweeps, metrics."""

from __future__ import annotations

import pytest
from dbtest_helpers import CONFIGS, done_result, make_run
from sqlalchemy import select

from kbit.db import queries, queue, session_scope
from kbit.errors import NotFound


@pytest.fixture
def filled(engine, team_token):
    """Two teams' sweeps over two families: nlp's 4 runs done; vision's runs 5, 6 done and 7 failed."""
    with session_scope(engine) as s:
        nlp = queue.enqueue_sweep(s, team="nlp", name="pythia", spec={"a": 1},
                                  runs=[make_run(i, "p-70m", family="pythia") for i in range(4)])
        vis = queue.enqueue_sweep(s, team="vision", name="opt", spec={"b": 1},
                                  runs=[make_run(i, "opt-125m", family="opt") for i in range(3)])
    with session_scope(engine) as s:
        claimed = queue.claim_runs(s, worker="w", limit=10) + queue.claim_runs(s, worker="w", limit=3)
    with session_scope(engine) as s:
        for r in claimed[:-1]:
            queue.complete_run(s, r.run_id, done_result(r.config, value=r.run_id / 10), worker="w")
        queue.fail_run(s, claimed[-1].run_id, error="OOM", worker="w", retryable=False)
    return {"nlp": nlp, "vision": vis}


def test_frontier_rows_have_the_contract_keys(engine, filled):
    with session_scope(engine) as s:
        rows = queries.frontier_rows(s)
    keys = {"run_id", "sweep_id", "sweep", "team", "model", "family", "n_params", "bits", "dtype", "blocksize",
            "exponent_bits", "outlier_fraction", "label", "bits_per_param", "total_bits", "value", "stderr"}
    assert len(rows) == 6  # 4 nlp + 2 vision done; the failed run is no point
    assert all(keys <= set(r) for r in rows)
    first = rows[0]
    assert (first["team"], first["sweep"], first["family"], first["label"]) == ("nlp", "pythia", "pythia", "nf4-b64")
    assert first["value"] == pytest.approx(0.1 * 0.75) and first["stderr"] == 0.011
    assert first["bits_per_param"] == 4.25 and first["n_params"] == 1000


def test_frontier_filters(engine, filled):
    with session_scope(engine) as s:
        def ids(**kw):
            return [r["run_id"] for r in queries.frontier_rows(s, **kw)]

        assert ids(teams=["vision"]) == [5, 6]
        assert ids(sweeps=[filled["nlp"]]) == [1, 2, 3, 4]
        assert ids(families=["opt"]) == [5, 6]
        assert ids(dtypes=["nf"]) == [1, 5]
        assert ids(bits=[16]) == [4]
        assert ids(blocksizes=[None]) == [3, 4]  # per-tensor scaling and the baseline
        assert ids(blocksizes=[64, 128], teams=["nlp"]) == [1, 2]
        assert ids(task="kbit_choice") == [1, 2, 3, 4, 5, 6]
        assert ids(task="no_such_task") == []
        values = {r["run_id"]: r["value"] for r in queries.frontier_rows(s, task="kbit_lastword")}
    assert values[6] == pytest.approx(0.6)


def test_results_rows_flat_per_run(engine, filled):
    with session_scope(engine) as s:
        rows = queries.results_rows(s, sweep_id=filled["vision"])
        everything = queries.results_rows(s)
    assert len(everything) == 7
    assert [r["status"] for r in rows] == ["done", "done", "failed"]
    assert rows[0]["kbit_lastword/acc"] == pytest.approx(0.5) and rows[0]["kbit_choice/acc_stderr"] == 0.02
    assert rows[0]["config"] == CONFIGS[0] and rows[0]["total_bits"] > 0
    assert rows[2]["error"] == "OOM" and "kbit_lastword/acc" not in rows[2]
    assert isinstance(rows[0]["created_at"], str)  # JSON-ready


def test_run_detail_and_missing_run(engine, filled):
    with session_scope(engine) as s:
        detail = queries.run_detail(s, 2)
        with pytest.raises(NotFound, match="run 12345"):
            queries.run_detail(s, 12345)
    assert detail["config"] == CONFIGS[1] and detail["label"] == "fp3e2-b128"
    assert [m["task"] for m in detail["metrics"]] == ["kbit_choice", "kbit_lastword", "mean_zero_shot"]
    assert detail["provenance"]["seed"] == 1234 and detail["attempts"] == 1


def test_the_metrics_are_every_distinct_pair_in_order(engine, team_token):
    # list_metrics walks the index from pair to pair: names sharing a prefix, one task with several
    # metrics, and a pair of one run only are each listed once.
    from kbit.db.models import Result

    pairs = [("a", "acc"), ("a", "acc_norm"), ("ab", "acc"), ("b", "perplexity"), ("b", "z"), ("c", "acc")]
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="m", spec={}, runs=[make_run(i) for i in range(3)])
    with session_scope(engine) as s:
        s.add_all(Result(run_id=run_id, task=t, metric=m, value=0.5)
                  for run_id in (1, 2, 3) for t, m in pairs if t != "c" or run_id == 2)
    with session_scope(engine) as s:
        assert queries.list_metrics(s) == pairs
        assert queries.list_metrics(s) == [tuple(r) for r in s.execute(
            select(Result.task, Result.metric).distinct().order_by(Result.task, Result.metric))]


def test_list_sweeps_and_metrics(engine, filled):
    with session_scope(engine) as s:
        sweeps = queries.list_sweeps(s)
        only_nlp = queries.list_sweeps(s, team="nlp")
        metrics = queries.list_metrics(s)
        options = queries.filter_options(s)
    assert [x["name"] for x in sweeps] == ["opt", "pythia"]
    vision = sweeps[0]
    assert (vision["team"], vision["done"], vision["failed"], vision["total"], vision["status"]) == (
        "vision", 2, 1, 3, "done"
    )
    assert [(x["name"], x["done"], x["status"]) for x in only_nlp] == [("pythia", 4, "done")]
    assert metrics == [("kbit_choice", "acc"), ("kbit_lastword", "acc"), ("mean_zero_shot", "acc")]
    assert options["families"] == ["opt", "pythia"] and options["blocksizes"][-1] is None
    assert options["teams"] == ["nlp", "vision"]
