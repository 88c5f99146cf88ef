"""Every page of the Streamlit app through AppTest, on the seeded database and on an empty one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "kbit" / "dashboard" / "app.py")
PAGES = ("frontier", "scaling", "queue", "compare", "run")
MARGINS = ("margin", "margin_low", "margin_high")


def run_app(monkeypatch, url: str, **params) -> AppTest:
    monkeypatch.setenv("KBIT_DATABASE_URL", url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({k: str(v) for k, v in params.items()})
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def charts(at, fits: bool = False):
    """Each Vega-Lite chart on the page as (spec dict, its rows): its data points, or with `fits`
    the points of the fitted scaling-law lines."""
    out = []
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        rows = []
        for dataset in chart.proto.datasets:
            rows.extend(_arrow_rows(dataset.data.data))
        out.append((spec, [r for r in rows if ("fit" in r) == fits]))
    return out


def _arrow_rows(data: bytes) -> list[dict]:
    import pyarrow as pa

    return pa.ipc.open_stream(data).read_all().to_pylist()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_frontier_page_accuracy_view(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, metric="mean_zero_shot/acc")
    [(spec, rows)] = charts(at)
    [(_, fits)] = charts(at, fits=True)
    # 3 models x k in {3, 4, 8, 16}: repeats averaged, best config per (k, model)
    assert len(rows) == 12
    assert {r["bits"] for r in fits} == {3, 4, 8, 16}  # each k's fitted law drawn beside its points
    assert {r["bits"] for r in rows} == {3, 4, 8, 16}
    assert {r["model"] for r in rows} == {"kbit/toy/s", "kbit/toy/m", "kbit/toy/l"}
    assert all(r["dtype"] in ("nf", "none") and r["block"] in ("b64", "per-tensor") for r in rows)
    s4 = next(r for r in rows if r["model"] == "kbit/toy/s" and r["bits"] == 4)
    assert s4["n_runs"] == 2 and s4["value"] == pytest.approx((0.306 + 0.309) / 2)
    on_front = {(r["model"], r["bits"]) for r in rows if r["on_frontier"]}
    assert ("kbit/toy/m", 16) not in on_front and ("kbit/toy/l", 4) in on_front
    layer_y = spec["layer"][1]["encoding"]["y"]
    assert layer_y["title"] == "mean_zero_shot / acc"
    # the equal-bits table: a verdict per budget, a winner only where its interval excludes zero
    table = at.table[0].value
    assert len(table) >= 3 and {"3-bit", "4-bit", "verdict", "margin_low", "margin_high"} <= set(table.columns)
    named = table[~table["verdict"].str.startswith(("undecided", "partial"))]
    assert (named["margin_low"] > 0).all()
    assert "kept at 16 bits (embeddings, head, norms): l 0%, m 0%, s 0%." in texts(at.caption)  # the seed quantizes all
    findings = at.table[1].value
    assert findings["finding"].iloc[0].startswith("4-bit is almost always optimal")
    assert "left out" in texts(at.caption)  # the repeat sweep's run without a bit report
    assert at.query_params["page"] == "frontier" and at.query_params["metric"] == "mean_zero_shot/acc"
    assert len(at.get("download_button")) == 4


def test_the_default_metric_is_bits_per_byte_as_in_readme(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url)
    assert at.sidebar.selectbox(key="w_metric").value == "kbit_heldout/bits_per_byte"
    assert at.query_params["metric"] == "kbit_heldout/bits_per_byte"
    [(spec, _)] = charts(at)
    assert spec["layer"][1]["encoding"]["y"]["title"] == "kbit_heldout / bits_per_byte (lower is better)"
    assert not at.warning


def test_a_metric_the_database_lacks_is_reported_not_silently_replaced(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, metric="nope/x")
    assert texts(at.warning) == ("Link: metric nope/x not found in the database; showing kbit_heldout/bits_per_byte "
                                 "instead.")
    assert at.query_params["metric"] == "kbit_heldout/bits_per_byte"
    at.sidebar.selectbox(key="w_metric").set_value("mean_zero_shot/acc").run()
    assert not at.warning  # said once, not again on every rerun


def displayed(table) -> pd.DataFrame:
    """What an st.table shows: its cells as the browser gets them (the Styler's display values)."""
    import pyarrow as pa

    return pa.ipc.open_stream(table.proto.arrow_data.styler.display_values).read_all().to_pandas()


def test_frontier_tables_are_shown_whole_with_one_number_format_per_column(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url)
    assert len(at.table) == 4  # st.table: every row shown, no scrolling inside; the points stay a dataframe
    budgets, findings, shared = displayed(at.table[0]), displayed(at.table[1]), displayed(at.table[2])
    exports = displayed(at.table[3])  # the winners' export commands, beside their budgets
    assert list(exports["budget_bits"]) == list(budgets["budget_bits"]) and list(exports.columns) == ["budget_bits", "config", "export"]
    assert all(e == "–" or e.startswith("kbit export ") for e in exports["export"])
    assert len(budgets) == len(at.table[0].value) and len(findings) == len(at.table[1].value)
    assert all(re.fullmatch(r"\d+\.\d\d [kM]bit", b) for b in budgets["budget_bits"]), budgets["budget_bits"]
    assert list(shared["k"]) == ["3-bit", "4-bit", "8-bit", "16-bit"]  # the parallel-curves model, one row per k
    assert "Which k wins at every budget" in texts(at.caption)
    for frame, columns in ((budgets, ["3-bit", "4-bit", "8-bit", "16-bit"]), (budgets, MARGINS), (findings, MARGINS),
                           (shared, MARGINS)):
        for column in (c for c in columns if c in frame):
            signed = r"[+-]" if column in MARGINS else ""
            assert all(re.fullmatch(signed + r"\d+\.\d{4}", v) or v == "–" for v in frame[column]), frame[column]
    assert not findings.isna().any().any() and "None" not in findings.to_string()


def test_frontier_filters_and_facets_from_the_url(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, page="frontier", dtype="int", k="3,4", facet="block", team="nlp")
    [(spec, rows)] = charts(at)
    assert spec["facet"]["field"] == "panel"
    assert {r["panel"] for r in rows} == {"b64", "b256"}
    assert {(r["dtype"], r["bits"]) for r in rows} == {("int", 3), ("int", 4)}
    assert len(rows) == 12
    assert at.sidebar.multiselect(key="w_dtype").value == ["int"]
    assert at.query_params["k"] == "3,4" and at.query_params["facet"] == "block"


def test_frontier_widget_change_updates_the_url(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url)
    at.sidebar.multiselect(key="w_k").set_value([8]).run()
    assert not at.exception
    assert at.query_params["k"] == "8"
    [(_, rows)] = charts(at)
    assert {r["bits"] for r in rows} == {8}


def test_frontier_lower_is_better_metric(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, metric="kbit_heldout/perplexity")
    [(spec, rows)] = charts(at)
    assert spec["layer"][1]["encoding"]["y"]["title"] == "kbit_heldout / perplexity (lower is better)"
    smallest = min(rows, key=lambda r: r["total_bits"])
    assert smallest["on_frontier"]
    front = sorted((r["total_bits"], r["value"]) for r in rows if r["on_frontier"])
    assert all(b[1] < a[1] for a, b in zip(front, front[1:]))  # perplexity falls along the frontier


def test_frontier_no_runs_match(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, team="vision", dtype="int")  # vision's only int run failed
    assert not charts(at)
    assert "No finished run has kbit_heldout/bits_per_byte under these filters" in texts(at.info)


def test_link_to_values_not_in_the_database(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, dtype="fp,nf")
    assert "data type fp not found in the database; ignored" in texts(at.warning)
    [(_, rows)] = charts(at)
    assert {r["dtype"] for r in rows} == {"nf"}


def test_scaling_page_one_line_per_block_size(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, page="scaling", at="4", by="block", dtype="int")
    [(spec, rows)] = charts(at)
    assert spec["layer"][0]["encoding"]["color"]["field"] == "block"
    assert {(r["block"], r["bits"], r["dtype"]) for r in rows} == {("b64", 4, "int"), ("b256", 4, "int")}
    assert len(rows) == 6
    summary = at.dataframe[0].value
    assert summary["block"].tolist() == ["b64", "b256"]  # block 64 beats 256 at 4 bits


def test_scaling_page_one_line_per_dtype(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, page="scaling", at="3")
    [(spec, rows)] = charts(at)
    assert spec["layer"][0]["encoding"]["color"]["field"] == "dtype"
    assert {r["dtype"] for r in rows} == {"nf", "int"} and {r["bits"] for r in rows} == {3}
    assert at.dataframe[0].value["dtype"].tolist() == ["nf", "int"]


def in_order(node):
    """Every element under `node` (an AppTest tree), in the order the page shows them."""
    for child in getattr(node, "children", {}).values():
        yield child
        yield from in_order(child)


def test_queue_page(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, page="queue")
    counts = {m.label: m.value for m in at.metric}
    assert counts == {"queued": "3", "running": "2", "done": "47", "failed": "1", "cancelled": "0", "cached": "1"}
    [bar] = at.get("progress")
    assert "#3 live (nlp): 1/6 finished, 2 running, 3 queued; ETA" in bar.proto.text
    # under "In progress" only the live sweep; the chart of every sweep (finished ones too) under "Sweeps"
    page = [e for e in in_order(at.main) if e.type in ("subheader", "progress", "vega_lite_chart", "dataframe")]
    kinds = [e.value if e.type == "subheader" else e.type for e in page]
    assert kinds[:5] == ["In progress (1)", "progress", "Sweeps", "vega_lite_chart", "dataframe"], kinds
    [(spec, _)] = charts(at)
    assert spec["encoding"]["color"]["legend"]["orient"] == "top"  # a legend beside one bar is clipped
    sweeps = at.dataframe[0]
    assert list(sweeps.value.columns) == ["sweep", "team", "status", "progress", "runs", "priority", "submitter",
                                          "created"]
    live = sweeps.value.set_index("sweep").loc["#3 live"]
    assert live["runs"] == "3 queued, 2 running, 1 done of 6" and live["status"].startswith("running, ETA")
    progress = json.loads(sweeps.proto.columns)["progress"]["type_config"]
    assert progress["type"] == "progress" and progress["color"] == "#2ca02c"  # the chart's colour of done runs
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", c) for c in sweeps.value["created"])
    failed = at.dataframe[1].value
    assert list(failed.columns) == ["run", "sweep_id", "model", "label", "attempts", "error_type", "error", "finished"]
    assert failed["run"].str.fullmatch(r"\?page=run&run=\d+").all()
    assert failed["error"].tolist() == ["CUDA out of memory while quantizing; lower batch_size"]
    assert failed["error_type"].tolist() == ["out_of_memory"]


def test_queue_page_for_one_team(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, page="queue", team="vision")
    sweeps = at.dataframe[0].value
    assert sweeps["sweep"].str.endswith(" repeat").tolist() == [True]
    assert at.query_params["team"] == "vision"


def test_compare_page_teams(monkeypatch, seeded_db):
    url, ids = seeded_db
    at = run_app(monkeypatch, url, page="compare", group="team")
    # Two teams in the database: compared as A and B without choosing (the verdict first, then the charts).
    assert "nlp (A) against vision (B)" in texts(at.subheader)
    spec, rows = next((s, r) for s, r in charts(at) if s["layer"][0]["encoding"].get("color", {}).get("field") == "team")
    assert {r["team"] for r in rows} == {"nlp", "vision"}
    pivot = next(d.value for d in at.dataframe if "kbit_lastword" in d.value.columns)
    assert set(pivot.columns) >= {"team", "model", "kbit_choice", "kbit_lastword"}
    assert all("±" in cell for cell in pivot["kbit_lastword"])


def test_compare_page_difference_of_two_sweeps(monkeypatch, seeded_db):
    url, ids = seeded_db
    at = run_app(monkeypatch, url, page="compare", group="sweep", items=f"{ids['grid']},{ids['repeat']}",
                 metric="mean_zero_shot/acc")
    pairs = at.dataframe[1].value
    # nf4-b64 and 16bit of 3 models and l's nf3-b256 were re-run (+0.003, inside the noise); nf8 was cached
    assert len(pairs) == 8
    shared = pairs[pairs["verdict"] == "shared"]
    assert len(shared) == 1 and shared.iloc[0]["shared"].startswith("cached from run #")
    measured = pairs[pairs["verdict"] != "shared"]
    assert [round(float(d), 6) for d in measured["delta"]] == [0.003] * 7
    assert set(measured["verdict"]) == {"undecided (sweep #2 ahead)"}  # a small lead inside the noise, not a win
    assert "undecided on 7, shared (one cached run) on 1" in texts(at.markdown)
    assert at.selectbox(key="w_a").value == ids["grid"] and at.selectbox(key="w_b").value == ids["repeat"]
    assert at.query_params["a"] == str(ids["grid"])


def test_run_page(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, page="run", run="1")
    metrics = at.dataframe[0].value
    assert {"mean_zero_shot", "kbit_lastword", "kbit_choice", "kbit_heldout"} <= set(metrics["task"])
    assert {m.label for m in at.metric} == {"total bits", "bits / param", "params", "quantized params"}
    assert at.json[0].value and json.loads(at.json[0].value)["bits"] == 3
    assert "0.1.0+test" in at.json[2].value
    assert json.loads(at.json[3].value)["peak_memory_bytes"] == "9.54 MiB (10,000,000 bytes)"
    metrics_table = at.dataframe[0]
    formats = {c: v.get("type_config", {}).get("format") for c, v in json.loads(metrics_table.proto.columns).items()}
    assert formats == {"value": "%.4f", "stderr": "%.4f", "_index": None} and metrics_table.proto.placeholder == "–"


@pytest.mark.slow
def test_run_page_failed_and_missing_runs(monkeypatch, seeded_db):
    url, _ = seeded_db
    with_failure = None
    for run_id in range(40, 60):
        at = run_app(monkeypatch, url, page="run", run=str(run_id))
        if at.error:
            with_failure = at
            break
    assert with_failure is not None, "the seeded failed run was not found"
    assert "out_of_memory: CUDA out of memory" in texts(with_failure.error)
    at = run_app(monkeypatch, url, page="run", run="99999")
    assert "Run 99999 does not exist" in texts(at.warning)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_on_an_empty_database(monkeypatch, empty_db_url, page):
    at = run_app(monkeypatch, empty_db_url, page=page)
    assert not charts(at) and not at.error
    shown = texts(at.info)
    assert shown, f"page {page} shows no hint on an empty database"
    if page in ("frontier", "scaling", "compare"):
        assert "kbit demo" in shown
    if page == "queue":
        assert "No sweeps yet" in shown


def test_the_page_picker_names_fit_the_sidebar(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, page="scaling")
    picker = at.sidebar.selectbox(key="w_page")
    assert picker.options == ["Frontier", "Scaling", "Queue", "Compare", "Run"] and picker.value == "scaling"
    assert max(map(len, picker.options)) <= 12


def test_bad_link_values_are_reported(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, page="nowhere", k="four")
    assert charts(at)  # falls back to the Frontier page
    warnings = texts(at.warning)
    assert "?k=four is not a whole number" in warnings and "nowhere is not one of" in warnings


def test_unreachable_database_is_one_clear_message(monkeypatch):
    at = run_app(monkeypatch, "postgresql+psycopg://kbit@127.0.0.1:9/nowhere")
    message = texts(at.error)
    assert "127.0.0.1:9" in message and "KBIT_DATABASE_URL" in message


def test_a_link_parameter_the_page_does_not_use_is_reported(monkeypatch, seeded_db):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, page="scaling", k="3,4", colour="red")
    warnings = texts(at.warning)
    assert "?k=3,4 is not used on the scaling page; ignored" in warnings
    assert "?colour is not a link parameter" in warnings
    frontier = texts(run_app(monkeypatch, url, page="frontier", k="3,4").warning)
    assert "not used" not in frontier  # the Frontier page filters on k


