"""Whole-model quantization: `quantize_model_`, `restore_model_`, the `BitReport` and the
`CoverageError` that refuses a model kbit would not really quantize.

Every weight-matrix layer (nn.Linear, transformers' Conv1D) not named in `skip` becomes a
QuantLinear, rounded to nearest or by GPTQ from calibration data (`cfg.method`,
kbit.kernels.gptq); embeddings, norms, biases and skipped layers stay as they are and are charged
16 bits per parameter (DESIGN.md), unless the config quantizes the token embedding and the output
head too (`cfg.embeddings`, `cfg.head`, kbit.kernels.ends: a QuantEmbedding, and the head as a
QuantLinear, or a TiedQuantLinear sharing the embedding's quantized table, charged once):
total_bits = sum of quantized tensors' stored bits + (n_params - n_quantized) * 16,
bits_per_param = quantized tensors' stored bits / n_quantized.
A config that would quantize nothing, or leave a weight matrix of a transformer block in 16 bit
without `skip` naming it, is refused: a 16-bit model must never be reported as k-bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn
from tqdm.auto import tqdm

from kbit.kernels.architectures import block_prefixes, layer_kinds, model_type
from kbit.kernels.config import QuantConfig
from kbit.kernels.embedding import QuantEmbedding, TiedQuantLinear
from kbit.kernels.ends import EndsError, check_ends, quantize_ends_, release_tie_
from kbit.kernels.ends import set_module as _set_module
from kbit.kernels.gptq import check_calibration, gptq_model_
from kbit.kernels.linear import QuantLinear, is_quantizable
from kbit.kernels.outliers import outlier_dims

UNQUANTIZED_BITS = 16
SHOWN = 5  # names listed in an error message


class CoverageError(ValueError):
    """The model cannot be quantized as asked: no quantizable layer at all, or weight matrices of
    its transformer blocks that kbit cannot replace (they would stay 16-bit under a k-bit label)."""


@dataclass(frozen=True)
class BitReport:
    """What a quantized model costs in memory bits.

    n_params: parameters the model stores (unique tensors, quantized weights included);
    n_quantized: weights stored at k bits (all weights of replaced layers, outlier columns
    included: their extra cost is inside bits_per_param; a tied embedding and head once);
    n_layers: replaced modules (a quantized embedding and head included);
    by_kind: per module kind ("attention.q", "mlp.down", ...; see kbit.kernels.architectures;
    "embedding", "head", or "embedding+head" for a tied pair) {"n_layers", "n_quantized", "bits_per_param"}.
    """

    config: dict
    n_params: int
    n_quantized: int
    n_layers: int
    n_outlier_params: int
    bits_per_param: float
    total_bits: float
    by_kind: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _skipped(name: str, skip: tuple[str, ...]) -> bool:
    return any(name == s or name.endswith("." + s) for s in skip)


def bit_report(model: nn.Module, cfg: QuantConfig) -> BitReport:
    """Count the bits of `model` as it is now (quantized or not)."""
    named = quantized_modules(model)
    qlayers = list(named.values())
    unquantized = sum(p.numel() for p in model.parameters())  # unique tensors; quantized modules hold buffers
    n_quantized = sum(m.weight_numel for m in qlayers)  # a tied head counts 0: its embedding holds the tensor
    quant_bits = sum(m.weight_bits for m in qlayers)
    return BitReport(
        config=cfg.to_dict(),
        n_params=unquantized + n_quantized,
        n_quantized=n_quantized,
        n_layers=len(qlayers),
        n_outlier_params=sum(m.n_outliers * m.out_features for m in qlayers if isinstance(m, QuantLinear)),
        bits_per_param=quant_bits / n_quantized if n_quantized else float(UNQUANTIZED_BITS),
        total_bits=float(quant_bits + unquantized * UNQUANTIZED_BITS),
        by_kind=_by_kind(model, named),
    )


def quantized_modules(model: nn.Module) -> dict[str, nn.Module]:
    """{name: module} of every QuantLinear and QuantEmbedding of `model`."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (QuantLinear, QuantEmbedding))}


def _kinds(model: nn.Module, named: dict[str, nn.Module]) -> dict[str, str]:
    """The bit report's kind of each quantized module: the token embedding is "embedding" (with a
    tied head: both are "embedding+head"), every other layer as kbit.kernels.architectures names it."""
    tied = any(isinstance(m, TiedQuantLinear) for m in named.values())
    own = {name: "embedding+head" if tied else "embedding" for name, m in named.items()
           if isinstance(m, (QuantEmbedding, TiedQuantLinear))}
    inside = [name for name in named if name not in own]
    return {**layer_kinds(model, inside), **own}


def _by_kind(model: nn.Module, named: dict[str, nn.Module]) -> dict[str, dict]:
    totals: dict[str, list[int]] = {}
    for name, kind in _kinds(model, named).items():
        entry = totals.setdefault(kind, [0, 0, 0])
        entry[0] += 1
        entry[1] += named[name].weight_numel
        entry[2] += named[name].weight_bits
    return {kind: {"n_layers": n, "n_quantized": q, "bits_per_param": bits / q} for kind, (n, q, bits) in sorted(totals.items())}


