"""Typed failures of one run; `evaluate_configs` turns each into a failed `RunResult` whose
`error_type` is the class's `error_type` and whose `retryable` is the class's `transient`: a
transient failure (the network, the hub) goes back to the queue for another attempt, a permanent
one (no such model, a gated model, out of memory at batch size 1, a model kbit cannot quantize)
fails the run at once with its reason."""

from __future__ import annotations


class RunError(Exception):
    error_type = "evaluation_error"
    transient = False


class ModelUnavailable(RunError):
    """The model exists (or may) but could not be fetched now: the network or the hub failed."""

    error_type = "model_unavailable"
    transient = True


class ModelNotFound(RunError):
    """No such model, folder or revision, or (offline) not in the local Hugging Face cache."""

    error_type = "model_not_found"


class ModelGated(RunError):
    """The model exists but this worker may not read it: a gated or private repository."""

    error_type = "model_gated"


class ModelUnsupported(RunError):
    """The checkpoint loads with no causal-LM class of the installed transformers."""

    error_type = "model_unsupported"


class NotQuantizable(RunError):
    """The model has nothing kbit can quantize, or block weights it cannot (kbit.kernels.CoverageError):
    a k-bit result would be the 16-bit model under a k-bit label."""

    error_type = "not_quantizable"


class TaskNotFound(RunError):
    error_type = "task_not_found"


class CalibrationUnavailable(RunError):
    """GPTQ's calibration text cannot be had: no such file or dataset (or not in the local cache
    offline), or too little of it for one window."""

    error_type = "calibration_unavailable"


class OutOfMemory(RunError):
    error_type = "out_of_memory"


class EvaluationError(RunError):
    error_type = "evaluation_error"


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or the CPU allocator's RuntimeError."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text
