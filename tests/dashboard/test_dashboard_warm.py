"""The newest finished sweeps' Frontier pages are computed before anyone asks
(kbit.dashboard.warm): a team's first look at its finished sweep computes nothing."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest
from test_dashboard_same_winners import APP
from test_dashboard_stored import stored_rows

from kbit.dashboard import stored, warm


def test_the_newest_finished_sweeps_are_computed_once_and_their_pages_read_them(fresh_db, analyses, monkeypatch):
    url = fresh_db  # sweeps 1 (grid) and 2 (repeat) are finished, 3 (live) still runs
    warmed = {}
    assert warm.warm_finished_sweeps(url, 1, warmed) == [2]  # newest first
    assert warm.warm_finished_sweeps(url, 10, warmed) == [1]
    assert warm.warm_finished_sweeps(url, 10, warmed) == []  # a finished sweep's runs do not change
    stored.wait_for_updates(timeout=120)
    assert len(analyses) == 2 and stored_rows(url, "analysis") == 2 and stored_rows(url, "points") == 2

    monkeypatch.setenv("KBIT_DATABASE_URL", url)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"page": "frontier", "sweep": "1"})  # the page's default metric
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.get("vega_lite_chart") and not any("Updating" in i.value for i in at.info)
    # The page asked for exactly what was stored: nothing computed, no row added.
    assert len(analyses) == 2 and stored_rows(url, "analysis") == 2 and stored_rows(url, "points") == 2
