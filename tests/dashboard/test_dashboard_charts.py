"""Chart functions: the Vega-Lite they produce has the encodings, layers and facets specified."""

import pandas as pd

from kbit.analysis import frontier as F
from kbit.dashboard import charts


def make_points(facets=()):
    rows = []
    for i, (model, n) in enumerate((("s", 1e6), ("m", 4e6), ("l", 16e6))):
        for k in (3, 4, 8):
            for dtype in ("nf", "int"):
                rows.append({
                    "run_id": len(rows) + 1, "model": model, "family": "f", "n_params": n, "bits": k, "dtype": dtype,
                    "blocksize": 64, "label": f"{dtype}{k}", "bits_per_param": k + 0.25, "total_bits": n * (k + 0.25),
                    "value": 0.3 + 0.05 * i - (0.05 if k == 3 else 0) - (0.01 if dtype == "int" else 0), "stderr": 0.01,
                    "sweep_id": 1, "sweep": "x", "team": "nlp" if dtype == "nf" else "cv", "exponent_bits": None,
                    "outlier_fraction": 0.0,
                })
    return F.chart_points(F.rows_to_frame(rows), "bits", list(facets), lower=False)


def layer_marks(spec):
    return [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in spec["layer"]]


def test_frontier_chart_encodings_without_facets():
    points = make_points()
    spec = charts.scaling_chart(points, y_title="mean_zero_shot / acc").to_dict()
    assert "facet" not in spec
    assert layer_marks(spec) == ["line", "circle", "line"]
    lines, dots, front = spec["layer"]
    for layer in (lines, dots, front):
        x = layer["encoding"]["x"]
        assert x["field"] == "total_bits" and x["scale"]["type"] == "log"
        assert layer["encoding"]["y"]["field"] == "value"
    assert lines["encoding"]["color"]["field"] == "bits" and lines["encoding"]["color"]["type"] == "ordinal"
    assert lines["encoding"]["detail"]["field"] == "bits"
    # dominated points are faded, frontier points opaque
    opacity = dots["encoding"]["opacity"]
    assert opacity["condition"]["test"] == "datum.on_frontier"
    assert opacity["condition"]["value"] == 1.0 and opacity["value"] == charts.FADED
    tips = {t["field"] for t in dots["encoding"]["tooltip"]}
    assert {"model", "label", "bits", "dtype", "block", "total_bits", "value", "run_id"} <= tips
    # the frontier layer draws only frontier points, as a step line
    assert front["transform"] == [{"filter": "datum.on_frontier"}]
    assert front["mark"]["interpolate"] == "step-after"
    rows = next(iter(spec["datasets"].values()))
    assert len(rows) == len(points) == 9 and sum(r["on_frontier"] for r in rows) == points["on_frontier"].sum()


def test_frontier_chart_facets_by_panel():
    points = make_points(facets=("dtype",))
    spec = charts.scaling_chart(points, y_title="acc", columns=2).to_dict()
    assert spec["facet"]["field"] == "panel" and spec["columns"] == 2
    assert layer_marks(spec["spec"]) == ["line", "circle", "line"]
    rows = next(iter(spec["datasets"].values()))
    assert {r["panel"] for r in rows} == {"dtype=nf", "dtype=int"}


def test_scaling_chart_one_line_per_dtype_without_frontier():
    points = F.chart_points(F.rows_to_frame(make_points().to_dict("records")), "dtype", [], lower=False)
    spec = charts.scaling_chart(points, y_title="acc", line="dtype", line_title="data type", frontier=False).to_dict()
    assert layer_marks(spec) == ["line", "circle"]
    assert spec["layer"][0]["encoding"]["color"]["field"] == "dtype"
    assert spec["layer"][0]["encoding"]["color"]["type"] == "nominal"


def test_block_lines_sorted_by_size():
    pts = pd.DataFrame({"total_bits": [1.0, 2.0, 3.0], "value": [0.1, 0.2, 0.3], "run_id": [1, 2, 3],
                        "block": ["b256", "per-tensor", "b64"], "on_frontier": True})
    spec = charts.scaling_chart(pts, y_title="acc", line="block", frontier=False).to_dict()
    assert spec["layer"][0]["encoding"]["color"]["sort"] == ["b64", "b256", "per-tensor"]


def test_compare_chart_colors_by_group_with_a_frontier_per_group():
    points = F.chart_points(F.rows_to_frame(make_points().to_dict("records")), "bits", ["team"], lower=False)
    spec = charts.compare_chart(points, group="team", y_title="acc").to_dict()
    dots, fronts = spec["layer"]
    assert dots["encoding"]["color"]["field"] == "team" and dots["encoding"]["shape"]["field"] == "team"
    assert dots["encoding"]["color"]["scale"]["range"][0] == charts.OKABE_ITO[0]  # colour-blind-safe, one per team
    assert fronts["encoding"]["detail"]["field"] == "team"
    assert fronts["transform"] == [{"filter": "datum.on_frontier"}]
    assert dots["encoding"]["x"]["scale"]["type"] == "log"


def test_difference_and_progress_charts():
    diff = pd.DataFrame({"model": ["a", "b", "c"], "config": ["nf4", "nf4", "nf3"], "delta": [0.05, 0.004, 0.0],
                         "delta_low": [0.03, -0.01, 0.0], "delta_high": [0.07, 0.02, 0.0],
                         "verdict": ["y better", "undecided", "shared"], "row": ["a · nf4", "b · nf4", "c · nf3"]})
    spec = charts.difference_chart(diff, x_title="Δ", colors={"x better": "#0072B2", "y better": "#E69F00"}).to_dict()
    zero, whiskers, dots = spec["layer"]
    assert dots["encoding"]["x"]["field"] == "delta" and whiskers["encoding"]["x2"]["field"] == "delta_high"
    scale = dots["encoding"]["color"]["scale"]
    assert dict(zip(scale["domain"], scale["range"]))["undecided"] == charts.UNDECIDED  # a tie is not a loss
    assert dots["encoding"]["x"]["axis"]["format"] == "+.3f" and dots["encoding"]["y"]["axis"]["labelLimit"] >= 1000
    assert spec["height"] == {"step": 24}  # every row label drawn
    assert charts.delta_format([0.0, 0.0]) == "+.3f" and charts.delta_format([0.0004]) == "+.5f"
    sweeps = pd.DataFrame({"sweep": ["#1 a", "#2 b"], "done": [3, 0], "queued": [0, 2], "failed": [1, 0],
                           "running": [0, 1], "cancelled": [0, 0], "cached": [0, 0]})
    spec = charts.progress_chart(sweeps).to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert sorted((r["sweep"], r["state"], r["runs"]) for r in rows) == [
        ("#1 a", "done", 3), ("#1 a", "failed", 1), ("#2 b", "queued", 2), ("#2 b", "running", 1)]
    assert spec["encoding"]["x"]["stack"] == "zero"


def test_metric_title_marks_lower_is_better():
    assert charts.metric_title("kbit_heldout", "perplexity", True) == "kbit_heldout / perplexity (lower is better)"
    assert charts.metric_title("mean_zero_shot", "acc", False) == "mean_zero_shot / acc"
