"""One unit of work: load a model once, quantize it for each config, evaluate it with lm-eval,
and yield one result per config; plus the bundled model family and its lm-eval tasks.

    from kbit.workers import ModelSpec, EvalSpec, RunResult, evaluate_configs

The specs and `RunResult` import without torch; `evaluate_configs` loads torch, transformers and
lm-eval on first use.
"""

from kbit.workers.results import RunResult
from kbit.workers.specs import EvalSpec, ModelSpec

__all__ = ["ModelSpec", "EvalSpec", "RunResult", "evaluate_configs"]


def __getattr__(name):
    if name == "evaluate_configs":
        from kbit.workers.run import evaluate_configs

        return evaluate_configs
    raise AttributeError(f"module 'kbit.workers' has no attribute {name!r}")
