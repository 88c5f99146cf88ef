"""Synthetic runs with a known answer: rows as kbit.db.queries.frontier_rows returns them, and
per-document scores as kbit.db.queries.document_scores returns them."""

from __future__ import annotations

import numpy as np

from kbit import settings
from kbit.analysis import rows_to_frame

MODELS = {"m1": 1e6, "m2": 2e6, "m3": 4e6, "m4": 8e6}


class Runs:
    """Collects runs; `add` gives each a value (and optionally per-document 0/1 scores)."""

    def __init__(self, seed: int = 0):
        self.rows: list[dict] = []
        self.scores: dict[int, dict] = {}
        self.rng = np.random.default_rng(seed)

    def add(self, model: str, bits: int, value: float, bits_per_param: float, *, dtype="nf", blocksize=64,
            label=None, stderr=0.001, docs: int = 0, task="t", n_quantized_share=1.0, method="rtn",
            outlier_fraction=0.0, outcomes=None):
        run_id = len(self.rows) + 1
        n_params = MODELS[settings.split_seed(model)[0]]  # every seed of a size: its parameters
        if docs:
            outcomes = (self.rng.random(docs) < value).astype(float) if outcomes is None else outcomes
            self.scores[run_id] = {task: {"doc_ids": np.arange(docs), "values": outcomes, "weights": None}}
            value = float(outcomes.mean())
            stderr = float(outcomes.std(ddof=1) / np.sqrt(docs))
        self.rows.append({
            "run_id": run_id, "sweep_id": 1, "sweep": "s", "team": "t", "model": model, "family": "f",
            "n_params": n_params, "n_quantized": n_params * n_quantized_share, "bits": bits,
            "dtype": "none" if bits == 16 else dtype, "blocksize": None if bits == 16 else blocksize,
            "exponent_bits": None, "outlier_fraction": outlier_fraction, "method": method,
            "label": label or ("16bit" if bits == 16 else f"{dtype}{bits}-b{blocksize}"
                               + (f"-o{outlier_fraction * 100:g}%" if outlier_fraction else "")
                               + ("" if method == "rtn" else f"-{method}")),
            "bits_per_param": bits_per_param,
            "total_bits": n_params * (n_quantized_share * bits_per_param + (1 - n_quantized_share) * 16),
            "value": value, "stderr": stderr,
        })
        return run_id

    def frame(self):
        return rows_to_frame(self.rows)
