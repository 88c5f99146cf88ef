"""`Sweep`: models x quantization configs x one eval, validated on construction.

The rules about a sweep's own fields live here (`check_*`), the rules about a config in
`QuantConfig`, about an eval in `EvalSpec`. The sweep-file reader (`reader.py`) builds these
dataclasses and maps their `ValueError`s to file lines; the scheduler rebuilds the same
dataclasses from the plain spec (`Sweep.from_spec`), so whatever `kbit submit --check` accepts,
the scheduler and every worker accept too.
"""

from __future__ import annotations

from dataclasses import dataclass

from kbit import settings
from kbit.errors import SweepError
from kbit.kernels.config import QuantConfig
from kbit.sweeps.evalspec import Calibration, EvalSpec, ModelSpec, check_memory_gb, load_options
from kbit.sweeps.modelids import model_family, with_seed

NAME_MAX = 200  # the database's column width
MAX_ATTEMPTS = (1, 20)
RUN_TIMEOUT_S = 3 * 3600  # a run (one config of one model) that takes longer is failed with `timeout`
RUN_TIMEOUT_RANGE = (1, 7 * 24 * 3600)
SEEDS = (1, 20)  # a bundled family's training seeds one sweep may evaluate


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"must be a non-empty string, not {name!r}")
    if len(name.strip()) > NAME_MAX:
        raise ValueError(f"is {len(name.strip())} characters long; use at most {NAME_MAX}")
    return name.strip()


def check_team(team) -> str | None:
    if team is None:
        return None
    if not isinstance(team, str) or not team.strip():
        raise ValueError(f"must be a team name (a string), not {team!r}")
    return team.strip()


def check_priority(priority) -> int:
    low, high = settings.PRIORITIES
    if not _is_int(priority) or not low <= priority <= high:
        raise ValueError(f"must be a whole number from {low} to {high} (higher runs first), not {priority!r}")
    return priority


def check_max_attempts(attempts) -> int:
    low, high = MAX_ATTEMPTS
    if not _is_int(attempts) or not low <= attempts <= high:
        raise ValueError(f"must be a whole number from {low} to {high}, not {attempts!r}")
    return attempts


def check_run_timeout(seconds) -> int:
    low, high = RUN_TIMEOUT_RANGE
    if not _is_int(seconds) or not low <= seconds <= high:
        raise ValueError(f"must be a whole number of seconds from {low} to {high} (a week), not {seconds!r}")
    return seconds


@dataclass(frozen=True)
class ModelEntry(ModelSpec):
    """One model of a sweep: a ModelSpec (the id, its revision, how to load it; its rules) plus the
    family its results are grouped under (derived from the id when not given) and `memory_gb`, the
    GiB of GPU memory one evaluation of it needs, which tells the scheduler how to place it (None:
    unknown)."""

    family: str = ""
    memory_gb: int | float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"must be a model id or path, not {self.model!r}")
        if not isinstance(self.family, str):
            raise ValueError(f"family must be a family name (a string), not {self.family!r}")
        object.__setattr__(self, "model", self.model.strip())
        try:
            super().__post_init__()
        except ValueError as exc:  # the sweep-file reader names the field itself
            raise ValueError(str(exc).removeprefix("ModelSpec.")) from None
        object.__setattr__(self, "family", self.family.strip() or model_family(self.model))
        object.__setattr__(self, "memory_gb", check_memory_gb(self.memory_gb))

    @property
    def load(self) -> dict:
        """ModelSpec's load arguments that differ from the default (dtype, device_map)."""
        return load_options(self.dtype, self.device_map)

    def load_options(self) -> dict:
        """dtype, device_map and memory_gb where they differ from the default (what the run carries
        to the worker and the scheduler)."""
        return load_options(self.dtype, self.device_map, self.memory_gb)

    def to_dict(self) -> dict:
        # Defaults are left out, so a sweep that names none keeps the spec (and its hash) it always had.
        return {"model": self.model, "revision": self.revision, "family": self.family, **self.load_options()}


