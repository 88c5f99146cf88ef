"""`ModelSpec` (which model to load, and how) and `EvalSpec` (what to evaluate it on): frozen,
validated on construction (every rule about them lives here; the sweep-file reader only maps
these errors to lines), and plain JSON through `to_dict` / `from_dict` (exact inverses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_TASKS = ("kbit_lastword", "kbit_choice", "kbit_heldout")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def unknown_fields(cls, data: dict) -> list[str]:
    """The keys of `data` that are not fields of the dataclass `cls`."""
    names = {f.name for f in fields(cls)}
    return sorted(set(data) - names)


def _from_dict(cls, data: dict):
    unknown = unknown_fields(cls, data)
    if unknown:
        known = ", ".join(sorted(f.name for f in fields(cls)))
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; known fields are {known}")
    return cls(**data)


@dataclass(frozen=True)
class ModelSpec:
    """A Hugging Face id, a local folder, or a bundled id `kbit/<family>/<size>`; its revision
    (ignored for bundled ids and local folders), the dtype to load in and the device to run on."""

    model: str
    revision: str = "main"
    dtype: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("ModelSpec.model must be a non-empty string: a Hugging Face id, a local path or kbit/<family>/<size>")
        if not isinstance(self.revision, str) or not self.revision:
            raise ValueError("ModelSpec.revision must be a non-empty string such as 'main' or a commit sha")
        if self.dtype not in DTYPES:
            raise ValueError(f"ModelSpec.dtype={self.dtype!r} is not allowed; use one of {', '.join(DTYPES)}")
        if self.device not in DEVICES:
            raise ValueError(f"ModelSpec.device={self.device!r} is not allowed; use one of {', '.join(DEVICES)}")

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
