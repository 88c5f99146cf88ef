"""The sweep language and what every part shares: `Sweep`, `EvalSpec`, `ModelSpec`, run
expansion with cache keys, the sweep-file reader (a line number for every problem), model ids;
`settings` (every environment variable, KBIT_HOME, run states) and `errors` (every error a user
can cause). Imports no torch and no ray; of kbit only `kernels.config`.

    from kbit.spec import load_sweep, expand_runs
    sweep = load_sweep("examples/demo.yaml", family_members=...)   # SweepError lists every problem
    runs = expand_runs(sweep)                                      # one dict per (model, config)
"""

_EXPORTS = {
    "Sweep": "sweep", "ModelEntry": "sweep", "family_entries": "sweep", "EvalSpec": "evalspec",
    "ModelSpec": "evalspec", "SweepError": "errors", "load_sweep": "reader", "parse_sweep": "reader",
    "expand_runs": "expand", "cache_key": "expand",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    # Lazy, so that `kbit.spec.settings` and `kbit.spec.errors` (which the database layer imports)
    # load nothing else of kbit.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"kbit.spec.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'kbit.spec' has no attribute {name!r}")
