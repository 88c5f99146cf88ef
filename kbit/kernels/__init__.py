"""k-bit weight quantization: configs, codebooks, blockwise (de)quantization, packing, Triton
kernels with plain-torch references, the quantized Linear, whole-model quantization and the
checkpoint format (`save_quantized` / `load_quantized`).

`QuantConfig` imports without torch; every other name loads torch on first use.
"""

from kbit.kernels.config import QuantConfig

_LAZY = {
    "codebook": "kbit.kernels.codebooks",
    "quantize": "kbit.kernels.blockwise",
    "dequantize": "kbit.kernels.blockwise",
    "QuantizedTensor": "kbit.kernels.blockwise",
    "matmul": "kbit.kernels.blockwise",
    "QuantLinear": "kbit.kernels.linear",
    "QuantEmbedding": "kbit.kernels.embedding",
    "quantize_model_": "kbit.kernels.model",
    "restore_model_": "kbit.kernels.model",
    "BitReport": "kbit.kernels.model",
    "CoverageError": "kbit.kernels.model",
    "gptq_quantize": "kbit.kernels.gptq",
    "save_quantized": "kbit.kernels.checkpoint",
    "load_quantized": "kbit.kernels.checkpoint",
    "CheckpointError": "kbit.kernels.checkpoint",
}

__all__ = ["QuantConfig", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kbit.kernels' has no attribute {name!r}")
