"""The lm-eval side of a run: which TaskManager knows the requested tasks, loading them once per
group, and evaluating an in-memory (quantized) model wrapped in `HFLM`.

Tasks are built once per group and evaluated per config with `lm_eval.evaluator.evaluate` (the
core of `simple_evaluate`, minus what `simple_evaluate` redoes on every call: task building and
dataset loading, and collecting environment info through subprocesses, about 1 s per call here).
No request cache is ever used: lm-eval's cache key ignores the model, so a cache would hand one
config's answers to the next.
"""

from __future__ import annotations

import difflib
import random
from pathlib import Path

import numpy as np
import torch

from kbit.workers.errors import TaskNotFound

TASKS_DIR = Path(__file__).resolve().parent / "bundled" / "tasks"
BUNDLED_TASKS = tuple(sorted(p.stem for p in TASKS_DIR.glob("kbit_*.yaml")))
# Perplexity stderrs are bootstrapped; lm-eval's default 100000 draws take minutes per config.
BOOTSTRAP_ITERS = 1000


def task_manager(names: tuple[str, ...]):
    """Bundled tasks only: a TaskManager that indexes just the package's tasks (fast, offline);
    any standard task: lm-eval's default index plus the bundled tasks."""
    from lm_eval.tasks import TaskManager

    if all(n in BUNDLED_TASKS for n in names):
        return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    return TaskManager(include_path=str(TASKS_DIR))


def load_tasks(names: tuple[str, ...], num_fewshot: int, seed: int) -> dict:
    """lm-eval's task dict for `names` (TaskNotFound names unknown tasks and close matches)."""
    manager = task_manager(names)
    known = set(manager.all_tasks)
    unknown = [n for n in names if n not in known]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=3)
            hints.append(f"{name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise TaskNotFound(
            f"unknown lm-eval task {', '.join(hints)}; bundled tasks are {', '.join(BUNDLED_TASKS)}, "
            "standard ones include lambada_openai, piqa, hellaswag, winogrande, wikitext"
        )
    loaded = manager.load(list(names))
    for task in loaded["tasks"].values():
        task.set_config(key="num_fewshot", value=num_fewshot)
        task.set_fewshot_seed(seed=seed)
    return loaded


def evaluate_model(model, tokenizer, tasks: dict, *, batch_size: int, limit: int | None, seed: int) -> dict:
    """lm-eval's results dict (with per-sample records) for the in-memory `model`."""
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    return evaluate(lm=lm, task_dict=tasks, limit=limit, bootstrap_iters=BOOTSTRAP_ITERS, log_samples=True, verbosity="ERROR")