def check_calibration(calibration, configs) -> Calibration | None:
    """The sweep's calibration: the default one when GPTQ configs name none; refused without them."""
    calibrates = any(isinstance(c, QuantConfig) and c.method == "gptq" for c in configs)
    if calibration is not None and not isinstance(calibration, Calibration):
        raise ValueError(f"must be a Calibration, not {type(calibration).__name__}")
    if not calibrates:
        if calibration is not None:
            raise ValueError("only GPTQ uses calibration text and no config of this sweep is gptq; add gptq to "
                             "grid methods or leave calibration out")
        return None
    return calibration or Calibration()


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: what the scheduler expands into runs. `calibration` is the text GPTQ
    configs calibrate on (the default Calibration when they name none; None without them)."""

    name: str
    team: str | None
    models: tuple[ModelEntry, ...]
    configs: tuple[QuantConfig, ...]
    eval: EvalSpec
    priority: int = 0
    max_attempts: int = settings.MAX_ATTEMPTS
    run_timeout_s: int = RUN_TIMEOUT_S
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        problems = []
        for field_name, check in (("name", check_name), ("team", check_team), ("priority", check_priority),
                                  ("max_attempts", check_max_attempts), ("run_timeout_s", check_run_timeout)):
            try:
                object.__setattr__(self, field_name, check(getattr(self, field_name)))
            except ValueError as exc:
                problems.append(f"{field_name}: {exc}")
        if not self.models or not all(isinstance(m, ModelEntry) for m in self.models):
            problems.append("models: must be a non-empty list of models")
        if not self.configs or not all(isinstance(c, QuantConfig) for c in self.configs):
            problems.append("configs: must be a non-empty list of quantization configs")
        if not isinstance(self.eval, EvalSpec):
            problems.append("eval: must be an EvalSpec")
        try:
            object.__setattr__(self, "calibration", check_calibration(self.calibration, self.configs or ()))
        except ValueError as exc:
            problems.append(f"calibration: {exc}")
        limit = settings.max_runs_per_sweep()
        if not problems and len(self.models) * len(self.configs) > limit:
            problems.append(
                f"{len(self.models)} models x {len(self.configs)} configs = {len(self.models) * len(self.configs):,} runs; "
                f"the limit is {limit:,} per sweep: split it into several sweeps (or the operator raises "
                "KBIT_MAX_RUNS_PER_SWEEP)")
        if problems:
            raise SweepError(f"sweep {self.name!r}", problems)
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "configs", tuple(self.configs))

    @property
    def n_runs(self) -> int:
        return len(self.models) * len(self.configs)

    def spec(self) -> dict:
        """The plain-data form: stored with the sweep, sent through Ray, and `from_spec`'s input."""
        spec = {
            "name": self.name,
            "team": self.team,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "run_timeout_s": self.run_timeout_s,
            "models": [m.to_dict() for m in self.models],
            "configs": [c.to_dict() for c in self.configs],
            "eval": self.eval.to_dict(),
        }
        if self.calibration is not None:  # left out otherwise: a sweep without GPTQ keeps the spec it had
            spec["calibration"] = self.calibration.to_dict()
        return spec

    @classmethod
    def from_spec(cls, spec: dict) -> "Sweep":
        """The inverse of `spec()`; a spec that breaks any rule raises `SweepError`."""
        source = f"sweep {spec.get('name')!r}" if isinstance(spec, dict) else "sweep"
        try:
            return cls(
                name=spec["name"],
                team=spec.get("team"),
                priority=spec.get("priority", 0),
                max_attempts=spec.get("max_attempts", settings.MAX_ATTEMPTS),
                run_timeout_s=spec.get("run_timeout_s", RUN_TIMEOUT_S),
                models=tuple(ModelEntry(**m) for m in spec["models"]),
                configs=tuple(QuantConfig.from_dict(c) for c in spec["configs"]),
                eval=EvalSpec.from_dict(spec["eval"]),
                calibration=Calibration.from_dict(spec["calibration"]) if spec.get("calibration") is not None else None,
            )
        except SweepError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SweepError(source, [f"not a valid sweep spec: {type(exc).__name__}: {exc}"]) from None


def check_seeds(seeds) -> int:
    """How many training seeds of a bundled family a sweep evaluates (seed 1 is the family's own)."""
    low, high = SEEDS
    if not _is_int(seeds) or not low <= seeds <= high:
        raise ValueError(f"must be a whole number from {low} to {high} (each seed past the first trains the "
                         f"family anew), not {seeds!r}")
    return seeds


def family_entries(members: list[str], revision: str = "main", seeds: int = 1, **load) -> list[ModelEntry]:
    """A bundled family's members (smallest first) as sweep models, largest first: its long runs
    start first, so the sweep's tail stays short; each member with its first `seeds` training seeds
    (kbit/demo/s4, kbit/demo/s4@seed2, ...). `load`: dtype, device_map, memory_gb."""
    seeds = check_seeds(seeds)
    return [ModelEntry(with_seed(m, seed), revision, **load) for m in reversed(members) for seed in range(1, seeds + 1)]
