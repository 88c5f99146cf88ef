"""Two teams with a known answer, for the team comparison (page and `kbit report --compare`),
written through kbit.db's queue API like dashtest_seed (whose configs, runs and results it reuses),
with per-document scores so the comparison uses the paired bootstrap over documents.

  team nlp (A), sweep "nlp-grid": nf4-b64, nf3-b64, int4-b64, int8-b64 on the three toy models.
  team vision (B), sweep "vision-grid", submitted after nlp's finished:
    nf4-b64 re-measured (another eval seed): GAIN better than nlp's on every model;
    nf3-b64 with nlp's eval: the same cache key, so the 3 runs are cached from nlp's (shared);
    fp4-b64 and nf4-b128: vision's own configs;
    and model kbit/toy/xl (only vision ran it), nf4-b64 only.
So at equal bits vision is better (decided), nf3-b64 is shared, int4-b64 and int8-b64 are only
nlp's, fp4-b64 and nf4-b128 only vision's, and kbit/toy/xl is only vision's model.
"""

from __future__ import annotations

import math

import numpy as np
from dashtest_seed import EVAL, MODELS, TASKS, _finish_all, config, result, run

from kbit.db import connect, queue, session_scope, teams

GAIN = 0.05
N_DOCS = 400
TEAM_MODELS = {**MODELS, "kbit/toy/xl": 64_000_000}
NLP = [config(4, "nf", 64), config(3, "nf", 64), config(4, "int", 64), config(8, "int", 64)]
VISION_OWN = [config(4, "fp", 64), config(4, "nf", 128)]
VISION_EVAL = {**EVAL, "seed": 4321}


def accuracy(n_params: int, cfg: dict, team: str) -> float:
    """Rises with model size; 3-bit far behind; int and fp4 a little behind nf; vision's nf4 GAIN ahead."""
    acc = 0.45 + 0.05 * math.log2(n_params / 1e6) - {3: 0.08, 4: 0.0, 8: 0.0}[cfg["bits"]]
    acc -= {"nf": 0.0, "int": 0.02, "fp": 0.01}[cfg["dtype"]] + 0.005 * (cfg["blocksize"] == 128)
    if team == "vision" and cfg["bits"] == 4 and cfg["dtype"] == "nf" and cfg["blocksize"] == 64:
        acc += GAIN
    return acc


def scored_result(model: str, cfg: dict, team: str) -> dict:
    """dashtest_seed's result with per-document 0/1 scores behind every accuracy: a document is
    right when its difficulty (the same for every run of a model) is below the run's accuracy."""
    n_params = TEAM_MODELS[model]
    out = result(n_params, cfg)
    difficulty = np.random.default_rng(sum(map(ord, model))).random(N_DOCS)
    acc = accuracy(n_params, cfg, team)
    scores, metrics = [], []
    for i, task in enumerate(TASKS):
        values = (difficulty < acc + 0.02 * i).astype(float)
        scores.append({"task": task, "metric": "acc", "doc_ids": list(range(N_DOCS)), "values": values.tolist(),
                       "weights": None})
        metrics.append({"task": task, "metric": "acc", "value": float(values.mean()),
                        "stderr": float(values.std(ddof=1) / math.sqrt(N_DOCS))})
    mean = sum(m["value"] for m in metrics) / len(metrics)
    stderr = math.sqrt(sum(m["stderr"] ** 2 for m in metrics)) / len(metrics)
    metrics.append({"task": "mean_zero_shot", "metric": "acc", "value": mean, "stderr": stderr})
    return {**out, "metrics": metrics, "scores": scores}


def seed_teams(url: str) -> dict:
    """Write both teams' sweeps; return the sweep ids."""
    engine = connect(url)
    with session_scope(engine) as s:
        teams.create_team(s, "nlp")
        teams.create_team(s, "vision")
        nlp = queue.enqueue_sweep(s, team="nlp", name="nlp-grid", spec={"nlp": 1},
                                  runs=[run(m, c) for m in MODELS for c in NLP])
    _finish_all(engine, lambda r: scored_result(r.model, r.config, "nlp"))
    runs = [run(m, c, VISION_EVAL) for m in MODELS for c in (config(4, "nf", 64), *VISION_OWN)]
    runs += [run(m, config(3, "nf", 64)) for m in MODELS]  # nlp's cache keys: cached
    runs.append(run("kbit/toy/xl", config(4, "nf", 64), VISION_EVAL))
    with session_scope(engine) as s:
        vision = queue.enqueue_sweep(s, team="vision", name="vision-grid", spec={"vision": 1}, runs=runs)
    _finish_all(engine, lambda r: scored_result(r.model, r.config, "vision"))
    engine.dispose()
    return {"nlp": nlp, "vision": vision}
