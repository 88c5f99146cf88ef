"""Checks a submitted run dict (`kbit.sweeps.expand_runs` makes them) and turns it into a `runs`
row: the config copied into the columns the dashboard filters on.

The database stores QuantConfig as plain data (db imports no torch and no kernels): the label
comes from the submitter (`QuantConfig.label()`), never re-derived here.
"""

from __future__ import annotations

import hashlib
import json

REQUIRED = ("model", "revision", "family", "config", "label", "eval", "cache_key")


def canonical_json(data) -> str:
    """One string per value: sorted keys, no whitespace (so equal dicts hash equal)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run_problems(index: int, run) -> list[str]:
    """Every problem with one submitted run, as 'run N: ...' lines (empty when it is fine)."""
    if not isinstance(run, dict):
        return [f"run {index}: expected a dict with keys {', '.join(REQUIRED)}, got {type(run).__name__}"]
    problems = [f"run {index}: missing {key!r}" for key in REQUIRED if key not in run]
    for key in ("model", "revision", "family", "label", "cache_key"):
        if key in run and (not isinstance(run[key], str) or not run[key]):
            problems.append(f"run {index}: {key!r} must be a non-empty string, got {run[key]!r}")
    for key in ("config", "eval"):
        if key in run and not isinstance(run[key], dict):
            problems.append(f"run {index}: {key!r} must be a dict, got {type(run[key]).__name__}")
    config = run.get("config")
    if isinstance(config, dict):
        bits = config.get("bits")
        if not isinstance(bits, int) or isinstance(bits, bool):
            problems.append(f"run {index}: config['bits'] must be an int (QuantConfig.to_dict()), got {bits!r}")
    if isinstance(run.get("cache_key"), str) and len(run["cache_key"]) > 128:
        problems.append(f"run {index}: cache_key is longer than 128 characters; use a hex digest")
    return problems


def run_row(run: dict) -> dict:
    """The column values of a new run (status, sweep and timing columns are added by the caller)."""
    config = run["config"]
    return {
        "model": run["model"],
        "revision": run["revision"],
        "family": run["family"],
        "config": config,
        "bits": config["bits"],
        "dtype": config.get("dtype") or ("none" if config["bits"] == 16 else "int"),
        "blocksize": config.get("blocksize"),
        "exponent_bits": config.get("exponent_bits"),
        "outlier_fraction": float(config.get("outlier_fraction") or 0.0),
        "method": config.get("method") or "rtn",  # configs from before GPTQ have no method
        "label": run["label"],
        "eval": run["eval"],
        "eval_hash": sha256_hex(canonical_json(run["eval"])),
        "cache_key": run["cache_key"],
    }
