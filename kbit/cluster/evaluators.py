"""The evaluate functions a group task can run, behind one signature:

    evaluate(model, revision, configs, eval_spec, should_stop) -> iterator of RunResult dicts

`workers_evaluate` is the real one (kbit.workers: load once, quantize per config, lm-eval).
`noop_evaluate` does no work at all: the scheduler benchmark uses it to measure the
scheduler's own overhead per run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

Evaluate = Callable[[str, str, list, dict, Callable[[], bool]], Iterator[dict]]


def workers_evaluate(model: str, revision: str, configs: list[dict], eval_spec: dict, should_stop) -> Iterator[dict]:
    """Load `model` once and yield one RunResult dict per config, as each finishes."""
    from kbit.kernels import QuantConfig
    from kbit.workers import EvalSpec, ModelSpec, evaluate_configs

    spec = ModelSpec(model=model, revision=revision)
    quant = [QuantConfig.from_dict(c) for c in configs]
    for result in evaluate_configs(spec, quant, EvalSpec.from_dict(eval_spec), should_stop=should_stop):
        yield result.to_dict()


def noop_evaluate(model: str, revision: str, configs: list[dict], eval_spec: dict, should_stop) -> Iterator[dict]:
    """A done result with no metrics for every config, instantly (scheduler overhead only)."""
    for config in configs:
        if should_stop():
            return
        yield {
            "config": config,
            "status": "done",
            "error_type": None,
            "error": None,
            "metrics": [],
            "bits": None,
            "wall_time_s": 0.0,
            "peak_memory_bytes": 0,
            "device": "none",
            "provenance": {"evaluator": "noop"},
            "samples": None,
        }


EVALUATORS = {"workers": workers_evaluate, "noop": noop_evaluate}


def resolve_evaluator(name_or_fn) -> Evaluate:
    """'workers' | 'noop' | a callable with the signature above."""
    if callable(name_or_fn):
        return name_or_fn
    try:
        return EVALUATORS[name_or_fn]
    except KeyError:
        raise ValueError(f"unknown evaluator {name_or_fn!r}; use one of {', '.join(EVALUATORS)}") from None
