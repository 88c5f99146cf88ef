"""The rounding method on the dashboard: a `method` filter and facet, both kept in the link; the
16-bit runs (stored as rtn) are the reference of every method's panel."""

from __future__ import annotations

import pytest
from dashtest_seed import MODELS, _finish_all, config, result, run
from test_dashboard_app import charts, run_app

from kbit.dashboard import data, urlstate
from kbit.db import connect, queue, session_scope, teams


def gptq(bits: int) -> dict:
    return {**config(bits), "method": "gptq"}


@pytest.fixture(scope="module")
def method_db(tmp_path_factory):
    """nf3/nf4-b64 rounded to nearest and by GPTQ (a little better), and 16-bit, for three models."""
    url = f"sqlite:///{tmp_path_factory.mktemp('method')}/kbit.db"
    engine = connect(url)
    with session_scope(engine) as s:
        teams.create_team(s, "nlp")
        configs = [config(3), config(4), gptq(3), gptq(4), config(16)]
        queue.enqueue_sweep(s, team="nlp", name="gptq", spec={"gptq": 1}, runs=[run(m, c) for m in MODELS for c in configs])
    _finish_all(engine, lambda r: result(MODELS[r.model], r.config, bonus=0.01 if "method" in r.config else 0.0))
    engine.dispose()
    return url


def test_the_method_is_a_link_parameter_and_a_facet():
    view, problems = urlstate.decode({"method": "gptq,rtn", "facet": "method,dtype"})
    assert view == {"method": ["gptq", "rtn"], "facet": ["method", "dtype"]} and problems == []
    assert urlstate.encode(view) == {"method": "gptq,rtn", "facet": "method,dtype"}


def test_the_method_filter_keeps_only_that_method(monkeypatch, method_db):
    at = run_app(monkeypatch, method_db, page="frontier", method="gptq")
    [(_, rows)] = charts(at)
    assert {r["label"] for r in rows} == {"nf3-b64-gptq", "nf4-b64-gptq"}
    assert at.sidebar.multiselect(key="w_method").value == ["gptq"]
    assert at.query_params["method"] == "gptq"


def test_one_panel_per_method_each_with_the_16_bit_runs(monkeypatch, method_db):
    at = run_app(monkeypatch, method_db, page="frontier", facet="method")
    [(spec, rows)] = charts(at)
    assert spec["facet"]["field"] == "panel"
    panels = {}
    for r in rows:
        panels.setdefault(r["panel"], set()).add((r["bits"], r["label"]))
    assert panels == {
        "method=gptq": {(3, "nf3-b64-gptq"), (4, "nf4-b64-gptq"), (16, "16bit")},
        "method=rtn": {(3, "nf3-b64"), (4, "nf4-b64"), (16, "16bit")},
    }


def test_baseline_in_every_method_copies_only_the_16_bit_runs(method_db):
    frame = data.frontier(method_db, "mean_zero_shot", "acc")
    out = data.baseline_in_every_method(frame)
    assert len(out) == len(frame) + len(MODELS)  # one 16-bit copy per model, for the gptq panel
    assert set(out.loc[out["bits"] == 16, "method"]) == {"rtn", "gptq"}
    only_rtn = frame[frame["method"] == "rtn"]
    assert len(data.baseline_in_every_method(only_rtn)) == len(only_rtn)
