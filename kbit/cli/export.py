"""`kbit results`: one row per run (config, bits, status, metrics) as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json

LEADING = ("run_id", "sweep_id", "sweep", "team", "model", "family", "label", "bits", "dtype", "blocksize",
           "exponent_bits", "outlier_fraction", "method", "status", "n_params", "bits_per_param", "total_bits")


def _cell(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else value


def to_csv(rows: list[dict]) -> str:
    """Columns: the leading ones above, then every other field, metric columns ("task/metric") last."""
    keys: list[str] = [k for k in LEADING if any(k in r for r in rows)]
    others, metrics = [], []
    for row in rows:
        for key in row:
            if key in keys or key in others or key in metrics:
                continue
            (metrics if "/" in key else others).append(key)
    columns = keys + others + sorted(metrics)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return out.getvalue()


def to_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2, sort_keys=True, default=str) + "\n"


def render(rows: list[dict], fmt: str) -> str:
    if fmt == "csv":
        return to_csv(rows)
    if fmt == "json":
        return to_json(rows)
    raise ValueError(f"unknown format {fmt!r}; use csv or json")
