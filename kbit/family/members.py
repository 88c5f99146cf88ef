"""The bundled model families: `micro` (seconds to build, for tests) and `demo` (four sizes that
show scaling). Ids are `kbit/<family>/<size>`. Every member ships inside the package as 16-bit
weights with checksums (`shipped.py`), so every machine evaluates the same model; with
KBIT_FAMILY_WEIGHTS=build (or when no shipped copy matches the recipe) it is trained on first use
under `$KBIT_HOME/models/<family>/<size>` (a `save_pretrained` folder with its tokenizer), behind a
file lock so two processes never build the same model at once, and written atomically.

A member can also be trained with another seed: `kbit/demo/s1@seed2` is s1 trained with the family's
second seed (seed n trains with the recipe's seed + n - 1; seed 1, the id without a suffix, is the
shipped model). Other seeds ship no weights: they are trained on first use, under
`$KBIT_HOME/models/<family>/<size>@seed<n>`, deterministically given the seed (on one machine).

    family_members("demo")           -> ["kbit/demo/s1", ..., "kbit/demo/s4"]
    ensure_model("kbit/demo/s2")     -> Path of the model (the shipped one, or built here if needed)
    ensure_family("micro", home)     -> the paths of every member (tests and demos)
    build_model("kbit/demo/s2")      -> Path of the model trained here (`kbit family build`)
    family_members("demo", seed=2)   -> ["kbit/demo/s1@seed2", ..., "kbit/demo/s4@seed2"]
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from filelock import FileLock

from kbit import settings
from kbit.family import shipped
from kbit.family.recipes import FAMILIES
from kbit.sweeps.modelids import bundled_parts, bundled_seed, with_seed

RECIPE_VERSION = 4  # bump when a recipe changes so stale builds are rebuilt
MARKER = "kbit-build.json"


class UnknownBundledModel(LookupError):
    """A `kbit/...` id that names no bundled family or size."""


def family_members(name: str, seed: int = 1) -> list[str]:
    """The model ids of a bundled family trained with its `seed`-th seed, smallest first. ValueError
    for an unknown family."""
    if name not in FAMILIES:
        raise ValueError(f"{name!r} is not a bundled model family; use one of {', '.join(FAMILIES)}")
    return [with_seed(f"kbit/{name}/{size}", seed) for size in FAMILIES[name].sizes]


def is_bundled(model: str) -> bool:
    """True for ids of the form kbit/<family>/<size>[@seed<n>] (never a Hugging Face id: those have two parts)."""
    return bundled_parts(model) is not None


def parse_bundled(model: str) -> tuple[str, str]:
    """'kbit/demo/s1' -> ('demo', 's1'), the same for every seed of it ('kbit/demo/s1@seed2');
    UnknownBundledModel names the valid ids otherwise."""
    if not is_bundled(model):
        raise UnknownBundledModel(f"{model!r} is not a bundled model id; bundled ids look like kbit/demo/s1")
    family, size = bundled_parts(model)
    if with_seed(model, 1) != model and bundled_seed(model) == 1:
        raise UnknownBundledModel(f"bundled model {model!r}: seed 1 is the family's own; write {with_seed(model, 1)!r}")
    if family not in FAMILIES:
        raise UnknownBundledModel(
            f"bundled model {model!r}: no family {family!r}; bundled families are {', '.join(FAMILIES)}"
        )
    if size not in FAMILIES[family].sizes:
        raise UnknownBundledModel(
            f"bundled model {model!r}: family {family!r} has no size {size!r}; use one of {', '.join(family_members(family))}"
        )
    return family, size


def model_dir(model: str, home: str | os.PathLike | None = None) -> Path:
    family, _ = parse_bundled(model)
    return settings.kbit_home(home) / "models" / family / model.split("/")[2]


def training_seed(family: str, seed: int = 1) -> int:
    """The torch seed of a family's `seed`-th training seed: the recipe's own, then the next ones."""
    return FAMILIES[family].seed + seed - 1


def recipe(family: str, size: str, seed: int = 1) -> dict:
    """Everything the build depends on; a stored model with another recipe is rebuilt. Seed 1's is
    the recipe the shipped weights record."""
    spec = FAMILIES[family]
    return {"version": RECIPE_VERSION, "family": family, "size": size,
            **{k: v for k, v in asdict(spec).items() if k != "sizes"}, "seed": training_seed(family, seed),
            "geometry": asdict(spec.sizes[size])}


def model_recipe(model: str) -> dict:
    """The recipe of bundled model `model` (its seed included)."""
    return recipe(*parse_bundled(model), seed=bundled_seed(model))


def build_info(model: str, home: str | os.PathLike | None = None) -> dict | None:
    """The build marker (recipe and training figures) of the model `ensure_model` gives, else None."""
    if _shipped(model) is not None:
        return shipped.marker(model)
    return built_info(model, home)


def built_info(model: str, home: str | os.PathLike | None = None) -> dict | None:
    """The build marker of the model trained here under KBIT_HOME, else None."""
    path = model_dir(model, home) / MARKER
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _shipped(model: str) -> Path | None:
    if settings.family_weights() != "shipped" or bundled_seed(model) != 1:  # other seeds ship no weights
        return None
    return shipped.shipped_model(model, model_recipe(model))


def _is_current(model: str, home) -> bool:
    info = built_info(model, home)
    return info is not None and info.get("recipe") == model_recipe(model)


def ensure_model(model: str, home: str | os.PathLike | None = None) -> Path:
    """The folder of bundled model `model`: the shipped one (checksums verified), else the one built
    here, built first if it is missing or stale."""
    found = _shipped(model)
    return found if found is not None else build_model(model, home)


def build_model(model: str, home: str | os.PathLike | None = None) -> Path:
    """The folder of bundled model `model` trained here, trained first if it is missing or stale."""
    target = model_dir(model, home)
    if _is_current(model, home):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if not _is_current(model, home):  # another process may have built it while we waited
            _build(model, target, home)
    return target


def ensure_family(name: str, home: str | os.PathLike | None = None) -> list[Path]:
    """Build (if needed) every member of family `name`; their folders, smallest first."""
    return [ensure_model(member, home) for member in family_members(name)]


def _build(model: str, target: Path, home) -> None:
    from kbit.family import builder, taskdata

    family, size = parse_bundled(model)
    taskdata.ensure_task_data(home)
    scratch = Path(tempfile.mkdtemp(prefix=f".{size}-build-", dir=target.parent))
    try:
        stats = builder.build_member(FAMILIES[family], family, size, scratch, settings.kbit_home(home),
                                     seed=training_seed(family, bundled_seed(model)), name=model)
        (scratch / MARKER).write_text(json.dumps({"model": model, "recipe": model_recipe(model), "train": stats}, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
