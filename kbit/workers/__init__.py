"""One unit of work: load a model once, quantize it for each config, evaluate it with lm-eval,
and yield one result per config; `bundled/` holds the small model family and its lm-eval tasks.

    from kbit.workers import RunResult, evaluate_configs, evaluate_group

`RunResult` imports without torch; `evaluate_configs` / `evaluate_group` load torch, transformers
and lm-eval on first use. The specs they take (`ModelSpec`, `EvalSpec`) live in `kbit.sweeps`.
"""

from kbit.workers.results import RunResult

__all__ = ["RunResult", "evaluate_configs", "evaluate_group"]


def __getattr__(name):
    if name in ("evaluate_configs", "evaluate_group"):
        from kbit.workers import run

        return getattr(run, name)
    raise AttributeError(f"module 'kbit.workers' has no attribute {name!r}")
