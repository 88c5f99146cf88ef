"""k-bit packing: lossless for every k, exact size, bitsandbytes' nibble order at k=4."""

import bitsandbytes.functional as bnbf
import pytest
import torch

from kbit.kernels.packing import pack, packed_nbytes, unpack


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("numel", [1, 7, 8, 9, 4099])
def test_pack_unpack_is_lossless_and_sized(bits, numel):
    g = torch.Generator().manual_seed(bits * 1000 + numel)
    codes = torch.randint(0, 2**bits, (numel,), generator=g, dtype=torch.uint8)
    packed = pack(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() == packed_nbytes(numel, bits)
    assert -(-numel * bits // 8) <= packed.numel() <= -(-numel * bits // 8) + bits - 1
    assert torch.equal(unpack(packed, bits, numel), codes)


def test_stream_is_msb_first():
    assert pack(torch.tensor([1, 2, 3, 4]), 4)[:2].tolist() == [0x12, 0x34]
    # 3-bit codes 0b101, 0b011, 0b111 -> 101011 11|0... = 0xAF, then 0b1 followed by zeros
    assert pack(torch.tensor([5, 3, 7]), 3)[:2].tolist() == [0b10101111, 0b10000000]


def test_4bit_packing_matches_bitsandbytes_nibble_order():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, 64, generator=g)
    bnb_packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
    codes = unpack(bnb_packed.reshape(-1), 4, w.numel())
    assert torch.equal(pack(codes, 4), bnb_packed.reshape(-1))
    # and unpacking bnb's bytes, then looking up NF4, gives bnb's dequantized weights
    nf4 = bnbf.get_4bit_type("nf4", device="cpu")
    w_hat = (nf4[codes.long()].view(-1, 64) * state.absmax[:, None]).view_as(w)
    torch.testing.assert_close(w_hat, bnbf.dequantize_4bit(bnb_packed, state), rtol=0, atol=0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="bits=9"):
        pack(torch.zeros(4), 9)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 8\)"):
        pack(torch.tensor([8]), 3)
    with pytest.raises(ValueError, match="at least 3 bytes"):
        unpack(torch.zeros(2, dtype=torch.uint8), 3, 8)
