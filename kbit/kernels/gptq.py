"""GPTQ (Frantar et al., ICLR 2023) onto kbit's k-bit format: `gptq_quantize` rounds one weight
matrix column by column, feeding each column's rounding error to the columns not yet rounded
through the inverse Hessian of the layer's inputs; `gptq_model_` walks a model block by block
(the standard sequential scheme) and hands each layer's result to the caller to install.

How it maps onto kbit (docs/kernels.md, "GPTQ"):
- The rounding step is kbit's own: a value is divided by its block's 16-bit absmax scale in fp32,
  clamped to [-1, 1] and mapped to the nearest codebook entry (ties to the lower), exactly as
  `kbit.kernels.reference` does, for every data type and block size. The result is an ordinary
  `QuantizedTensor` (packed codes, block scales, codebook): the same storage, bits and kernels as
  round-to-nearest.
- A block's scale is fixed when GPTQ reaches the first of its columns in processing order, from
  the block's weights as updated so far (GPTQ's groups are kbit's blocks, which may also span
  rows or be the whole tensor). Lazy batches are cut at those columns, so the values read are exact.
- `quantile`: the codebook is estimated from the original weights, as round-to-nearest does.
- Damping: PERCDAMP (0.01) of the mean diagonal of H is added to its diagonal (ten times more,
  up to DAMP_RETRIES times, if H is still not positive definite). An input dimension that never
  fired during calibration (zero diagonal) is rounded to nearest and feeds no error to the others.
- Act order (ACT_ORDER, a module constant): columns are rounded in order of decreasing Hessian
  diagonal (the inputs with the largest energy first); the stored codes keep the layer's layout.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from kbit.kernels.architectures import block_lists
from kbit.kernels.blockwise import QuantizedTensor, check_input, codebook_for, scale_dtype_for
from kbit.kernels.config import QuantConfig
from kbit.kernels.linear import weight_matrix
from kbit.kernels.packing import pack
from kbit.kernels.reference import block_scales, midpoints

PERCDAMP = 0.01
LAZY_COLUMNS = 128  # columns updated together before the rest of the matrix (GPTQ's lazy batch)
ACT_ORDER = True  # measured better in the median on the demo family: benchmarks/gptq.md
DAMP_RETRIES = 4
_CHUNK = 1 << 22  # elements per step when mapping blocks to their first column

Install = Callable[[str, QuantizedTensor], None]


# -- one matrix ------------------------------------------------------------------------------


class HessianAccumulator:
    """H = 2/n * sum of x x^T over the n input rows x a layer saw (fp32, on the layer's device)."""

    def __init__(self, width: int, device: torch.device):
        self.sum = torch.zeros(width, width, dtype=torch.float32, device=device)
        self.rows = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).to(device=self.sum.device, dtype=torch.float32)
        self.sum.addmm_(x.T, x)
        self.rows += x.shape[0]

    def hessian(self) -> torch.Tensor:
        return self.sum * (2.0 / max(self.rows, 1))


def inverse_hessian_factor(hessian: torch.Tensor, percdamp: float = PERCDAMP) -> torch.Tensor:
    """The upper Cholesky factor of (H + damp I)^-1, damp = percdamp * mean(diag H)."""
    h = hessian.to(torch.float32).clone()
    diag = torch.diagonal(h)
    diag[diag == 0] = 1.0  # inputs never seen: no coupling, any positive value keeps H invertible
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    damp = percdamp * float(diag.mean())
    for _ in range(DAMP_RETRIES):
        lower, info = torch.linalg.cholesky_ex(h + damp * eye)
        if int(info) == 0:
            upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
            if int(info) == 0:
                return upper
        damp *= 10
    raise ValueError(f"GPTQ: the inputs' Hessian ({h.shape[0]} x {h.shape[0]}) is not positive definite even with "
                     f"damping {damp / 10:g}; use more (or more varied) calibration samples")


