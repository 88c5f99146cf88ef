"""`ModelSpec` (which model to load, and how) and `EvalSpec` (what to evaluate it on): frozen,
validated on construction (every rule about them lives here; the sweep-file reader only maps
these errors to lines), and plain JSON through `to_dict` / `from_dict` (exact inverses).

`Calibration` is the text GPTQ calibrates on; it is part of the cache key of the GPTQ runs only
(kbit.sweeps.expand). How all of these travel in a run's `eval` field: kbit.sweeps.runspec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from kbit.sweeps.modelids import is_local_path

DTYPES = ("auto", "float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DEVICES = ("auto", "cpu", "cuda")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")  # accelerate's placement strategies
MEMORY_GB_MAX = 100_000  # GiB: far above any one model's need; a bigger number is a typo
GIB = 2**30
BUNDLED_SOURCE = "bundled"
CALIBRATION_SAMPLES = (1, 4096)
CALIBRATION_SEQ_LEN = (8, 32768)
DEFAULT_TASKS = ("kbit_lastword", "kbit_choice", "kbit_heldout")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def unknown_fields(cls, data: dict) -> list[str]:
    """The keys of `data` that are not fields of the dataclass `cls`."""
    names = {f.name for f in fields(cls)}
    return sorted(set(data) - names)


def check_dtype(dtype) -> str:
    """The canonical name of a load dtype (fp16 -> float16); ValueError names the choices."""
    dtype = DTYPE_ALIASES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if dtype not in DTYPES:
        choices = ", ".join(["auto", *(f"{name} ({short})" for short, name in DTYPE_ALIASES.items())])
        raise ValueError(f"dtype={dtype!r} is not allowed; use one of {choices}")
    return dtype


def check_device_map(device_map) -> str | None:
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise ValueError(
            f"device_map={device_map!r} is not allowed; use one of {', '.join(DEVICE_MAPS)} (a model spread over "
            "the GPUs of one worker), or leave it out for one device")
    return device_map


def check_memory_gb(memory_gb) -> int | float | None:
    """The GiB of GPU memory one evaluation of a model needs (weights + activations), or None."""
    if memory_gb is None:
        return None
    if isinstance(memory_gb, bool) or not isinstance(memory_gb, (int, float)) or not 0 < memory_gb <= MEMORY_GB_MAX:
        raise ValueError(
            f"memory_gb={memory_gb!r} is not allowed; use the GiB of GPU memory one evaluation of this model needs "
            f"(weights + activations), a number above 0 and at most {MEMORY_GB_MAX}, e.g. memory_gb: 150, or leave "
            "it out")
    return memory_gb


def check_revision(model: str, revision) -> str:
    if not isinstance(revision, str) or not revision.strip():
        raise ValueError(f"revision must be a git revision string (branch, tag or commit), not {revision!r}")
    revision = revision.strip()
    if is_local_path(model) and revision != "main":
        raise ValueError(
            f"revision={revision!r} applies to Hugging Face ids only; {model!r} is a local folder: point at the "
            "folder that holds that revision and leave revision out")
    return revision


def load_options(dtype: str = "auto", device_map: str | None = None, memory_gb: int | float | None = None) -> dict:
    """The load settings that differ from the default, as plain data (empty when none do)."""
    options = {"dtype": dtype} if dtype != "auto" else {}
    if device_map is not None:
        options["device_map"] = device_map
    if memory_gb is not None:
        options["memory_gb"] = memory_gb
    return options


def _from_dict(cls, data: dict):
    unknown = unknown_fields(cls, data)
    if unknown:
        known = ", ".join(sorted(f.name for f in fields(cls)))
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; known fields are {known}")
    return cls(**data)


@dataclass(frozen=True)
class ModelSpec:
    """A Hugging Face id, a local folder, or a bundled id `kbit/<family>/<size>`; its revision
    (Hugging Face ids only: a local folder takes none), the dtype to load in (fp16/bf16/fp32 are
    accepted for float16/bfloat16/float32), the device to run on, and an optional `device_map`
    (accelerate's "auto", ...) that spreads a model too big for one GPU over the worker's GPUs."""

    model: str
    revision: str = "main"
    dtype: str = "auto"
    device: str = "auto"
    device_map: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("ModelSpec.model must be a non-empty string: a Hugging Face id, a local path or kbit/<family>/<size>")
        for name, check in (("revision", lambda v: check_revision(self.model, v)), ("dtype", check_dtype),
                            ("device_map", check_device_map)):
            try:
                object.__setattr__(self, name, check(getattr(self, name)))
            except ValueError as exc:
                raise ValueError(f"ModelSpec.{exc}") from None
        if self.device not in DEVICES:
            raise ValueError(f"ModelSpec.device={self.device!r} is not allowed; use one of {', '.join(DEVICES)}")
        if self.device_map is not None and self.device == "cpu":
            raise ValueError("ModelSpec.device_map spreads a model over GPUs; with device='cpu' leave it out")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class EvalSpec:
    """lm-eval task names (bundled `kbit_*` tasks or standard ones such as lambada_openai), shots,
    an optional per-task document limit, batch size, the seed, and whether to keep per-sample
    log-likelihoods."""

    tasks: tuple[str, ...] = DEFAULT_TASKS
    num_fewshot: int = 0
    limit: int | float | None = None
    batch_size: int = 8
    seed: int = 1234
    log_samples: bool = False

    def __post_init__(self) -> None:
        tasks = (self.tasks,) if isinstance(self.tasks, str) else self.tasks
        if not isinstance(tasks, (list, tuple)) or not tasks:
            raise ValueError("EvalSpec.tasks must name at least one lm-eval task, e.g. [lambada_openai, piqa]")
        for task in tasks:
            if not isinstance(task, str) or not task.strip() or any(c.isspace() for c in task.strip()):
                raise ValueError(f"{task!r} is not a task name; use lm-eval names such as hellaswag")
        object.__setattr__(self, "tasks", tuple(dict.fromkeys(t.strip() for t in tasks)))
        for name, low, high in (("num_fewshot", 0, 64), ("batch_size", 1, 4096)):
            value = getattr(self, name)
            if not _is_int(value) or not low <= value <= high:
                raise ValueError(f"EvalSpec.{name}={value!r} is not allowed; use a whole number from {low} to {high}")
        limit = self.limit
        # lm-eval reads a limit below 1 as a fraction of each task's documents (and 1.0 as one document).
        if limit is not None and not (_is_int(limit) and limit >= 1) and not (
            isinstance(limit, float) and 0.0 < limit < 1.0
        ):
            raise ValueError(
                f"EvalSpec.limit={limit!r} is not allowed; use null (all documents), a count >= 1, "
                "or a fraction of the documents in (0, 1), e.g. 0.5"
            )
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"EvalSpec.seed={self.seed!r} is not allowed; use a whole number >= 0")
        if not isinstance(self.log_samples, bool):
            raise ValueError(f"EvalSpec.log_samples={self.log_samples!r} is not allowed; use true or false")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tasks"] = list(self.tasks)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "EvalSpec":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class Calibration:
    """The text GPTQ calibrates on: `samples` windows of `seq_len` tokens (at most the model's
    context), drawn at random with `seed` from `source`:

    - "bundled": the bundled family's training text (never its held-out chapters);
    - a local UTF-8 text file, written as a path (/data/calib.txt, ./calib.txt, ~/calib.txt);
    - otherwise a Hugging Face dataset id, optionally with its config after a colon
      (wikitext:wikitext-2-raw-v1, allenai/c4:en): its `train` split's `text` column, read through
      `datasets` (from the local cache when the worker is offline).
    """

    samples: int = 128
    seq_len: int = 512
    source: str = BUNDLED_SOURCE
    seed: int = 0

    def __post_init__(self) -> None:
        for name, (low, high) in (("samples", CALIBRATION_SAMPLES), ("seq_len", CALIBRATION_SEQ_LEN)):
            value = getattr(self, name)
            if not _is_int(value) or not low <= value <= high:
                raise ValueError(f"Calibration.{name}={value!r} is not allowed; use a whole number from {low} to {high}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(f"Calibration.source={self.source!r} is not allowed; use bundled, a path to a text "
                             "file, or a Hugging Face dataset id (wikitext:wikitext-2-raw-v1)")
        object.__setattr__(self, "source", self.source.strip())
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"Calibration.seed={self.seed!r} is not allowed; use a whole number >= 0")

    @property
    def is_file(self) -> bool:
        return is_local_path(self.source)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        return _from_dict(cls, data)
