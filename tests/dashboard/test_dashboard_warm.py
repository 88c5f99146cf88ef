"""The newest finished sweeps' Frontier pages, and their families', are computed before anyone
asks (kbit.dashboard.warm): a team's first look at its finished sweep or family computes nothing."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest
from test_dashboard_same_winners import APP
from test_dashboard_stored import finish_five_bit_sweep, stored_rows

from kbit.dashboard import stored, warm


def visit(url, monkeypatch, **view) -> list[str]:
    """The Frontier page of `view` (URL parameters; its default metric): its info notes."""
    monkeypatch.setenv("KBIT_DATABASE_URL", url)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"page": "frontier", **view})
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.get("vega_lite_chart")
    return [i.value for i in at.info]


def test_the_newest_finished_sweeps_and_their_family_are_computed_once_and_their_pages_read_them(
        fresh_db, analyses, monkeypatch):
    url = fresh_db  # sweeps 1 (grid) and 2 (repeat) are finished, 3 (live) still runs; one family
    warmed = warm.Warmed()
    assert warm.warm_newest(url, 1, warmed, now=0) == [("sweep", 2), ("family", "kbit-toy")]  # newest first
    assert warm.warm_newest(url, 10, warmed, now=1) == [("sweep", 1)]
    assert warm.warm_newest(url, 10, warmed, now=2) == []  # a finished sweep's runs do not change
    stored.wait_for_updates(timeout=120)
    assert len(analyses) == 3 and stored_rows(url, "analysis") == 3 and stored_rows(url, "points") == 3

    for view in ({"sweep": "1"}, {"sweep": "2"}, {"family": "kbit-toy"}):
        assert not any("Updating" in note for note in visit(url, monkeypatch, **view))
    # The pages asked for exactly what was stored: nothing computed, no row added.
    assert len(analyses) == 3 and stored_rows(url, "analysis") == 3 and stored_rows(url, "points") == 3


def test_a_family_whose_runs_changed_is_warmed_again_but_not_more_often_than_rewarm_s(fresh_db, analyses):
    url = fresh_db
    warmed = warm.Warmed()
    warm.warm_newest(url, 10, warmed, now=0)
    finish_five_bit_sweep(url)  # the family's runs change; sweep 4 ("five") is the newest finished now
    assert warm.warm_newest(url, 10, warmed, now=1) == [("sweep", 4)]  # the family: warmed 1 s ago
    assert warm.warm_newest(url, 10, warmed, now=warm.REWARM_S + 1) == [("family", "kbit-toy")]
    assert warm.warm_newest(url, 10, warmed, now=2 * warm.REWARM_S + 2) == []  # unchanged since
    stored.wait_for_updates(timeout=120)
