"""Real checkpoints through the worker: tiny randomly initialised models of each family saved as
local folders (or into a local Hugging Face cache) with a tokenizer, evaluated through
`evaluate_configs`; every way loading fails, each with its message and its retry class; a model
kbit cannot quantize fails as a run instead of passing as a 16-bit result under a k-bit label."""

import pytest
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from torch import nn
from transformers import (
    BloomConfig,
    BloomForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)

from kbit.family.tokenizer import train_tokenizer
from kbit.kernels import QuantConfig
from kbit.sweeps import EvalSpec, ModelSpec
from kbit.workers import evaluate_configs, evaluate_group, loading

VOCAB, HIDDEN, HEADS, POSITIONS = 320, 64, 4, 512
FAST = EvalSpec(tasks=("kbit_choice",), limit=4, batch_size=8)
CONFIGS = [QuantConfig(16), QuantConfig(4, "nf", 64)]
SHA = "0123456789abcdef0123456789abcdef01234567"


def build(kind: str, layers: int = 2):
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if kind == "gpt2":
        return GPT2LMHeadModel(GPT2Config(n_layer=layers, n_embd=HIDDEN, n_head=HEADS, n_positions=POSITIONS, **common))
    if kind == "opt":
        return OPTForCausalLM(OPTConfig(num_hidden_layers=layers, hidden_size=HIDDEN, ffn_dim=128, num_attention_heads=HEADS,
                                        max_position_embeddings=POSITIONS, word_embed_proj_dim=HIDDEN, **common))
    if kind == "bloom":
        return BloomForCausalLM(BloomConfig(n_layer=layers, hidden_size=HIDDEN, n_head=HEADS, **common))
    if kind == "gpt_neox":
        return GPTNeoXForCausalLM(GPTNeoXConfig(num_hidden_layers=layers, hidden_size=HIDDEN, intermediate_size=128,
                                                num_attention_heads=HEADS, max_position_embeddings=POSITIONS, **common))
    return LlamaForCausalLM(LlamaConfig(num_hidden_layers=layers, hidden_size=HIDDEN, intermediate_size=128,
                                        num_attention_heads=HEADS, num_key_value_heads=2,
                                        max_position_embeddings=POSITIONS, **common))


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE as the bundled family builds it (its one special token is id 0)."""
    text = ["In the beginning was the word, and the word was with the people of the land."] * 50
    tok = train_tokenizer(text, vocab_size=300, max_length=POSITIONS)
    assert len(tok) <= VOCAB and tok.eos_token_id == 0
    return tok


def save(folder, model, tokenizer):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def weight_matrices(model) -> int:
    return sum(m.weight.numel() for name, m in model.named_modules()
               if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 2
               and not isinstance(m, nn.Embedding) and name != "lm_head")


@pytest.mark.parametrize("kind", ["gpt2", "opt", "bloom", "gpt_neox", "llama"])
def test_each_family_runs_from_a_local_folder(kind, tokenizer, tmp_path, offline_home):
    model = build(kind)
    folder = save(tmp_path / kind, model, tokenizer)
    before = loading.MODEL_LOADS[folder]
    results = list(evaluate_configs(ModelSpec(folder), CONFIGS, FAST))
    assert [r.status for r in results] == ["done", "done"], [r.error for r in results]
    assert loading.MODEL_LOADS[folder] == before + 1
    baseline, four = (r.bits for r in results)
    assert baseline["n_quantized"] == 0 and baseline["bits_per_param"] == 16.0
    # every block weight at 4 bits (GPT-2's Conv1D included: before, n_quantized 0 and 16.0 bits)
    assert four["n_quantized"] == weight_matrices(model) and four["bits_per_param"] == 4.25
    assert four["n_params"] == baseline["n_params"] == sum(p.numel() for p in model.parameters())
    assert results[1].metric("kbit_choice", "acc") is not None
    assert results[1].provenance["model"] == folder and results[1].provenance["commit"] is None


def test_a_model_with_nothing_to_quantize_fails_as_a_run(tokenizer, tmp_path, offline_home):
    """No block at all: the 16-bit baseline runs, a 4-bit config is a failed run with the reason."""
    folder = save(tmp_path / "empty", build("llama", layers=0), tokenizer)
    baseline, four = evaluate_configs(ModelSpec(folder), CONFIGS, FAST)
    assert baseline.status == "done"
    assert (four.status, four.error_type, four.retryable) == ("failed", "not_quantizable", False)
    assert "nothing to quantize in LlamaForCausalLM (model_type 'llama')" in four.error
    assert "would be the 16-bit model under a 4-bit label" in four.error
    assert four.bits is None and four.metrics == []


def test_dtype_and_device_map_reach_the_loaded_model(tokenizer, tmp_path, offline_home, monkeypatch):
    folder = save(tmp_path / "opt", build("opt"), tokenizer)
    loaded = loading.load_model(ModelSpec(folder, dtype="bf16"))
    assert loaded.model.dtype == torch.bfloat16
    run = {"tasks": ["kbit_choice"], "limit": 4, "batch_size": 8, "model_load": {"dtype": "float16"}}
    [result] = evaluate_group(folder, "main", [QuantConfig(16).to_dict()], run, lambda: False)
    assert result["status"] == "done", result["error"]
    assert result["provenance"]["dtype"] == "float16" and result["provenance"]["eval"]["tasks"] == ["kbit_choice"]
    real, seen = loading.AutoModelForCausalLM.from_pretrained, []

    def recording(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", recording)
    spread = loading.load_model(ModelSpec(folder, device_map="auto"))  # accelerate places it (all on CPU here)
    assert seen[-1]["device_map"] == "auto" and spread.model.device.type == "cpu"


# -- a local Hugging Face cache: ids and revisions offline ---------------------------------------------


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, tokenizer):
    """`kbit-test/tiny-gpt2` at commit SHA (branch main) in a private cache; the hub offline."""
    cache = tmp_path / "hub"
    repo = cache / "models--kbit-test--tiny-gpt2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SHA)
    save(repo / "snapshots" / SHA, build("gpt2"), tokenizer)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return cache


def test_a_hugging_face_id_loads_from_the_cache_with_its_commit(hub_cache, offline_home):
    for revision in ("main", SHA):
        [result] = evaluate_configs(ModelSpec("kbit-test/tiny-gpt2", revision=revision), CONFIGS[1:], FAST)
        assert result.status == "done", result.error
        assert result.provenance["commit"] == SHA and result.provenance["revision"] == revision
        assert result.bits["bits_per_param"] == 4.25


@pytest.mark.parametrize("model, revision, words", [
    ("kbit-test/tiny-gpt2", "v9", "model 'kbit-test/tiny-gpt2' at revision 'v9' could not be loaded: the hub is "
                                  "offline here (HF_HUB_OFFLINE=1) and it is not in the local Hugging Face cache"),
    ("kbit-test/no-such-model", "main", "model 'kbit-test/no-such-model' at revision 'main' could not be loaded: "
                                        "the hub is offline here"),
])
def test_a_bad_revision_or_id_offline_is_a_permanent_clear_failure(hub_cache, offline_home, model, revision, words):
    results = list(evaluate_configs(ModelSpec(model, revision=revision), CONFIGS, FAST))
    assert [(r.status, r.error_type, r.retryable) for r in results] == [("failed", "model_not_found", False)] * 2
    assert words in results[0].error


def test_bad_paths_each_with_its_message(tmp_path, monkeypatch, tokenizer, offline_home):
    (tmp_path / "no-config").mkdir()
    save(tmp_path / "here", build("gpt2", layers=1), tokenizer)
    monkeypatch.chdir(tmp_path)
    cases = [
        (ModelSpec(str(tmp_path / "absent")), "does not exist; check the path"),
        (ModelSpec("models/absent/m"), "does not exist; check the path"),  # a path by kbit.sweeps.modelids' rule
        (ModelSpec(str(tmp_path / "no-config")), "has no config.json; point at a save_pretrained folder"),
        (ModelSpec("here", revision="v2"), "'here' is a local folder, so revision 'v2' cannot apply"),
    ]
    for spec, words in cases:
        [result] = evaluate_configs(spec, CONFIGS[:1], FAST)
        assert (result.status, result.error_type, result.retryable) == ("failed", "model_not_found", False)
        assert words in result.error, result.error
    with pytest.raises(ValueError, match="revision='v2' applies to Hugging Face ids only"):
        ModelSpec(str(tmp_path / "here"), revision="v2")  # refused before it is ever queued


# -- what each hub failure means -----------------------------------------------------------------


class Response:
    def __init__(self, status: int):
        self.status_code, self.headers, self.request = status, {}, None


def wrapped(cause: BaseException) -> OSError:
    """As transformers raises it: a plain OSError whose cause is the hub's error."""
    try:
        raise cause
    except BaseException as inner:
        try:
            raise OSError(f"wrapped: {inner}") from inner
        except OSError as outer:
            return outer


