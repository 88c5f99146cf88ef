"""`kbit results import`: a `kbit results --format json` file round-trips into another database
as finished runs of a new sweep; a bad file is refused, with the line of each bad row, and
nothing is written."""

from __future__ import annotations

import json

import pytest

from kbit.cli.main import main
from kbit.db import queries, session_scope
from tests.dashboard.dashtest_seed import seed

# Fields that name where a run lives, not what it measured: they differ after an import by design.
PLACE = {"run_id", "sweep_id", "sweep", "team", "cache_key", "cached_from", "status", "attempts", "max_attempts",
         "worker"}


@pytest.fixture()
def exported(tmp_path, monkeypatch):
    """(path of the seeded database's runs exported as JSON, the rows)."""
    url = f"sqlite:///{tmp_path}/source.db"
    seed(url)
    monkeypatch.setenv("KBIT_DATABASE_URL", url)
    path = tmp_path / "runs.json"
    assert main(["results", "--format", "json", "--output", str(path)]) == 0
    return path, json.loads(path.read_text())


def finished(rows):
    return [r for r in rows if r["status"] in ("done", "cached")]


def measured(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in PLACE}


def test_round_trip_is_lossless(exported, target, capsys):
    path, rows = exported
    assert main(["results", "import", str(path), "--team", "lab", "--name", "imported"]) == 0
    message = capsys.readouterr().out
    assert f"imported {len(finished(rows))} finished runs" in message
    assert f"skipped {len(rows) - len(finished(rows))} unfinished" in message
    with session_scope(target) as s:
        again = queries.results_rows(s)
    assert {r["sweep"] for r in again} == {"imported"} and {r["team"] for r in again} == {"lab"}
    assert {r["status"] for r in again} == {"done"}
    expected = sorted((measured(r) for r in finished(rows)), key=lambda r: json.dumps(r, sort_keys=True))
    assert sorted((measured(r) for r in again), key=lambda r: json.dumps(r, sort_keys=True)) == expected
    # the same file under the same name again is refused, and writes nothing
    assert main(["results", "import", str(path), "--team", "lab", "--name", "imported"]) != 0
    assert "already imported" in capsys.readouterr().err
    with session_scope(target) as s:
        assert len(queries.results_rows(s)) == len(again)


def test_a_malformed_file_is_refused_with_its_lines_and_nothing_written(exported, target, tmp_path, capsys):
    path, rows = exported
    done = finished(rows)
    done[1]["bits"] = 9
    done[1]["config"]["bits"] = 9
    done[3]["total_bits"] = "lots"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(done, indent=2))
    lines = bad.read_text().splitlines()
    starts = [i + 1 for i, line in enumerate(lines) if line == "  {"]
    assert main(["results", "import", str(bad), "--team", "lab"]) != 0
    err = capsys.readouterr().err
    assert f"line {starts[1]}: QuantConfig.bits=9 is not allowed" in err
    assert f"line {starts[3]}: total_bits='lots' is not a number" in err
    assert "nothing imported" in err
    with session_scope(target) as s:
        assert queries.results_rows(s) == []


@pytest.mark.parametrize("text, message", [
    ("{}", "not a JSON array of runs"),
    ('[{"model": "m", "status": "done"', "line 1: not valid JSON"),
    ("[1, ", "not closed"),
    ('[{"status": "queued"}]', "no finished run"),
])
def test_not_a_results_file(target, tmp_path, capsys, text, message):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    assert main(["results", "import", str(bad), "--team", "lab"]) != 0
    assert message in capsys.readouterr().err


def test_wrong_token_is_refused(exported, target, monkeypatch, capsys):
    path, _ = exported
    monkeypatch.setenv("KBIT_TOKEN", "not-the-token")
    assert main(["results", "import", str(path), "--team", "lab"]) != 0
    assert "token" in capsys.readouterr().err
