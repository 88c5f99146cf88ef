"""Typed failures of one run; `evaluate_configs` turns each into a failed `RunResult` whose
`error_type` is the class's `error_type` and whose `retryable` is the class's `transient`: a
transient failure (the network, the hub) goes back to the queue for another attempt, a permanent
one (no such model, out of memory at batch size 1) fails the run at once with its reason."""

from __future__ import annotations


class RunError(Exception):
    error_type = "evaluation_error"
    transient = False


class ModelUnavailable(RunError):
    """The model exists (or may) but could not be fetched now: the network or the hub failed."""

    error_type = "model_unavailable"
    transient = True


class ModelNotFound(RunError):
    error_type = "model_not_found"


class TaskNotFound(RunError):
    error_type = "task_not_found"


class OutOfMemory(RunError):
    error_type = "out_of_memory"


class EvaluationError(RunError):
    error_type = "evaluation_error"
