"""Each run's score under resampled documents: the noise model every verdict rests on.

`run_draws` gives, for every run, an array of shape (3, R + 1): row FULL is the score on all
documents, rows HALF_A and HALF_B the scores on two fixed halves of the documents (a config is
chosen on one half and scored on the other, so a precision tried in more configs does not win by
selection); column 0 is the observed data, columns 1..R bootstrap replicates.

Runs with per-document scores (`kbit.db.queries.document_scores`) are resampled over documents.
Every model of a family scores the same documents of a task, so one replicate gives each document
one count for every run of every model size (a paired bootstrap across configs and sizes: a
document that happens to be easy is easy for every curve at once). The counts are a Poisson
bootstrap keyed by document id (count ~ Poisson(1) per document and replicate), so two runs agree on
a document's count even when they scored different subsets. Runs without per-document scores
(imported or old results) fall back to a normal draw around their value with their reported stderr,
each run independently (which overstates the noise of a difference between two configs: conservative).
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np
import pandas as pd

FULL, HALF_A, HALF_B = 0, 1, 2
DOCUMENTS, STDERR, NO_NOISE = "documents", "stderr", "none"
# Draws are computed in float64 and kept in float32: 12,100 configs x 3 rows x 4,001 replicates
# is 0.6 GB so, 1.2 GB in float64; margins are read to 1e-4, float32 holds 1e-7 of a score.
DRAW_DTYPE = np.float32
RUN_CHUNK = 64  # runs per step of document_draws: its float64 working arrays stay ~25 MB


def metric_tasks(metric: str) -> str:
    """'kbit_heldout/bits_per_byte' -> 'kbit_heldout'; 'mean_zero_shot/acc' -> 'mean_zero_shot'."""
    return metric.split("/", 1)[0] if "/" in metric else ""


def _seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def halves(doc_ids: np.ndarray, seed: int) -> np.ndarray:
    """A boolean mask (True: half A) over `doc_ids`: each document id gets a seeded random key and
    the lower half of the keys is half A, so the split follows no order in the data set, is exactly
    balanced, and puts a document in the same half for every run that scored the same documents."""
    doc_ids = np.asarray(doc_ids, dtype=np.int64)
    in_a = np.zeros(len(doc_ids), dtype=bool)
    if len(doc_ids):
        keys = np.random.default_rng(seed).random(int(doc_ids.max()) + 1)[doc_ids]
        in_a[np.argsort(keys, kind="stable")[: (len(doc_ids) + 1) // 2]] = True
    return in_a


def replicate_counts(doc_ids: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot + 1, len(doc_ids)) document counts: row 0 the data itself, then Poisson(1) bootstrap
    counts, a function of (seed, document id, replicate) only: the same for every run that scored
    the document, whatever else it scored."""
    doc_ids = np.asarray(doc_ids, dtype=np.int64)
    counts = np.ones((n_boot + 1, len(doc_ids)))
    if n_boot and len(doc_ids):
        if doc_ids.min() < 0:
            raise ValueError("document ids must be non-negative integers (lm-eval's positions in the task)")
        counts[1:] = poisson_table(seed, n_boot, int(doc_ids.max()) + 1)[doc_ids].T
    return counts


@lru_cache(maxsize=8)
def poisson_table(seed: int, n_boot: int, n_ids: int) -> np.ndarray:
    """(n_ids, n_boot) Poisson(1) counts, drawn document by document (row-major), so a document's
    counts do not depend on how many other ids there are; kept for the next model of the family."""
    table = np.random.default_rng(seed).poisson(1.0, size=(n_ids, n_boot)).astype(np.uint8)
    table.flags.writeable = False
    return table


