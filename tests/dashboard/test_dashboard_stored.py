"""The Frontier page's analysis and points are kept in the database (kbit.dashboard.stored): read
back when nothing changed, computed anew (a different answer) once another run of the view
finished, and the page served from a stored row names the winners `kbit report` names."""

from __future__ import annotations

import subprocess
import sys
import threading

import pandas as pd
import pytest
import streamlit as st
from dashtest_seed import MODELS, config, result, run
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest
from test_dashboard_same_winners import APP, dashboard_winners, report_winners

from kbit.dashboard import data, stored
from kbit.db import connect, queue, session_scope
from kbit.db.models import AnalysisCache


def stored_rows(url, kind):
    engine = connect(url)
    try:
        with session_scope(engine) as s:
            return s.scalar(select(func.count()).select_from(AnalysisCache).where(AnalysisCache.kind == kind))
    finally:
        engine.dispose()


def finish_five_bit_sweep(url):
    """Team nlp runs nf5-b64 on the three sizes, a precision the stored answer has not seen (and
    the queue's older runs finish first: the seeded "live" sweep's three); how many runs finished."""
    engine = connect(url)
    eval_spec = {"tasks": ["kbit_lastword", "kbit_choice", "kbit_heldout"], "num_fewshot": 0, "limit": None,
                 "seed": 5}
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="five", spec={"five": 1},
                            runs=[run(m, config(5), eval_spec) for m in MODELS])
    finished = 0
    while True:
        with session_scope(engine) as s:
            claimed = queue.claim_runs(s, worker="w", limit=10)
        if not claimed:
            break
        for r in claimed:
            with session_scope(engine) as s:
                queue.complete_run(s, r.run_id, result(MODELS[r.model], r.config), worker="w")
        finished += len(claimed)
    engine.dispose()
    return finished


def test_an_analysis_is_reused_until_a_run_of_the_view_finishes(fresh_db, analyses):
    url = fresh_db
    view = {"teams": ("nlp",)}
    first = data.analysis(url, "mean_zero_shot", "acc", **view)
    points = data.points(url, "mean_zero_shot", "acc", tuple(view.items()), "bits", (), False)
    assert len(analyses) == 1 and stored_rows(url, "analysis") == 1 and stored_rows(url, "points") == 1

    again = data.analysis(url, "mean_zero_shot", "acc", **view)  # read back: same answer, nothing computed
    assert len(analyses) == 1 and stored_rows(url, "analysis") == 1
    assert set(again) == set(first)
    for name, value in first.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(again[name], value.reset_index(drop=True))
        else:
            assert again[name] == value

    finished = finish_five_bit_sweep(url)
    assert finished == 6
    # The first look after the change gets the view's previous answer at once, marked as such,
    # while the new one is computed in the background.
    previous = data.analysis(url, "mean_zero_shot", "acc", **view)
    runs_before = first["runs_counted"]
    assert previous["updating"] == {"runs": runs_before, "now": runs_before + finished, "failed": None}
    assert "5-bit" not in previous["equal_bits"]
    stored.wait_for_updates(timeout=120)
    assert len(analyses) == 2 and stored_rows(url, "analysis") == 1  # the view's new answer replaced its old one
    changed = data.analysis(url, "mean_zero_shot", "acc", **view)
    assert changed["updating"] is None and changed["runs_counted"] == runs_before + finished
    assert "5-bit" in changed["equal_bits"] and "5-bit" not in first["equal_bits"]
    assert len(analyses) == 2
    data.points(url, "mean_zero_shot", "acc", tuple(view.items()), "bits", (), False)
    stored.wait_for_updates(timeout=120)
    more = data.points(url, "mean_zero_shot", "acc", tuple(view.items()), "bits", (), False)
    assert more["n_runs"] == points["n_runs"] + finished and more["updating"] is None

    # Another team's view did not change: its stored answer is still the one read.
    data.analysis(url, "mean_zero_shot", "acc", teams=("vision",))
    data.analysis(url, "mean_zero_shot", "acc", teams=("vision",))
    assert len(analyses) == 3 and stored_rows(url, "analysis") == 2


