"""`evaluate_configs`: the unit of work a cluster task runs. Load the model once; for each config
restore the original weights, quantize (GPTQ configs with calibration batches built once per
group, kbit.workers.calibration), evaluate with lm-eval and yield a `RunResult` at once.
Errors never escape: each becomes a failed result of a known type, and the next config runs.
`evaluate_group` is the same over plain dicts, as the service's group task calls it.
"""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack

import torch

from kbit import settings
from kbit.kernels import CoverageError, QuantConfig, quantize_model_, restore_model_
from kbit.sweeps.evalspec import Calibration, EvalSpec, ModelSpec
from kbit.sweeps.runspec import RunEval
from kbit.version import code_version
from kbit.workers import lmeval
from kbit.workers.calibration import calibration_batches, model_context
from kbit.workers.errors import EvaluationError, NotQuantizable, OutOfMemory, RunError, is_out_of_memory
from kbit.workers.loading import LoadedModel, load_model
from kbit.workers.modelcache import ModelCache
from kbit.workers.results import RunResult, document_scores, flatten_metrics, sample_records


def evaluate_configs(
    model_spec: ModelSpec,
    configs: Iterable[QuantConfig],
    eval_spec: EvalSpec = EvalSpec(),
    should_stop: Callable[[], bool] = lambda: False,
    calibration: Calibration | None = None,
    loader: Callable[[ModelSpec], LoadedModel] = load_model,
) -> Iterator[RunResult]:
    """One RunResult per config, in order, each yielded as soon as it is done. `should_stop()` is
    asked before every config (the first time before the model loads, so a group cancelled before
    it started loads nothing); once it says True no further result is yielded. GPTQ configs
    calibrate on `calibration` (the default Calibration when None). `loader` gives the model (a
    worker's cache of loaded models, or a fresh load); its weights are restored after each config."""
    configs = list(configs)
    if not configs or should_stop():
        return
    try:
        loaded = loader(model_spec)
        tasks = lmeval.load_tasks(eval_spec.tasks, eval_spec.num_fewshot, eval_spec.seed)
    except Exception as exc:  # noqa: BLE001 - the group's setup failed: every config fails alike
        error = as_run_error(exc)
        for i, cfg in enumerate(configs):
            if i and should_stop():  # the first config was asked for before the load
                return
            yield _failed(cfg, error, device_name(None), 0.0, model_spec, eval_spec)
        return
    batch_size = eval_spec.batch_size
    calibrate = GroupCalibration(calibration or Calibration(), loaded)
    reuse = lmeval.GroupReuse()
    try:
        for i, cfg in enumerate(configs):
            if i and should_stop():
                return
            result, batch_size = _run_one(loaded, tasks, cfg, eval_spec, batch_size, calibrate, reuse)
            yield result
    finally:
        restore_model_(loaded.model)


def evaluate_group(model: str, revision: str, configs: list[dict], eval_spec: dict, should_stop,
                   cache: ModelCache | None = None) -> Iterator[dict]:
    """`evaluate_configs` over plain data: load `model` once (or take it from a long-lived worker's
    `cache`), yield one RunResult dict per config. `eval_spec` is the runs' `eval` field: the
    EvalSpec, plus how to load the model (`model_load`)."""
    quant = [QuantConfig.from_dict(c) for c in configs]
    evaluation = RunEval.from_dict(eval_spec)
    spec = evaluation.model_spec(model, revision)
    resident = 0  # bytes of the other models the cache keeps on the device meanwhile

    with ExitStack() as held:  # the model goes back to the cache when the group ends

        def from_cache(model_spec: ModelSpec) -> LoadedModel:
            nonlocal resident
            loaded = held.enter_context(cache.use(model_spec, lambda: load_model(model_spec), model_bytes))
            if loaded.device.type == "cuda":
                resident = cache.held_bytes()  # the model in use is out of the cache's count while used
            return loaded

        results = evaluate_configs(spec, quant, evaluation.eval, should_stop=should_stop,
                                   calibration=evaluation.calibration,
                                   loader=load_model if cache is None else from_cache)
        try:
            for result in results:
                data = result.to_dict()
                if resident:  # a run's peak is what it needed, not the models kept loaded beside it
                    data["peak_memory_bytes"] = max(0, (data["peak_memory_bytes"] or 0) - resident)
                yield data
        finally:
            results.close()  # restores the original weights before the model goes back to the cache


