"""`QuantEmbedding`: a token embedding table stored k-bit (packed codes, 16-bit block scales, the
codebook: the format of `QuantLinear`'s weight), dequantized on lookup; and `TiedQuantLinear`, the
output head of a model that ties it to that table, computing with the same quantized tensor.

The table (rows, dim) is quantized like an (out, in) weight: blocks run along the row-major
flattened table. A lookup on the Triton backend decodes only the rows asked for; on the torch
backend the dequantized table is cached after the first call (the reference simulates the format,
as `QuantLinear` does). The original nn.Embedding (and the head's nn.Linear) is kept unregistered
for `restore_model_`; a module loaded from a checkpoint has none.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from kbit.kernels.blockwise import QuantizedTensor, dequantize, embedding, quantize
from kbit.kernels.config import QuantConfig
from kbit.kernels.linear import QuantLinear


def is_plain_embedding(module: nn.Module) -> bool:
    """An nn.Embedding whose lookup is nn.Embedding's own (a subclass that scales or adds to its
    output, as Gemma's does, would lose that when replaced)."""
    return isinstance(module, nn.Embedding) and type(module).forward is nn.Embedding.forward


class QuantEmbedding(nn.Module):
    """out = table[ids] with the table stored as packed k-bit codes, 16-bit block scales and a codebook."""

    def __init__(self, embedding: nn.Embedding, cfg: QuantConfig, backend: str = "auto"):
        super().__init__()
        if not is_plain_embedding(embedding):
            raise TypeError(f"QuantEmbedding wraps an nn.Embedding with its own lookup, got {type(embedding).__name__}")
        if embedding.max_norm is not None:
            raise ValueError("QuantEmbedding: an embedding with max_norm renormalizes its rows on lookup; "
                             "it cannot be stored quantized")
        object.__setattr__(self, "original", embedding)
        self.padding_idx = embedding.padding_idx
        self._hold(quantize(embedding.weight.detach().contiguous(), cfg, backend=backend), cfg, backend)

    def _hold(self, qt: QuantizedTensor, cfg: QuantConfig, backend: str) -> None:
        self.num_embeddings, self.embedding_dim = (int(n) for n in qt.shape)
        self.config, self.backend = cfg, backend
        self.register_buffer("codes", qt.codes)
        self.register_buffer("absmax", qt.absmax)
        self.register_buffer("codebook", qt.codebook)
        self._shape, self._dtype = qt.shape, qt.dtype
        self._dense: torch.Tensor | None = None

    @classmethod
    def from_packed(cls, cfg: QuantConfig, qtensor: QuantizedTensor, *, padding_idx: int | None = None,
                    backend: str = "auto") -> "QuantEmbedding":
        """A QuantEmbedding from stored parts (kbit.kernels.checkpoint); it has no 16-bit original."""
        if len(qtensor.shape) != 2:
            raise ValueError(f"QuantEmbedding.from_packed: the table must be 2-D (rows, dim), got {tuple(qtensor.shape)}")
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        object.__setattr__(self, "original", None)
        self.padding_idx = padding_idx
        self._hold(qtensor, cfg, backend)
        return self

    @property
    def qtensor(self) -> QuantizedTensor:
        return QuantizedTensor(self.codes, self.absmax, self.codebook, self._shape, self._dtype, self.config)

    @property
    def weight_numel(self) -> int:
        return self.num_embeddings * self.embedding_dim

    @property
    def weight_bits(self) -> int:
        """Stored bits of the table: packed codes, scales and stored codebook."""
        return self.qtensor.total_bits

    def _apply(self, fn, recurse=True):
        self._dense = None  # a moved module must not keep a stale cache
        return super()._apply(fn, recurse)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return dequantize(self.qtensor, backend=self.backend, dtype=dtype or self._dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        from kbit.kernels import backend as backends

        if backends.resolve(self.backend, self.codes.device) == "torch":
            if self._dense is None or self._dense.device != self.codes.device:
                self._dense = self.dequantized_weight()
            return F.embedding(ids, self._dense, self.padding_idx)
        return embedding(ids, self.qtensor, backend=self.backend)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.config.label()}"


class TiedQuantLinear(QuantLinear):
    """The output head of a model whose head and token embedding are one tensor: y = x E^T (+ b)
    with E the QuantEmbedding's quantized table, read from it (so moving the model moves it once).
    Its bits are the embedding's: `weight_bits` is 0 here, so a tied tensor is charged once."""

    def __init__(self, head: nn.Module | None, source: QuantEmbedding, bias: torch.Tensor | None = None,
                 backend: str = "auto"):
        nn.Module.__init__(self)
        object.__setattr__(self, "original", head)
        object.__setattr__(self, "source", source)  # unregistered: its buffers are saved and moved once
        self.out_features, self.in_features = source.num_embeddings, source.embedding_dim
        self.config, self.backend = source.config, backend
        self.outlier_idx = self.keep_idx = self.outlier_weight = None
        self._shape, self._dtype = source._shape, source._dtype
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self._dense = None

    @property
    def qtensor(self) -> QuantizedTensor:
        return self.source.qtensor

    @property
    def weight_numel(self) -> int:
        """Weights stored in this layer: none, the embedding holds them (and is charged for them)."""
        return 0

    @property
    def weight_bits(self) -> int:
        return 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from kbit.kernels import backend as backends

        if backends.resolve(self.backend, x.device) == "torch":
            # the embedding's cached table serves both ends: one dense copy, not two
            if self.source._dense is None or self.source._dense.device != x.device:
                self.source._dense = self.source.dequantized_weight().to(x.device)
            y = x @ self.source._dense.to(x.dtype).T
            return y if self.bias is None else y + self.bias.to(y.dtype)
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"tied to the embedding, {super().extra_repr()}"
