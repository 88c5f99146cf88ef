"""The lm-eval side of a run: which TaskManager knows the requested tasks, loading them once per
group, and evaluating an in-memory (quantized) model wrapped in `HFLM`.

Tasks are built once per group and evaluated per config with `lm_eval.evaluator.evaluate` (the
core of `simple_evaluate`, minus what `simple_evaluate` redoes on every call: task building and
dataset loading, and collecting environment info through subprocesses, about 1 s per call here);
their requests are built and their strings tokenized once per group too (`GroupReuse`).
No request cache is ever used: lm-eval's cache key ignores the model, so a cache would hand one
config's answers to the next.
"""

from __future__ import annotations

import difflib
import functools
import random
from pathlib import Path

import numpy as np
import torch

from kbit.workers.errors import TaskNotFound

TASKS_DIR = Path(__file__).resolve().parent.parent / "family" / "tasks"
BUNDLED_TASKS = tuple(sorted(p.stem for p in TASKS_DIR.glob("kbit_*.yaml")))
# Perplexity stderrs are bootstrapped; lm-eval's default 100000 draws take minutes per config.
BOOTSTRAP_ITERS = 1000


def task_manager(names: tuple[str, ...]):
    """Bundled tasks only: a TaskManager that indexes just the package's tasks (fast, offline);
    any standard task: lm-eval's default index plus the bundled tasks. A `kbit_` name is always
    looked up among the bundled ones (a typo of one is told at once, not after indexing lm-eval's
    thousands of task files)."""
    from lm_eval.tasks import TaskManager

    if all(n in BUNDLED_TASKS or n.startswith("kbit_") for n in names):
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


class GroupReuse:
    """What the configs of one group share in lm-eval: every config evaluates the same requests on
    the same tokenizer, so the requests are built once (by the first config's evaluation) and each
    string is tokenized once. Results are unchanged to the last digit (tests/workers/
    test_workers_evaluate.py); few-shot examples are the same for every config of the group."""

    def __init__(self):
        self.tokens: dict = {}
        self.built: set[int] = set()  # ids of the task objects whose requests are built

    def reuse_requests(self, tasks: dict) -> None:
        """Before an evaluation: tasks already built keep their requests, cleared of the last answers."""
        for task in tasks["tasks"].values():
            if id(task) in self.built:
                for instance in task.instances:
                    instance.resps, instance.filtered_resps = [], {}
                task.build_all_requests = _keep_requests  # an instance attribute: lm-eval's call is a no-op
            else:
                task.__dict__.pop("build_all_requests", None)

    def requests_built(self, tasks: dict) -> None:
        self.built.update(id(task) for task in tasks["tasks"].values())


def _keep_requests(**_kwargs) -> None:
    return None


def evaluate_model(model, tokenizer, tasks: dict, *, batch_size: int, limit: int | None, seed: int,
                   reuse: GroupReuse | None = None) -> dict:
    """lm-eval's results dict (with per-sample records) for the in-memory `model`. With `reuse`
    (one per group of configs on one model), requests and tokenizations carry over between calls."""
    from lm_eval.evaluator import evaluate

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    lm = _group_lm_class()(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                           token_memo=reuse.tokens if reuse is not None else {})
    if reuse is not None:
        reuse.reuse_requests(tasks)
    raw = evaluate(lm=lm, task_dict=tasks, limit=limit, bootstrap_iters=BOOTSTRAP_ITERS, log_samples=True, verbosity="ERROR")
    if reuse is not None:
        reuse.requests_built(tasks)
    return raw


@functools.lru_cache(maxsize=1)
def _group_lm_class():
    """HFLM (imported on first use: lm-eval is slow to import) that tokenizes each string once per
    memo and draws no progress bars (a worker's log is not a terminal)."""
    from lm_eval.models.huggingface import HFLM

    class GroupLM(HFLM):
        def __init__(self, *args, token_memo: dict, **kwargs):
            super().__init__(*args, **kwargs)
            self._token_memo = token_memo

        def tok_encode(self, string, add_special_tokens=None, left_truncate_len=None, **kwargs):
            if kwargs:
                return super().tok_encode(string, add_special_tokens, left_truncate_len, **kwargs)
            key = (string, add_special_tokens, left_truncate_len)
            if key not in self._token_memo:
                self._token_memo[key] = tuple(super().tok_encode(string, add_special_tokens, left_truncate_len))
            return list(self._token_memo[key])  # a fresh list: callers may change it

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(requests, disable_tqdm=True)

        def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
            return super()._loglikelihood_tokens(requests, disable_tqdm=True, override_bs=override_bs)

    return GroupLM
