"""A validated sweep -> the run rows the queue stores, each with its cache key.

The cache key says "this exact measurement": same model and revision, same quantization, same
tasks and eval settings, same code. Two runs (of any team) with one key share one result.
"""

from __future__ import annotations

import hashlib
import json

from kbit.spec.sweep import Sweep
from kbit.kernels.config import QuantConfig
from kbit.version import code_version as current_code_version


def cache_key(model: str, revision: str, config: QuantConfig, eval_spec: dict, code_version: str) -> str:
    """sha256 over model, revision, config.key(), the eval spec and the code version."""
    payload = {
        "model": model,
        "revision": revision,
        "config": config.key(),
        "eval": eval_spec,
        "code": code_version,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def expand_runs(sweep: Sweep, code_version: str | None = None) -> list[dict]:
    """One run dict per (model, config), in model order then grid order (the baseline first)."""
    code = code_version or current_code_version()
    eval_spec = sweep.eval.to_dict()
    runs = []
    for entry in sweep.models:
        for config in sweep.configs:
            runs.append(
                {
                    "model": entry.model,
                    "revision": entry.revision,
                    "family": entry.family,
                    "config": config.to_dict(),
                    "label": config.label(),
                    "eval": sweep.eval.to_dict(),
                    "cache_key": cache_key(entry.model, entry.revision, config, eval_spec, code),
                }
            )
    return runs
