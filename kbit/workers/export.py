"""A finished run's model as a checkpoint (`kbit export`): the worker's own path, once more.

`export_run` loads the run's model as its worker did (`load_model` with the run's `model_load`),
quantizes it with the run's config (`quantize_model_`; GPTQ calibrates on the run's calibration
batches, built by `GroupCalibration` from the same seed and tokenizer), checks the bits against the
run's stored bit report, and writes it with `kbit.kernels.save_quantized`, the run's identity and
scores in the manifest. `evaluate_checkpoint` loads a checkpoint with `load_quantized` and
evaluates it with the run's eval spec as `evaluate_configs` does (`lmeval.evaluate_model`,
`flatten_metrics`): on the machine the run ran on its scores are the stored ones, to the last digit.

Every problem is an `ExportError` (one line): a run that is not done, a model that cannot be loaded
here (with where the run loaded it), an output folder that is taken, a checkpoint that does not
match its manifest or is newer than this kbit.
"""

from __future__ import annotations

import math
from pathlib import Path

from kbit import settings
from kbit.errors import ExportError
from kbit.kernels import QuantConfig, quantize_model_
from kbit.kernels.checkpoint import CheckpointError, check_output, load_quantized, read_manifest, save_quantized
from kbit.sweeps.evalspec import Calibration
from kbit.sweeps.runspec import RunEval
from kbit.version import code_version, numerics_version
from kbit.workers import lmeval
from kbit.workers.errors import RunError
from kbit.workers.loading import LoadedModel, load_model
from kbit.workers.results import flatten_metrics
from kbit.workers.run import GroupCalibration

EXPORTABLE = ("done", "cached")  # a cached run shares the result of the done run with its cache key


def check_exportable(run: dict) -> None:
    """ExportError unless `run` (a `queries.run_detail` dict) finished with a result."""
    if run["status"] not in EXPORTABLE:
        raise ExportError(f"run {run['run_id']} is {run['status']}, not done; only a done run can be exported "
                          f"(follow it with `kbit status {run['sweep_id']}`, or pick a done run)")


def _loaded_where(run: dict) -> str:
    prov = run.get("provenance") or {}
    place = ", ".join(f"{k} {v}" for k, v in (("worker", run.get("worker")), ("device", run.get("device")),
                                              ("commit", prov.get("commit"))) if v)
    return f"the run loaded {run['model']!r} at revision {run['revision']!r}" + (f" ({place})" if place else "")


def load_run_model(run: dict, loader=load_model) -> LoadedModel:
    """The run's model loaded here as its worker loaded it; ExportError names where the run had it."""
    try:
        return loader(RunEval.from_dict(run["eval"]).model_spec(run["model"], run["revision"]))
    except RunError as exc:
        raise ExportError(f"run {run['run_id']}'s model cannot be loaded here: {exc}; {_loaded_where(run)}: "
                          "export on a machine that can load it") from None


def quantize_run_model(run: dict, loaded: LoadedModel):
    """Quantize the loaded model in place with the run's config and calibration; its BitReport.
    ExportError when the bits differ from the run's stored bit report (not the run's model)."""
    cfg = QuantConfig.from_dict(run["config"])
    calibrate = GroupCalibration(RunEval.from_dict(run["eval"]).calibration or Calibration(), loaded)
    try:
        report = quantize_model_(loaded.model, cfg, calibration=calibrate(cfg))
    except RunError as exc:
        raise ExportError(f"run {run['run_id']} ({cfg.label()}) cannot be quantized here: {exc}") from None
    stored = run.get("bits_report") or {}
    differs = [k for k in settings.BIT_FIELDS if k in stored and not math.isclose(stored[k], report.to_dict()[k], rel_tol=1e-9)]
    if differs:
        raise ExportError(f"run {run['run_id']}: quantizing {run['model']!r} here gives {differs[0]} "
                          f"{report.to_dict()[differs[0]]}, the run stored {stored[differs[0]]}; the model or kbit "
                          f"changed since (the run used kbit {(run.get('provenance') or {}).get('kbit')})")
    return report


def run_info(run: dict) -> dict:
    """What the manifest keeps about the run: its identity, eval, bit report and stored scores."""
    prov = run.get("provenance") or {}
    return {
        "code_version": code_version(), "kbit_numerics": numerics_version(),
        "run": {
            "run_id": run["run_id"], "sweep_id": run["sweep_id"], "team": run.get("team"),
            "model": run["model"], "revision": run["revision"], "commit": prov.get("commit"),
            "cache_key": run["cache_key"], "cached_from": run.get("cached_from"), "eval": run["eval"],
            "code_version": prov.get("kbit"), "device": run.get("device"), "worker": run.get("worker"),
            "bits": run.get("bits_report"), "metrics": run.get("metrics") or [],
        },
    }


def export_run(run: dict, output, *, force: bool = False, loader=load_model) -> dict:
    """Write the run's quantized model, tokenizer and manifest to `output`; return the manifest."""
    check_exportable(run)
    try:
        check_output(Path(output), force)  # before the model is loaded and quantized
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    loaded = load_run_model(run, loader)
    quantize_run_model(run, loaded)
    try:
        return save_quantized(loaded.model, Path(output), tokenizer=loaded.tokenizer, info=run_info(run), force=force,
                              config=QuantConfig.from_dict(run["config"]))
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None


def load_checkpoint(folder, device: str = "auto"):
    """(model, tokenizer, manifest) of a checkpoint folder; ExportError when it does not check out."""
    from transformers import AutoTokenizer

    try:
        manifest = read_manifest(folder, verify_files=False)
        model = load_quantized(folder, device=device)  # checks the files' sha256
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    return model, AutoTokenizer.from_pretrained(str(folder)), manifest


def evaluate_checkpoint(folder, eval_field: dict | None = None) -> list[dict]:
    """The checkpoint's scores under `eval_field` (a run's `eval`; default: the one in its manifest),
    evaluated as the worker evaluates a run."""
    model, tokenizer, manifest = load_checkpoint(folder)
    spec = RunEval.from_dict(eval_field or manifest["run"]["eval"]).eval
    tasks = lmeval.load_tasks(spec.tasks, spec.num_fewshot, spec.seed)
    raw = lmeval.evaluate_model(model, tokenizer, tasks, batch_size=spec.batch_size, limit=spec.limit, seed=spec.seed)
    return flatten_metrics(raw)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def score_differences(stored: list[dict], got: list[dict]) -> list[str]:
    """Each stored metric whose value or stderr the checkpoint does not reproduce exactly."""
    found = {(m["task"], m["metric"]): m for m in got}
    problems = []
    for m in stored:
        other = found.get((m["task"], m["metric"]))
        if other is None:
            problems.append(f"{m['task']}/{m['metric']}: missing")
        elif not (_same(m["value"], other["value"]) and _same(m["stderr"], other["stderr"])):
            problems.append(f"{m['task']}/{m['metric']}: stored {m['value']!r} ± {m['stderr']!r}, "
                            f"checkpoint {other['value']!r} ± {other['stderr']!r}")
    return problems
