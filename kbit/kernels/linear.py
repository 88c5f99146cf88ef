"""`QuantLinear`: the replacement of a weight-matrix layer (nn.Linear, or transformers' Conv1D as
in GPT-2) holding a packed k-bit weight; `is_quantizable` says which layers it replaces.

A Conv1D stores its weight transposed, (in, out), and computes x W + b: its weight is transposed
once at quantization time, so both become the same (out, in) QuantLinear. The forward runs the
fused dequantize-matmul (Triton on CUDA). With outlier handling, the weight's
outlier input columns are cut out and kept in 16 bit; the rest is quantized as an (N, K - |J|)
matrix, so the stored size is the paper's k + 16/B + p(16 - k) bits per weight.
"""

from __future__ import annotations

import torch
from torch import nn

from kbit.kernels.blockwise import QuantizedTensor, dequantize, matmul, quantize
from kbit.kernels.config import QuantConfig

OUTLIER_BITS = 16
INDEX_BITS = 32


def is_conv1d(module: nn.Module) -> bool:
    """transformers' `Conv1D` (GPT-2's projections), recognised by shape: kbit.kernels does not
    import transformers."""
    weight = getattr(module, "weight", None)
    return (type(module).__name__ == "Conv1D" and isinstance(weight, torch.Tensor) and weight.dim() == 2
            and getattr(module, "nf", None) == weight.shape[1])


def is_quantizable(module: nn.Module) -> bool:
    """A layer QuantLinear replaces: nn.Linear (subclasses included) or transformers' Conv1D."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def weight_matrix(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as (out, in), detached (a view of a Conv1D's (in, out) weight)."""
    if isinstance(layer, nn.Linear):
        return layer.weight.detach()
    if is_conv1d(layer):
        return layer.weight.detach().t()
    raise TypeError(f"QuantLinear wraps an nn.Linear or a transformers Conv1D, got {type(layer).__name__}")


def in_out_features(layer: nn.Module) -> tuple[int, int]:
    """(input features, output features) of a quantizable layer or a QuantLinear."""
    if isinstance(layer, QuantLinear):
        return layer.in_features, layer.out_features
    out_features, in_features = weight_matrix(layer).shape
    return in_features, out_features