def block_first_positions(n_rows: int, order: torch.Tensor, blocksize: int | None) -> torch.Tensor:
    """For each block of the row-major flattened (n_rows, len(order)) tensor, the position in the
    processing order `order` (column indices) of its first column."""
    n_cols = order.numel()
    numel = n_rows * n_cols
    size = blocksize or numel
    position = torch.empty_like(order)
    position[order] = torch.arange(n_cols, device=order.device)
    first = torch.full((-(-numel // size),), n_cols, dtype=torch.int64, device=order.device)
    rows_per_step = max(1, _CHUNK // n_cols)
    for start in range(0, n_rows, rows_per_step):
        rows = torch.arange(start, min(n_rows, start + rows_per_step), device=order.device)
        ids = (rows[:, None] * n_cols + torch.arange(n_cols, device=order.device)) // size
        first.scatter_reduce_(0, ids.reshape(-1), position.expand(rows.numel(), -1).reshape(-1), "amin")
    return first


class _Blocks:
    """kbit's block scales during GPTQ: each block's 16-bit absmax is fixed when the rounding
    reaches the block's first column, from the weights as updated up to then."""

    def __init__(self, n_rows: int, order: torch.Tensor, blocksize: int | None, scale_dtype: torch.dtype):
        self.n_cols = order.numel()
        self.size = blocksize or n_rows * self.n_cols
        self.blocksize, self.scale_dtype = blocksize, scale_dtype
        self.columns = order.tolist()  # read once per column: a host list, not a device sync each time
        self.first = block_first_positions(n_rows, order, blocksize)
        self.starts = sorted(set(self.first.tolist()))
        self.position = torch.empty_like(order)
        self.position[order] = torch.arange(self.n_cols, device=order.device)
        self.row_start = torch.arange(n_rows, device=order.device) * self.n_cols
        self.scales = torch.zeros(self.first.numel(), dtype=scale_dtype, device=order.device)

    def fix(self, position: int, work: torch.Tensor) -> None:
        """Set the scales of the blocks whose first column is at `position` from `work` (the weights
        in processing order, updated by every column before `position`)."""
        current = block_scales(work[:, self.position], self.blocksize, self.scale_dtype)
        starting = self.first == position
        self.scales[starting] = current[starting]

    def column(self, position: int) -> torch.Tensor:
        """The fp32 scale of each row's element at `position` (an all-zero block divides by 1)."""
        scale = self.scales[(self.row_start + self.columns[position]) // self.size].to(torch.float32)
        return torch.where(scale == 0, torch.ones_like(scale), scale)


def _round_columns(work: torch.Tensor, factor: torch.Tensor, code: torch.Tensor, blocks: _Blocks) -> torch.Tensor:
    """GPTQ's loop over the columns of `work` (processing order, updated in place): each column is
    rounded with kbit's quantizer and its error, scaled by the inverse Hessian factor, is taken off
    the later columns (within a lazy batch at once, beyond it once per batch). Returns the codes."""
    n_cols = work.shape[1]
    mids = midpoints(code)
    codes = torch.empty(work.shape, dtype=torch.uint8, device=work.device)
    cuts = sorted(set(range(0, n_cols, LAZY_COLUMNS)) | set(blocks.starts) | {n_cols})
    starts = set(blocks.starts)
    for i1, i2 in zip(cuts, cuts[1:]):
        if i1 in starts:
            blocks.fix(i1, work)
        batch, errors, inverse = work[:, i1:i2].clone(), torch.empty_like(work[:, i1:i2]), factor[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w, scale = batch[:, i], blocks.column(i1 + i)
            index = torch.bucketize((w / scale).clamp(-1.0, 1.0), mids, right=False)
            codes[:, i1 + i] = index.to(torch.uint8)
            error = (w - code[index] * scale) / inverse[i, i]
            batch[:, i:].sub_(error[:, None] * inverse[i, i:][None, :])
            errors[:, i] = error
        work[:, i1:i2] = batch
        work[:, i2:].sub_(errors @ factor[i1:i2, i2:])
    return codes


@torch.no_grad()
def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, cfg: QuantConfig, act_order: bool | None = None,
                  percdamp: float = PERCDAMP) -> QuantizedTensor:
    """GPTQ of an (out, in) weight given its inputs' Hessian (in, in): a QuantizedTensor in kbit's
    format for `cfg` (bits, dtype, blocksize; `cfg.method` is not read). `act_order` None: ACT_ORDER."""
    act_order = ACT_ORDER if act_order is None else act_order
    check_input(weight, cfg)
    if weight.dim() != 2 or tuple(hessian.shape) != (weight.shape[1], weight.shape[1]):
        raise ValueError(f"gptq_quantize: expected an (out, in) weight and an (in, in) Hessian, got "
                         f"{tuple(weight.shape)} and {tuple(hessian.shape)}")
    n_rows, n_cols = weight.shape
    scale_dtype = scale_dtype_for(weight)
    code = codebook_for(weight, cfg, scale_dtype).to(weight.device, torch.float32)
    hessian = hessian.to(weight.device, torch.float32)
    order = (torch.argsort(torch.diagonal(hessian), descending=True, stable=True) if act_order
             else torch.arange(n_cols, device=weight.device))
    factor = inverse_hessian_factor(hessian[order][:, order], percdamp)
    blocks = _Blocks(n_rows, order, cfg.blocksize, scale_dtype)
    codes = _round_columns(weight.to(torch.float32)[:, order].clone(), factor, code, blocks)
    stored = torch.empty_like(codes)
    stored[:, order] = codes
    return QuantizedTensor(pack(stored, cfg.bits), blocks.scales, code, weight.shape, weight.dtype, cfg)


# -- a whole model -----------------------------------------------------------------------------


class _Stop(Exception):
    """Raised by the hook that captures the first block's inputs: the rest of the forward is not needed."""


def check_calibration(calibration) -> list[torch.Tensor]:
    """Calibration batches as (batch, tokens) int64 tensors; ValueError naming what is wrong."""
    if calibration is None or isinstance(calibration, torch.Tensor) or not isinstance(calibration, Sequence) \
            or not calibration:
        raise ValueError("method='gptq' needs calibration=[input ids, ...]: a non-empty list of LongTensor batches "
                         "(batch, tokens) of text tokenized with the model's tokenizer")
    batches = []
    for i, batch in enumerate(calibration):
        if not isinstance(batch, torch.Tensor) or batch.dtype not in (torch.int64, torch.int32) \
                or batch.dim() not in (1, 2) or batch.numel() == 0:
            got = f"{batch.dtype} of shape {tuple(batch.shape)}" if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise ValueError(f"calibration batch {i} must be a non-empty LongTensor of input ids (batch, tokens), got {got}")
        batches.append(batch.long().reshape(-1, batch.shape[-1]))
    return batches


@contextlib.contextmanager
def _inference(model: nn.Module):
    """Eval mode, no gradients, no key/value cache; the model's own settings restored after."""
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    training = model.training
    model.eval()
    if use_cache is not None:
        config.use_cache = False
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(training)
        if use_cache is not None:
            config.use_cache = use_cache


@contextlib.contextmanager
def _hessians(model: nn.Module, names: list[str]):
    """{name: HessianAccumulator} filled by forward hooks on the named layers while the block runs."""
    modules = {name: model.get_submodule(name) for name in names}
    accumulators = {
        name: HessianAccumulator(weight_matrix(m).shape[1], weight_matrix(m).device) for name, m in modules.items()
    }
    handles = [m.register_forward_hook(lambda _m, args, _out, acc=accumulators[name]: acc.add(args[0]))
               for name, m in modules.items()]
    try:
        yield accumulators
    finally:
        for handle in handles:
            handle.remove()


def _quantize_layers(model: nn.Module, accumulators: dict, cfg: QuantConfig, outliers: dict, install: Install) -> None:
    """GPTQ of each layer from its accumulated Hessian (outlier columns, kept in 16 bit, left out)."""
    for name, acc in accumulators.items():
        weight, hessian = weight_matrix(model.get_submodule(name)), acc.hessian()
        idx = outliers.get(name)
        if idx is not None and idx.numel():
            keep = torch.ones(weight.shape[1], dtype=torch.bool, device=weight.device)
            keep[idx.to(weight.device)] = False
            weight, hessian = weight[:, keep], hessian[keep][:, keep]
        install(name, gptq_quantize(weight, hessian, cfg))


def _run_model(model: nn.Module, batches: list[torch.Tensor]) -> None:
    device = next(model.parameters()).device
    for batch in batches:
        try:
            model(batch.to(device))
        except _Stop:
            pass


def _first_block_inputs(model: nn.Module, block: nn.Module, batches: list[torch.Tensor]) -> list[tuple]:
    """(args, kwargs) of the first block's call for every batch, captured by stopping the forward there."""
    calls = []

    def capture(_module, args, kwargs):
        calls.append((args, kwargs))
        raise _Stop

    handle = block.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        _run_model(model, batches)
    finally:
        handle.remove()
    return calls


def _run_block(block: nn.Module, calls: list[tuple]) -> list[tuple]:
    """Each call's output as the hidden states of the next block's call (the first argument)."""
    out = []
    for args, kwargs in calls:
        result = block(*args, **kwargs)
        hidden = result[0] if isinstance(result, (tuple, list)) else result
        out.append(((hidden, *args[1:]), kwargs) if args else ((), {**kwargs, "hidden_states": hidden}))
    return out


def _single_stack(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    stacks = block_lists(model)
    return stacks[0] if len(stacks) == 1 else None


def gptq_model_(model: nn.Module, targets: list[str], cfg: QuantConfig, calibration, install: Install,
                outliers: dict | None = None, progress: bool = False) -> None:
    """GPTQ every layer named in `targets`, installing each result with `install(name, qtensor)`.

    Sequential: the calibration batches run up to the first transformer block (the architecture
    map's, else the model's one stack of blocks); each block then collects its layers' Hessians
    from its inputs, its layers are quantized and installed, and its output, computed with the
    quantized layers, is the next block's input. Layers outside the blocks that run before the first
    block are quantized first, the others after the last block, from one pass of the whole model.
    A model without one stack of blocks is calibrated in one pass of the 16-bit model (warned).
    """
    batches = check_calibration(calibration)
    outliers = outliers or {}
    stack = _single_stack(model)
    with _inference(model):
        if stack is None:
            warnings.warn("GPTQ found no single stack of transformer blocks in this model: every layer is calibrated "
                          "from one pass of the 16-bit model, not block by block", stacklevel=3)
            _quantize_in_one_pass(model, targets, batches, cfg, outliers, install)
            return
        prefix, blocks = stack
        inside = [[t for t in targets if t.startswith(f"{prefix}.{i}.")] for i in range(len(blocks))]
        outside = [t for t in targets if not t.startswith(f"{prefix}.")]
        with _hessians(model, outside) as accumulators:
            calls = _first_block_inputs(model, blocks[0], batches)
        before = {name: acc for name, acc in accumulators.items() if acc.rows}
        if before:
            _quantize_layers(model, before, cfg, outliers, install)
            calls = _first_block_inputs(model, blocks[0], batches)
        for block, names in tqdm(list(zip(blocks, inside)), desc=f"gptq {cfg.label()}", unit="block",
                                 disable=not progress):
            with _hessians(model, names) as accumulators:
                _run_block(block, calls)
            _quantize_layers(model, accumulators, cfg, outliers, install)
            calls = _run_block(block, calls)
        _quantize_in_one_pass(model, [t for t in outside if t not in before], batches, cfg, outliers, install)


def _quantize_in_one_pass(model: nn.Module, names: list[str], batches: list[torch.Tensor], cfg: QuantConfig,
                          outliers: dict, install: Install) -> None:
    if not names:
        return
    with _hessians(model, names) as accumulators:
        _run_model(model, batches)
    _quantize_layers(model, accumulators, cfg, outliers, install)