def test_an_answer_of_other_analysis_code_is_never_shown_while_updating(fresh_db, analyses, monkeypatch):
    url = fresh_db
    data.analysis(url, "mean_zero_shot", "acc", teams=("nlp",))
    finish_five_bit_sweep(url)
    monkeypatch.setattr(stored, "version", lambda: "another-analysis")
    answer = data.analysis(url, "mean_zero_shot", "acc", teams=("nlp",))  # waits for the new answer
    assert answer["updating"] is None and "5-bit" in answer["equal_bits"] and len(analyses) == 2


def test_a_failed_update_is_named_and_tried_again_on_the_next_visit(fresh_db, monkeypatch):
    url = fresh_db
    data.analysis(url, "mean_zero_shot", "acc", teams=("nlp",))
    finish_five_bit_sweep(url)
    real = data.findings

    def broken(*args, **kwargs):
        raise RuntimeError("the analysis broke")

    monkeypatch.setattr(data, "findings", broken)
    data.analysis(url, "mean_zero_shot", "acc", teams=("nlp",))
    stored.wait_for_updates(timeout=120)
    failed = data.analysis(url, "mean_zero_shot", "acc", teams=("nlp",))  # shown again, and tried again
    assert failed["updating"]["failed"] == "RuntimeError: the analysis broke" and "5-bit" not in failed["equal_bits"]
    stored.wait_for_updates(timeout=120)
    monkeypatch.setattr(data, "findings", real)
    data.analysis(url, "mean_zero_shot", "acc", teams=("nlp",))
    stored.wait_for_updates(timeout=120)
    fixed = data.analysis(url, "mean_zero_shot", "acc", teams=("nlp",))
    assert fixed["updating"] is None and "5-bit" in fixed["equal_bits"]


def test_a_page_never_queues_behind_background_work(fresh_db, analyses, monkeypatch):
    url = fresh_db
    release, background_done = threading.Event(), []
    counted = data.findings

    def stuck_in_background(*args, **kwargs):
        if threading.current_thread().name.startswith("kbit-answer"):
            release.wait(30)
            background_done.append(1)
        return counted(*args, **kwargs)

    monkeypatch.setattr(data, "findings", stuck_in_background)
    assert data.analysis(url, "mean_zero_shot", "acc", teams=("vision",), wait=False) is None  # warming
    # Warming queued behind it: the page asking for the same answer computes it itself.
    assert data.analysis(url, "mean_zero_shot", "acc", sweeps=(1,), wait=False) is None
    for view in ({"teams": ("nlp",)}, {"sweeps": (1,)}):
        answer = data.analysis(url, "mean_zero_shot", "acc", **view)  # nothing stored: computed here
        assert answer["updating"] is None and not background_done
    release.set()
    stored.wait_for_updates(timeout=120)
    # The queued job found its answer stored: three computed in all, not four.
    assert len(analyses) == 3 and stored_rows(url, "analysis") == 3


def test_one_job_per_answer_however_many_pages_ask(fresh_db, analyses, monkeypatch):
    url = fresh_db
    data.analysis(url, "mean_zero_shot", "acc", teams=("nlp",))
    finish_five_bit_sweep(url)
    release = threading.Event()
    counted = data.findings
    monkeypatch.setattr(data, "findings", lambda *a, **k: release.wait(60) and counted(*a, **k))
    asked = [data.analysis(url, "mean_zero_shot", "acc", teams=("nlp",)) for _ in range(3)]
    release.set()
    stored.wait_for_updates(timeout=120)
    assert [a["updating"] is not None for a in asked] == [True, True, True]
    assert len(analyses) == 2 and stored_rows(url, "analysis") == 1


