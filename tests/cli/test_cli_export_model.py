"""`kbit export` through the real worker path on the micro family: runs submitted, claimed and
evaluated by `run_group` with `evaluate_group` (rtn and GPTQ, k = 2..8, every data type, with and
without outliers, a float32 and a bfloat16 model, one with its embeddings and head quantized), then exported; each checkpoint, loaded and
evaluated with the run's own eval spec, gives the run's stored scores to the last digit, and its
tensors take the run's total bits / 8. Every error is one line and exit 1."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from kbit.cli.main import main
from kbit.db import connect, queries, queue, session_scope, teams
from kbit.errors import ExportError
from kbit.family import corpus, family_members
from kbit.kernels.checkpoint import MANIFEST, TENSORS
from kbit.service import Operations
from kbit.service.grouprun import noop_evaluate, run_group
from kbit.sweeps.reader import parse_sweep
from kbit.workers import evaluate_group
from kbit.workers.export import evaluate_checkpoint

# the module's `done` evaluates its runs (~4 s): once, in one pytest-xdist process
pytestmark = pytest.mark.xdist_group("test_cli_export_model")

EVAL = "baseline: false\ntasks: [kbit_lastword, kbit_heldout]\neval: {limit: 6, batch_size: 16, seed: 1234}\n"
# GPTQ calibrates on a small text file (the bundled training text takes seconds to tokenize)
CALIBRATION = "calibration: {samples: 16, seq_len: 64, source: CALIBRATION_FILE}\n"
# (model line, grid, extra): one run each; together k = 2..8, all five data types, rtn and gptq, outliers or
# not, a float32 and a bfloat16 model (every k x dtype x outlier combination: tests/kernels/test_kernels_checkpoint.py)
RUNS = {
    "int2-b64": ("[kbit/micro/m1]", "bits: [2], dtypes: [int], blocksizes: [64]", ""),
    "dynamic6-b64-o5%": ("[kbit/micro/m1]", "bits: [6], dtypes: [dynamic], blocksizes: [64], outlier_fractions: [0.05]", ""),
    "quantile8-b64-o5%": ("[kbit/micro/m1]", "bits: [8], dtypes: [quantile], blocksizes: [64], outlier_fractions: [0.05]", ""),
    "fp3e2-b64-gptq": ("[kbit/micro/m1]", "bits: [3], dtypes: [fp], blocksizes: [64], methods: [gptq]", CALIBRATION),
    "quantile5-b32-o5%-gptq": ("[kbit/micro/m1]", "bits: [5], dtypes: [quantile], blocksizes: [32], outlier_fractions: [0.05], "
                               "methods: [gptq]", CALIBRATION),
    "int7-b128": ("[kbit/micro/m1]", "bits: [7], dtypes: [int], blocksizes: [128]", ""),
    "bf16 nf4-b64": ("[{model: kbit/micro/m1, dtype: bf16}]", "bits: [4], dtypes: [nf], blocksizes: [64]", ""),
    # the tied embedding and head quantized too: one packed table in the checkpoint
    "nf4-b64-emb-head": ("[kbit/micro/m1]", "bits: [4], dtypes: [nf], blocksizes: [64]",
                         "quantize: {embeddings: true, head: true}\n"),
}


def submit(engine, token, name, models, grid, extra="", calibration_file="") -> int:
    extra = extra.replace("CALIBRATION_FILE", str(calibration_file))
    sweep = parse_sweep(f"name: {name}\nmodels: {models}\ngrid: {{{grid}}}\n{EVAL}{extra}", family_members=family_members)
    return Operations(engine).submit(sweep.spec(), "nlp", token)["sweep_id"]


def work_off_the_queue(engine, url, evaluate=evaluate_group) -> None:
    """What a worker does: claim a group, evaluate it (the real evaluator), store each result."""
    while True:
        with session_scope(engine) as s:
            claimed = queue.claim_runs(s, worker="w1", limit=16, lease_seconds=600)
        if not claimed:
            return
        runs = [{"run_id": c.run_id, "model": c.model, "revision": c.revision, "config": c.config, "eval": c.eval}
                for c in claimed]
        assert run_group(url, "w1", runs, evaluate, lease_seconds=600)["stored"] == len(runs)


@pytest.fixture(scope="module")
def m1(offline_env):
    """The folder of kbit/micro/m1, built under the session's KBIT_HOME (once a session)."""
    from kbit.family.members import ensure_model

    return ensure_model("kbit/micro/m1")


