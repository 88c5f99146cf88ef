"""Typed failures of one run; `evaluate_configs` turns each into a failed `RunResult` whose
`error_type` is the class's `error_type`."""

from __future__ import annotations


class RunError(Exception):
    error_type = "evaluation_error"


class ModelNotFound(RunError):
    error_type = "model_not_found"


class TaskNotFound(RunError):
    error_type = "task_not_found"


class OutOfMemory(RunError):
    error_type = "out_of_memory"


class EvaluationError(RunError):
    error_type = "evaluation_error"