def positions(doc_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where each of `wanted` (all present) sits in `doc_ids`."""
    order = np.argsort(doc_ids, kind="stable")
    return order[np.searchsorted(doc_ids, wanted, sorter=order)]


def task_matrix(run_ids: list[int], scores: dict, task: str):
    """(common doc ids, values (runs x docs), weights per doc or None) of one task, on the
    documents every run scored (aligned by document id)."""
    entries = [scores[r][task] for r in run_ids]
    first = np.asarray(entries[0]["doc_ids"])
    same = all(np.array_equal(e["doc_ids"], first) for e in entries[1:])
    if same and np.all(np.diff(first) > 0):  # the usual case: every run scored the same documents, in order
        common, indexes = first, [slice(None)] * len(entries)
    else:
        common = first
        for e in entries[1:]:
            common = np.intersect1d(common, e["doc_ids"])
        common = np.unique(common)
        indexes = [positions(np.asarray(e["doc_ids"]), common) for e in entries]
    values, weights = [], None
    for e, index in zip(entries, indexes):
        values.append(np.asarray(e["values"], dtype=float)[index])
        if weights is None and e.get("weights") is not None:
            weights = np.asarray(e["weights"], dtype=float)[index]
    return common, np.vstack(values), weights


def document_draws(run_ids: list[int], scores: dict, tasks: list[str], n_boot: int, seed: int) -> dict[int, np.ndarray]:
    """Paired bootstrap of one model's runs over the documents of `tasks` (the metric is the mean
    over tasks of each task's score: sum(values)/sum(weights), or the mean of values). Worked out
    RUN_CHUNK runs at a time, so the float64 working arrays stay small whatever the sweep's size.
    Each run's (3, R + 1) draws are contiguous: every later step reads them run by run (a layout
    with runs last made each of those reads a strided gather, most of the analysis's time)."""
    kept = np.empty((len(run_ids), 3, n_boot + 1), dtype=DRAW_DTYPE)
    per_task = []
    for task in tasks:
        doc_ids, values, weights = task_matrix(run_ids, scores, task)
        counts = replicate_counts(doc_ids, n_boot, _seed(seed, task, "boot"))
        in_a = halves(doc_ids, _seed(seed, task, "halves"))
        # each half's products over its own documents only (the other half's counts are zero)
        half = {HALF_A: in_a, HALF_B: ~in_a}
        w = {row: counts[:, docs] for row, docs in half.items()}
        denominators = {row: w[row] @ weights[half[row]] if weights is not None else w[row].sum(axis=1) for row in w}
        per_task.append((values, half, w, denominators))
    # Worked out as (rows, runs, replicates), so a chunk goes into `kept` by whole rows of replicates
    # (a replicates-by-runs layout needed a strided transpose of every chunk, a tenth of the time).
    total = np.empty((3, min(RUN_CHUNK, len(run_ids)), n_boot + 1))
    share = np.empty_like(total)
    for start in range(0, len(run_ids), RUN_CHUNK):
        runs = slice(start, start + RUN_CHUNK)
        n = len(run_ids[runs])
        chunk, part = total[:, :n], share[:, :n]
        chunk.fill(0.0)
        for values, half, w, denominators in per_task:
            for row in (HALF_A, HALF_B):
                np.matmul(values[runs][:, half[row]], w[row].T, out=part[row])
            # the whole is the two halves together (one product fewer than three)
            np.add(part[HALF_A], part[HALF_B], out=part[FULL])
            whole = denominators[HALF_A] + denominators[HALF_B]
            with np.errstate(invalid="ignore", divide="ignore"):
                for row, denominator in ((FULL, whole), (HALF_A, denominators[HALF_A]), (HALF_B, denominators[HALF_B])):
                    np.divide(part[row], denominator, out=part[row])
                    np.add(chunk[row], part[row], out=chunk[row])
        np.divide(chunk, len(tasks), out=chunk)
        kept[runs] = chunk.transpose(1, 0, 2)
    return {run: kept[i] for i, run in enumerate(run_ids)}


def stderr_draws(value: float, stderr: float, n_boot: int, seed: int) -> np.ndarray:
    """A run known only by value and stderr: each half scores value + N(0, 2 stderr^2), the whole
    is their mean (so its spread is the stderr)."""
    out = np.full((3, n_boot + 1), value, dtype=float)
    if n_boot and stderr > 0:
        z = np.random.default_rng(seed).standard_normal((2, n_boot))
        out[HALF_A, 1:] = value + np.sqrt(2) * stderr * z[0]
        out[HALF_B, 1:] = value + np.sqrt(2) * stderr * z[1]
        out[FULL, 1:] = (out[HALF_A, 1:] + out[HALF_B, 1:]) / 2
    return out.astype(DRAW_DTYPE)


def scored_tasks(run: int, scores: dict, tasks_of_metric: str) -> list[str] | None:
    """The tasks whose documents make up this run's metric, or None when the run has no scores
    for it. For mean_zero_shot every task the run has scores of is used (the queries return only
    accuracy entries for it)."""
    entries = scores.get(run) or {}
    if tasks_of_metric == "mean_zero_shot":
        return sorted(entries) or None
    return [tasks_of_metric] if tasks_of_metric in entries else None


def sources_of(runs: pd.DataFrame) -> pd.Series:
    """The run that measured each row's result: its `cached_from` run (a cache hit stores none of
    its own), else itself."""
    own = runs["run_id"].astype("int64")
    if "cached_from" not in runs:
        return own
    return pd.to_numeric(runs["cached_from"], errors="coerce").fillna(own).astype("int64")


def run_draws(configs: pd.DataFrame, scores: dict | None, metric: str, n_boot: int, seed: int) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """({run id: (3, n_boot + 1) draws}, {run id: evidence}) for the runs in `configs` (columns
    run_id, model, value, stderr). Evidence is 'documents', 'stderr' or 'none' (no noise known)."""
    scores = scores or {}
    wanted = metric_tasks(metric)
    draws: dict[int, np.ndarray] = {}
    evidence: dict[int, str] = {}
    for model, runs in configs.groupby("model", sort=True):
        by_tasks: dict[tuple, list[int]] = {}
        for run in runs["run_id"]:
            tasks = scored_tasks(int(run), scores, wanted)
            if tasks:
                by_tasks.setdefault(tuple(tasks), []).append(int(run))
        # The largest set of runs scored on the same tasks is paired; any other run falls back.
        paired = max(by_tasks.values(), key=len) if by_tasks else []
        if paired:
            tasks = next(t for t, r in by_tasks.items() if r is paired)
            draws.update(document_draws(paired, scores, list(tasks), n_boot, seed))
            evidence.update({r: DOCUMENTS for r in paired})
        for run, source, value, stderr in zip(runs["run_id"], sources_of(runs), runs["value"], runs["stderr"]):
            if int(run) in draws:
                continue
            known = stderr is not None and np.isfinite(stderr) and stderr > 0
            # Seeded by the run that measured it: a cached copy draws exactly what its source draws.
            draws[int(run)] = stderr_draws(float(value), float(stderr) if known else 0.0, n_boot, _seed(seed, source))
            evidence[int(run)] = STDERR if known else NO_NOISE
    return draws, evidence
