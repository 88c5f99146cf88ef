"""kbit's checkpoint format: a quantized model written as it is in memory, and read back.

`save_quantized(model, folder)` writes a model quantized by `quantize_model_` (QuantLinear layers,
and a QuantEmbedding when the config quantizes the embeddings; a head tied to it is written as a
reference to it and its bias, the table once) as safetensors: each quantized layer's packed k-bit
codes, 16-bit block scales, outlier column indices and 16-bit outlier columns, its bias, and its
codebook when the codebook is data-dependent
(`quantile`; the fixed codebooks of int, fp, nf and dynamic are constants of the format, rebuilt on
load and checked against the sha256 the manifest keeps); every other tensor of the model as it is
(the embeddings, norms and skipped layers; a tied tensor once; a float32 tensor whose values are
all 16-bit values in 16 bits, widened back on load). Beside them: the model's `config.json` (and
generation config), the tokenizer when given, and `kbit-manifest.json`. The tensor bytes are the
bits `BitReport.total_bits` charges, plus at most k - 1 bytes of packing padding per layer, when
the unquantized tensors hold 16-bit values (a 16-bit checkpoint, loaded in 16 bit or in float32);
float32 values that no 16-bit type holds stay float32, so the model computes as it did.

`load_quantized(folder)` checks the manifest's own sha256, the format and numerics versions, and
every file's sha256, then builds the transformers model from its config and puts each quantized
layer back as a `QuantLinear` (Triton on a GPU, the torch reference elsewhere): it computes what
the saved model computed, bit for bit, on the same machine.

The folder is written beside its destination under a temporary name and renamed into place, so an
error leaves nothing half-written. Every problem is a `CheckpointError` with a one-line message.
This is the one module of kbit.kernels that imports transformers, lazily, to build the model on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from kbit import settings
from kbit.kernels.blockwise import QuantizedTensor
from kbit.kernels.codebooks import codebook
from kbit.kernels.config import QuantConfig
from kbit.kernels.embedding import QuantEmbedding, TiedQuantLinear
from kbit.kernels.ends import hold_tie_, set_module
from kbit.kernels.linear import QuantLinear
from kbit.kernels.model import bit_report, quantized_modules

FORMAT = "kbit-checkpoint"
# Bump FORMAT_VERSION when the files' layout changes, NUMERICS_VERSION when what stored codes decode
# to changes (codebooks, packing, block order): a reader refuses a checkpoint newer than itself.
FORMAT_VERSION = 1
ENDS_FORMAT_VERSION = 2  # a checkpoint with a quantized embedding (older readers refuse it); others stay 1
NUMERICS_VERSION = 1
MANIFEST = "kbit-manifest.json"
TENSORS = "model.safetensors"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_CHUNK = 1 << 22
# A quantized layer's tensors in the file, each under "<layer name>.<part>" (codebook: quantile only)
LAYER_TENSORS = ("codes", "absmax", "codebook", "outlier_idx", "outlier_weight", "bias")


class CheckpointError(ValueError):
    """A kbit checkpoint that cannot be written or read as asked; the message names the fix."""


class OutputExists(CheckpointError):
    """The output folder exists and is not empty (and overwriting was not asked for)."""


class ChecksumMismatch(CheckpointError):
    """The manifest or a file does not match the sha256 recorded when the checkpoint was written."""


class NewerCheckpoint(CheckpointError):
    """The checkpoint was written by a newer format or numerics version than this kbit reads."""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def _sha256_tensor(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def _kbit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kbit")
    except PackageNotFoundError:
        return "unknown"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _fixed_codebook(cfg: QuantConfig) -> torch.Tensor | None:
    """The codebook every layer of `cfg` uses when it is a constant of the format (None: quantile)."""
    if cfg.is_baseline or cfg.dtype == "quantile":
        return None
    return codebook(cfg.dtype, cfg.bits, cfg.exponent_bits).to(torch.float32)


def quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """{name: module} of the model's QuantLinear (TiedQuantLinear included) and QuantEmbedding modules."""
    return quantized_modules(model)


def _model_config(layers: dict[str, nn.Module], config: QuantConfig | None) -> QuantConfig:
    configs = {m.config for m in layers.values()}
    if config is not None:
        configs.add(config)
    if len(configs) != 1:
        raise CheckpointError(f"save_quantized: the model's layers use {len(configs)} configs "
                              f"({', '.join(sorted(c.label() for c in configs))}); a checkpoint holds one")
    return configs.pop()


