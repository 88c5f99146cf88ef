"""Streamlit plumbing shared by the pages: cached loaders, the view kept in the URL, the filter
widgets and the export buttons. Thin: the work is in kbit.dashboard.data / frontier / charts."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import streamlit as st

from kbit import settings
from kbit.analysis import frontier
from kbit.dashboard import data, export, urlstate, warm

# Seconds a cached query stays fresh: short, so new results appear without a restart.
TTL = settings.dashboard_ttl_seconds()
EMPTY_HELP = (
    "No finished runs in the database yet. Run `kbit demo` for a small end-to-end sweep, or submit "
    "your own with `kbit submit examples/demo.yaml --team <team>`; results appear here as runs finish."
)


def database_url() -> str | None:
    """The database the dashboard reads: $KBIT_DATABASE_URL, else kbit.db's default (SQLite under $KBIT_HOME)."""
    return settings.database_url_given()


cached_options = st.cache_data(ttl=TTL, show_spinner=False)(data.options)
cached_sweeps = st.cache_data(ttl=2, show_spinner=False)(data.sweeps)  # the Queue page is live
cached_failed = st.cache_data(ttl=2, show_spinner=False)(data.failed_runs)
cached_results = st.cache_data(ttl=TTL, show_spinner="Loading runs ...")(data.results)
cached_frontier = st.cache_data(ttl=TTL, show_spinner="Loading runs ...")(data.frontier)
cached_run = st.cache_data(ttl=TTL, show_spinner=False)(data.run)
# The two views of many runs: computed once per set of runs and kept in the database (data.points,
# data.analysis); Streamlit keeps only their small answers, for the warm page.
_analysis = st.cache_data(ttl=TTL, show_spinner="Comparing precisions at equal bits ...")(data.analysis)
_points = st.cache_data(ttl=TTL, show_spinner="Computing the frontier ...")(data.points)


def cached_analysis(*args, **kwargs) -> dict:
    """data.analysis, cached by Streamlit while it is the current runs' answer."""
    return _current_kept(_analysis, *args, **kwargs)


def cached_points(*args, **kwargs) -> dict:
    """data.points, cached by Streamlit while it is the current runs' answer."""
    return _current_kept(_points, *args, **kwargs)


def _current_kept(cached, *args, **kwargs) -> dict:
    # A view's previous answer, shown while its current one is computed, is not kept: the next
    # visit reads the database again and finds the new answer once it is stored.
    answer = cached(*args, **kwargs)
    if answer["updating"] is not None:
        cached.clear(*args, **kwargs)
    return answer


@st.cache_resource(show_spinner=False)
def warming(url: str | None) -> threading.Thread | None:
    """The thread that computes the pages of the newest finished sweeps and their families before
    they are asked for (kbit.dashboard.warm): one per dashboard process and database; None when
    turned off."""
    if not settings.dashboard_warm_sweeps():
        return None
    thread = threading.Thread(target=warm.keep_warm, args=(url, TTL), name="kbit-warm", daemon=True)
    thread.start()
    return thread


def updating_note(*answers: dict) -> bool:
    """Say so when an answer shown is its view's previous one (stored.stored's `updating`), with a
    button that reloads the page; whether one is."""
    updating = next((a["updating"] for a in answers if a["updating"] is not None), None)
    if updating is None:
        return False
    st.info(f"Updating: this page shows the answer computed from {updating['runs']:,} finished runs; "
            f"{updating['now']:,} pass these filters now. The new answer is being computed and stored; "
            "reload the page in a few seconds to see it."
            + (f" The last try failed ({updating['failed']}); reloading tries again." if updating["failed"] else ""))
    st.button("Reload", key="reload_updated")
    return True


