"""`ModelSpec` (which model to load, and how) and `EvalSpec` (what to evaluate it on): frozen,
validated on construction, and plain JSON through `to_dict` / `from_dict` (exact inverses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_TASKS = ("kbit_lastword", "kbit_choice", "kbit_heldout")


def _from_dict(cls, data: dict):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; known fields are {', '.join(sorted(names))}")
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
    limit: int | None = None
    batch_size: int = 8
    seed: int = 1234
    log_samples: bool = False

    def __post_init__(self) -> None:
        tasks = (self.tasks,) if isinstance(self.tasks, str) else tuple(self.tasks)
        if not tasks or not all(isinstance(t, str) and t for t in tasks):
            raise ValueError("EvalSpec.tasks must name at least one lm-eval task, e.g. ('kbit_lastword', 'kbit_choice')")
        object.__setattr__(self, "tasks", tasks)
        for name, low in (("num_fewshot", 0), ("batch_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"EvalSpec.{name}={value!r} must be an integer >= {low}")
        if self.limit is not None and (not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1):
            raise ValueError(f"EvalSpec.limit={self.limit!r} must be None (all documents) or an integer >= 1")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"EvalSpec.seed={self.seed!r} must be an integer")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tasks"] = list(self.tasks)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "EvalSpec":
        return _from_dict(cls, data)
