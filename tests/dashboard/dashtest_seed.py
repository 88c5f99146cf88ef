"""A small database for the dashboard tests, written through kbit.db's queue API as the cluster
writes it: enqueue_sweep, claim_runs, complete_run / fail_run with RunResult.to_dict()-shaped dicts.

Contents (team nlp / team vision):
  sweep 1 "grid" (nlp): 3 model sizes x k in {3, 4, 8} x dtype {nf, int} x block {64, 256}, plus
    16-bit: every run done. Scores follow the paper: 4-bit wins at a fixed bit budget, nf beats
    int, block 64 beats 256 (see `score`).
  sweep 2 "repeat" (vision): nf4-b64 and 16-bit of the three models again with another seed
    (slightly higher scores), one run cached from sweep 1, one failed run, one done run without a
    bit report.
  sweep 3 "live" (nlp): 6 runs, 1 done, 2 running, 3 queued.
"""

from __future__ import annotations

import math

from kbit.db import connect, queue, session_scope, teams
from kbit.kernels.config import QuantConfig

MODELS = {"kbit/toy/s": 1_000_000, "kbit/toy/m": 4_000_000, "kbit/toy/l": 16_000_000}
TASKS = ("kbit_lastword", "kbit_choice")
EVAL = {"tasks": [*TASKS, "kbit_heldout"], "num_fewshot": 0, "limit": None, "seed": 1234}
K_PENALTY = {3: 0.08, 4: 0.004, 5: 0.002, 8: 0.0, 16: 0.0}


def config(bits: int, dtype: str = "nf", blocksize: int | None = 64) -> dict:
    if bits == 16:
        return {"bits": 16, "dtype": "none", "blocksize": None, "exponent_bits": None, "outlier_fraction": 0.0}
    return {"bits": bits, "dtype": dtype, "blocksize": blocksize, "exponent_bits": None, "outlier_fraction": 0.0}


def total_bits(n_params: int, cfg: dict) -> float:
    bpp = cfg["bits"] + (16 / cfg["blocksize"] if cfg["blocksize"] else 0.0)
    return n_params * bpp


def score(n_params: int, cfg: dict, bonus: float = 0.0) -> float:
    """Accuracy rising with model size; losses for low k, int, and big blocks (as in the paper)."""
    acc = 0.30 + 0.05 * math.log2(n_params / 1e6) - K_PENALTY[cfg["bits"]] + bonus
    if cfg["bits"] < 16:
        acc -= 0.01 * (cfg["dtype"] == "int") + 0.005 * (cfg["blocksize"] == 256)
    return round(acc, 6)


def result(n_params: int, cfg: dict, bonus: float = 0.0, with_bits: bool = True) -> dict:
    acc = score(n_params, cfg, bonus)
    bits = total_bits(n_params, cfg)
    metrics = [{"task": t, "metric": "acc", "value": acc + (0.02 if t == "kbit_choice" else 0.0), "stderr": 0.01}
               for t in TASKS]
    metrics.append({"task": "mean_zero_shot", "metric": "acc", "value": acc + 0.01,
                    "stderr": math.sqrt(2 * 0.01**2) / 2})
    metrics += [{"task": "kbit_heldout", "metric": "perplexity", "value": round(60 * (1.2 - acc), 4), "stderr": None},
                {"task": "kbit_heldout", "metric": "bits_per_byte", "value": round(2 * (1.2 - acc), 4), "stderr": None}]
    return {
        "config": cfg, "status": "done", "error_type": None, "error": None, "metrics": metrics,
        "bits": {"n_params": n_params, "n_quantized": n_params, "bits_per_param": bits / n_params,
                 "total_bits": bits} if with_bits else None,
        "wall_time_s": 2.0, "peak_memory_bytes": 10**7, "device": "cpu",
        "provenance": {"kbit": "0.1.0+test", "torch": "2.13", "seed": EVAL["seed"]}, "samples": None,
    }


def run(model: str, cfg: dict, eval_spec: dict = EVAL) -> dict:
    key = f"{model}|{sorted(cfg.items())}|{eval_spec['seed']}"
    return {"model": model, "revision": "main", "family": "kbit-toy", "config": cfg, "eval": eval_spec,
            "label": QuantConfig.from_dict(cfg).label(),
            "cache_key": key.replace(" ", "")[:128]}


def grid_configs() -> list[dict]:
    return [config(k, d, b) for k in (3, 4, 8) for d in ("nf", "int") for b in (64, 256)] + [config(16)]


def seed(url: str) -> dict:
    """Write the three sweeps; return their ids and a few run ids the tests look at."""
    engine = connect(url)
    info = {}
    with session_scope(engine) as s:
        teams.create_team(s, "nlp")
        teams.create_team(s, "vision")
        info["grid"] = queue.enqueue_sweep(
            s, team="nlp", name="grid", spec={"grid": 1}, runs=[run(m, c) for m in MODELS for c in grid_configs()])
    _finish_all(engine, lambda r: result(MODELS[r.model], r.config))

    repeat_eval = {**EVAL, "seed": 99}
    runs = [run(m, c, repeat_eval) for m in MODELS for c in (config(4), config(16))]
    runs.append(run("kbit/toy/s", config(8, "nf", 64)))  # same cache key as in "grid": cached
    runs.append(run("kbit/toy/m", config(3, "int", 64), repeat_eval))  # fails
    runs.append(run("kbit/toy/l", config(3, "nf", 256), repeat_eval))  # done, no bit report
    with session_scope(engine) as s:
        info["repeat"] = queue.enqueue_sweep(s, team="vision", name="repeat", spec={"repeat": 1}, runs=runs)

    def repeat_result(r):
        if r.config["bits"] == 3 and r.config["dtype"] == "int":
            return {**result(MODELS[r.model], r.config), "status": "failed", "error_type": "out_of_memory",
                    "error": "CUDA out of memory while quantizing; lower batch_size", "metrics": [], "bits": None}
        no_bits = r.config["bits"] == 3
        return result(MODELS[r.model], r.config, bonus=0.003, with_bits=not no_bits)

    _finish_all(engine, repeat_result)

    live_eval = {**EVAL, "seed": 7}
    with session_scope(engine) as s:
        info["live"] = queue.enqueue_sweep(s, team="nlp", name="live", spec={"live": 1},
                                           runs=[run("kbit/toy/s", c, live_eval) for c in grid_configs()[:6]])
    with session_scope(engine) as s:
        claimed = queue.claim_runs(s, worker="test-node:1", limit=3)
    with session_scope(engine) as s:
        queue.complete_run(s, claimed[0].run_id, result(MODELS[claimed[0].model], claimed[0].config), worker="test-node:1")
    info["first_run"] = 1
    engine.dispose()
    return info


def _finish_all(engine, make_result) -> None:
    while True:
        with session_scope(engine) as s:
            claimed = queue.claim_runs(s, worker="test-node:1", limit=64)
        if not claimed:
            return
        for r in claimed:
            with session_scope(engine) as s:
                queue.complete_run(s, r.run_id, make_result(r), worker="test-node:1")
