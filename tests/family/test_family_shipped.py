"""The shipped family weights: every bundled member ships for its current recipe (so every machine
evaluates the same model), in float16 with checksums that are checked; a damaged file is refused
with one clear message; KBIT_FAMILY_WEIGHTS=build or a changed recipe trains the model here."""

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from kbit.family import members, shipped

MEMBERS = [m for name in members.FAMILIES for m in members.family_members(name)]


@pytest.mark.parametrize("model", MEMBERS)
def test_every_member_ships_for_its_current_recipe_in_float16(model):
    path = shipped.shipped_model(model, members.recipe(*members.parse_bundled(model)))
    assert path is not None, f"no shipped weights of {model} for its recipe: `kbit family build NAME --ship`"
    assert members.ensure_model(model) == path == shipped.shipped_dir(model)
    info = members.build_info(model)
    assert info["recipe"] == members.recipe(*members.parse_bundled(model)) and info["dtype"] == "float16"
    assert set(info["files"]) >= {"model.safetensors", "config.json", "tokenizer.json"}
    with safe_open(path / "model.safetensors", "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.float16}
    assert sum(p.stat().st_size for p in path.iterdir()) < 8 * 2**20  # small enough for the wheel


def _copy_of_shipped(tmp_path, monkeypatch, model="kbit/micro/m1"):
    root = tmp_path / "weights"
    shutil.copytree(shipped.shipped_dir(model), root / "micro" / "m1")
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", root)
    return root / "micro" / "m1"


def test_a_damaged_shipped_file_is_refused_with_the_fix(tmp_path, monkeypatch):
    folder = _copy_of_shipped(tmp_path, monkeypatch)
    assert members.ensure_model("kbit/micro/m1") == folder
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    shipped._verified.cache_clear()
    with pytest.raises(shipped.ShippedWeightsCorrupt, match=r"do not match their checksums \(model.safetensors\); "
                       "reinstall kbit, or set KBIT_FAMILY_WEIGHTS=build"):
        members.ensure_model("kbit/micro/m1")
    from kbit.errors import KbitError
    from kbit.sweeps.evalspec import ModelSpec
    from kbit.workers import loading
    from kbit.workers.errors import ModelNotFound

    assert issubclass(shipped.ShippedWeightsCorrupt, KbitError)  # the CLI prints it as one line
    with pytest.raises(ModelNotFound, match="do not match their checksums"):  # a worker fails the run with it
        loading.resolve_source(ModelSpec("kbit/micro/m1"))


@pytest.mark.slow
def test_build_mode_or_another_recipe_trains_the_model_here(tmp_path, monkeypatch):
    folder = _copy_of_shipped(tmp_path, monkeypatch)
    marker = json.loads((folder / shipped.MARKER).read_text())
    marker["recipe"]["seed"] += 1  # shipped for another recipe: not used
    (folder / shipped.MARKER).write_text(json.dumps(marker))
    monkeypatch.setenv("KBIT_HOME", str(tmp_path / "home"))
    assert members.ensure_model("kbit/micro/m1") == members.model_dir("kbit/micro/m1")
    assert members.model_dir("kbit/micro/m1").is_relative_to(tmp_path / "home")
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", shipped.WEIGHTS_DIR.__class__(shipped.__file__).parent / "weights")
    monkeypatch.setenv("KBIT_FAMILY_WEIGHTS", "build")
    assert members.ensure_model("kbit/micro/m1") == members.model_dir("kbit/micro/m1")
    monkeypatch.setenv("KBIT_FAMILY_WEIGHTS", "nope")
    with pytest.raises(Exception, match="KBIT_FAMILY_WEIGHTS='nope' must be 'shipped' or 'build'"):
        members.ensure_model("kbit/micro/m1")


@pytest.mark.slow
def test_ship_writes_float16_weights_that_load_as_the_built_model_rounded(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("KBIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KBIT_FAMILY_WEIGHTS", "build")
    built = members.ensure_model("kbit/micro/m1")
    info = members.built_info("kbit/micro/m1")
    target = shipped.ship(built, "kbit/micro/m1", info["recipe"], info["train"], out_root=tmp_path / "out")
    marker = json.loads((target / shipped.MARKER).read_text())
    assert marker["files"] == {p.name: shipped.sha256(p) for p in target.iterdir() if p.name != shipped.MARKER}
    original = AutoModelForCausalLM.from_pretrained(built).state_dict()
    reloaded = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).state_dict()
    assert all(torch.equal(original[k].half().float(), reloaded[k]) for k in original)