@pytest.mark.parametrize("cause, error_type, transient, words", [
    (GatedRepoError("Access to model m is restricted", response=Response(403)), "model_gated", False,
     "is gated or private and this worker may not read it"),
    (HfHubHTTPError("401 Unauthorized", response=Response(401)), "model_gated", False, "HF_TOKEN"),
    (RevisionNotFoundError("Invalid rev id: v9", response=Response(404)), "model_not_found", False,
     "has no revision 'v9'; use a branch, tag or commit"),
    (RepositoryNotFoundError("404 Client Error", response=Response(404)), "model_not_found", False,
     "no such Hugging Face repository"),
    (HfHubHTTPError("503 Service Unavailable", response=Response(503)), "model_unavailable", True, "the run is retried"),
    (ConnectionError("Temporary failure in name resolution"), "model_unavailable", True, "could not be fetched"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out_of_memory", False,
     "device_map: auto"),
    (ValueError("The checkpoint you are trying to load has model type `mamba9` but Transformers does not recognize "
                "this architecture."), "model_unsupported", False, "cannot load it as a causal language model"),
])
def test_every_loading_failure_has_a_type_a_retry_class_and_a_fix(monkeypatch, offline_home, cause, error_type,
                                                                 transient, words):
    def failing(*args, **kwargs):
        raise wrapped(cause) if not isinstance(cause, (RuntimeError, ValueError)) else cause

    monkeypatch.setattr(loading.AutoTokenizer, "from_pretrained", failing)
    results = list(evaluate_configs(ModelSpec("some-org/some-model", revision="v9"), CONFIGS, FAST))
    assert [(r.status, r.error_type, r.retryable) for r in results] == [("failed", error_type, transient)] * 2
    assert words in results[0].error, results[0].error


def test_offline_mode_is_not_a_network_failure():
    from huggingface_hub.errors import OfflineModeIsEnabled

    assert not loading.is_network_failure(wrapped(OfflineModeIsEnabled("offline mode is enabled")))
    assert loading.is_network_failure(wrapped(ConnectionError("reset by peer")))
