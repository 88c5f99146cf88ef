"""k-bit packing of code indices into a uint8 bit stream (k = 2..8), in plain torch.

Layout: one MSB-first bit stream; element i occupies bits [i*k, (i+1)*k) counted from the most
significant bit of byte 0. Every 8 elements fill exactly k bytes, so a stream of n codes takes
ceil(n / 8) * k bytes: ceil(n*k/8) plus at most k-1 bytes of padding (padding codes are 0).
At k=4 this is bitsandbytes' layout (element 2j in the high nibble); the Triton kernels decode the
same stream (byte (i*k) >> 3 and the one after it).
"""

from __future__ import annotations

import torch

PACK_BITS = tuple(range(2, 9))


def _check(bits: int) -> None:
    if bits not in PACK_BITS:
        raise ValueError(f"packing: bits={bits!r} is not allowed; use an integer from 2 to 8")


def packed_nbytes(numel: int, bits: int) -> int:
    """Bytes of the packed stream of `numel` k-bit codes."""
    _check(bits)
    return -(-numel // 8) * bits


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer codes in [0, 2**bits) (any shape, read row-major) into a flat uint8 stream."""
    _check(bits)
    flat = codes.reshape(-1).to(torch.int64)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 2**bits):
        raise ValueError(f"pack: codes must lie in [0, {2**bits}) for bits={bits}; got [{int(flat.min())}, {int(flat.max())}]")
    groups = -(-flat.numel() // 8)
    padded = torch.zeros(groups * 8, dtype=torch.int64, device=flat.device)
    padded[: flat.numel()] = flat
    shifts = bits * torch.arange(7, -1, -1, device=flat.device)
    words = (padded.view(groups, 8) << shifts).sum(dim=1)  # 8*k <= 64 bits, no overlap
    byte_shifts = 8 * torch.arange(bits - 1, -1, -1, device=flat.device)
    return ((words[:, None] >> byte_shifts) & 0xFF).to(torch.uint8).reshape(-1)


def unpack(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of `pack`: the first `numel` codes of the stream, as a flat uint8 tensor."""
    _check(bits)
    need = packed_nbytes(numel, bits)
    if packed.dtype != torch.uint8 or packed.numel() < need:
        raise ValueError(
            f"unpack: expected a uint8 stream of at least {need} bytes for {numel} {bits}-bit codes; "
            f"got {packed.numel()} bytes of {packed.dtype}"
        )
    groups = -(-numel // 8)
    stream = packed[:need].view(groups, bits).T.contiguous().to(torch.int32)  # (k, groups): contiguous rows
    codes = torch.empty(8, groups, dtype=torch.int32, device=packed.device)
    mask = 2**bits - 1
    for lane in range(8):  # column ops on int32: much faster on CPU than one int64 word per group
        byte, off = divmod(lane * bits, 8)
        if off + bits <= 8:
            codes[lane] = (stream[byte] >> (8 - bits - off)) & mask
        else:
            codes[lane] = (((stream[byte] << 8) | stream[byte + 1]) >> (16 - bits - off)) & mask
    return codes.T.reshape(-1)[:numel].to(torch.uint8)
