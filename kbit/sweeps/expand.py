"""A validated sweep -> the run rows the queue stores, each with its cache key.

The cache key says "this exact measurement": same model and revision, same load dtype, same
quantization, same tasks and eval settings, same numerics code (`kbit.version.numerics_version`: a
hash of the files that decide a result, not the git commit), and for a GPTQ config the same calibration
text (`Sweep.calibration`). Two runs (of any team) with one key share
one result. Where a model is placed (`device_map`) is not part of the measurement: it travels with
the run (`RunEval`) but stays out of the key.
"""

from __future__ import annotations

import hashlib
import json

from kbit import settings
from kbit.kernels.config import QuantConfig
from kbit.sweeps.modelids import bundled_seed
from kbit.sweeps.runspec import RunEval, RunSpec
from kbit.sweeps.sweep import Sweep
from kbit.version import numerics_version as current_numerics_version


def cache_key(model: str, revision: str, config: QuantConfig, eval_spec: dict, numerics_version: str,
              dtype: str = "auto", calibration: dict | None = None) -> str:
    """sha256 over model, revision, config.key(), the eval spec, the numerics version, the load dtype
    (only when not "auto", so the keys of runs that name none never change) and, for a GPTQ config,
    its calibration (what it was calibrated on changes its result; a round-to-nearest run's key
    never includes it)."""
    payload = {
        "model": model,
        "revision": revision,
        "config": config.key(),
        "eval": eval_spec,
        "code": numerics_version,
    }
    if dtype != "auto":
        payload["dtype"] = dtype
    if config.method == "gptq" and calibration is not None:
        payload["calibration"] = calibration
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def expand_runs(sweep: Sweep, numerics_version: str | None = None) -> list[dict]:
    """One run dict per (model, config), in model order then grid order (the baseline first); their
    cache keys hold `numerics_version` (default: this installation's; marked when the bundled
    family is trained here rather than loaded from the shipped weights: other weights, other keys;
    so are a bundled member's other training seeds, which ship no weights and are always trained here)."""
    code = numerics_version or current_numerics_version()
    built_here = code + "+family-built-here"
    if settings.family_weights() == "build":
        code = built_here
    eval_spec = sweep.eval.to_dict()
    calibration = sweep.calibration.to_dict() if sweep.calibration is not None else None
    runs = []
    for entry in sweep.models:
        evaluation = RunEval(sweep.eval, entry.load, entry.memory_gb, sweep.calibration)
        for config in sweep.configs:
            key = cache_key(entry.model, entry.revision, config, eval_spec,
                            code if bundled_seed(entry.model) == 1 else built_here, entry.dtype, calibration)
            runs.append(RunSpec(entry.model, entry.revision, entry.family, config, evaluation, key).to_dict())
    return runs
