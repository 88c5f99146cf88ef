"""Compare page: two teams or sweeps compared at equal bits (which is better, by how much, with what
confidence: kbit.analysis.teams, the report's `--compare` numbers), every config accounted for
(pairs both ran, configs only one side ran, runs shared through the cache), the groups side by side
on the same axes, and a model x task table of one metric (mean ± stderr)."""

from __future__ import annotations

import streamlit as st

from kbit.analysis import frontier
from kbit.dashboard import charts, compare
from kbit.dashboard.ui import common

TABLE_SWEEPS = 10  # the model x task table reads every run of its sweeps: bounded so the page stays quick
cached_sides = st.cache_data(ttl=common.TTL, show_spinner="Comparing at equal bits ...")(compare.side_comparison)


def render(url: str | None, opts: dict) -> dict:
    st.header("Compare teams and sweeps")
    metric = common.metric_picker(opts["metrics"])
    group = common.pick_one("compare", "group", ["team", "sweep"], fmt=lambda g: f"{g}s")
    sweep_names = {s["sweep_id"]: f"#{s['sweep_id']} {s['name']} ({s['team']})" for s in opts["sweeps"]}
    if group == "team":
        choices, fmt = opts["teams"], str
    else:
        choices, fmt = [str(i) for i in sweep_names], lambda i: sweep_names[int(i)]
    items = common.pick_many(f"{group}s to compare", "items", choices, fmt=fmt,
                             help="the first two are compared as A and B; empty = all")
    every = st.sidebar.toggle("every config on the chart", key="w_every",
                              help="off: each group's best config per k and model; on: every config of every model")
    filters_view, filters = common.run_filters(opts)
    current = {"metric": metric, "group": group, "items": items, **filters_view}
    for problem in conflicts(group, items, filters_view, opts):
        st.warning(problem)
    if metric is None:
        st.info(common.EMPTY_HELP)
        return current
    task, name = metric.split("/", 1)
    lower = frontier.lower_is_better(name)
    key = "teams" if group == "team" else "sweeps"
    picked = tuple(items) if group == "team" else tuple(int(i) for i in items)
    filters = tuple((k, picked or v if k == key else v) for k, v in filters)

    finished = {s["sweep_id"]: s["finished"] for s in opts["sweeps"]}
    sides, chosen = pick_sides(group, items, filters_view, opts["teams"], sweep_names, finished)
    current.update(chosen)
    order = []
    if sides:
        # The chart's names for the two sides (cached_points names a sweep '#3 name'), so A and B keep their colours.
        chart_names = {s["sweep_id"]: f"#{s['sweep_id']} {s['name']}" for s in opts["sweeps"]}
        order = [chart_names[int(s)] if group == "sweep" else s for s in sides]
        verdict(url, task, name, group, sides, order, filters)

    st.subheader("Side by side")
    result = common.cached_points(url, task, name, filters, "label" if every else "bits", (group,), lower, group=group)
    points = result["points"]
    if points.empty:
        st.info(f"No finished run has {metric} (with a bit report) for these {group}s and filters.")
    else:
        if points[group].nunique() < 2:
            st.caption(f"Only one {group} has results under these filters; pick more to compare.")
        drawn = "every config of each model" if every else "per k and model the best config; turn on 'every config on the chart' for all"
        st.caption(f"{result['n_runs']:,} runs → {len(points):,} points drawn ({drawn}; repeat runs of a config "
                   f"averaged). Each {group}'s own Pareto frontier is a line; its dominated points are faded in its colour."
                   + (f" {result['n_unplottable']} run(s) without a bit report are left out." if result["n_unplottable"] else ""))
        st.altair_chart(charts.compare_chart(points, group=group, y_title=charts.metric_title(task, name, lower), order=order))
        common.updating_note(result)
        common.downloads(points, f"compare_{group}s")
    runs = common.cached_frontier(url, task, name, **dict(filters))
    with st.expander(f"All {len(runs):,} runs (every run reachable; reused runs name their source)"):
        common.table(common.with_run_links(compare.runs_table(runs)), column_config={"run": common.run_link_column()})

    sweep_ids = [s["sweep_id"] for s in opts["sweeps"]
                 if (group == "team" and (not items or s["team"] in items))
                 or (group == "sweep" and (not items or str(s["sweep_id"]) in items))]
    if len(sweep_ids) > TABLE_SWEEPS:
        st.caption(f"The model × task table reads the {TABLE_SWEEPS} newest of {len(sweep_ids)} sweeps; choose "
                   f"{group}s in the sidebar to pick others.")
        sweep_ids = sweep_ids[:TABLE_SWEEPS]
    task_table(url, tuple(sweep_ids), group)
    return current


