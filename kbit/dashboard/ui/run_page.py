"""Run page: one run's config, bit report, every metric, provenance, error and timings."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from kbit.analysis import format_bits
from kbit.dashboard import export, tables
from kbit.dashboard.ui import common


def format_bytes(n) -> str | None:
    """'9.54 MiB (10,000,000 bytes)': binary units, the exact count beside them; None stays None."""
    if n is None:
        return None
    size, unit = float(n), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{int(n):,} bytes" if unit == "bytes" else f"{size:.2f} {unit} ({int(n):,} bytes)"


def render(url: str | None, opts: dict) -> dict:
    st.header("Run")
    start = common.view().get("run")
    run_id = st.number_input("run id", min_value=1, step=1, value=start, key="w_run",
                             placeholder="a run id (the other pages' tables and tooltips show them)")
    if run_id is None:
        st.info("Enter a run id. The Frontier page's tables link each point to its run.")
        return {}
    run_id = int(run_id)
    detail = common.cached_run(url, run_id)
    if detail is None:
        st.warning(f"Run {run_id} does not exist. Pick a run id from the Frontier or Queue page.")
        return {"run": run_id}

    st.subheader(f"#{run_id} {detail['model']} · {detail['label']} — {detail['status']}")
    st.caption(f"sweep #{detail['sweep_id']} {detail['sweep']} · team {detail['team']}"
               + (f" · result shared from run #{detail['cached_from']}" if detail.get("cached_from") else ""))
    if detail.get("error"):
        st.error(f"{detail.get('error_type') or 'error'}: {detail['error']}")
    bits = detail.get("bits_report")
    if bits:
        cols = st.columns(4)
        cols[0].metric("total bits", format_bits(bits["total_bits"]), help=f"{bits['total_bits']:,.0f} bits")
        cols[1].metric("bits / param", f"{bits['bits_per_param']:.3f}")
        cols[2].metric("params", f"{bits['n_params']:,}")
        cols[3].metric("quantized params", f"{bits['n_quantized']:,}")
    else:
        st.caption("No bit report (the run has not finished, or failed before quantizing).")

    if detail["status"] in tables.EXPORTABLE and detail.get("bits") != 16:
        st.markdown("**Take it home**: this run's k-bit model as a checkpoint (packed codes, scales, tokenizer, "
                    "manifest) that `kbit.kernels.load_quantized` loads; `--check` reproduces the scores below")
        st.code(tables.export_command(run_id, detail["label"]), language="bash")
    st.markdown("**Metrics**")
    metrics = pd.DataFrame(detail["metrics"], columns=["task", "metric", "value", "stderr"])
    if metrics.empty:
        st.caption("No metrics stored for this run.")
    else:
        common.table(metrics)
    left, right = st.columns(2)
    left.markdown("**Config**")
    left.json(detail.get("config") or {})
    left.markdown("**Evaluation**")
    left.json(detail.get("eval") or {})
    right.markdown("**Provenance**")
    right.json(detail.get("provenance") or {})
    right.markdown("**Timings**")
    timings = {k: detail.get(k) for k in ("created_at", "started_at", "finished_at", "wall_time_s",
                                          "peak_memory_bytes", "device", "worker", "attempts", "max_attempts")}
    timings["peak_memory_bytes"] = format_bytes(timings["peak_memory_bytes"])
    right.json(timings)
    st.download_button(f"run_{run_id}.json", export.detail_to_json(detail), file_name=f"run_{run_id}.json",
                       mime="application/json")
    if not metrics.empty:
        common.downloads(metrics, f"run_{run_id}_metrics")
    return {"run": run_id}