def view() -> dict:
    """The view this session started from (the URL's query parameters, read once per session)."""
    if "_url_view" not in st.session_state:
        params = st.query_params.to_dict()
        decoded, problems = urlstate.decode(params)
        st.session_state["_url_params"] = params
        st.session_state["_url_view"] = decoded
        st.session_state["_url_problems"] = problems
    return st.session_state["_url_view"]


def url_problems() -> list[str]:
    return st.session_state.get("_url_problems", [])


def unused_url_params(current: dict) -> list[str]:
    """The link's parameters that the page on screen does not read (e.g. ?k= on the Scaling page)."""
    return urlstate.unused(st.session_state.get("_url_params", {}), set(current))


def publish(current: dict) -> None:
    """Write the view on screen into the URL, so the address bar is a link to it."""
    params = urlstate.encode(current)
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)


def pick_many(label: str, key: str, choices: list, fmt=str, help: str | None = None) -> list:
    """A multiselect whose first value comes from the URL (`key`); empty means all."""
    start = [v for v in view().get(key, []) if v in choices]
    missing = [v for v in view().get(key, []) if v not in choices]
    if missing and st.session_state.get(f"w_{key}") is None:
        st.warning(f"Link: {label} {', '.join(map(str, missing))} not found in the database; ignored.")
    return st.sidebar.multiselect(label, choices, default=start, format_func=fmt, key=f"w_{key}", help=help,
                                  placeholder="all")


def pick_one(label: str, key: str, choices: list, fallback=None, fmt=str, where=None, **kwargs):
    """A selectbox starting at the URL's value (`key`), else `fallback` (a value, or a list of them
    in order of preference), else the first choice. A URL value that is not a choice is reported."""
    where = where or st.sidebar
    if not choices:
        return None
    start = view().get(key)
    if start not in choices:
        preferred = [v for v in (fallback if isinstance(fallback, (list, tuple)) else [fallback]) if v in choices]
        shown = preferred[0] if preferred else choices[0]
        if start is not None and st.session_state.get(f"w_{key}") is None:
            st.warning(f"Link: {label} {start} not found in the database; showing {fmt(shown)} instead.")
        start = shown
    return where.selectbox(label, choices, index=choices.index(start), format_func=fmt, key=f"w_{key}", **kwargs)


def metric_picker(metrics: list[str], where=None) -> str | None:
    """Which task/metric the page plots: by default the first of urlstate.DEFAULT_METRICS the
    database has (held-out bits per byte, as in README's picture, else mean zero-shot accuracy)."""
    return pick_one(
        "metric", "metric", metrics, fallback=urlstate.default_metric(metrics), where=where,
        help="task/metric; perplexity and bits-per-byte are lower-is-better",
    )


def run_filters(opts: dict, *, with_bits: bool = True) -> tuple[dict, tuple]:
    """The sidebar filters: team, sweep, family, dtype, block size, rounding method, k.

    Returns (the URL view of the filters, the hashable filter tuple for data.frontier).
    """
    st.sidebar.markdown("**Filters** (empty = all)")
    teams = pick_many("team", "team", opts["teams"])
    sweeps = [s for s in opts["sweeps"] if not teams or s["team"] in teams]
    names = {s["sweep_id"]: f"#{s['sweep_id']} {s['name']} ({s['team']})" for s in sweeps}
    chosen_sweeps = pick_many("sweep", "sweep", list(names), fmt=lambda i: names.get(i, str(i)))
    families = pick_many("model family", "family", opts["families"])
    dtypes = pick_many("data type", "dtype", opts["dtypes"])
    blocks = pick_many("block size", "block", frontier.block_order(frontier.block_label(b) for b in opts["blocksizes"]))
    methods = pick_many("rounding method", "method", opts["methods"],
                        help="rtn: round to nearest; gptq: GPTQ from calibration text (16-bit runs count as rtn)")
    bits = pick_many("k (bits)", "k", opts["bits"]) if with_bits else []
    url_view = {"team": teams, "sweep": chosen_sweeps, "family": families, "dtype": dtypes, "block": blocks,
                "method": methods}
    if with_bits:
        url_view["k"] = bits
    blocksizes = [None if b == frontier.PER_TENSOR else int(b[1:]) for b in blocks]
    filters = data.view_filters(teams=teams, sweeps=chosen_sweeps, families=families, dtypes=dtypes,
                                blocksizes=blocksizes, bits=bits, methods=methods)
    return url_view, filters