class QuantLinear(nn.Module):
    """y = x W^T + b with W stored as packed k-bit codes, 16-bit block scales and a codebook.

    The weight is quantized to nearest here, unless `qtensor` gives it already quantized (GPTQ:
    kbit.kernels.gptq), in the same format, for the layer's weight without its outlier columns.

    The original layer (nn.Linear or Conv1D) is kept (unregistered, so it is neither counted nor
    moved) for `restore_model_`. On the torch backend the dequantized weight is cached after the first call:
    that backend simulates the format; the Triton backend never materializes W.
    """

    def __init__(self, linear: nn.Module, cfg: QuantConfig, outlier_idx: torch.Tensor | None = None, backend: str = "auto",
                 qtensor: QuantizedTensor | None = None):
        super().__init__()
        weight = weight_matrix(linear)
        self.out_features, self.in_features = weight.shape
        self.config = cfg
        self.backend = backend
        object.__setattr__(self, "original", linear)
        idx = outlier_idx if outlier_idx is not None else torch.empty(0, dtype=torch.int64)
        idx = idx.to(device=weight.device, dtype=torch.int64)
        if idx.numel():
            keep = torch.ones(self.in_features, dtype=torch.bool, device=weight.device)
            keep[idx] = False
            keep_idx = keep.nonzero().squeeze(1)
            outlier_dtype = torch.bfloat16 if weight.dtype == torch.bfloat16 else torch.float16
            self.register_buffer("outlier_idx", idx.to(torch.int32))
            self.register_buffer("keep_idx", keep_idx.to(torch.int32))
            self.register_buffer("outlier_weight", weight[:, idx].to(outlier_dtype).contiguous())
            weight = weight[:, keep_idx]
        else:
            self.outlier_idx = self.keep_idx = self.outlier_weight = None
        qt = quantize(weight.contiguous(), cfg, backend=backend) if qtensor is None else qtensor
        if tuple(qt.shape) != tuple(weight.shape):
            raise ValueError(f"QuantLinear: the given quantized weight has shape {tuple(qt.shape)}, the layer's "
                             f"(outlier columns removed) is {tuple(weight.shape)}")
        self._hold(qt, None if linear.bias is None else linear.bias.detach().clone())

    def _hold(self, qt: QuantizedTensor, bias: torch.Tensor | None) -> None:
        self.register_buffer("codes", qt.codes)
        self.register_buffer("absmax", qt.absmax)
        self.register_buffer("codebook", qt.codebook)
        self._shape, self._dtype = qt.shape, qt.dtype
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self._dense: torch.Tensor | None = None

    @classmethod
    def from_packed(cls, cfg: QuantConfig, qtensor: QuantizedTensor, in_features: int, *,
                    outlier_idx: torch.Tensor | None = None, outlier_weight: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None, backend: str = "auto") -> "QuantLinear":
        """A QuantLinear from stored parts (kbit.kernels.checkpoint): the packed weight without its
        outlier columns, the outlier columns' indices and 16-bit values, the bias. It has no 16-bit
        original, so `restore_model_` refuses it."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        n_out = int(qtensor.shape[0])
        n_outliers = 0 if outlier_idx is None else outlier_idx.numel()
        if len(qtensor.shape) != 2 or int(qtensor.shape[1]) + n_outliers != in_features:
            raise ValueError(f"QuantLinear.from_packed: a packed weight of shape {tuple(qtensor.shape)} with "
                             f"{n_outliers} outlier columns does not make {in_features} input features")
        self.out_features, self.in_features = n_out, in_features
        self.config, self.backend = cfg, backend
        object.__setattr__(self, "original", None)
        if n_outliers:
            keep = torch.ones(in_features, dtype=torch.bool, device=outlier_idx.device)
            keep[outlier_idx.long()] = False
            self.register_buffer("outlier_idx", outlier_idx.to(torch.int32))
            self.register_buffer("keep_idx", keep.nonzero().squeeze(1).to(torch.int32))
            self.register_buffer("outlier_weight", outlier_weight)
        else:
            self.outlier_idx = self.keep_idx = self.outlier_weight = None
        self._hold(qtensor, bias)
        return self

    @property
    def qtensor(self) -> QuantizedTensor:
        return QuantizedTensor(self.codes, self.absmax, self.codebook, self._shape, self._dtype, self.config)

    @property
    def n_outliers(self) -> int:
        return 0 if self.outlier_idx is None else self.outlier_idx.numel()

    @property
    def weight_numel(self) -> int:
        return self.in_features * self.out_features

    @property
    def weight_bits(self) -> int:
        """Stored bits of the weight: packed codes, scales, stored codebook, 16-bit outlier columns and their indices."""
        return self.qtensor.total_bits + self.n_outliers * (self.out_features * OUTLIER_BITS + INDEX_BITS)

    def _apply(self, fn, recurse=True):
        self._dense = None  # a moved module must not keep a stale cache
        return super()._apply(fn, recurse)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The full (out, in) weight this layer computes with (outlier columns restored)."""
        dtype = dtype or self._dtype
        w = dequantize(self.qtensor, backend=self.backend, dtype=dtype)
        if self.outlier_idx is None:
            return w
        full = torch.empty(self.out_features, self.in_features, dtype=dtype, device=w.device)
        full[:, self.keep_idx.long()] = w
        full[:, self.outlier_idx.long()] = self.outlier_weight.to(dtype)
        return full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from kbit.kernels import backend as backends

        if backends.resolve(self.backend, x.device) == "torch":
            if self._dense is None or self._dense.dtype != x.dtype or self._dense.device != x.device:
                self._dense = self.dequantized_weight(x.dtype).to(x.device)
            y = x @ self._dense.T
        elif self.outlier_idx is None:
            y = matmul(x, self.qtensor, backend=self.backend)
        else:
            y = matmul(x.index_select(-1, self.keep_idx), self.qtensor, backend=self.backend)
            y = y + x.index_select(-1, self.outlier_idx) @ self.outlier_weight.to(x.dtype).T
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.config.label()}, outliers={self.n_outliers}"
