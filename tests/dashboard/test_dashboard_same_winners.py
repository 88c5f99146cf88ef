"""One analysis: `kbit demo`'s summary, `kbit report` and the dashboard's Frontier page name the
same winner at every bit budget of one database, in either metric direction."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kbit.cli.demo import frontier_summary
from kbit.cli.main import main
from kbit.db import connect

APP = str(Path(__file__).resolve().parents[2] / "kbit" / "dashboard" / "app.py")


def demo_winners(url, sweep_id, task, metric):
    engine = connect(url)
    try:
        budgets = frontier_summary(engine, sweep_id, task, metric).budgets
    finally:
        engine.dispose()
    return [(row["best_label"], row["best_model"]) for row in budgets.to_dict("records")]


def report_winners(url, sweep_id, task, metric, tmp_path, monkeypatch):
    monkeypatch.setenv("KBIT_DATABASE_URL", url)
    out = tmp_path / "RESULTS.md"
    assert main(["report", "--sweep", str(sweep_id), "--metric", f"{task}/{metric}", "--output", str(out)]) == 0
    section = out.read_text().split("## Which precision wins at a fixed memory budget")[1].split("## The frontier")[0]
    return [(label, f"kbit/toy/{model}") for label, model in re.findall(r"\*\*(\S+)\*\* on (\w+) \(", section)]


def dashboard_winners(url, sweep_id, task, metric, monkeypatch):
    monkeypatch.setenv("KBIT_DATABASE_URL", url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"page": "frontier", "metric": f"{task}/{metric}", "sweep": str(sweep_id)})
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    table = at.dataframe[0].value
    return list(zip(table["best_label"], table["best_model"]))


@pytest.mark.parametrize("task, metric", [("mean_zero_shot", "acc"), ("kbit_heldout", "bits_per_byte")])
def test_demo_report_and_dashboard_name_the_same_winners(seeded_db, tmp_path, monkeypatch, task, metric):
    url, ids = seeded_db
    sweep_id = 1  # the full grid: 3 sizes x k in {3, 4, 8, 16} x 2 dtypes x 2 block sizes
    demo = demo_winners(url, sweep_id, task, metric)
    assert len(demo) >= 3
    assert report_winners(url, sweep_id, task, metric, tmp_path, monkeypatch) == demo
    assert dashboard_winners(url, sweep_id, task, metric, monkeypatch) == demo