@pytest.fixture(scope="module")
def done(m1, tmp_path_factory):
    """{name: run detail} of the runs above, done; KBIT_DATABASE_URL points the CLI at their database."""
    folder = tmp_path_factory.mktemp("export-db")
    url = f"sqlite:///{folder / 'kbit.db'}"
    engine = connect(url)
    with session_scope(engine) as s:
        token = teams.create_team(s, "nlp")
    text = folder / "calibration.txt"
    train, _ = corpus.split()
    text.write_text("\n\n".join(chapter.text for chapter in train[:2]))
    ids = {name: submit(engine, token, f"s{i}", *spec, calibration_file=text) for i, (name, spec) in enumerate(RUNS.items())}
    work_off_the_queue(engine, url)
    saved = os.environ.get("KBIT_DATABASE_URL")
    os.environ["KBIT_DATABASE_URL"] = url
    with session_scope(engine) as s:
        runs = {name: queries.run_detail(s, queries.results_rows(s, sweep)[0]["run_id"]) for name, sweep in ids.items()}
    assert {name: r["status"] for name, r in runs.items()} == dict.fromkeys(RUNS, "done"), [r["error"] for r in runs.values()]
    yield {"runs": runs, "engine": engine, "url": url, "token": token, "folder": folder}
    if saved is None:
        del os.environ["KBIT_DATABASE_URL"]
    else:
        os.environ["KBIT_DATABASE_URL"] = saved
    engine.dispose()


def export(capsys, *args) -> tuple[int, str, str]:
    code = main(["export", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_an_exported_run_reproduces_its_stored_scores_and_bits(done, name, tmp_path, capsys):
    run = done["runs"][name]
    code, out, err = export(capsys, run["run_id"], "--output", tmp_path / "ckpt", "--check")
    assert code == 0, err
    assert f"reproduces all {len(run['metrics'])} stored scores exactly" in out and len(run["metrics"]) >= 4
    manifest = json.loads((tmp_path / "ckpt" / MANIFEST).read_text())
    assert manifest["label"] == run["label"] == name.split()[-1] and manifest["config"] == run["config"]
    assert manifest["run"]["run_id"] == run["run_id"] and manifest["run"]["cache_key"] == run["cache_key"]
    assert manifest["run"]["metrics"] == run["metrics"] and manifest["bits"] == run["bits_report"]
    assert manifest["code_version"] and manifest["run"]["code_version"] == run["provenance"]["kbit"]
    # the shipped family's 16-bit weights, held in float32 on a CPU, are written in 16 bit (exactly) as charged
    assert bool(manifest["narrowed"]) == (manifest["model_dtype"] == "float32")
    charged = run["bits_report"]["total_bits"] / 8
    assert charged <= manifest["tensor_bytes"] <= 1.01 * charged
    on_disk = (tmp_path / "ckpt" / TENSORS).stat().st_size
    assert on_disk - manifest["tensor_bytes"] < 12_000  # the safetensors header (JSON)
    assert {"config.json", "tokenizer.json", TENSORS, MANIFEST} <= {p.name for p in (tmp_path / "ckpt").iterdir()}


def one_line_error(capsys, *args) -> str:
    code, out, err = export(capsys, *args)
    assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("kbit export: error: "), (code, out, err)
    return err


def test_export_errors_are_one_line(done, tmp_path, capsys):
    run = done["runs"]["int2-b64"]
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    err = one_line_error(capsys, run["run_id"], "--output", tmp_path / "taken")
    assert "output folder" in err and "is not empty" in err and "--force" in err
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    assert export(capsys, run["run_id"], "--output", tmp_path / "taken", "--force")[0] == 0
    assert not (tmp_path / "taken" / "notes.txt").exists() and (tmp_path / "taken" / MANIFEST).exists()

    sweep = submit(done["engine"], done["token"], "waiting", "[kbit/micro/m1]", "bits: [5], dtypes: [int], blocksizes: [64]")
    with session_scope(done["engine"]) as s:
        queued = queries.results_rows(s, sweep)[0]["run_id"]
    assert "run %d is queued, not done" % queued in one_line_error(capsys, queued, "--output", tmp_path / "q")
    assert "does not exist" in one_line_error(capsys, 99999, "--output", tmp_path / "q")
    assert not (tmp_path / "q").exists()

    damaged = tmp_path / "taken" / TENSORS
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\0")
    with pytest.raises(ExportError, match="model.safetensors does not match the sha256"):
        evaluate_checkpoint(tmp_path / "taken")


def test_a_run_whose_model_is_gone_names_where_it_was_loaded(done, m1, tmp_path, capsys):
    model = tmp_path / "m1-copy"
    shutil.copytree(m1, model)
    sweep = submit(done["engine"], done["token"], "local", f"[{model}]", RUNS["int2-b64"][1])
    work_off_the_queue(done["engine"], done["url"], noop_evaluate)  # done at once: only its model matters here
    with session_scope(done["engine"]) as s:
        run_id = queries.results_rows(s, sweep)[0]["run_id"]
    shutil.rmtree(model)
    err = one_line_error(capsys, run_id, "--output", tmp_path / "out")
    assert f"run {run_id}'s model cannot be loaded here" in err and str(model) in err
    assert "(worker w1, device none)" in err and not (tmp_path / "out").exists()