def checkpoint_tensors(model: nn.Module, cfg: QuantConfig) -> tuple[dict[str, torch.Tensor], dict, dict[str, str]]:
    """(tensors to write, per-layer metadata, tied aliases -> the name written) of a quantized model."""
    layers = quantized_layers(model)
    fixed = _fixed_codebook(cfg)
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, dict] = {}
    names = {id(m): n for n, m in model.named_modules()}
    for name, layer in layers.items():
        if isinstance(layer, TiedQuantLinear):  # its table is the embedding's, written there
            if layer.bias is not None:
                tensors[f"{name}.bias"] = layer.bias
            meta[name] = {"kind": "tied_head", "tied_to": names[id(layer.source)], "bias": layer.bias is not None}
            continue
        qt = layer.qtensor
        parts = {"codes": qt.codes, "absmax": qt.absmax}
        stored_codebook = fixed is None or not torch.equal(qt.codebook.cpu(), fixed)
        if stored_codebook:
            parts["codebook"] = qt.codebook
        if isinstance(layer, QuantEmbedding):
            tensors.update({f"{name}.{part}": t for part, t in parts.items()})
            meta[name] = {"kind": "embedding", "num_embeddings": layer.num_embeddings,
                          "embedding_dim": layer.embedding_dim, "padding_idx": layer.padding_idx,
                          "weight_dtype": _dtype_name(qt.dtype), "codebook": "stored" if stored_codebook else "fixed"}
            continue
        if layer.n_outliers:
            parts["outlier_idx"] = layer.outlier_idx
            parts["outlier_weight"] = layer.outlier_weight
        if layer.bias is not None:
            parts["bias"] = layer.bias
        tensors.update({f"{name}.{part}": t for part, t in parts.items()})
        meta[name] = {"in_features": layer.in_features, "out_features": layer.out_features,
                      "weight_dtype": _dtype_name(qt.dtype), "n_outliers": layer.n_outliers,
                      "codebook": "stored" if stored_codebook else "fixed"}
    prefixes = tuple(f"{name}." for name in layers)
    seen: dict[tuple, str] = {}
    tied: dict[str, str] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        if key.startswith(prefixes):
            continue
        ident = (value.data_ptr(), value.dtype, tuple(value.shape), value.device)
        if ident in seen and value.numel():
            tied[key] = seen[ident]
            continue
        seen[ident] = key
        tensors[key] = value
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, meta, tied


def narrow_exact(tensors: dict[str, torch.Tensor], keep: set[str] = frozenset()) -> dict[str, str]:
    """Store each float32 tensor whose every value is a float16 (or else bfloat16) value in that
    16-bit type, in place; {name: "float32"} of those narrowed (widened back on load, exactly). A
    model held in float32 but made of 16-bit weights (the shipped bundled family; any 16-bit
    checkpoint loaded in float32 on a CPU) then takes the 16 bits per parameter it is charged.
    Names in `keep` stay as they are."""
    narrowed = {}
    for name, t in tensors.items():
        if t.dtype != torch.float32 or not t.numel() or name in keep:
            continue
        for half in (torch.float16, torch.bfloat16):
            small = t.to(half)
            if torch.equal(small.to(torch.float32), t):
                tensors[name], narrowed[name] = small, "float32"
                break
    return narrowed


def check_output(folder: Path, force: bool) -> None:
    """OutputExists unless `folder` is new or empty (or `force`)."""
    if folder.exists() and not folder.is_dir():
        raise OutputExists(f"{folder} exists and is not a folder; give another --output")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise OutputExists(f"output folder {folder} exists and is not empty; give an empty or new folder, "
                           "or --force (force=True) to replace it")


