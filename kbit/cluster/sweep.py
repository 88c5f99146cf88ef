"""Sweep files: parse and validate a YAML sweep into a `Sweep` (models x quantization grid x tasks).

Validation collects every problem (with its line and the allowed values) and raises one
`SweepError`; nothing is written anywhere on error. The format, with defaults:

    name: demo                    # default: the file name without .yaml
    team: nlp                     # optional; `kbit submit --team` overrides it
    priority: 0                   # higher runs first
    max_attempts: 3               # tries per run when workers die
    models:                       # Hugging Face ids, local paths, bundled ids, or a bundled family
      - EleutherAI/pythia-70m
      - {model: EleutherAI/pythia-160m, revision: step143000, family: pythia}
      - {family: demo}            # every member of a bundled family (kbit/demo/s1 ...)
    grid:
      bits: [3, 4, 5, 6, 8]       # 2..8; 16 is the unquantized baseline
      dtypes: [int, fp, nf, quantile, dynamic]
      blocksizes: [64, 1024]      # powers of two 32..4096, or null for one scale per tensor
      exponent_bits: [null]       # fp only; null = the paper's default for k
      outlier_fractions: [0.0]
    baseline: true                # add the 16-bit baseline once per model
    tasks: [kbit_lastword, kbit_choice, kbit_heldout]
    eval: {num_fewshot: 0, limit: null, batch_size: 8, seed: 1234}
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field
from pathlib import Path as FsPath

from kbit.cluster.naming import bundled_parts, model_family
from kbit.cluster.yamllines import YamlSyntaxError, load_with_lines, path_text
from kbit.kernels.config import BITS, BLOCKSIZES, DTYPES, QuantConfig

TOP_KEYS = ("name", "team", "priority", "max_attempts", "models", "grid", "baseline", "tasks", "eval")
GRID_KEYS = ("bits", "dtypes", "blocksizes", "exponent_bits", "outlier_fractions")
EVAL_KEYS = ("num_fewshot", "limit", "batch_size", "seed", "log_samples")
MODEL_KEYS = ("model", "revision", "family")
EVAL_DEFAULTS = {"num_fewshot": 0, "limit": None, "batch_size": 8, "seed": 1234, "log_samples": False}
GRID_DEFAULTS = {"exponent_bits": [None], "outlier_fractions": [0.0]}


class SweepError(ValueError):
    """A sweep file with problems; the message lists all of them, one per line."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        if len(problems) == 1:
            text = f"{source}: {problems[0]}"
        else:
            text = f"{source} has {len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)
        super().__init__(text)


@dataclass(frozen=True)
class ModelEntry:
    model: str
    revision: str = "main"
    family: str = ""

    def to_dict(self) -> dict:
        return {"model": self.model, "revision": self.revision, "family": self.family}


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: what the scheduler expands into runs."""

    name: str
    team: str | None
    models: tuple[ModelEntry, ...]
    configs: tuple[QuantConfig, ...]
    eval: dict
    priority: int = 0
    max_attempts: int = 3
    problems: tuple = field(default=(), compare=False)

    @property
    def n_runs(self) -> int:
        return len(self.models) * len(self.configs)

    def spec(self) -> dict:
        """The plain-data form: stored with the sweep, sent through Ray, and `from_spec`'s input."""
        return {
            "name": self.name,
            "team": self.team,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "models": [m.to_dict() for m in self.models],
            "configs": [c.to_dict() for c in self.configs],
            "eval": dict(self.eval),
        }

    @classmethod
    def from_spec(cls, spec: dict) -> "Sweep":
        return cls(
            name=spec["name"],
            team=spec.get("team"),
            priority=spec.get("priority", 0),
            max_attempts=spec.get("max_attempts", 3),
            models=tuple(ModelEntry(**m) for m in spec["models"]),
            configs=tuple(QuantConfig.from_dict(c) for c in spec["configs"]),
            eval=dict(spec["eval"]),
        )


def family_entries(members: list[str], revision: str = "main") -> list[ModelEntry]:
    """A bundled family's members (smallest first) as sweep models, largest first: its long runs
    start first, so the sweep's tail stays short."""
    return [ModelEntry(m, revision, model_family(m)) for m in reversed(members)]


