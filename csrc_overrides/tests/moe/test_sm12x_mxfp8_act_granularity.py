"""Selectable activation scale granularity (128 / 64 / 32 K elements per UE8M0) of the SM12x
CuTe-DSL MXFP8 x MXFP4 MoE path.

- The Triton route + quantize kernel runs on any CUDA GPU: bit-exact against a PyTorch reference
  at every granularity (UE8M0 = amax / 448 rounded up to a power of two, amax floored at 1e-4,
  e4m3 round-to-nearest-even), both launch paths (decode <= 256 pairs, prefill), unrouted pairs,
  blocks whose amax is exactly 448 * 2^k, outputs poisoned before the call, scale padding zero.
- The end-to-end MoE test needs an SM120/SM121 GPU and skips elsewhere: FC1 + SwiGLU + Q1 and
  FC2 + finalize at each granularity against a float64 reference of the dequantized operands.
"""

import pytest
import torch

triton = pytest.importorskip("triton")

from flashinfer.fused_moe.cute_dsl.blackwell_sm12x._moe_utils.sm12x_blockscaled_layout import (  # noqa: E402
    ACT_SCALE_GRANULARITIES,
)
from flashinfer.fused_moe.cute_dsl.blackwell_sm12x.moe_mxfp8_q0_route_triton import (  # noqa: E402
    make_mxfp8_q0_route_workspace,
    mxfp8_q0_route_triton,
)
from sm12x_mxfp8_reference import (  # noqa: E402
    E4M3_MAX,
    dequant_mxfp4,
    fake_quant_mxfp8,
    moe_reference,
    pack_words,
    reference_mxfp8,
)

POISON_BYTE = 0x7F  # e4m3 NaN
POISON_WORD = 0x7F7F7F7F


def make_input(num_tokens: int, hidden: int, granularity: int, seed: int) -> torch.Tensor:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(num_tokens, hidden, generator=gen, device="cuda") * 3
    # outlier channels, as LLM activations have
    x[:, torch.randperm(hidden, generator=gen, device="cuda")[:4]] *= 40
    x = x.to(torch.bfloat16)
    # blocks whose amax is exactly 448 * 2^k (the UE8M0 rounding boundary), one zero block
    for i, k in enumerate((-3, 0, 2)):
        row, col = i % num_tokens, (i * granularity) % hidden
        x[row, col : col + granularity] = 1.0
        x[row, col + 1] = -E4M3_MAX * 2.0**k
    x[num_tokens - 1, hidden - granularity :] = 0
    return x


def make_routing(num_tokens: int, top_k: int, num_experts: int, seed: int):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    ids = torch.stack(
        [
            torch.randperm(num_experts, generator=gen, device="cuda")[:top_k]
            for _ in range(num_tokens)
        ]
    ).to(torch.int32)
    weights = torch.rand(num_tokens, top_k, generator=gen, device="cuda")
    return ids, weights


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (Triton kernel)")
@pytest.mark.parametrize("granularity", ACT_SCALE_GRANULARITIES)
@pytest.mark.parametrize(
    "num_tokens,hidden,top_k,num_experts",
    [(1, 512, 4, 8), (7, 1536, 4, 32), (64, 3072, 4, 32), (300, 2048, 2, 16)],
)
def test_q0_route_quant_bit_exact(granularity, num_tokens, hidden, top_k, num_experts):
    x = make_input(num_tokens, hidden, granularity, seed=hidden + num_tokens)
    ids, weights = make_routing(num_tokens, top_k, num_experts, seed=num_tokens)
    ids[0, -1] = -1  # an unrouted pair
    ws = make_mxfp8_q0_route_workspace(
        x, ids, num_experts, scale_granularity_k=granularity
    )
    ws.q_out.view(torch.uint8).fill_(POISON_BYTE)
    ws.scale_out.fill_(POISON_WORD)
    _, _, _, q_out, scale_out = mxfp8_q0_route_triton(
        x, ids, weights, num_experts, workspace=ws, scale_granularity_k=granularity
    )
    torch.cuda.synchronize()
    assert scale_out.shape[0] == hidden // (4 * granularity)

    q_ref, exp_ref = reference_mxfp8(x, granularity)
    words_ref = pack_words(exp_ref)
    routed = ids >= 0
    dst = ws.dst_rows[routed].long()
    sdst = ws.scale_dst_rows[routed].long()
    token = torch.arange(num_tokens, device="cuda").unsqueeze(1).expand_as(ids)[routed]
    assert torch.equal(q_out[dst].view(torch.uint8), q_ref[token].view(torch.uint8)), (
        "e4m3 values differ from the reference"
    )
    assert torch.equal(scale_out[:, sdst].t(), words_ref[token]), "UE8M0 words differ"
    padding = torch.ones(scale_out.shape[1], dtype=torch.bool, device="cuda")
    padding[sdst] = False
    assert torch.all(scale_out[:, padding] == 0), "scale padding is not zero-filled"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (Triton kernel)")
