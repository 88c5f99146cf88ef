"""The bundled family: ids, clear errors for unknown ids, builds that load with transformers,
are reused (not rebuilt) and deterministic, and a corpus split by document."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kbit.family import corpus, members


def test_family_members_and_unknown_names():
    assert members.family_members("demo") == [f"kbit/demo/s{i}" for i in range(1, 5)]
    assert members.family_members("micro") == ["kbit/micro/m1", "kbit/micro/m2"]
    with pytest.raises(ValueError, match="'huge' is not a bundled model family; use one of micro, demo"):
        members.family_members("huge")
    with pytest.raises(members.UnknownBundledModel, match="family 'demo' has no size 's9'; use one of kbit/demo/s1"):
        members.model_dir("kbit/demo/s9")
    with pytest.raises(members.UnknownBundledModel, match="no family 'nope'"):
        members.model_dir("kbit/nope/s1")
    assert not members.is_bundled("EleutherAI/pythia-70m") and members.is_bundled("kbit/demo/s1")


def test_demo_sizes_and_compute_grow_geometrically():
    """Every step in size is at least 2.5x the parameters and 3x the training compute (parameters
    times tokens): larger members also train on more tokens."""
    from kbit.family.training import llama_config

    spec = members.FAMILIES["demo"]
    counts = []
    for geometry in spec.sizes.values():
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(llama_config(geometry, spec.vocab_size, spec.context, 0))
        counts.append(sum(p.numel() for p in model.parameters()))
    compute = [n * g.tokens for n, g in zip(counts, spec.sizes.values())]
    assert 40_000 <= counts[0] and counts[-1] <= 5_000_000
    assert all(2.5 <= b / a <= 5 for a, b in zip(counts, counts[1:])), counts
    assert all(b / a >= 3 for a, b in zip(compute, compute[1:])), compute
    assert [g.tokens for g in spec.sizes.values()] == sorted(g.tokens for g in spec.sizes.values())


def test_built_models_load_with_transformers_and_are_reused(micro):
    path = micro["kbit/micro/m1"]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = tok("The LORD is my shepherd", return_tensors="pt")["input_ids"]
    assert tok.decode(ids[0]) == "The LORD is my shepherd"
    assert model(ids).logits.shape == (1, ids.shape[1], len(tok))
    info = members.build_info("kbit/micro/m1")
    assert info["recipe"] == members.recipe("micro", "m1") and info["train"]["n_params"] == model.num_parameters()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert members.ensure_model("kbit/micro/m1") == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt


@pytest.mark.slow
def test_a_stale_build_is_rebuilt_identically(monkeypatch, tmp_path):
    """Built here (KBIT_FAMILY_WEIGHTS=build): deterministic given the seed (on one device and thread
    count), so a rebuild forced by a recipe change gives the same weights."""
    monkeypatch.setenv("KBIT_FAMILY_WEIGHTS", "build")
    monkeypatch.setenv("KBIT_HOME", str(tmp_path))
    path = members.ensure_model("kbit/micro/m1")
    assert path == members.model_dir("kbit/micro/m1") and members.build_info("kbit/micro/m1")["recipe"] == members.recipe("micro", "m1")
    before = AutoModelForCausalLM.from_pretrained(path).state_dict()
    monkeypatch.setattr(members, "RECIPE_VERSION", members.RECIPE_VERSION + 1)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    members.ensure_model("kbit/micro/m1")
    assert (path / "model.safetensors").stat().st_mtime_ns != stamp
    after = AutoModelForCausalLM.from_pretrained(path).state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_corpus_is_split_by_chapter():
    train, heldout = corpus.split()
    assert len(heldout) * 8 < len(train) < len(heldout) * 10
    train_ids = {(c.book, c.number) for c in train}
    assert not train_ids & {(c.book, c.number) for c in heldout}
    train_verses = {v for c in train for v in c.verses}
    leaked = [v for c in heldout for v in c.verses if v in train_verses and len(v) > 80]
    assert len(leaked) < 0.02 * sum(len(c.verses) for c in heldout)  # only the Bible's own repeated verses
    assert not any(":" in v.split(" ")[0] and v.split(" ")[0][0].isdigit() for c in heldout for v in c.verses)


def test_seed_ids_parse_to_one_family_and_refuse_a_spelled_out_seed_one():
    from kbit.sweeps.modelids import bundled_parts, bundled_seed, model_family, with_seed

    assert members.family_members("demo", seed=2) == [f"kbit/demo/s{i}@seed2" for i in range(1, 5)]
    assert bundled_parts("kbit/demo/s3@seed12") == ("demo", "s3") and bundled_seed("kbit/demo/s3@seed12") == 12
    assert members.parse_bundled("kbit/demo/s3@seed2") == ("demo", "s3")
    assert {model_family(m) for m in ("kbit/demo/s1", "kbit/demo/s1@seed2", "kbit/demo/s1@seed3")} == {"kbit-demo"}
    assert with_seed("kbit/demo/s1", 1) == "kbit/demo/s1" and with_seed("kbit/demo/s1@seed2", 3) == "kbit/demo/s1@seed3"
    assert members.recipe("demo", "s1") == members.model_recipe("kbit/demo/s1")  # the shipped weights' recipe
    assert members.model_recipe("kbit/demo/s1@seed3")["seed"] == members.FAMILIES["demo"].seed + 2
    assert members.model_dir("kbit/demo/s1@seed2").name == "s1@seed2"
    with pytest.raises(members.UnknownBundledModel, match="seed 1 is the family's own; write 'kbit/demo/s1'"):
        members.parse_bundled("kbit/demo/s1@seed1")
    for bad in ("kbit/demo/s1@seed0", "kbit/demo/s1@seedx", "kbit/demo/@seed2"):
        with pytest.raises(members.UnknownBundledModel, match="has no size"):
            members.parse_bundled(bad)


@pytest.mark.slow
def test_another_seed_is_built_here_deterministically_and_differs(micro, monkeypatch, tmp_path):
    """Seed 2 ships no weights, so it is trained on first use (even with shipped weights for seed 1),
    the same weights every time it is built here, and not seed 1's."""
    monkeypatch.setenv("KBIT_HOME", str(tmp_path))
    model = "kbit/micro/m1@seed2"
    path = members.ensure_model(model)
    assert path == members.model_dir(model) and members.build_info(model)["recipe"]["seed"] == 1235
    first = AutoModelForCausalLM.from_pretrained(path).state_dict()
    monkeypatch.setattr(members, "RECIPE_VERSION", members.RECIPE_VERSION + 1)  # stale: trained again
    again = AutoModelForCausalLM.from_pretrained(members.ensure_model(model)).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    seed_one = AutoModelForCausalLM.from_pretrained(micro["kbit/micro/m1"]).state_dict()
    assert not torch.allclose(first["model.layers.0.mlp.up_proj.weight"], seed_one["model.layers.0.mlp.up_proj.weight"].float())
