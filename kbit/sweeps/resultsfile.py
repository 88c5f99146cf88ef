"""Reading a `kbit results --format json` file for `kbit results import`: every row checked
before anything is written, a bad row refused with the line of the file it starts on.

Finished rows (done or cached) become plain dicts the database layer writes as `done` runs
(kbit.db.importruns); unfinished rows are skipped and counted.
"""

from __future__ import annotations

import datetime as dt
import json
import math

from kbit import settings
from kbit.errors import UsageError
from kbit.kernels.config import QuantConfig

FINISHED = ("done", "cached")
MAX_PROBLEMS = 20


def rows_with_lines(text: str) -> list[tuple[int, object]]:
    """The elements of a JSON array with the line each starts on (UsageError when it is not one)."""
    decoder = json.JSONDecoder()
    try:
        start = text.index("[")
    except ValueError:
        raise UsageError("the file is not a JSON array of runs; write one with `kbit results --format json`") from None
    if text[:start].strip():
        raise UsageError("the file is not a JSON array of runs; write one with `kbit results --format json`")
    out, pos = [], start + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise UsageError("the JSON array of runs is not closed (a truncated file?)")
        if text[pos] == "]":
            return out
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise UsageError(f"line {exc.lineno}: not valid JSON ({exc.msg})") from None
        out.append((text.count("\n", 0, pos) + 1, value))
        pos = end


def _number(row: dict, key: str, positive: bool = False) -> float:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key}={value!r} is not a number")
    if positive and value <= 0:
        raise ValueError(f"{key}={value!r} must be positive")
    return float(value)


def _time(value):
    if value in (None, ""):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"time {value!r} is not an ISO 8601 date") from None


def bit_report(row: dict) -> dict | None:
    """The run's bit report, or None when the run has none (all four fields empty)."""
    if all(row.get(key) is None for key in settings.BIT_FIELDS):
        return None
    bits = {key: _number(row, key) for key in settings.BIT_FIELDS}
    if bits["total_bits"] <= 0 or bits["n_params"] <= 0 or not 0 <= bits["n_quantized"] <= bits["n_params"]:
        raise ValueError("n_params and total_bits must be positive and n_quantized within 0..n_params")
    bits["n_params"], bits["n_quantized"] = int(bits["n_params"]), int(bits["n_quantized"])
    return bits


def checked_row(row) -> dict:
    """A finished exported run as the fields to store (ValueError naming the first problem)."""
    if not isinstance(row, dict):
        raise ValueError("is not a JSON object")
    model = row.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError(f"model={model!r} is not a model id")
    config_fields = row.get("config") or {
        **{k: row.get(k) for k in ("bits", "dtype", "blocksize", "exponent_bits", "outlier_fraction")},
        **({"method": row["method"]} if row.get("method") is not None else {}),  # files from before GPTQ have none
    }
    if not isinstance(config_fields, dict):
        raise ValueError(f"config={config_fields!r} is not an object")
    config = QuantConfig.from_dict(config_fields)
    if row.get("label") not in (None, config.label()):
        raise ValueError(f"label {row['label']!r} does not match its config ({config.label()})")
    bits = bit_report(row)
    metrics = []
    for key, value in row.items():
        if "/" not in key or key.endswith("_stderr") or value is None:
            continue
        task, metric = key.split("/", 1)
        stderr = row.get(f"{key}_stderr")
        metrics.append({"task": task, "metric": metric, "value": _number(row, key),
                        "stderr": None if stderr is None else _number(row, f"{key}_stderr")})
    if not metrics:
        raise ValueError("has no metric (no 'task/metric' field)")
    evaluation = row.get("eval") or {}
    if not isinstance(evaluation, dict):
        raise ValueError(f"eval={evaluation!r} is not an object")
    return {
        "model": model, "revision": str(row.get("revision") or "main"), "family": str(row.get("family") or "imported"),
        "config": config.to_dict(), "label": config.label(), "eval": evaluation, "bits": bits, "metrics": metrics,
        "created_at": _time(row.get("created_at")), "started_at": _time(row.get("started_at")),
        "finished_at": _time(row.get("finished_at")), "wall_time_s": row.get("wall_time_s"),
        "peak_memory_bytes": row.get("peak_memory_bytes"), "device": row.get("device"),
        "original_run_id": row.get("run_id"),
    }


def check_rows(text: str) -> tuple[list[dict], int]:
    """(the finished runs to import, the number of unfinished rows skipped); UsageError listing
    every bad row (by line) when any is bad."""
    runs, skipped, problems = [], 0, []
    for line, row in rows_with_lines(text):
        if isinstance(row, dict) and row.get("status") not in FINISHED:
            skipped += 1
            continue
        try:
            runs.append(checked_row(row))
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
    if problems:
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise UsageError("nothing imported; fix these runs:\n  " + "\n  ".join(problems[:MAX_PROBLEMS]) + more)
    if not runs:
        raise UsageError("the file has no finished run (status done or cached) to import")
    return runs, skipped