@pytest.mark.slow
def test_the_page_says_it_shows_a_previous_answer_until_the_new_one_is_stored(fresh_db, monkeypatch):
    monkeypatch.setenv("KBIT_DATABASE_URL", fresh_db)

    def visit():
        at = AppTest.from_file(APP, default_timeout=120)
        at.query_params.update({"page": "frontier", "metric": "mean_zero_shot/acc", "team": "nlp"})
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        assert at.get("vega_lite_chart")
        return [i.value for i in at.info]

    assert not any("Updating" in i for i in visit())
    finish_five_bit_sweep(fresh_db)
    st.cache_data.clear()  # as after the page's TTL
    notes = [i for i in visit() if "Updating" in i]
    assert len(notes) == 1 and "pass these filters now" in notes[0]
    stored.wait_for_updates(timeout=120)
    assert not any("Updating" in i for i in visit())  # not kept by Streamlit: the stored new answer is read


def test_a_new_analysis_code_is_another_key(fresh_db, monkeypatch):
    fingerprint = data.fingerprint(fresh_db, sweeps=(1,))
    before = stored.key("analysis", fingerprint, {"sweeps": (1,)})
    monkeypatch.setattr(stored, "version", lambda: "another-analysis")
    assert stored.key("analysis", fingerprint, {"sweeps": (1,)}) != before


@pytest.mark.slow
@pytest.mark.parametrize("task, metric", [("mean_zero_shot", "acc"), ("kbit_heldout", "bits_per_byte")])
def test_the_page_from_a_stored_row_names_the_reports_winners(fresh_db, analyses, tmp_path, monkeypatch, task,
                                                              metric):
    url = fresh_db
    computed = dashboard_winners(url, 1, task, metric, monkeypatch)
    assert len(analyses) == 1
    st.cache_data.clear()  # a cold page: nothing in Streamlit's cache, the answer in the database
    from_row = dashboard_winners(url, 1, task, metric, monkeypatch)
    assert len(analyses) == 1
    assert from_row == computed == report_winners(url, 1, task, metric, tmp_path, monkeypatch)


def test_a_view_over_too_many_runs_asks_for_a_narrower_one(fresh_db, monkeypatch):
    monkeypatch.setenv("KBIT_DATABASE_URL", fresh_db)
    monkeypatch.setenv("KBIT_DASHBOARD_MAX_RUNS", "10")  # sweep 1 has 39 finished runs, sweep 2 eight
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"page": "frontier", "metric": "mean_zero_shot/acc"})
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("pick a sweep, a model family or a team" in i.value for i in at.info)
    assert not at.get("vega_lite_chart") and stored_rows(fresh_db, "points") == 0

    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"page": "frontier", "metric": "mean_zero_shot/acc", "sweep": "2"})
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.get("vega_lite_chart")


@pytest.mark.parametrize("chunk", [1, 7, 20_000])
def test_runs_read_in_chunks_are_the_frame_read_at_once(seeded_db, monkeypatch, chunk):
    from kbit.analysis import rows_to_frame
    from kbit.db import queries

    url, _ = seeded_db
    monkeypatch.setattr(data, "CHUNK_ROWS", chunk)
    engine = connect(url)
    try:
        for task, metric in (("mean_zero_shot", "acc"), ("kbit_heldout", "bits_per_byte")):
            with session_scope(engine) as s:
                at_once = rows_to_frame(queries.frontier_rows(s, task=task, metric=metric))
            pd.testing.assert_frame_equal(data.frontier(url, task, metric), at_once)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_dashboard_that_stops_does_not_finish_its_background_work_first(tmp_path):
    # Two warming jobs of two minutes each are queued; the process ends at once (Ctrl-C on a
    # served dashboard must not wait for minutes of warming), and nothing half-done is stored.
    url = f"sqlite:///{tmp_path}/kbit.db"
    connect(url).dispose()
    code = f"""
import time
from kbit.dashboard import stored
from kbit.db import connect
engine = connect({url!r})
for view in (1, 2):
    stored.stored(engine, "points", {{"runs": 1}}, {{"view": view}}, lambda: time.sleep(120) or {{}}, wait=False)
time.sleep(0.5)
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=90)
    assert stored_rows(url, "points") == 0