def save_quantized(model: nn.Module, folder, *, tokenizer=None, info: dict | None = None, force: bool = False,
                   config: QuantConfig | None = None) -> dict:
    """Write the quantized `model` (and `tokenizer`) to `folder`; return the manifest.

    `info` goes into the manifest as it is (a run's id, cache key, metrics, code version ...).
    `config` is the model's QuantConfig, needed only for a 16-bit baseline (no QuantLinear layer).
    An existing non-empty folder is replaced only with `force`.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    check_output(folder, force)
    layers = quantized_layers(model)
    if not layers and config is None:
        raise CheckpointError("save_quantized: the model has no QuantLinear layer; quantize it with "
                              "quantize_model_ first (or pass config= for a 16-bit baseline)")
    cfg = _model_config(layers, config)
    tensors, meta, tied = checkpoint_tensors(model, cfg)
    narrowed = narrow_exact(tensors, keep={f"{name}.codebook" for name in meta})  # a codebook is charged 32 bits
    report = bit_report(model, cfg)
    fixed = _fixed_codebook(cfg)
    model_dtype = getattr(model, "dtype", None) or next(model.parameters()).dtype
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        save_file(tensors, str(scratch / TENSORS), metadata={"format": "pt", "kbit": FORMAT})
        for part in (getattr(model, "config", None), getattr(model, "generation_config", None), tokenizer):
            if part is not None and hasattr(part, "save_pretrained"):
                part.save_pretrained(str(scratch))
        files = {p.name: {"sha256": _sha256_file(p), "bytes": p.stat().st_size}
                 for p in sorted(scratch.iterdir()) if p.is_file()}
        manifest = {
            "format": FORMAT, "numerics_version": NUMERICS_VERSION,
            "format_version": ENDS_FORMAT_VERSION if any("kind" in m for m in meta.values()) else FORMAT_VERSION,
            "kbit_version": _kbit_version(),
            "config": cfg.to_dict(), "label": cfg.label(),
            "model_dtype": _dtype_name(model_dtype),
            "bits": {k: report.to_dict()[k] for k in settings.BIT_FIELDS},
            "tensor_bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
            "layers": meta, "tied": tied, "narrowed": narrowed,
            "fixed_codebook_sha256": None if fixed is None else _sha256_tensor(fixed),
            "files": files,
            **(info or {}),
        }
        manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
        _replace(scratch, folder)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return manifest


def _replace(scratch: Path, folder: Path) -> None:
    """Rename the finished `scratch` folder to `folder`, replacing what is there."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
        folder.rename(old)
    try:
        scratch.rename(folder)
    except BaseException:
        if old is not None:
            old.rename(folder)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(folder, verify_files: bool = True) -> dict:
    """The manifest of a checkpoint folder, after checking its own sha256, the versions and (with
    `verify_files`) every file's sha256. CheckpointError says what does not match."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a kbit checkpoint: it has no {MANIFEST}; "
                              "write one with `kbit export` or save_quantized")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChecksumMismatch(f"{path} is not valid JSON ({exc}); the checkpoint is damaged, export it again") from None
    recorded = manifest.pop("manifest_sha256", None) if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or recorded != hashlib.sha256(_canonical(manifest)).hexdigest():
        raise ChecksumMismatch(f"{path} does not match its sha256 (edited or damaged); export the run again")
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} manifest (format {manifest.get('format')!r})")
    for key, mine in (("format_version", ENDS_FORMAT_VERSION), ("numerics_version", NUMERICS_VERSION)):
        theirs = manifest.get(key)
        if not isinstance(theirs, int) or theirs > mine:
            raise NewerCheckpoint(f"{folder} was written with {key} {theirs} (kbit {manifest.get('kbit_version')}); "
                                  f"this kbit reads up to {mine}: upgrade kbit to load it")
    if verify_files:
        for name, entry in manifest["files"].items():
            file = folder / name
            if not file.is_file():
                raise ChecksumMismatch(f"{folder} lacks {name}, which its manifest lists; export the run again")
            if _sha256_file(file) != entry["sha256"]:
                raise ChecksumMismatch(f"{file} does not match the sha256 in {MANIFEST} (damaged or changed); "
                                       "export the run again")
    manifest["manifest_sha256"] = recorded
    return manifest


def _skeleton(folder: Path, dtype: torch.dtype) -> nn.Module:
    """The transformers model the folder's config.json describes, in `dtype`, before its weights."""
    import transformers  # the one import of transformers in kbit.kernels (tests/test_layering.py)
    from transformers.initialization import no_init_weights

    config = transformers.AutoConfig.from_pretrained(str(folder))
    with no_init_weights():
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    if (folder / "generation_config.json").is_file():
        model.generation_config = transformers.GenerationConfig.from_pretrained(str(folder))
    return model