def conflicts(group: str, items: list, filters_view: dict, opts: dict) -> list[str]:
    """Sidebar filters that leave out what the page was asked to compare."""
    out = []
    teams, sweeps = filters_view.get("team") or [], filters_view.get("sweep") or []
    if group == "team" and items and teams and set(teams) != set(items):
        out.append(f"The sidebar's team filter ({', '.join(teams)}) conflicts with the compared teams "
                   f"({', '.join(items)}): the page compares {', '.join(items)}. Clear the team filter, or choose "
                   "the teams under 'teams to compare'.")
    if group == "sweep" and items:
        if sweeps and set(sweeps) != {int(i) for i in items}:
            out.append(f"The sidebar's sweep filter ({', '.join(f'#{i}' for i in sweeps)}) conflicts with the compared "
                       f"sweeps ({', '.join(f'#{i}' for i in items)}): the page compares the latter.")
        team_of = {str(s["sweep_id"]): s["team"] for s in opts["sweeps"]}
        left_out = [i for i in items if teams and team_of.get(i) not in teams]
        if left_out:
            out.append(f"The sidebar's team filter ({', '.join(teams)}) leaves out the compared sweep(s) "
                       + ", ".join(f"#{i} (team {team_of.get(i)})" for i in left_out) + ". Clear the team filter.")
    return out


def pick_sides(group: str, items: list, filters_view: dict, teams: list, sweep_names: dict, finished: dict):
    """(the two compared teams or sweep ids as A and B, or None; the URL keys it sets)."""
    if group == "team":
        candidates = items or filters_view.get("team") or teams
        if len(candidates) != 2:
            st.info(f"Choose two teams under 'teams to compare' for a verdict ({len(candidates)} chosen now).")
            return None, {}
        return list(candidates), {}
    ids = list(sweep_names)
    if len(ids) < 2:
        st.info("Comparing sweeps needs two; there is " + ("one." if ids else "none yet."))
        return None, {}
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
    if a == b:
        st.info("Sweeps A and B are the same; choose two different sweeps.")
        return None, {"a": a, "b": b}
    return [a, b], {"a": a, "b": b}


def verdict(url, task, name, group: str, sides: list, order: list, filters: tuple) -> None:
    """The comparison of A and B: verdicts at equal bits, the pairs both ran, what only one ran."""
    key = "teams" if group == "team" else "sweeps"
    others = tuple((k, v) for k, v in filters if k != key)
    c = cached_sides(url, task, name, compare.side_key(group, sides[0]), compare.side_key(group, sides[1]), others)
    a, b = c.a.name, c.b.name
    st.subheader(f"{a} (A) against {b} (B)")
    if c.runs.empty:
        st.info(f"Neither {a} nor {b} has a finished run with {task}/{name} under these filters.")
        return
    overall = c.overall
    line = f"At equal bits: **{c.text(overall['verdict'], overall['delta'])}**"
    if overall["delta"] is not None:
        line += (f", Δ (B − A) {overall['delta'].value:+.4f} [95%: {overall['delta'].low:+.4f}, "
                 f"{overall['delta'].high:+.4f}] over {overall['n_budgets']} budgets both cover")
    st.markdown(line + ".")
    st.caption(
        "Each side's best config at each budget of total bits (chosen on half the documents, scored on the other), "
        "as the Frontier page compares precisions; Δ is B − A in the metric's units"
        + (" (lower is better, so a negative Δ favours B)" if c.lower else "")
        + ". A side is named better only when the 95% interval excludes zero; otherwise undecided. "
        "Runs reused from the cache are their source's measurement: a pair of them is shared, never agreement."
    )
    common.table(compare.verdict_table(c))
    st.markdown(f"**Configs both ran** ({c.matched['n']}): {a} better on {c.matched['A better']}, {b} better on "
                f"{c.matched['B better']}, undecided on {c.matched['undecided']}, shared (one cached run) on "
                f"{c.matched['same runs']}.")
    pairs = compare.pairs_table(c)
    if not pairs.empty:
        colors = charts.group_colors(order)
        by_verdict = {f"{side} better": colors[o] for side, o in zip((a, b), order)}
        st.altair_chart(charts.difference_chart(compare.difference_frame(c), x_title=f"Δ {task}/{name} (B − A)",
                                                colors=by_verdict))
        common.table(pairs)
        common.downloads(pairs, "compared_pairs")
    left, right = st.columns(2)
    for where, side, label in ((left, "a", f"Only in A ({a})"), (right, "b", f"Only in B ({b})")):
        only = c.only[side]
        where.markdown(f"**{label}**: configs {', '.join(only['configs']) or 'none'}; "
                       f"models {', '.join(only['models']) or 'none'}")
        if not only["cells"].empty:
            where.dataframe(common.for_display(only["cells"]), hide_index=True)
    shared = c.runs[c.runs["shared"] & c.runs["cached_from"].notna()]
    if not shared.empty:
        st.caption(f"{len(shared)} run(s) of one side are cached copies of the other's: "
                   + ", ".join(f"#{r.run_id} ({r.label}, {r.model}) cached from run #{r.cached_from}"
                               for r in shared.itertuples()) + ".")


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