def model_bytes(loaded: LoadedModel) -> int:
    """Bytes of a loaded model's parameters and buffers (what keeping it loaded costs)."""
    tensors = list(loaded.model.parameters()) + list(loaded.model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def new_model_cache(budget_bytes: int) -> ModelCache:
    """A worker's cache of loaded models; an evicted model's GPU memory goes back to the device."""

    def release(_model) -> None:
        if torch.cuda.is_available():
            import gc

            gc.collect()
            torch.cuda.empty_cache()

    return ModelCache(budget_bytes, on_evict=release)


class GroupCalibration:
    """The group's calibration batches, built with the model's tokenizer on the first GPTQ config
    and kept for the others (a failure too: every GPTQ config of the group fails alike)."""

    def __init__(self, spec: Calibration, loaded: LoadedModel):
        self.spec, self.loaded = spec, loaded
        self._batches: list[torch.Tensor] | None = None
        self._error: Exception | None = None

    def batches(self) -> list[torch.Tensor]:
        if self._error is not None:
            raise self._error
        if self._batches is None:
            try:
                self._batches = calibration_batches(self.spec, self.loaded.tokenizer, model_context(self.loaded.model))
            except Exception as exc:
                self._error = exc
                raise
        return self._batches

    def __call__(self, cfg: QuantConfig) -> list[torch.Tensor] | None:
        """The batches a config quantizes with: only GPTQ calibrates."""
        return self.batches() if cfg.method == "gptq" else None


def _run_one(loaded: LoadedModel, tasks: dict, cfg: QuantConfig, spec: EvalSpec, batch_size: int,
             calibrate: Callable[[QuantConfig], list | None] = lambda cfg: None,
             reuse: lmeval.GroupReuse | None = None):
    """(result, batch size for the next config: smaller if memory ran out here)."""
    started = time.perf_counter()
    device = device_name(loaded.device)
    if loaded.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(loaded.device)
    try:
        report = quantize_model_(loaded.model, cfg, calibration=calibrate(cfg))
        raw, batch_size = evaluate_with_retry(
            lambda b: lmeval.evaluate_model(loaded.model, loaded.tokenizer, tasks, batch_size=b, limit=spec.limit,
                                            seed=spec.seed, reuse=reuse),
            batch_size, on_gpu=loaded.device.type == "cuda", device=device,
        )
        result = RunResult(
            config=cfg.to_dict(),
            status="done",
            metrics=flatten_metrics(raw),
            bits={k: report.to_dict()[k] for k in settings.BIT_FIELDS},
            wall_time_s=time.perf_counter() - started,
            peak_memory_bytes=peak_memory(loaded.device),
            device=device,
            provenance=provenance(loaded.spec, spec, raw, loaded.commit),
            samples=sample_records(raw) if spec.log_samples else None,
            scores=document_scores(raw),
        )
    except Exception as exc:  # noqa: BLE001 - one bad config must not stop the others
        result = _failed(cfg, as_run_error(exc), device, time.perf_counter() - started, loaded.spec, spec)
    finally:
        restore_model_(loaded.model)
    return result, batch_size


def evaluate_with_retry(evaluate: Callable[[int], dict], batch_size: int, *, on_gpu: bool, device: str) -> tuple[dict, int]:
    """(evaluate(batch size), the batch size that worked). Out of memory on a GPU retries with half
    the batch (a smaller batch often fits) down to 1; anywhere else it fails as OutOfMemory."""
    while True:
        try:
            return evaluate(batch_size), batch_size
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            if not on_gpu or batch_size == 1:
                raise OutOfMemory(f"out of memory at batch size {batch_size} on {device}: {_one_line(exc)}") from None
            batch_size //= 2
            torch.cuda.empty_cache()


def as_run_error(exc: BaseException) -> RunError:
    """The typed failure of one config: a RunError as it is, a model kbit cannot quantize as
    NotQuantizable (never a done 16-bit run under a k-bit label), anything else as EvaluationError."""
    if isinstance(exc, RunError):
        return exc
    if isinstance(exc, CoverageError):
        return NotQuantizable(str(exc))
    return EvaluationError(_one_line(exc))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else 'no message'}"


def _failed(cfg: QuantConfig, error: Exception, device: str, wall: float, model: ModelSpec, spec: EvalSpec) -> RunResult:
    return RunResult(
        config=cfg.to_dict(), status="failed", error_type=getattr(error, "error_type", "evaluation_error"),
        error=str(error), wall_time_s=wall, peak_memory_bytes=0, device=device,
        retryable=getattr(error, "transient", False),
        provenance=provenance(model, spec, None, None),
    )


def device_name(device: torch.device | None) -> str:
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def peak_memory(device: torch.device) -> int:
    """GPU: peak allocated bytes during this config. CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    scale = 1 if platform.system() == "Darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)


def provenance(model: ModelSpec, spec: EvalSpec, raw: dict | None, commit: str | None) -> dict:
    import lm_eval
    import transformers

    return {
        "kbit": code_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lm_eval": lm_eval.__version__,
        "task_versions": dict(raw.get("versions", {})) if raw else {},
        "n_samples": dict(raw.get("n-samples", {})) if raw else {},
        "seed": spec.seed,
        "model": model.model,
        "revision": model.revision,
        "dtype": model.dtype,
        "device_map": model.device_map,
        "commit": commit,
        "eval": spec.to_dict(),
    }