def quantized_layer(name: str, meta: dict, tensors: dict[str, torch.Tensor], cfg: QuantConfig,
                    backend: str = "auto") -> QuantLinear:
    """The QuantLinear `name` of a checkpoint, its tensors taken out of `tensors` (as written by
    `checkpoint_tensors`; `meta` is its entry in the manifest's layers)."""
    part = {p: tensors.pop(f"{name}.{p}", None) for p in LAYER_TENSORS}
    if part["codes"] is None or part["absmax"] is None:
        raise CheckpointError(f"the checkpoint lacks the packed weight of layer {name}; export the run again")
    if part["codebook"] is None:
        part["codebook"] = _fixed_codebook(cfg)
    shape = torch.Size((meta["out_features"], meta["in_features"] - meta["n_outliers"]))
    qt = QuantizedTensor(part["codes"], part["absmax"], part["codebook"], shape, _DTYPES[meta["weight_dtype"]], cfg)
    return QuantLinear.from_packed(cfg, qt, meta["in_features"], outlier_idx=part["outlier_idx"],
                                   outlier_weight=part["outlier_weight"], bias=part["bias"], backend=backend)


def quantized_embedding(name: str, meta: dict, tensors: dict[str, torch.Tensor], cfg: QuantConfig,
                        backend: str = "auto") -> QuantEmbedding:
    """The QuantEmbedding `name` of a checkpoint, its tensors taken out of `tensors`."""
    codes, absmax = tensors.pop(f"{name}.codes", None), tensors.pop(f"{name}.absmax", None)
    if codes is None or absmax is None:
        raise CheckpointError(f"the checkpoint lacks the packed table of embedding {name}; export the run again")
    book = tensors.pop(f"{name}.codebook", None)
    shape = torch.Size((meta["num_embeddings"], meta["embedding_dim"]))
    qt = QuantizedTensor(codes, absmax, _fixed_codebook(cfg) if book is None else book, shape,
                         _DTYPES[meta["weight_dtype"]], cfg)
    return QuantEmbedding.from_packed(cfg, qt, padding_idx=meta["padding_idx"], backend=backend)


def _install(model: nn.Module, layers: dict, tensors: dict[str, torch.Tensor], cfg: QuantConfig, backend: str) -> None:
    """Put every quantized module of the manifest's `layers` into the skeleton: tables first, so a
    tied head finds the one it computes with."""
    order = sorted(layers.items(), key=lambda item: item[1].get("kind") != "embedding")
    for name, meta in order:
        kind = meta.get("kind", "linear")
        if kind == "embedding":
            module = quantized_embedding(name, meta, tensors, cfg, backend)
        elif kind == "tied_head":
            source = model.get_submodule(meta["tied_to"])
            if not isinstance(source, QuantEmbedding):
                raise CheckpointError(f"head {name} is tied to {meta['tied_to']}, which the checkpoint does not hold "
                                      "quantized; export the run again")
            module = TiedQuantLinear(None, source, tensors.pop(f"{name}.bias", None), backend=backend)
            hold_tie_(model)
        else:
            module = quantized_layer(name, meta, tensors, cfg, backend)
        set_module(model, name, module)


def load_quantized(folder, *, device: str | torch.device = "auto", backend: str = "auto") -> nn.Module:
    """The model saved in `folder` (a transformers model, eval mode, on `device`: "auto" is the GPU
    when there is one), its quantized layers `QuantLinear`s (a quantized embedding a `QuantEmbedding`) running on `backend`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    manifest = read_manifest(folder)
    cfg = QuantConfig.from_dict(manifest["config"])
    fixed = _fixed_codebook(cfg)
    if fixed is not None and _sha256_tensor(fixed) != manifest["fixed_codebook_sha256"]:
        raise NewerCheckpoint(f"{folder}: the {cfg.label()} codebook this kbit builds differs from the one the "
                              f"checkpoint was written with (kbit {manifest.get('kbit_version')}); load it with that "
                              "version")
    tensors = load_file(str(folder / TENSORS))
    for name, wide in manifest.get("narrowed", {}).items():
        tensors[name] = tensors[name].to(_DTYPES[wide])
    model = _skeleton(folder, _DTYPES[manifest["model_dtype"]])
    _install(model, manifest["layers"], tensors, cfg, backend)
    for alias, source in manifest["tied"].items():
        tensors[alias] = tensors[source]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    quantized = tuple(f"{name}." for name in manifest["layers"])
    missing = [key for key in missing if not key.startswith(quantized)]  # those are in place already
    if missing or unexpected:
        raise CheckpointError(f"{folder}: the tensors do not fit the model its config.json builds "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]}); export the run again")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval()
