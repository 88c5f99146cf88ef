"""Whole-model quantization: `quantize_model_`, `restore_model_` and the `BitReport`.

Every nn.Linear not named in `skip` becomes a QuantLinear; embeddings, norms, biases and skipped
layers stay as they are and are charged 16 bits per parameter (DESIGN.md):
total_bits = sum of quantized layers' stored weight bits + (n_params - n_quantized) * 16,
bits_per_param = quantized layers' stored weight bits / n_quantized.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn
from tqdm.auto import tqdm

from kbit.kernels.config import QuantConfig
from kbit.kernels.linear import QuantLinear
from kbit.kernels.outliers import outlier_dims

UNQUANTIZED_BITS = 16


@dataclass(frozen=True)
class BitReport:
    """What a quantized model costs in memory bits.

    n_params: parameters the model stores (unique tensors, quantized weights included);
    n_quantized: weights stored at k bits (all weights of replaced Linear layers, outlier columns
    included: their extra cost is inside bits_per_param); n_layers: replaced layers.
    """

    config: dict
    n_params: int
    n_quantized: int
    n_layers: int
    n_outlier_params: int
    bits_per_param: float
    total_bits: float

    def to_dict(self) -> dict:
        return asdict(self)


def _skipped(name: str, skip: tuple[str, ...]) -> bool:
    return any(name == s or name.endswith("." + s) for s in skip)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def bit_report(model: nn.Module, cfg: QuantConfig) -> BitReport:
    """Count the bits of `model` as it is now (quantized or not)."""
    qlayers = [m for m in model.modules() if isinstance(m, QuantLinear)]
    unquantized = sum(p.numel() for p in model.parameters())  # unique tensors; QuantLinear holds buffers
    n_quantized = sum(m.weight_numel for m in qlayers)
    quant_bits = sum(m.weight_bits for m in qlayers)
    return BitReport(
        config=cfg.to_dict(),
        n_params=unquantized + n_quantized,
        n_quantized=n_quantized,
        n_layers=len(qlayers),
        n_outlier_params=sum(m.n_outliers * m.out_features for m in qlayers),
        bits_per_param=quant_bits / n_quantized if n_quantized else float(UNQUANTIZED_BITS),
        total_bits=float(quant_bits + unquantized * UNQUANTIZED_BITS),
    )


def restore_model_(model: nn.Module) -> int:
    """Put the original nn.Linear modules back (bit-identical weights); returns how many."""
    names = [name for name, m in model.named_modules() if isinstance(m, QuantLinear)]
    for name in names:
        _set_module(model, name, model.get_submodule(name).original)
    return len(names)


def quantize_model_(
    model: nn.Module,
    cfg: QuantConfig,
    skip: tuple[str, ...] = ("lm_head",),
    backend: str = "auto",
    progress: bool = False,
) -> BitReport:
    """Quantize every nn.Linear of `model` in place (names or name suffixes in `skip` are kept).

    An already quantized model is restored first, so configs can follow one another on one loaded
    model. A 16-bit baseline config changes nothing and returns the baseline report.
    """
    if not isinstance(cfg, QuantConfig):
        raise TypeError(f"quantize_model_: cfg must be a QuantConfig, got {type(cfg).__name__}")
    if isinstance(skip, str):
        raise TypeError(f"quantize_model_: skip must be a tuple of module names, e.g. ({skip!r},), not a string")
    restore_model_(model)
    if cfg.is_baseline:
        return bit_report(model, cfg)
    targets = [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and not _skipped(name, tuple(skip))]
    outliers = outlier_dims(model, targets, cfg.outlier_fraction) if cfg.outlier_fraction > 0 else {}
    try:
        for name in tqdm(targets, desc=f"quantize {cfg.label()}", unit="layer", disable=not progress):
            layer = model.get_submodule(name)
            _set_module(model, name, QuantLinear(layer, cfg, outliers.get(name), backend=backend))
    except BaseException:
        restore_model_(model)  # never leave a half-quantized model behind
        raise
    return bit_report(model, cfg)