def load_sweep(path: str | FsPath, family_members=None) -> Sweep:
    """Read and validate a sweep file; `SweepError` names every problem."""
    path = FsPath(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SweepError(str(path), ["file not found; check the path"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(str(path), [f"cannot be read ({exc.__class__.__name__}: {exc}); give a readable YAML file"]) from None
    return parse_sweep(text, source=str(path), default_name=path.stem, family_members=family_members)


def parse_sweep(text: str, source: str = "sweep", default_name: str | None = None, family_members=None) -> Sweep:
    """Validate sweep YAML text. `family_members(name) -> [model ids]` resolves bundled families
    (default: kbit.workers' bundled family list)."""
    try:
        data, lines, dup_problems = load_with_lines(text)
    except YamlSyntaxError as exc:
        raise SweepError(source, [str(exc)]) from None
    checker = _Checker(lines, family_members)
    for line, problem in dup_problems:
        checker.problems.append((line, problem))
    if data is None:
        raise SweepError(source, ["the file is empty; a sweep needs at least `models:` and `tasks:` (see examples/)"])
    if not isinstance(data, dict):
        raise SweepError(source, [checker.where(()) + "a sweep file is a mapping with keys " + ", ".join(TOP_KEYS)])
    sweep = checker.sweep(data, default_name)
    if checker.problems:
        ordered = sorted(set(checker.problems), key=lambda p: (p[0] or 0, p[1]))
        raise SweepError(source, [f"line {line}: {msg}" if line else msg for line, msg in ordered])
    return sweep


def _suggest(word, allowed) -> str:
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Checker:
    """Walks the parsed document once, collecting (line, message) problems."""

    def __init__(self, lines: dict, family_members):
        self.lines = lines
        self.problems: list[tuple[int | None, str]] = []
        self._family_members = family_members

    def line(self, path) -> int | None:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path)

    def where(self, path) -> str:
        return f"{path_text(path)}: " if path else ""

    def add(self, path, message: str) -> None:
        # A problem with the whole file (a missing key) has no line of its own.
        self.problems.append((self.line(path) if path else None, self.where(path) + message))

    def members(self, family: str):
        if self._family_members is None:
            from kbit.workers.family import family_members

            self._family_members = family_members
        try:
            members = list(self._family_members(family))
        except (KeyError, ValueError):
            return None
        return members or None

    # -- top level ---------------------------------------------------------------------------

    def sweep(self, data: dict, default_name: str | None) -> Sweep | None:
        for key in data:
            if key not in TOP_KEYS:
                self.add((key,), f"unknown key{_suggest(key, TOP_KEYS)}; allowed keys: {', '.join(TOP_KEYS)}")
        name = data.get("name", default_name)
        if name is None:
            self.add((), "missing `name:`; give the sweep a name, e.g. name: pythia-4bit")
        elif not isinstance(name, str) or not name.strip():
            self.add(("name",), f"must be a non-empty string, not {name!r}")
        team = data.get("team")
        if team is not None and (not isinstance(team, str) or not team.strip()):
            self.add(("team",), f"must be a team name (a string), not {team!r}")
        priority = data.get("priority", 0)
        if not _is_int(priority):
            self.add(("priority",), f"must be a whole number (higher runs first), not {priority!r}")
        attempts = data.get("max_attempts", 3)
        if not _is_int(attempts) or not 1 <= attempts <= 20:
            self.add(("max_attempts",), f"must be a whole number from 1 to 20, not {attempts!r}")
        models = self.models(data)
        configs = self.configs(data)
        eval_spec = self.eval(data)
        if self.problems:
            return None
        return Sweep(
            name=name.strip(),
            team=team.strip() if team else None,
            models=tuple(models),
            configs=tuple(configs),
            eval=eval_spec,
            priority=priority,
            max_attempts=attempts,
        )

    # -- models ------------------------------------------------------------------------------

    def models(self, data: dict) -> list[ModelEntry]:
        if "models" not in data:
            self.add((), "missing `models:`; list Hugging Face ids, local paths, or {family: demo}")
            return []
        items = data["models"]
        if isinstance(items, (str, dict)):
            items = [items]
            paths = [("models",)]
        elif isinstance(items, list) and items:
            paths = [("models", i) for i in range(len(items))]
        else:
            self.add(("models",), "must be a non-empty list of models, e.g. [EleutherAI/pythia-70m]")
            return []
        out: list[ModelEntry] = []
        for item, path in zip(items, paths):
            out.extend(self.model_item(item, path))
        seen, unique = set(), []
        for entry in out:
            if (entry.model, entry.revision) not in seen:
                seen.add((entry.model, entry.revision))
                unique.append(entry)
        return unique

    def model_item(self, item, path) -> list[ModelEntry]:
        if isinstance(item, str):
            item = {"model": item}
        elif not isinstance(item, dict):
            self.add(path, f"must be a model id or a mapping with {', '.join(MODEL_KEYS)}, not {item!r}")
            return []
        for key in item:
            if key not in MODEL_KEYS:
                self.add(path + (key,), f"unknown key{_suggest(key, MODEL_KEYS)}; allowed: {', '.join(MODEL_KEYS)}")
        revision = item.get("revision", "main")
        if not isinstance(revision, str) or not revision.strip():
            self.add(path + ("revision",), f"must be a git revision string (branch, tag or commit), not {revision!r}")
            revision = "main"
        family = item.get("family")
        if "model" not in item:
            # {family: demo}: every member of a bundled family
            if not isinstance(family, str) or not family:
                self.add(path, "needs `model:` (an id or path) or `family:` (a bundled family such as demo)")
                return []
            members = self.members(family)
            if members is None:
                self.add(path + ("family",), f"{family!r} is not a bundled model family; use e.g. demo or micro")
                return []
            return family_entries(members, revision)
        model = item["model"]
        if not isinstance(model, str) or not model.strip():
            self.add(path + ("model",), f"must be a model id or path, not {model!r}")
            return []
        model = model.strip()
        parts = bundled_parts(model)
        if parts is not None:
            members = self.members(parts[0])
            if members is None:
                self.add(path, f"{model!r}: {parts[0]!r} is not a bundled model family; use e.g. kbit/demo/s1")
                return []
            if model not in members:
                self.add(path, f"{model!r} is not in the bundled family {parts[0]!r}; allowed: {', '.join(members)}")
                return []
        if family is not None and (not isinstance(family, str) or not family.strip()):
            self.add(path + ("family",), f"must be a family name (a string), not {family!r}")
            family = None
        return [ModelEntry(model, revision.strip(), family.strip() if family else model_family(model))]

    # -- grid --------------------------------------------------------------------------------

    def grid_list(self, grid: dict, key: str, check) -> list:
        path = ("grid", key)
        if key not in grid:
            if key in GRID_DEFAULTS:
                return list(GRID_DEFAULTS[key])
            self.add(("grid",), f"missing `{key}:`")
            return []
        values = grid[key]
        if not isinstance(values, list):
            values, paths = [values], [path]
        else:
            paths = [path + (i,) for i in range(len(values))]
        if not values:
            self.add(path, "is empty; give at least one value")
            return []
        good = []
        for value, p in zip(values, paths):
            message = check(value)
            if message:
                self.add(p, message)
            elif value not in good:
                good.append(value)
        return good

    def configs(self, data: dict) -> list[QuantConfig]:
        grid = data.get("grid")
        baseline = data.get("baseline", True)
        if not isinstance(baseline, bool):
            self.add(("baseline",), f"must be true or false, not {baseline!r}")
            baseline = True
        if grid is None:
            if baseline:
                return [QuantConfig(bits=16)]
            self.add((), "missing `grid:` (bits, dtypes, blocksizes) and `baseline: false`: nothing to run")
            return []
        if not isinstance(grid, dict):
            self.add(("grid",), f"must be a mapping with keys {', '.join(GRID_KEYS)}")
            return []
        for key in grid:
            if key not in GRID_KEYS:
                self.add(("grid", key), f"unknown key{_suggest(key, GRID_KEYS)}; allowed: {', '.join(GRID_KEYS)}")
        allowed_bits = ", ".join(map(str, BITS))
        bits = self.grid_list(
            grid, "bits", lambda v: None if _is_int(v) and v in BITS else f"{v!r} is not allowed; use one of {allowed_bits}"
        )
        quantized = [b for b in bits if b != 16]
        need_types = bool(quantized)
        dtypes = (
            self.grid_list(
                grid,
                "dtypes",
                lambda v: None if v in DTYPES else f"{v!r} is not a data type{_suggest(v, DTYPES)}; use one of {', '.join(DTYPES)}",
            )
            if need_types or "dtypes" in grid
            else []
        )
        blocks = (
            self.grid_list(
                grid,
                "blocksizes",
                lambda v: None
                if v is None or (_is_int(v) and v in BLOCKSIZES)
                else f"{v!r} is not allowed; use a power of two from 32 to 4096 ({', '.join(map(str, BLOCKSIZES))}) "
                "or null for one scale per tensor",
            )
            if need_types or "blocksizes" in grid
            else []
        )
        exps = self.grid_list(
            grid,
            "exponent_bits",
            lambda v: None if v is None or (_is_int(v) and 1 <= v <= 7) else f"{v!r} is not allowed; use 1..7 or null",
        )
        outliers = self.grid_list(
            grid,
            "outlier_fractions",
            lambda v: None
            if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 0.5
            else f"{v!r} is not allowed; use a fraction in [0, 0.5), e.g. 0.02",
        )
        if self.problems:
            return []
        configs: list[QuantConfig] = []
        if baseline or 16 in bits:
            configs.append(QuantConfig(bits=16))
        impossible = []
        for k, dtype, block, outlier in itertools.product(quantized, dtypes, blocks, outliers):
            # exponent bits only shape the fp type; the other types take each grid point once
            for exp in exps if dtype == "fp" else [None]:
                if exp is not None and exp > k - 1:
                    impossible.append(f"exponent_bits {exp} with {k}-bit fp")
                    continue
                cfg = QuantConfig(k, dtype, block, exponent_bits=exp, outlier_fraction=float(outlier))
                if cfg not in configs:
                    configs.append(cfg)
        for problem in sorted(set(impossible)):
            self.add(
                ("grid", "exponent_bits"),
                f"{problem} is impossible: a k-bit float has at most k-1 exponent bits; "
                "drop it or use null (the paper's default per k)",
            )
        return configs

    # -- tasks and eval ----------------------------------------------------------------------

    def eval(self, data: dict) -> dict:
        out = dict(EVAL_DEFAULTS)
        tasks = data.get("tasks")
        if tasks is None:
            self.add((), "missing `tasks:`; list lm-eval task names, e.g. [lambada_openai, piqa]")
            tasks = []
        elif isinstance(tasks, str):
            tasks = [tasks]
        elif not isinstance(tasks, list) or not tasks:
            self.add(("tasks",), "must be a non-empty list of lm-eval task names, e.g. [lambada_openai, piqa]")
            tasks = []
        clean = []
        for i, task in enumerate(tasks):
            if not isinstance(task, str) or not task.strip() or " " in task.strip():
                self.add(("tasks", i), f"{task!r} is not a task name; use lm-eval names such as hellaswag")
            elif task.strip() not in clean:
                clean.append(task.strip())
        out["tasks"] = clean
        ev = data.get("eval", {})
        if ev is None:
            ev = {}
        if not isinstance(ev, dict):
            self.add(("eval",), f"must be a mapping with keys {', '.join(EVAL_KEYS)}")
            return out
        for key in ev:
            if key not in EVAL_KEYS:
                self.add(("eval", key), f"unknown key{_suggest(key, EVAL_KEYS)}; allowed: {', '.join(EVAL_KEYS)}")
        checks = {
            "num_fewshot": (lambda v: _is_int(v) and 0 <= v <= 64, "a whole number from 0 to 64"),
            "limit": (
                lambda v: v is None
                or (_is_int(v) and v >= 1)
                or (isinstance(v, float) and 0 < v <= 1),
                "null (all examples), a count >= 1, or a fraction in (0, 1]",
            ),
            "batch_size": (lambda v: _is_int(v) and 1 <= v <= 4096, "a whole number from 1 to 4096"),
            "seed": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
            "log_samples": (lambda v: isinstance(v, bool), "true or false"),
        }
        for key, (ok, allowed) in checks.items():
            if key in ev:
                if ok(ev[key]):
                    out[key] = ev[key]
                else:
                    self.add(("eval", key), f"{ev[key]!r} is not allowed; use {allowed}")
        return out
