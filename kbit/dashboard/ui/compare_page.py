"""Compare page: teams or sweeps side by side on the same axes, a model x task table of one
metric (mean ± stderr), and the difference between two sweeps."""

from __future__ import annotations

import streamlit as st

from kbit.analysis import frontier
from kbit.dashboard import charts, compare
from kbit.dashboard.ui import common

TABLE_SWEEPS = 10  # the model x task table reads every run of its sweeps: bounded so the page stays quick


def render(url: str | None, opts: dict) -> dict:
    st.header("Compare teams and sweeps")
    metric = common.metric_picker(opts["metrics"])
    group = common.pick_one("compare", "group", ["team", "sweep"], fmt=lambda g: f"{g}s")
    sweep_names = {s["sweep_id"]: f"#{s['sweep_id']} {s['name']} ({s['team']})" for s in opts["sweeps"]}
    if group == "team":
        choices, fmt = opts["teams"], str
    else:
        choices, fmt = [str(i) for i in sweep_names], lambda i: sweep_names[int(i)]
    items = common.pick_many(f"{group}s to compare", "items", choices, fmt=fmt, help="two or more; empty = all")
    filters_view, filters = common.run_filters(opts)
    current = {"metric": metric, "group": group, "items": items, **filters_view}
    if metric is None:
        st.info(common.EMPTY_HELP)
        return current
    task, name = metric.split("/", 1)
    lower = frontier.lower_is_better(name)
    key = "teams" if group == "team" else "sweeps"
    picked = tuple(items) if group == "team" else tuple(int(i) for i in items)
    filters = tuple((k, picked or v if k == key else v) for k, v in filters)

    st.subheader("Side by side")
    result = common.cached_points(url, task, name, filters, "bits", (group,), lower, group=group)
    points = result["points"]
    if points.empty:
        st.info(f"No finished run has {metric} (with a bit report) for these {group}s and filters.")
    else:
        if points[group].nunique() < 2:
            st.caption(f"Only one {group} has results under these filters; pick more to compare.")
        st.caption(f"Each {group}'s own Pareto frontier is drawn; dominated points are faded.")
        st.altair_chart(charts.compare_chart(points, group=group, y_title=charts.metric_title(task, name, lower)))
        common.downloads(points, f"compare_{group}s")

    sweep_ids = [s["sweep_id"] for s in opts["sweeps"]
                 if (group == "team" and (not items or s["team"] in items))
                 or (group == "sweep" and (not items or str(s["sweep_id"]) in items))]
    if len(sweep_ids) > TABLE_SWEEPS:
        st.caption(f"The model × task table reads the {TABLE_SWEEPS} newest of {len(sweep_ids)} sweeps; choose "
                   f"{group}s in the sidebar to pick others.")
        sweep_ids = sweep_ids[:TABLE_SWEEPS]
    task_table(url, tuple(sweep_ids), group)
    finished = {s["sweep_id"]: s["finished"] for s in opts["sweeps"]}
    current.update(difference(url, task, name, lower, sweep_names, items if group == "sweep" else [], finished))
    return current


def task_table(url, sweep_ids: tuple, group: str) -> None:
    st.subheader("Model × task")
    results = common.cached_results(url, sweep_ids) if sweep_ids else None
    if results is None or results.empty or "label" not in results:
        st.info("No runs in the chosen " + group + "s yet.")
        return
    if group == "sweep":
        results = results.assign(sweep="#" + results["sweep_id"].astype(str) + " " + results["sweep"].astype(str))
    names = compare.metric_names(results)
    if not names:
        st.info("The chosen runs have no metrics yet (still queued or running?).")
        return
    left, right = st.columns(2)
    view = common.view()
    metric = left.selectbox("metric", names, index=names.index("acc") if "acc" in names else 0, key="w_pivot_metric")
    labels = sorted(results.loc[results["status"].isin(["done", "cached"]), "label"].dropna().unique())
    if not labels:
        st.info("No run of the chosen " + group + "s has finished yet.")
        return
    fallback = "16bit" if "16bit" in labels else labels[0]
    start = view.get("config") if view.get("config") in labels else fallback
    label = right.selectbox("config", labels, index=labels.index(start), key="w_config")
    long, pivot = compare.task_table(results, metric, label, group)
    if pivot.empty:
        st.info(f"No finished {label} run has a {metric} metric.")
        return
    st.caption(f"Mean of {metric} over the {label} runs of each model; ± is the standard error of that mean.")
    common.table(pivot)
    common.downloads(long, "model_by_task")


def difference(url, task, name, lower, sweep_names: dict, items: list, finished: dict) -> dict:
    st.subheader("Difference between two sweeps")
    ids = list(sweep_names)
    if len(ids) < 2:
        st.info("Needs two sweeps; there is " + ("one." if ids else "none yet."))
        return {}
    view = common.view()
    # Default: the two chosen sweeps, else the two newest sweeps with finished runs (older one as A).
    with_results = [i for i in ids if finished.get(i)] + [i for i in ids if not finished.get(i)]
    pair = [int(i) for i in items[:2]] if len(items) >= 2 else with_results[1::-1]
    default_a, default_b = view.get("a") or pair[0], view.get("b") or pair[1]
    left, right = st.columns(2)
    a = left.selectbox("sweep A", ids, index=ids.index(default_a) if default_a in ids else 1,
                       format_func=sweep_names.get, key="w_a")
    b = right.selectbox("sweep B", ids, index=ids.index(default_b) if default_b in ids else 0,
                        format_func=sweep_names.get, key="w_b")
    diff = compare.sweep_difference(
        common.cached_frontier(url, task, name, sweeps=(a,)), common.cached_frontier(url, task, name, sweeps=(b,)), lower,
    )
    if diff.empty:
        st.info(f"Sweeps #{a} and #{b} share no (model, config) with {task}/{name}.")
        return {"a": a, "b": b}
    wins = int(diff["better"].sum())
    st.caption(f"{len(diff)} configs in both; B is better on {wins}, mean Δ (B − A) = {diff['delta'].mean():+.4f}"
               + (" (lower is better)" if lower else ""))
    st.altair_chart(charts.difference_chart(diff, x_title=f"Δ {task}/{name} (B − A)"))
    common.table(diff.drop(columns=["row"]))
    common.downloads(diff.drop(columns=["row"]), "sweep_difference")
    return {"a": a, "b": b}
