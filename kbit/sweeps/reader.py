"""The sweep-file reader: YAML text -> a validated `Sweep` (models x quantization grid x tasks).

It builds the dataclasses (`Sweep`, `ModelEntry`, `QuantConfig`, `EvalSpec`), which hold every
rule, and maps their `ValueError`s to the file's lines; it adds only what is about the file
itself (unknown keys, the grid's shape, bundled families). Every problem is collected and raised
as one `SweepError`; nothing is written anywhere on error. The format, with defaults:

    name: demo                    # default: the file name without .yaml
    team: nlp                     # optional; `kbit submit --team` overrides it
    priority: 0                   # -10..10, higher runs first
    max_attempts: 3               # tries per run when workers die
    run_timeout_s: 10800          # a run (one config) taking longer fails with `timeout`
    models:                       # Hugging Face ids, local paths, bundled ids, or a bundled family
      - EleutherAI/pythia-70m
      - {model: EleutherAI/pythia-160m, revision: step143000, family: pythia}
      - {model: /models/opt-125m}  # a local save_pretrained folder (no revision)
      - {model: facebook/opt-66b, dtype: fp16, device_map: auto, memory_gb: 150}
                                  # dtype: auto|fp16|bf16|fp32 (or float16 ...); device_map:
                                  # auto|balanced|balanced_low_0|sequential; memory_gb: GiB of GPU
                                  # memory one evaluation needs (weights + activations), 0 < x <= 100000:
                                  # where the scheduler places it (not part of the cache key)
      - {family: demo}            # every member of a bundled family (kbit/demo/s1 ...)
      - {family: demo, seeds: 3}  # ... each trained with its first 3 seeds, 1..20 (kbit/demo/s1,
                                  # kbit/demo/s1@seed2, kbit/demo/s1@seed3 ...; one seed: kbit/demo/s1@seed2)
    grid:
      bits: [3, 4, 5, 6, 8]       # 2..8; 16 is the unquantized baseline
      dtypes: [int, fp, nf, quantile, dynamic]
      blocksizes: [64, 1024]      # powers of two 32..4096, or null for one scale per tensor
      exponent_bits: [null]       # fp only; null = default_exponent_bits(k): E2 at 3..6 bits, E3 at 7..8
      outlier_fractions: [0.0]
      methods: [rtn]              # rtn (round to nearest) and/or gptq (calibrated; see calibration)
    quantize: {embeddings: false, head: false}
                                  # also quantize the token embedding table and the output head with
                                  # each config (rtn only; a tied pair: both or neither); when set,
                                  # labels end in -emb / -head and the runs get their own cache keys
    calibration: {samples: 128, seq_len: 512, source: bundled, seed: 0}
                                  # only with gptq (these defaults when left out): seq_len is capped
                                  # at the model's context; source: bundled (the bundled family's
                                  # training text), a text file path (/data/calib.txt), or a
                                  # Hugging Face dataset id[:config] (wikitext:wikitext-2-raw-v1)
    baseline: true                # add the 16-bit baseline once per model
    tasks: [kbit_lastword, kbit_choice, kbit_heldout]
    eval: {num_fewshot: 0, limit: null, batch_size: 8, seed: 1234, log_samples: false}
                                  # limit: a count per task, or a fraction of its documents in (0, 1)
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import fields
from pathlib import Path as FsPath

from kbit import settings
from kbit.errors import SweepError
from kbit.kernels.config import DTYPES, ENDS, METHODS, QuantConfig
from kbit.sweeps.evalspec import Calibration, EvalSpec, check_device_map, check_dtype, check_memory_gb
from kbit.sweeps.modelids import bundled_parts, bundled_seed, with_seed
from kbit.sweeps.sweep import (
    RUN_TIMEOUT_S,
    ModelEntry,
    Sweep,
    check_calibration,
    check_max_attempts,
    check_name,
    check_priority,
    check_run_timeout,
    check_seeds,
    check_team,
    family_entries,
)
from kbit.sweeps.yamllines import YamlSyntaxError, load_with_lines, path_text

TOP_KEYS = ("name", "team", "priority", "max_attempts", "run_timeout_s", "models", "grid", "quantize", "baseline", "tasks",
            "eval", "calibration")
GRID_KEYS = ("bits", "dtypes", "blocksizes", "exponent_bits", "outlier_fractions", "methods")
EVAL_KEYS = tuple(f.name for f in fields(EvalSpec) if f.name != "tasks")
CALIBRATION_KEYS = tuple(f.name for f in fields(Calibration))
MODEL_KEYS = ("model", "revision", "family", "seeds", "dtype", "device_map", "memory_gb")
LOAD_CHECKS = (("dtype", check_dtype), ("device_map", check_device_map), ("memory_gb", check_memory_gb))
GRID_DEFAULTS = {"exponent_bits": [None], "outlier_fractions": [0.0], "methods": ["rtn"]}

# Each grid value is checked alone by building a QuantConfig that differs from a valid one only in
# that value: the dataclass's message then names exactly what is wrong with it.
PROBE = {"bits": {"dtype": "int"}, "dtypes": {"bits": 4}, "blocksizes": {"bits": 4, "dtype": "int"},
         "exponent_bits": {"bits": 8, "dtype": "fp"}, "outlier_fractions": {"bits": 4, "dtype": "int"},
         "methods": {"bits": 4, "dtype": "int"}}
FIELD = {"bits": "bits", "dtypes": "dtype", "blocksizes": "blocksize", "exponent_bits": "exponent_bits",
         "outlier_fractions": "outlier_fraction", "methods": "method"}


MAX_PROBLEMS_SHOWN = 40
MAX_FILE_BYTES = 1_000_000  # a sweep is a grid of a few lines; a megabyte is already absurd


def load_sweep(path: str | FsPath, family_members=None) -> Sweep:
    """Read and validate a sweep file; `SweepError` names every problem."""
    path = FsPath(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SweepError(str(path), [f"is {size:,} bytes; a sweep file may have at most {MAX_FILE_BYTES:,} "
                                         "(list the grid, not every run)"])
        text = path.read_text()
    except FileNotFoundError:
        raise SweepError(str(path), ["file not found; check the path"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(str(path), [f"cannot be read ({exc.__class__.__name__}: {exc}); give a readable YAML file"]) from None
    return parse_sweep(text, source=str(path), default_name=path.stem, family_members=family_members)


def parse_sweep(text: str, source: str = "sweep", default_name: str | None = None, family_members=None) -> Sweep:
    """Validate sweep YAML text. `family_members(name) -> [model ids]` resolves bundled families
    (`kbit.family.members_members`; the CLI passes it); without it no bundled family is known."""
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
    try:
        sweep = checker.sweep(data, default_name)
    except SweepError as exc:  # a rule about the whole sweep (its size) has no line of its own
        checker.problems.extend((None, problem) for problem in exc.problems)
    if checker.problems:
        ordered = sorted(set(checker.problems), key=lambda p: (p[0] or 0, p[1]))
        shown = [f"line {line}: {msg}" if line else msg for line, msg in ordered[:MAX_PROBLEMS_SHOWN]]
        if len(ordered) > MAX_PROBLEMS_SHOWN:
            shown.append(f"... and {len(ordered) - MAX_PROBLEMS_SHOWN:,} more problems of the same kinds")
        raise SweepError(source, shown)
    return sweep


def _suggest(word, allowed) -> str:
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _reason(exc: ValueError) -> str:
    """A dataclass's message without its 'Class.field=value' prefix (the file's path names the field)."""
    text = str(exc)
    head, sep, rest = text.partition(" is not allowed")
    if sep and "=" in head and "." in head.split("=")[0]:
        return f"{head.split('=', 1)[1]} is not allowed{rest}"
    return text


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

    def check(self, path, build, *args):
        """`build(*args)`, or None with its ValueError recorded at `path`."""
        try:
            return build(*args)
        except ValueError as exc:
            self.add(path, _reason(exc))
            return None

    def unknown_keys(self, mapping: dict, path, allowed) -> None:
        for key in mapping:
            if key not in allowed:
                self.add(path + (key,), f"unknown key{_suggest(key, allowed)}; allowed keys: {', '.join(allowed)}")

    def members(self, family: str):
        if self._family_members is None:
            return None
        try:
            members = list(self._family_members(family))
        except (KeyError, ValueError, LookupError):
            return None
        return members or None

    # -- top level ---------------------------------------------------------------------------

    def sweep(self, data: dict, default_name: str | None) -> Sweep | None:
        self.unknown_keys(data, (), TOP_KEYS)
        name = data.get("name", default_name)
        if name is None:
            self.add((), "missing `name:`; give the sweep a name, e.g. name: pythia-4bit")
        else:
            name = self.check(("name",), check_name, name)
        team = self.check(("team",), check_team, data.get("team"))
        priority = self.check(("priority",), check_priority, data.get("priority", 0))
        attempts = self.check(("max_attempts",), check_max_attempts, data.get("max_attempts", settings.MAX_ATTEMPTS))
        timeout = self.check(("run_timeout_s",), check_run_timeout, data.get("run_timeout_s", RUN_TIMEOUT_S))
        models = self.models(data)
        configs = self.configs(data)
        eval_spec = self.eval(data)
        calibration = self.calibration(data, configs)
        if self.problems:
            return None
        return Sweep(name=name, team=team, models=tuple(models), configs=tuple(configs), eval=eval_spec,
                     priority=priority, max_attempts=attempts, run_timeout_s=timeout, calibration=calibration)

    # -- models ------------------------------------------------------------------------------

    def models(self, data: dict) -> list[ModelEntry]:
        if "models" not in data:
            self.add((), "missing `models:`; list Hugging Face ids, local paths, or {family: demo}")
            return []
        items = data["models"]
        if isinstance(items, (str, dict)):
            items, paths = [items], [("models",)]
        elif isinstance(items, list) and items:
            paths = [("models", i) for i in range(len(items))]
        else:
            self.add(("models",), "must be a non-empty list of models, e.g. [EleutherAI/pythia-70m]")
            return []
        entries: list[ModelEntry] = []
        for item, path in zip(items, paths):
            entries.extend(self.model_item(item, path))
        return list({(e.model, e.revision, e.dtype): e for e in reversed(entries)}.values())[::-1]

    def model_item(self, item, path) -> list[ModelEntry]:
        if isinstance(item, str):
            item = {"model": item}
        elif not isinstance(item, dict):
            self.add(path, f"must be a model id or a mapping with {', '.join(MODEL_KEYS)}, not {item!r}")
            return []
        self.unknown_keys(item, path, MODEL_KEYS)
        revision = item.get("revision", "main")
        load = self.load_settings(item, path)
        seeds = self.check(path + ("seeds",), check_seeds, item.get("seeds", 1))
        if load is None or seeds is None:
            return []
        if "model" in item and "seeds" in item:
            self.add(path + ("seeds",), "goes with `family:` (every member, each seed); for one model name its seed "
                     "in the id, e.g. kbit/demo/s1@seed2")
            return []
        if "model" not in item:
            # {family: demo}: every member of a bundled family
            family = item.get("family")
            if not isinstance(family, str) or not family:
                self.add(path, "needs `model:` (an id or path) or `family:` (a bundled family such as demo)")
                return []
            members = self.members(family)
            if members is None:
                self.add(path + ("family",), f"{family!r} is not a bundled model family; use e.g. demo or micro")
                return []
            return self.check(path, lambda: family_entries(members, revision, seeds, **load)) or []
        entry = self.check(path, lambda: ModelEntry(item["model"], revision, family=item.get("family") or "", **load))
        if entry is None:
            return []
        parts = bundled_parts(entry.model)
        if parts is not None:
            members = self.members(parts[0])
            if members is None:
                self.add(path, f"{entry.model!r}: {parts[0]!r} is not a bundled model family; use e.g. kbit/demo/s1")
                return []
            if with_seed(entry.model, 1) not in members:
                self.add(path, f"{entry.model!r} is not in the bundled family {parts[0]!r}; allowed: {', '.join(members)}"
                         " (each with a seed suffix such as @seed2, or none)")
                return []
            if bundled_seed(entry.model) == 1 and with_seed(entry.model, 1) != entry.model:
                self.add(path, f"{entry.model!r}: seed 1 is the family's own; write {with_seed(entry.model, 1)!r}")
                return []
        return [entry]

    def load_settings(self, item: dict, path) -> dict | None:
        """dtype, device_map and memory_gb of a model item, each checked at its own line (None: a problem)."""
        before = len(self.problems)
        load = {key: self.check(path + (key,), check, item[key]) for key, check in LOAD_CHECKS if key in item}
        return load if len(self.problems) == before else None

    # -- grid --------------------------------------------------------------------------------

    def grid_values(self, grid: dict, key: str) -> list:
        """The valid, distinct values of one grid axis; each invalid one is a problem at its line."""
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
        good: dict = {}
        for value, p in zip(values, paths):
            probe = dict(PROBE[key], **{FIELD[key]: value})
            if self.check(p, lambda: QuantConfig(**probe)) is None:
                if key in ("dtypes", "methods"):  # a typo in a name gets a suggestion
                    choices = DTYPES if key == "dtypes" else METHODS
                    self.problems[-1] = (self.problems[-1][0], self.problems[-1][1] + _suggest(value, choices))
            else:
                good[value] = None
        return list(good)

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
        self.unknown_keys(grid, ("grid",), GRID_KEYS)
        bits = self.grid_values(grid, "bits")
        quantized = [b for b in bits if b != 16]
        # A grid of only 16 bits needs no data type or block size.
        axes = {key: self.grid_values(grid, key) if quantized or key in grid else []
                for key in ("dtypes", "blocksizes")}
        exps = self.grid_values(grid, "exponent_bits")
        outliers = self.grid_values(grid, "outlier_fractions")
        methods = self.grid_values(grid, "methods")
        ends = self.ends(data, methods)
        if self.problems:
            return []
        grid_size = (len(quantized) * len(axes["dtypes"]) * len(axes["blocksizes"]) * len(outliers) * len(exps)
                     * len(methods))
        if grid_size > settings.max_runs_per_sweep():  # refuse before building millions of configs
            self.add(("grid",), f"spans {grid_size:,} configs; a sweep may have at most "
                     f"{settings.max_runs_per_sweep():,} runs: split it into several sweeps")
            return []
        configs: dict[QuantConfig, None] = {}
        if baseline or 16 in bits:
            configs[QuantConfig(bits=16)] = None
        for method, k, dtype, block, outlier in itertools.product(
                methods, quantized, axes["dtypes"], axes["blocksizes"], outliers):
            # exponent bits only shape the fp type; the other types take each grid point once
            for exp in exps if dtype == "fp" else [None]:
                cfg = self.check(("grid", "exponent_bits"), lambda: QuantConfig(
                    k, dtype, block, exponent_bits=exp, outlier_fraction=outlier, method=method, **ends))
                if cfg is not None:
                    configs[cfg] = None
        return list(configs)

    def ends(self, data: dict, methods: list) -> dict:
        """The `quantize:` mapping ({embeddings, head}: true or false), each key checked at its line
        by QuantConfig with every method of the grid; {} when it is left out."""
        given = data.get("quantize")
        if given is None:
            return {}
        if not isinstance(given, dict):
            self.add(("quantize",), f"must be a mapping with keys {', '.join(ENDS)}, e.g. {{embeddings: true, head: true}}")
            return {}
        self.unknown_keys(given, ("quantize",), ENDS)
        ends = {}
        for key in ENDS:
            if key in given and all(
                    self.check(("quantize", key), lambda m=m, key=key: QuantConfig(4, "int", method=m, **{key: given[key]}))
                    for m in methods or ["rtn"]):
                ends[key] = given[key]
        return ends

    # -- tasks and eval ----------------------------------------------------------------------

    def eval(self, data: dict) -> EvalSpec | None:
        tasks = data.get("tasks")
        if tasks is None:
            self.add((), "missing `tasks:`; list lm-eval task names, e.g. [lambada_openai, piqa]")
            tasks = []
        elif isinstance(tasks, str):
            tasks = [tasks]
        elif not isinstance(tasks, list) or not tasks:
            self.add(("tasks",), "must be a non-empty list of lm-eval task names, e.g. [lambada_openai, piqa]")
            tasks = []
        tasks = [task for i, task in enumerate(tasks) if self.check(("tasks", i), EvalSpec, [task]) is not None]
        ev = data.get("eval") or {}
        if not isinstance(ev, dict):
            self.add(("eval",), f"must be a mapping with keys {', '.join(EVAL_KEYS)}")
            return None
        self.unknown_keys(ev, ("eval",), EVAL_KEYS)
        settings = {key: ev[key] for key in EVAL_KEYS
                    if key in ev and self.check(("eval", key), lambda key=key: EvalSpec(("x",), **{key: ev[key]}))}
        if not tasks or self.problems:
            return None
        return self.check(("eval",), lambda: EvalSpec(tuple(tasks), **settings))

    # -- calibration -------------------------------------------------------------------------

    def calibration(self, data: dict, configs: list[QuantConfig]) -> Calibration | None:
        """The sweep's Calibration (each key checked alone at its line), or the default one when
        GPTQ configs name none; a calibration without GPTQ configs is a problem."""
        given = data.get("calibration")
        if given is None:
            return check_calibration(None, configs)
        if not isinstance(given, dict):
            self.add(("calibration",), f"must be a mapping with keys {', '.join(CALIBRATION_KEYS)}")
            return None
        self.unknown_keys(given, ("calibration",), CALIBRATION_KEYS)
        before = len(self.problems)
        values = {key: given[key] for key in CALIBRATION_KEYS
                  if key in given and self.check(("calibration", key), lambda key=key: Calibration(**{key: given[key]}))}
        if len(self.problems) > before or not configs:  # without configs the grid has problems already
            return None
        return self.check(("calibration",), check_calibration, Calibration(**values), configs)
