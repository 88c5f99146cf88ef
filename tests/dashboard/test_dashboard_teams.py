"""Two teams compared (issue 27): the Compare page (AppTest) and `kbit report --compare` name the
same decided winner, mark the runs reused from the cache as shared, and list the configs and
models only one team ran. The database: dashtest_teams_seed (vision's nf4-b64 is GAIN better on
every model; nf3-b64 is cached from nlp's; each team has configs of its own)."""

from __future__ import annotations

import json

import pytest
from dashtest_teams_seed import GAIN, seed_teams
from test_dashboard_app import charts, run_app, texts

from kbit.cli.main import main


@pytest.fixture(autouse=True)
def fewer_replicates(monkeypatch):
    """200 bootstrap replicates instead of 1,000, for the page and the report alike (quicker; the
    known difference is decided either way)."""
    monkeypatch.setattr("kbit.analysis.equalbits.N_BOOT", 200)


@pytest.fixture(scope="module")
def teams_db(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('teams')}/kbit.db"
    return url, seed_teams(url)


def report(monkeypatch, capsys, *args) -> str:
    assert main(["report", "--compare", *args]) == 0
    return capsys.readouterr().out


def test_page_and_report_name_the_same_winner_mark_shared_runs_and_list_the_rest(monkeypatch, capsys, teams_db):
    url, _ = teams_db
    monkeypatch.setenv("KBIT_DATABASE_URL", url)
    data = json.loads(report(monkeypatch, capsys, "team:nlp,team:vision", "--format", "json"))
    assert data["kind"] == "comparison" and data["a"]["name"] == "nlp" and data["b"]["name"] == "vision"
    assert data["overall"]["verdict"] == "B better" and data["overall"]["winner"] == "vision"
    assert data["overall"]["delta_low"] > 0
    assert {k["k"]: k["verdict"] for k in data["per_k"]} == {3: "same runs", 4: "B better"}
    pairs = {(p["model"], p["label"]): p for p in data["matched"]["pairs"]}
    assert len(pairs) == 6 and data["matched"]["counts"]["B better"] == 3
    for model in ("kbit/toy/s", "kbit/toy/m", "kbit/toy/l"):
        nf4, nf3 = pairs[(model, "nf4-b64")], pairs[(model, "nf3-b64")]
        # GAIN on the accuracy the documents are drawn at; the documents realise it within a few of 400
        assert nf4["winner"] == "vision" and nf4["delta_low"] > 0 and nf4["delta"] == pytest.approx(GAIN, abs=0.025)
        assert nf3["verdict"] == "same runs" and nf3["delta"] is None
        assert nf3["shared"] == f"cached from run #{nf3['run_a']}"
    assert data["b"]["n_cached"] == 3 and len(data["shared_runs"]) == 6
    assert data["a"]["only_configs"] == ["int4-b64", "int8-b64"] and data["a"]["only_models"] == []
    assert data["b"]["only_configs"] == ["fp4e2-b64", "nf4-b128"] and data["b"]["only_models"] == ["kbit/toy/xl"]
    assert len(data["a"]["only_cells"]) == 6 and len(data["b"]["only_cells"]) == 7

    markdown = report(monkeypatch, capsys, "team:nlp,team:vision", "--metric", "mean_zero_shot/acc")
    assert "**At equal bits, overall: vision better**" in markdown
    assert markdown.count("shared: cached from run #") == 3
    assert "Configs: int4-b64, int8-b64. Models: none." in markdown
    assert "Configs: fp4e2-b64, nf4-b128. Models: kbit/toy/xl." in markdown

    at = run_app(monkeypatch, url, page="compare", group="team", items="nlp,vision", metric="mean_zero_shot/acc")
    page = texts(at.markdown)
    assert "At equal bits: **vision better**" in page
    verdicts = at.dataframe[0].value
    assert dict(zip(verdicts["scope"], verdicts["verdict"])) == {"all k": "vision better", "3-bit": "same runs",
                                                                 "4-bit": "vision better"}
    assert verdicts.iloc[0]["delta"] == pytest.approx(data["overall"]["delta"])
    table = at.dataframe[1].value
    shared = table[table["verdict"] == "shared"]
    assert len(shared) == 3 and all(s.startswith("cached from run #") for s in shared["shared"])
    assert set(table.loc[table["config"] == "nf4-b64", "verdict"]) == {"vision better"}
    assert "Only in A (nlp)**: configs int4-b64, int8-b64; models none" in page
    assert "Only in B (vision)**: configs fp4e2-b64, nf4-b128; models kbit/toy/xl" in page
    assert "cached from run #" in texts(at.caption)
    # The difference chart: one row per pair, coloured by verdict in the teams' own colours; ties grey.
    diff_spec, diff_rows = next((s, r) for s, r in charts(at) if "verdict" in json.dumps(s))
    color = diff_spec["layer"][1]["encoding"]["color"]["scale"]
    assert color["domain"][:2] == ["nlp better", "vision better"] and color["range"][:2] == ["#0072B2", "#E69F00"]
    assert len({r["row"] for r in diff_rows if "row" in r}) == 6
    assert diff_spec["layer"][1]["encoding"]["x"]["axis"]["format"] == "+.3f"


def test_page_draws_every_run_on_request_and_reports_conflicting_filters(monkeypatch, teams_db):
    url, _ = teams_db
    at = run_app(monkeypatch, url, page="compare", group="team", items="nlp,vision", metric="mean_zero_shot/acc")
    best = next(rows for s, rows in charts(at) if "verdict" not in json.dumps(s))
    assert "25 runs → 16 points drawn" in texts(at.caption)
    at.toggle(key="w_every").set_value(True).run()
    every = next(rows for s, rows in charts(at) if "verdict" not in json.dumps(s))
    assert len(every) == 25 > len(best)  # every config of each team, the cached copies as the team that reused them
    assert any(e.label.startswith("All 25 runs") for e in at.expander)

    at = run_app(monkeypatch, url, page="compare", group="team", items="nlp", team="vision", metric="mean_zero_shot/acc")
    assert "team filter (vision) conflicts with the compared teams (nlp)" in texts(at.warning)


def test_report_compare_refuses_what_it_cannot_compare(monkeypatch, capsys, teams_db):
    url, _ = teams_db
    monkeypatch.setenv("KBIT_DATABASE_URL", url)
    assert main(["report", "--compare", "team:nlp,team:nobody"]) == 1
    assert "no team 'nobody'" in capsys.readouterr().err
    assert main(["report", "--compare", "team:nlp"]) == 1
    assert "team:nlp,team:vision" in capsys.readouterr().err


def test_a_side_with_more_runs_than_the_dashboard_analyses_is_refused_before_it_is_read(monkeypatch, teams_db):
    import streamlit as st

    from kbit.dashboard import compare

    url, _ = teams_db
    st.cache_data.clear()  # the verdict of an earlier test would come from Streamlit's cache
    read = []
    monkeypatch.setattr(compare.queries, "frontier_rows", lambda *a, **k: read.append(k) or [])
    monkeypatch.setenv("KBIT_DASHBOARD_MAX_RUNS", "5")  # each team has more finished runs than that
    at = run_app(monkeypatch, url, page="compare", group="team", items="nlp,vision", metric="mean_zero_shot/acc")
    assert any("more than the dashboard analyses at once" in i.value for i in at.info), texts(at.info)
    assert read == [] and not charts(at)
    st.cache_data.clear()
