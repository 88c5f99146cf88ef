"""Builders for the db tests: run dicts as the cluster submits them, RunResult dicts as workers
report them, and the worker loops the multiprocess tests run in child processes."""

from __future__ import annotations

import os
import random

from kbit.kernels.config import QuantConfig

CONFIGS = [
    {"bits": 4, "dtype": "nf", "blocksize": 64, "exponent_bits": None, "outlier_fraction": 0.0},
    {"bits": 3, "dtype": "fp", "blocksize": 128, "exponent_bits": 2, "outlier_fraction": 0.0},
    {"bits": 8, "dtype": "int", "blocksize": None, "exponent_bits": None, "outlier_fraction": 0.02},
    {"bits": 16, "dtype": "none", "blocksize": None, "exponent_bits": None, "outlier_fraction": 0.0},
]
EVAL = {"tasks": ["kbit_lastword", "kbit_choice"], "num_fewshot": 0, "limit": None, "seed": 1234}


def make_run(i: int, model: str = "kbit/micro/a", *, config: dict | None = None, eval_spec: dict | None = None,
             family: str = "kbit-micro", revision: str = "main", cache_key: str | None = None) -> dict:
    config = config or CONFIGS[i % len(CONFIGS)]
    return {
        "model": model, "revision": revision, "family": family, "config": dict(config),
        "label": QuantConfig.from_dict(config).label(), "eval": dict(eval_spec or EVAL), "cache_key": cache_key or f"{model}|{revision}|{i}",
    }


def done_result(config: dict, value: float = 0.5, *, n_params: int = 1000, samples: list | None = None) -> dict:
    bits = config["bits"]
    bpp = bits + (16 / config["blocksize"] if config.get("blocksize") else 0.0)
    return {
        "config": config, "status": "done", "error_type": None, "error": None,
        "metrics": [
            {"task": "kbit_lastword", "metric": "acc", "value": value, "stderr": 0.01},
            {"task": "kbit_choice", "metric": "acc", "value": value / 2, "stderr": 0.02},
            {"task": "mean_zero_shot", "metric": "acc", "value": value * 0.75, "stderr": 0.011},
        ],
        "bits": {"n_params": n_params, "n_quantized": n_params - 100, "bits_per_param": bpp,
                 "total_bits": (n_params - 100) * bpp + 100 * 16},
        "wall_time_s": 1.5, "peak_memory_bytes": 12345, "device": "cpu",
        "provenance": {"kbit": "0.1.0", "seed": 1234},
        "samples": samples,
    }


def claim_until_empty(url: str, worker: str, seed: int) -> list[int]:
    """A worker process: claim small batches and complete them until the queue is empty."""
    from kbit.db import connect, queue, session_scope

    rng = random.Random(seed)
    engine = connect(url)
    claimed: list[int] = []
    while True:
        with session_scope(engine) as s:
            batch = queue.claim_runs(s, worker=worker, limit=rng.randint(1, 8), lease_seconds=300)
        if not batch:
            break
        claimed.extend(r.run_id for r in batch)
        with session_scope(engine) as s:
            for r in batch:
                queue.complete_run(s, r.run_id, done_result(r.config, value=r.run_id / 10_000), worker=worker)
    engine.dispose()
    return claimed


def claim_and_die(url: str, worker: str, limit: int) -> None:
    """A worker process that claims runs and dies without a word (no complete, no fail, no cleanup)."""
    from kbit.db import connect, queue, session_scope

    engine = connect(url)
    with session_scope(engine) as s:
        queue.claim_runs(s, worker=worker, limit=limit, lease_seconds=60)
    os._exit(1)


def connect_and_report(url: str) -> str | None:
    """A service process starting up: connect (which upgrades the schema) and return the revision."""
    from kbit.db import connect
    from kbit.db.migrate import current_revision

    engine = connect(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()