# One format per number column, so a column never mixes 0.005 with 0.0049: (st.column_config
# format, the same in Python for st.table). Whole numbers get thousands separators.
DECIMALS = ("%.4f", "{:.4f}")
WHOLE = ("localized", "{:,.0f}")
SIGNED = ("%+.4f", "{:+.4f}")  # margins: the sign is the point
MISSING = "–"


def number_format(values: pd.Series) -> tuple[str, str]:
    """DECIMALS, or WHOLE for a column of whole numbers (counts, bits) or of numbers of 1000 and up."""
    finite = values[np.isfinite(values.astype(float))]
    if len(finite) and ((finite == finite.round()).all() or finite.abs().max() >= 1000):
        return WHOLE
    return DECIMALS


def for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as a table shows it: a missing value in a text column is an empty cell, never
    Streamlit's grey "None" (number columns keep their gaps: `table` shows them as '–')."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.isna().any() and not pd.api.types.is_numeric_dtype(values):
            out[column] = [("" if v is None or (not isinstance(v, (list, dict)) and pd.isna(v)) else v)
                           for v in values.astype(object)]
    return out


def number_columns(frame: pd.DataFrame, column_config: dict | None = None) -> dict:
    """column_config with a NumberColumn of one format (number_format) for every float column the
    caller did not configure."""
    config = dict(column_config or {})
    for column in frame.columns:
        if column not in config and pd.api.types.is_float_dtype(frame[column]):
            config[column] = st.column_config.NumberColumn(format=number_format(frame[column])[0])
    return config


def table(frame: pd.DataFrame, column_config: dict | None = None, **kwargs) -> None:
    """st.dataframe of for_display(frame), without the index, each number column in one format
    and a missing number shown as '–'."""
    st.dataframe(for_display(frame), hide_index=True, column_config=number_columns(frame, column_config),
                 placeholder=MISSING, **kwargs)


def whole_table(frame: pd.DataFrame, formats: dict | None = None) -> None:
    """A table shown whole (every row and column, long text wrapped; no scrolling inside it):
    st.table, each number column in one format (`formats`: column -> format string or function;
    else number_format), a missing value shown as '–'."""
    formats = {c: f for c, f in (formats or {}).items() if c in frame}
    # a column given a number format is numbers (an all-None column comes as objects)
    frame = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce") for c in formats})
    for column in frame.columns:
        if column not in formats and pd.api.types.is_float_dtype(frame[column]):
            formats[column] = number_format(frame[column])[1]
    styled = for_display(frame).style.format(formats, na_rep=MISSING).hide(axis="index")
    st.table(styled)


def downloads(frame: pd.DataFrame, name: str, where=None) -> None:
    """CSV and JSON download buttons for a table on the page."""
    where = where or st
    left, right = where.columns(2)
    left.download_button(f"{name}.csv", export.to_csv(frame), file_name=f"{name}.csv", mime="text/csv",
                         key=f"csv_{name}")
    right.download_button(f"{name}.json", export.to_json(frame), file_name=f"{name}.json",
                          mime="application/json", key=f"json_{name}")


def run_link_column() -> st.column_config.LinkColumn:
    """A table column of links to the Run page."""
    return st.column_config.LinkColumn("run", display_text=r"\?page=run&run=(\d+)")


def with_run_links(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with a `run` column linking each row's run_id to the Run page."""
    if "run_id" not in frame:
        return frame
    return frame.assign(run="?page=run&run=" + frame["run_id"].astype("Int64").astype(str))
