"""One analysis: `kbit demo`'s summary, `kbit report` (markdown and JSON) and the dashboard's
Frontier page give the same verdict (a winner, or undecided and who is ahead) at every budget of
one database, in either metric direction."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kbit.analysis import verdict_text as verdict
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
    return [verdict(row["winner"], row["decided"], row["missing"]) for row in budgets.to_dict("records")]


def report_winners(url, sweep_id, task, metric, tmp_path, monkeypatch):
    monkeypatch.setenv("KBIT_DATABASE_URL", url)
    out = tmp_path / "RESULTS.md"
    assert main(["report", "--sweep", str(sweep_id), "--metric", f"{task}/{metric}", "--output", str(out)]) == 0
    section = out.read_text().split("## Which precision wins at equal bits")[1].split("\n## ")[0]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if re.match(r"\| \d", line)]
    return [as_verdict(cells[-2].strip()) for cells in rows]


def as_verdict(cell: str) -> str:
    """The report's winner cell ('**4-bit** (nf4-b64)', 'undecided (4-bit ahead) nf4-b64', '–') as a verdict."""
    if cell.startswith("**"):
        return cell.split("**")[1]
    return cell.split(")")[0] + ")" if cell.startswith(("undecided", "partial")) else cell


def json_winners(url, sweep_id, task, metric, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KBIT_DATABASE_URL", url)
    capsys.readouterr()
    assert main(["report", "--format", "json", "--sweep", str(sweep_id), "--metric", f"{task}/{metric}"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metric"] == f"{task}/{metric}"
    return [verdict(b["winner"], b["decided"], [f"{k}-bit" for k in b["missing"]]) for b in data["budgets"]]


def dashboard_winners(url, sweep_id, task, metric, monkeypatch):
    monkeypatch.setenv("KBIT_DATABASE_URL", url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"page": "frontier", "metric": f"{task}/{metric}", "sweep": str(sweep_id)})
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    table = at.table[0].value
    return list(table["verdict"])


@pytest.mark.slow
@pytest.mark.parametrize("task, metric", [("mean_zero_shot", "acc"), ("kbit_heldout", "bits_per_byte")])
def test_demo_report_and_dashboard_name_the_same_winners(seeded_db, tmp_path, monkeypatch, capsys, task, metric):
    url, ids = seeded_db
    sweep_id = 1  # the full grid: 3 sizes x k in {3, 4, 8, 16} x 2 dtypes x 2 block sizes
    demo = demo_winners(url, sweep_id, task, metric)
    assert len(demo) >= 3
    assert report_winners(url, sweep_id, task, metric, tmp_path, monkeypatch) == demo
    assert json_winners(url, sweep_id, task, metric, tmp_path, monkeypatch, capsys) == demo
    assert dashboard_winners(url, sweep_id, task, metric, monkeypatch) == demo