def _describe(model: nn.Module) -> str:
    kind = model_type(model)
    return type(model).__name__ + (f" (model_type {kind!r})" if kind else "")


def check_coverage(model: nn.Module, targets: list[str], skip: tuple[str, ...], cfg: QuantConfig) -> None:
    """CoverageError unless `targets` hold a layer and every weight matrix (a parameter of 2 or more
    dimensions) inside a transformer block belongs to a target or is named (or its module is) in `skip`."""
    if not targets:
        raise CoverageError(
            f"nothing to quantize in {_describe(model)}: no nn.Linear or transformers Conv1D layer outside "
            f"skip={tuple(skip)!r}, so {cfg.label()} would be the 16-bit model under a {cfg.bits}-bit label; "
            "kbit quantizes only those two layer types")
    covered = tuple(f"{t}." for t in targets)
    prefixes = tuple(block_prefixes(model))
    left = [
        name for name, p in model.named_parameters()
        if p.dim() >= 2 and name.startswith(prefixes) and not name.startswith(covered)
        and not _skipped(name, skip) and not _skipped(name.rpartition(".")[0], skip)
    ]
    if left:
        more = f" and {len(left) - SHOWN} more" if len(left) > SHOWN else ""
        raise CoverageError(
            f"{_describe(model)}: {len(left)} weight matrices of its transformer blocks are not nn.Linear or "
            f"Conv1D layers and would stay 16-bit under a {cfg.bits}-bit label ({', '.join(left[:SHOWN])}{more}); "
            "name them in skip to keep them in 16 bit knowingly")


def restore_model_(model: nn.Module) -> int:
    """Put the original layers (nn.Linear, Conv1D, nn.Embedding) back (bit-identical weights, a tied
    pair tied again: both originals hold the one Parameter); returns how many."""
    names = list(quantized_modules(model))
    loaded = [name for name in names if model.get_submodule(name).original is None]
    if loaded:
        raise ValueError(f"{len(loaded)} quantized layers ({loaded[0]}, ...) were loaded from a kbit checkpoint "
                         "and have no 16-bit weights to restore; load the 16-bit model to quantize it differently")
    for name in names:
        _set_module(model, name, model.get_submodule(name).original)
    release_tie_(model)
    return len(names)


def quantize_model_(
    model: nn.Module,
    cfg: QuantConfig,
    skip: tuple[str, ...] = ("lm_head",),
    backend: str = "auto",
    progress: bool = False,
    calibration=None,
) -> BitReport:
    """Quantize every nn.Linear and Conv1D of `model` in place (names or name suffixes in `skip`
    are kept), and the token embedding and output head when `cfg` asks for them (the head then
    despite `skip`).

    `cfg.method == "gptq"` needs `calibration`: a list of LongTensor input ids (batch, tokens),
    run through the model block by block on the device it is on (kbit.kernels.gptq); round to
    nearest ignores it. An already quantized model is restored first, so configs can follow one
    another on one loaded model. A 16-bit baseline config changes nothing and returns the
    baseline report. CoverageError when nothing would be quantized or a block's weight matrix
    would be left out.
    """
    if not isinstance(cfg, QuantConfig):
        raise TypeError(f"quantize_model_: cfg must be a QuantConfig, got {type(cfg).__name__}")
    if isinstance(skip, str):
        raise TypeError(f"quantize_model_: skip must be a tuple of module names, e.g. ({skip!r},), not a string")
    if cfg.method == "gptq":
        try:
            calibration = check_calibration(calibration)
        except ValueError as exc:
            raise ValueError(f"quantize_model_ with {cfg.label()}: {exc}") from None
    restore_model_(model)
    if cfg.is_baseline:
        return bit_report(model, cfg)
    skip = tuple(skip)
    try:
        ends = check_ends(model, cfg, _describe(model))
    except EndsError as exc:
        raise CoverageError(str(exc)) from None
    head = ends.head if cfg.head else None  # installed with the ends, whatever skip says
    targets = [name for name, m in model.named_modules()
               if is_quantizable(m) and not _skipped(name, skip) and name != head]
    check_coverage(model, targets, skip, cfg)
    outliers = outlier_dims(model, targets, cfg.outlier_fraction) if cfg.outlier_fraction > 0 else {}

    def install(name: str, qtensor=None) -> None:
        layer = model.get_submodule(name)
        _set_module(model, name, QuantLinear(layer, cfg, outliers.get(name), backend=backend, qtensor=qtensor))

    try:
        if cfg.method == "gptq":
            gptq_model_(model, targets, cfg, calibration, install, outliers, progress=progress)
        else:
            for name in tqdm(targets, desc=f"quantize {cfg.label()}", unit="layer", disable=not progress):
                install(name)
        quantize_ends_(model, cfg, ends, backend=backend)
    except BaseException:
        restore_model_(model)  # never leave a half-quantized model behind
        raise
    return bit_report(model, cfg)
