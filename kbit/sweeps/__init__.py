"""The sweep language: `Sweep`, `ModelEntry`, `EvalSpec`, `ModelSpec`, run expansion with cache
keys, the sweep-file reader (a line number for every problem), model ids and results files.
Imports no torch and no ray; of kbit only `kernels.config` and the shared leaves (settings, errors).

    from kbit.sweeps import load_sweep, expand_runs
    sweep = load_sweep("examples/demo.yaml", family_members=...)   # SweepError lists every problem
    runs = expand_runs(sweep)                                      # one dict per (model, config)
"""

from kbit.errors import SweepError
from kbit.sweeps.evalspec import EvalSpec, ModelSpec
from kbit.sweeps.expand import cache_key, expand_runs
from kbit.sweeps.reader import load_sweep, parse_sweep
from kbit.sweeps.sweep import ModelEntry, Sweep, family_entries

__all__ = ["Sweep", "ModelEntry", "family_entries", "EvalSpec", "ModelSpec", "SweepError", "load_sweep",
           "parse_sweep", "expand_runs", "cache_key"]
