"""Checks a submitted run dict and turns it into a `runs` row: config copied into filter columns.

The database stores QuantConfig as plain data (db imports no other kbit part). The label shown on
the dashboard comes from the submitter (`run["label"]`, i.e. QuantConfig.label()); only when a
run names none is a label derived here from the config's fields.
"""

from __future__ import annotations

from kbit.db.util import canonical_json, sha256_hex

REQUIRED = ("model", "revision", "family", "config", "eval", "cache_key")


def run_problems(index: int, run) -> list[str]:
    """Every problem with one submitted run, as 'run N: ...' lines (empty when it is fine)."""
    if not isinstance(run, dict):
        return [f"run {index}: expected a dict with keys {', '.join(REQUIRED)}, got {type(run).__name__}"]
    problems = [f"run {index}: missing {key!r}" for key in REQUIRED if key not in run]
    for key in ("model", "revision", "family", "cache_key"):
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


def derived_label(config: dict) -> str:
    """'nf4-b64', 'fp4e3-b64', 'int3-bT', '16bit': the label format of QuantConfig.label()."""
    bits = config["bits"]
    if bits == 16:
        return "16bit"
    dtype = config.get("dtype", "int")
    name = f"fp{bits}e{config.get('exponent_bits')}" if dtype == "fp" else f"{dtype}{bits}"
    blocksize = config.get("blocksize")
    outliers = float(config.get("outlier_fraction") or 0.0)
    suffix = f"-o{outliers * 100:g}%" if outliers else ""
    return f"{name}-{'b' + str(blocksize) if blocksize else 'bT'}{suffix}"


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
        "label": run.get("label") or derived_label(config),
        "eval": run["eval"],
        "eval_hash": sha256_hex(canonical_json(run["eval"])),
        "cache_key": run["cache_key"],
    }