def test_q0_route_quant_rejects_bad_granularity():
    x = torch.zeros(2, 512, dtype=torch.bfloat16, device="cuda")
    ids = torch.zeros(2, 1, dtype=torch.int32, device="cuda")
    weights = torch.ones(2, 1, dtype=torch.float32, device="cuda")
    with pytest.raises(ValueError, match="scale_granularity_k"):
        mxfp8_q0_route_triton(x, ids, weights, 4, scale_granularity_k=16)
    with pytest.raises(ValueError, match="not a multiple of 512"):
        mxfp8_q0_route_triton(x[:, :256].contiguous(), ids, weights, 4)
    ws = make_mxfp8_q0_route_workspace(x, ids, 4, scale_granularity_k=128)
    with pytest.raises(ValueError, match="scale words per row"):
        mxfp8_q0_route_triton(x, ids, weights, 4, workspace=ws, scale_granularity_k=32)


def _is_sm12x() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 12


@pytest.mark.skipif(
    not _is_sm12x(), reason="needs an SM120/SM121 GPU (CuTe-DSL MXFP8 x MXFP4 MoE)"
)
@pytest.mark.parametrize("granularity", ACT_SCALE_GRANULARITIES)
@pytest.mark.parametrize("num_tokens", [1, 4, 64])
def test_sm12x_mxfp8_mxfp4_moe_granularity(granularity, num_tokens):
    from flashinfer.fused_moe.cute_dsl.blackwell_sm12x.moe_mxfp8_mxfp4_fc1_act_q1 import (
        cute_dsl_sm12x_fc1_act_q1_mxfp8_mxfp4,
    )
    from flashinfer.fused_moe.cute_dsl.blackwell_sm12x.moe_mxfp8_mxfp4_fc2_finalize import (
        cute_dsl_sm12x_fc2_finalize_mxfp8_mxfp4,
    )

    hidden, inter, num_experts, top_k = 1024, 512, 8, 2
    gen = torch.Generator(device="cuda").manual_seed(num_tokens * granularity)
    x = make_input(num_tokens, hidden, granularity, seed=num_tokens)
    ids, weights = make_routing(num_tokens, top_k, num_experts, seed=num_tokens + 1)

    def mxfp4(rows, cols):
        """Random packed E2M1 [E, rows, cols / 2] and UE8M0 exponents [E, rows, cols / 32]."""
        packed = torch.randint(
            0, 256, (num_experts, rows, cols // 2), generator=gen, device="cuda"
        ).to(torch.uint8)
        exp = torch.randint(
            120, 128, (num_experts, rows, cols // 32), generator=gen, device="cuda"
        ).to(torch.int32)
        return packed, exp

    def weight_words(exp):  # [E, N, K / 32] -> [E, K / 128, N] int32 words
        words = pack_words(exp.flatten(0, 1)).view(*exp.shape[:2], -1)
        return words.transpose(1, 2).contiguous()

    w1, w1_exp = mxfp4(2 * inter, hidden)  # up rows first, then gate
    w2, w2_exp = mxfp4(hidden, inter)
    offsets, token_map, route_w, a_q, a_scale = mxfp8_q0_route_triton(
        x, ids, weights, num_experts, scale_granularity_k=granularity
    )
    q1, sf1 = cute_dsl_sm12x_fc1_act_q1_mxfp8_mxfp4(
        a_q,
        a_scale,
        w1,
        weight_words(w1_exp),
        offsets,
        tune=False,
        scale_granularity_k=granularity,
    )
    out = torch.zeros(num_tokens, hidden, dtype=torch.bfloat16, device="cuda")
    cute_dsl_sm12x_fc2_finalize_mxfp8_mxfp4(
        q1,
        sf1,
        w2,
        weight_words(w2_exp),
        offsets,
        token_map,
        route_w,
        num_tokens,
        tune=False,
        out=out,
        scale_granularity_k=granularity,
    )
    torch.cuda.synchronize()

    # float64 reference of the dequantized operands, activations quantized as the kernels do
    ref = moe_reference(
        x,
        ids,
        weights,
        dequant_mxfp4(w1, w1_exp),
        dequant_mxfp4(w2, w2_exp),
        quantize=lambda t: fake_quant_mxfp8(t, granularity),
    )
    got = out.double()
    assert torch.isfinite(got).all()
    rel = (got - ref).norm() / ref.norm()
    assert rel < 2e-2, f"relative error {rel:.3e} at granularity {granularity}"