def test_the_dashboard_never_migrates_a_database(monkeypatch, tmp_path):
    from sqlalchemy import create_engine, inspect

    url = f"sqlite:///{tmp_path / 'unmigrated.db'}"
    create_engine(url).connect().close()  # an empty file, no kbit schema
    at = run_app(monkeypatch, url)
    assert "has no kbit schema yet" in texts(at.error)
    assert inspect(create_engine(url)).get_table_names() == []


def _y_encodings(spec):
    for layer in [spec, *spec.get("layer", []), *spec.get("spec", {}).get("layer", [])]:
        y = layer.get("encoding", {}).get("y")
        if y and y.get("field") == "value":
            yield y


@pytest.mark.parametrize("params", [{"page": "frontier"}, {"page": "frontier", "metric": "kbit_heldout/bits_per_byte"},
                                    {"page": "scaling"}, {"page": "queue"}, {"page": "compare", "group": "sweep"},
                                    {"page": "run", "run": "1"}, {"page": "frontier", "facet": "dtype,block"}])
def test_no_table_shows_none_and_no_axis_title_is_cut(monkeypatch, seeded_db, params):
    url, _ = seeded_db
    at = run_app(monkeypatch, url, **params)
    assert len(at.dataframe) + len(at.table), "the page shows no table"
    for element in at.dataframe:  # a missing number is shown as the placeholder, a missing text as ""
        frame = element.value
        assert element.proto.placeholder == "–" or not frame.isna().any().any()
        text = frame.select_dtypes(exclude="number")
        assert not text.isna().any().any(), text[text.isna().any(axis=1)].head()
    for element in at.table:
        assert not displayed(element).isna().any().any()
    for spec, _ in charts(at):
        for y in _y_encodings(spec):
            assert y["axis"]["titleLimit"] >= 1000, y
