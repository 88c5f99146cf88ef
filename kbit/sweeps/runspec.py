"""A run as the queue stores it and a worker reads it: `RunSpec` (model, revision, family, config,
label, cache key and evaluation) and its `eval` field, `RunEval` (the EvalSpec, how to load the
model, the placement hint and the GPTQ calibration). Both are typed and frozen; `to_dict` gives
exactly the JSON the queue has always stored and `from_dict` reads it back, so stored rows and
cache keys do not change.

The `eval` field is the EvalSpec's dict plus, only when they apply, `model_load` (dtype and
device_map where they differ from the default, and the declared `memory_gb`) and `calibration`
(in every run of a sweep with GPTQ configs, so its RTN and GPTQ runs share one load). The queue
groups runs by this field, so two ways of loading never share a load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kbit.kernels.config import QuantConfig
from kbit.sweeps.evalspec import GIB, Calibration, EvalSpec, ModelSpec, load_options

LOAD_KEY = "model_load"
CALIBRATION_KEY = "calibration"


@dataclass(frozen=True)
class RunEval:
    """A run's `eval` field, typed. `load`: ModelSpec's load arguments that differ from the default
    (dtype, device_map); `memory_gb`: the GiB of GPU memory one evaluation declares it needs (a
    placement hint for the scheduler, not a load argument)."""

    eval: EvalSpec
    load: dict = field(default_factory=dict)
    memory_gb: int | float | None = None
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.load) - {"dtype", "device_map"})
        if unknown:
            raise ValueError(f"RunEval.load: unknown setting(s) {', '.join(unknown)}; known: dtype, device_map")

    def to_dict(self) -> dict:
        data = self.eval.to_dict()
        model_load = load_options(self.load.get("dtype", "auto"), self.load.get("device_map"), self.memory_gb)
        if model_load:
            data[LOAD_KEY] = model_load
        if self.calibration is not None:
            data[CALIBRATION_KEY] = self.calibration.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunEval:
        data = dict(data or {})
        calibration = data.pop(CALIBRATION_KEY, None)
        load = dict(data.pop(LOAD_KEY, None) or {})
        memory_gb = load.pop("memory_gb", None)
        return cls(EvalSpec.from_dict(data), load, memory_gb,
                   None if calibration is None else Calibration.from_dict(calibration))

    @property
    def memory_bytes(self) -> int | None:
        """The declared GPU memory of one evaluation in bytes (memory_gb * 2**30), or None."""
        return None if self.memory_gb is None else math.ceil(self.memory_gb * GIB)

    def model_spec(self, model: str, revision: str = "main") -> ModelSpec:
        """How the worker loads `model` for this run."""
        return ModelSpec(model=model, revision=revision, **self.load)


@dataclass(frozen=True)
class RunSpec:
    """One run: a model (and the family its results are grouped under), one config, its evaluation
    and its cache key. `label` is the config's label unless the run was given another (imports)."""

    model: str
    revision: str
    family: str
    config: QuantConfig
    evaluation: RunEval
    cache_key: str
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.config.label())

    def to_dict(self) -> dict:
        return {"model": self.model, "revision": self.revision, "family": self.family, "config": self.config.to_dict(),
                "label": self.label, "eval": self.evaluation.to_dict(), "cache_key": self.cache_key}

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        return cls(model=data["model"], revision=data.get("revision", "main"), family=data.get("family", ""),
                   config=QuantConfig.from_dict(data["config"]), evaluation=RunEval.from_dict(data["eval"]),
                   cache_key=data.get("cache_key", ""), label=data.get("label") or "")
