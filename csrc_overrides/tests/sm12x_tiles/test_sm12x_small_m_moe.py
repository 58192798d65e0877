"""
Copyright (c) 2026 by FlashInfer team.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

  http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.

Numerical tests of the SM120/SM121 CUTLASS fused-MoE paths used at small M:
- the untuned default tactic (-1), which at <= 64 tokens runs a swap-AB 128x32 /
  128x64 tile (flashinfer/fused_moe/sm12x_default_tactic.py);
- every tactic whose grouped GEMM tile has 64 rows (TileM = 64), run explicitly.

Two MoEs: gpt-oss-like MXFP8 activations x MXFP4 weights (expert biases, SwiGLU
alpha 1.702 / beta 1.0 / limit 7.0) and a smaller Qwen3-Next-like NVFP4 x NVFP4.
Each output is compared with a float64 reference computed from the quantized
tensors exactly as the kernel reads them (the library's quantizers, dequantized
here), and each 64-row tactic with the 128x128 tile.

The reference helpers are plain torch and run on any device.
"""

import functools
from dataclasses import dataclass
from typing import Callable, List, Optional

import pytest
import torch
import torch.nn.functional as F

from flashinfer import fp4_quantize, mxfp4_quantize, mxfp8_quantize
from flashinfer.fused_moe import cutlass_fused_moe
from flashinfer.fused_moe.core import ActivationType, get_cutlass_fused_moe_module
from flashinfer.fused_moe.sm12x_default_tactic import (
    TacticDesc,
    select_sm12x_small_m_default_tactic,
)

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 12),
    reason="needs an SM120/SM121 GPU: the TileM=64 MoE tiles and the small-M "
    "default tactic only run there",
)

NUM_TOKENS = [1, 4, 16, 64, 65, 128]
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
FLOAT4_E2M1_MAX = 6.0
FLOAT8_E4M3_MAX = 448.0
BF16_UNIT_ROUNDOFF = 2.0**-8
NONE, FINALIZE = 0, 1  # CutlassGemmConfig::EpilogueFusionType


# ---------------------------------------------------------------------------
# Dequantization (any device)
# ---------------------------------------------------------------------------


def round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def unpack_e2m1(packed: torch.Tensor) -> torch.Tensor:
    """uint8 [..., k/2], two e2m1 codes per byte, element 2i in the low nibble ->
    float64 [..., k]."""
    codes = torch.stack((packed & 0xF, packed >> 4), dim=-1).flatten(-2).long()
    magnitude = torch.tensor(E2M1_VALUES, dtype=torch.float64, device=packed.device)[
        codes & 7
    ]
    return torch.where(codes & 8 != 0, -magnitude, magnitude)


def ue8m0_to_float64(codes: torch.Tensor) -> torch.Tensor:
    """UE8M0 scale codes -> 2**(code - 127), built from the float64 exponent bits
    (exact on every device; codes 0..254)."""
    return ((codes.long() + (1023 - 127)) << 52).view(torch.float64)


def unswizzle_sf_128x4(sf: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Scale factors in the 128x4 swizzled layout -> [rows, cols].

    The buffer holds round_up(rows, 128) x round_up(cols, 4) factors as tiles of
    128 rows x 4 columns, row tiles outermost; inside a tile, (r, c) is at
    (r % 32) * 16 + (r // 32) * 4 + c (get_sf_out_offset_128x4 in
    csrc/nv_internal/tensorrt_llm/kernels/quantization_utils.cuh).
    """
    m_tiles, k_tiles = round_up(rows, 128) // 128, round_up(cols, 4) // 4
    tiles = sf.reshape(m_tiles, k_tiles, 32, 4, 4)
    return tiles.permute(0, 3, 2, 1, 4).reshape(m_tiles * 128, k_tiles * 4)[
        :rows, :cols
    ]


def apply_block_scales(
    values: torch.Tensor, scales: torch.Tensor, block: int
) -> torch.Tensor:
    return (values.unflatten(-1, (-1, block)) * scales.unsqueeze(-1)).flatten(-2)


def dequant_mxfp8(x: torch.Tensor, sf: torch.Tensor) -> torch.Tensor:
    """float8_e4m3fn [rows, k] with swizzled UE8M0 scales per 32 -> float64."""
    rows, k = x.shape
    scales = ue8m0_to_float64(unswizzle_sf_128x4(sf.view(torch.uint8), rows, k // 32))
    return apply_block_scales(x.double(), scales, 32)


def dequant_mxfp4(w: torch.Tensor, sf: torch.Tensor) -> torch.Tensor:
    """Packed e2m1 [rows, k/2] with swizzled UE8M0 scales per 32 -> float64."""
    rows, k = w.shape[0], w.shape[1] * 2
    scales = ue8m0_to_float64(unswizzle_sf_128x4(sf.view(torch.uint8), rows, k // 32))
    return apply_block_scales(unpack_e2m1(w), scales, 32)


def dequant_nvfp4(w: torch.Tensor, sf: torch.Tensor, global_scale) -> torch.Tensor:
    """Packed e2m1 [rows, k/2] with swizzled E4M3 scales per 16, divided by the
    global scale (the quantizer multiplies by it) -> float64."""
    rows, k = w.shape[0], w.shape[1] * 2
    sf = unswizzle_sf_128x4(sf.view(torch.uint8), rows, k // 16)
    scales = sf.view(torch.float8_e4m3fn).double() / float(global_scale)
    return apply_block_scales(unpack_e2m1(w), scales, 16)


# ---------------------------------------------------------------------------
# Reference MoE (any device)
# ---------------------------------------------------------------------------


def swiglu(gate: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * linear


def swiglu_bias(alpha: float, beta: float, limit: float):
    """SwigluBiasAdaptor (csrc/fused_moe/cutlass_backend/cutlass_fused_moe_kernels.cuh)."""

    def act(gate: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
        gate = gate.clamp(max=limit)
        return gate * torch.sigmoid(alpha * gate) * (linear.clamp(-limit, limit) + beta)

    return act


def moe_reference(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    b1: Optional[torch.Tensor],
    b2: Optional[torch.Tensor],
    experts: torch.Tensor,
    weights: torch.Tensor,
    activation: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    requantize: Callable[[torch.Tensor], torch.Tensor],
):
    """Float64 MoE on dequantized inputs, following the kernel's steps.

    x [m, h]; w1 [e, 2i, h], rows [0, i) the linear (up) half and [i, 2i) the gate
    half; w2 [e, h, i]; b1 [e, 2i], b2 [e, h] or None; experts / weights [m, k].
    The GEMM1 output is rounded to bf16 (the kernel stores it in the output dtype
    before bias and activation); the activation is passed through ``requantize``
    (the kernel quantizes it for GEMM2).

    Returns (out, mag): out[t] = sum_k weights[t, k] * (y_k + b2), and
    mag[t] = sum_k weights[t, k] * (|y_k| + |b2|), the scale of every partial sum
    the kernel rounds to bf16 (see assert_close_per_token).
    """
    out = torch.zeros(x.shape[0], w2.shape[1], dtype=torch.float64, device=x.device)
    mag = torch.zeros_like(out)
    for e in experts.unique().tolist():
        token, slot = (experts == e).nonzero(as_tuple=True)
        h = (x[token].double() @ w1[e].double().T).to(torch.bfloat16).double()
        if b1 is not None:
            h = h + b1[e].double()
        linear, gate = h.chunk(2, dim=-1)
        y = requantize(activation(gate, linear)) @ w2[e].double().T
        bias = b2[e].double() if b2 is not None else torch.zeros_like(y[0])
        w = weights[token, slot].double().unsqueeze(-1)
        out.index_add_(0, token, w * (y + bias))
        mag.index_add_(0, token, w * (y.abs() + bias.abs()))
    return out, mag


def assert_close_per_token(
    out: torch.Tensor,
    expected: torch.Tensor,
    mag: torch.Tensor,
    top_k: int,
    what: str,
):
    """Per token t: ||out_t - expected_t|| <= (top_k + 1) * 2**-8 * ||mag_t||.

    The reference repeats every quantization the kernel does (input, weights,
    bf16 GEMM1 output, GEMM2 input); what it leaves out:
    - bf16 rounding after GEMM2 (2**-8 is bf16's unit roundoff). Each of the
      top_k expert terms is rounded to bf16 and summed (non-fused finalize) or
      added to the output with a bf16 atomic (FINALIZE fusion), and the sum is
      stored as bf16. Every rounded value is bounded by mag, so each output is
      within top_k * 2**-8 * mag of the exact sum (2 * 2**-8 * mag without
      FINALIZE), elementwise and so in norm.
    - The kernel's fp32 accumulation (vs float64: ~1e-7 relative) now and then
      puts a bf16 GEMM1 output or a GEMM2 input on the other side of a rounding
      boundary. One GEMM2 input a quantization step off can move single
      outputs, where the expert terms cancel, by many 2**-8 * mag, but moves
      the token's norm much less: hence a bound per token in norm, with 1 to
      spare.
    Between two tactics with the same fusion only the fp32 accumulation order
    and the atomic order differ; the same bound applies.
    A CPU emulation of this arithmetic at these shapes stayed below
    2**-8 * ||mag_t|| (kernel vs reference, and two orders), and one GEMM2
    input flipped by a step moved a token by less than 1.3 (MXFP8) / 6.2
    (NVFP4) * 2**-8 * ||mag_t|| in 999 of 1000 cases. A wrong row, column,
    scale factor or epilogue is off by O(||mag_t||). Outputs with mag == 0
    (padded columns) must be exactly 0, and none may be the NaN poison.
    """
    assert torch.isfinite(out).all(), f"{what}: non-finite outputs"
    assert (out[mag == 0] == 0).all(), f"{what}: nonzero outputs in padded columns"
    err = (out.double() - expected).norm(dim=-1) / mag.norm(dim=-1)
    err = err / BF16_UNIT_ROUNDOFF
    bad = (err > top_k + 1).nonzero().flatten().tolist()
    assert not bad, (
        f"{what}: tokens {bad} over the bound; worst ||out - expected|| / ||mag|| "
        f"= {err.max().item():.2f} * 2**-8, bound {top_k + 1} * 2**-8"
    )


# ---------------------------------------------------------------------------
# The two MoEs
# ---------------------------------------------------------------------------


@dataclass
class MoeProblem:
    num_experts: int
    top_k: int
    input_dtype: torch.dtype  # of the quantized kernel input
    hidden: int  # the data's hidden size
    padded_hidden: int  # the kernel's (fc2_expert_weights.shape[1])
    # bf16 [m, hidden] -> (kernel input, input_sf, float64 dequantized [m, padded_hidden])
    quantize_input: Callable
    moe_kwargs: dict  # weights, quant_scales, biases, activation parameters
    w1: torch.Tensor  # dequantized, float32 (exact for MXFP4)
    w2: torch.Tensor
    b1: Optional[torch.Tensor]
    b2: Optional[torch.Tensor]
    activation: Callable
    requantize: Callable
    # Grouped-GEMM candidate tiles (M, N, K in activation bytes) that
    # get_candidate_configs_sm120 (cutlass_heuristic.cpp) returns, in its order.
    sm120_tiles: List[tuple]


def quantize_experts(w: torch.Tensor, global_scales: Optional[torch.Tensor] = None):
    """Each expert's [n, k] weight to MXFP4 (global_scales None) or NVFP4 with the
    library quantizer: stacked codes, stacked swizzled scale factors, and the
    dequantized weights (float32; exact for MXFP4)."""
    codes, scales, dequantized = [], [], []
    for j, w_j in enumerate(w):
        if global_scales is None:
            q, sf = mxfp4_quantize(w_j)
            dq = dequant_mxfp4(q, sf)
        else:
            q, sf = fp4_quantize(w_j, global_scales[j])
            dq = dequant_nvfp4(q, sf, global_scales[j])
        codes.append(q)
        scales.append(sf)
        dequantized.append(dq.float())
    return torch.stack(codes), torch.stack(scales), torch.stack(dequantized)


@functools.cache  # pytest may set the module-scoped fixtures up more than once
def gpt_oss_like_mxfp8_mxfp4() -> MoeProblem:
    torch.manual_seed(0)
    e, k, h, i = 8, 4, 2880, 2880
    # The binding needs hidden and intermediate % 128 == 0 for MXFP4 weights:
    # 2880 -> 2944, zero padded (x, weights and biases).
    hp, ip = round_up(h, 128), round_up(i, 128)
    w1 = torch.randn(e, 2, i, h, device="cuda") * (2.5 / h**0.5)  # [linear, gate]
    w1 = F.pad(w1, (0, hp - h, 0, ip - i)).reshape(e, 2 * ip, hp).bfloat16()
    w2 = torch.randn(e, h, i, device="cuda") / i**0.5
    w2 = F.pad(w2, (0, ip - i, 0, hp - h)).bfloat16()
    b1 = F.pad(torch.randn(e, 2, i, device="cuda") * 0.5, (0, ip - i))
    b1 = b1.reshape(e, 2 * ip).bfloat16()
    b2 = F.pad(torch.randn(e, h, device="cuda") * 0.5, (0, hp - h)).bfloat16()
    w1_q, w1_sf, w1_dq = quantize_experts(w1)
    w2_q, w2_sf, w2_dq = quantize_experts(w2)
    alpha, beta, limit = 1.702, 1.0, 7.0

    def quantize_input(x):
        x_q, x_sf = mxfp8_quantize(F.pad(x, (0, hp - h)), True)
        return x_q, x_sf, dequant_mxfp8(x_q, x_sf)

    def requantize(a):
        # The kernel casts the fp32 activation to bf16 and quantizes it with the
        # routine mxfp8_quantize uses (cvt_warp_fp16_to_mxfp8).
        q, sf = mxfp8_quantize(a.float().bfloat16(), True)
        return dequant_mxfp8(q, sf)

    ones = torch.ones(e, device="cuda")
    return MoeProblem(
        num_experts=e,
        top_k=k,
        input_dtype=torch.float8_e4m3fn,
        hidden=h,
        padded_hidden=hp,
        quantize_input=quantize_input,
        moe_kwargs=dict(
            fc1_expert_weights=w1_q.view(torch.long),
            fc2_expert_weights=w2_q.view(torch.long),
            fc1_expert_biases=b1,
            fc2_expert_biases=b2,
            quant_scales=[w1_sf.view(torch.int32), ones, w2_sf.view(torch.int32), ones],
            swiglu_alpha=ones * alpha,
            swiglu_beta=ones * beta,
            swiglu_limit=ones * limit,
            use_mxfp8_act_scaling=True,
        ),
        w1=w1_dq,
        w2=w2_dq,
        b1=b1,
        b2=b2,
        activation=swiglu_bias(alpha, beta, limit),
        requantize=requantize,
        # FP8 activations: K = 128 bytes only; 64-row tiles from patch 0003.
        sm120_tiles=[
            (128, 128, 128),
            (128, 32, 128),
            (128, 64, 128),
            (64, 64, 128),
            (64, 128, 128),
        ],
    )


@functools.cache
def qwen3_next_like_nvfp4() -> MoeProblem:
    torch.manual_seed(0)
    e, k, h, i = 16, 10, 2048, 512
    w1 = (torch.randn(e, 2 * i, h, device="cuda") * (1.5 / h**0.5)).bfloat16()
    w2 = (torch.randn(e, h, i, device="cuda") / i**0.5).bfloat16()
    w1_gs = FLOAT8_E4M3_MAX * FLOAT4_E2M1_MAX / w1.float().abs().amax(dim=(1, 2))
    w2_gs = FLOAT8_E4M3_MAX * FLOAT4_E2M1_MAX / w2.float().abs().amax(dim=(1, 2))
    w1_q, w1_sf, w1_dq = quantize_experts(w1, w1_gs)
    w2_q, w2_sf, w2_dq = quantize_experts(w2, w2_gs)
    # Static activation global scales, as a calibrated checkpoint has: the block
    # scales saturate above amax = 448 * 6 / global scale, so the amax each
    # covers is asserted.
    x_amax, act_amax = 8.0, 64.0
    a1_gs = torch.tensor(FLOAT8_E4M3_MAX * FLOAT4_E2M1_MAX / x_amax, device="cuda")
    a2_gs = torch.tensor(FLOAT8_E4M3_MAX * FLOAT4_E2M1_MAX / act_amax, device="cuda")

    def quantize_input(x):
        assert x.abs().max() <= x_amax
        x_q, x_sf = fp4_quantize(x, a1_gs)
        return x_q, x_sf, dequant_nvfp4(x_q, x_sf, a1_gs)

    def requantize(a):
        # As cvt_warp_fp16_to_fp4 in the kernel: fp32 -> bf16 -> NVFP4 with a2_gs.
        assert a.abs().max() <= act_amax
        q, sf = fp4_quantize(a.float().bfloat16(), a2_gs)
        return dequant_nvfp4(q, sf, a2_gs)

    return MoeProblem(
        num_experts=e,
        top_k=k,
        input_dtype=torch.uint8,  # packed e2m1
        hidden=h,
        padded_hidden=h,
        quantize_input=quantize_input,
        moe_kwargs=dict(
            fc1_expert_weights=w1_q.view(torch.long),
            fc2_expert_weights=w2_q.view(torch.long),
            quant_scales=[
                a1_gs,
                w1_sf.view(torch.int32),
                1.0 / (a1_gs * w1_gs),
                a2_gs,
                w2_sf.view(torch.int32),
                1.0 / (a2_gs * w2_gs),
            ],
        ),
        w1=w1_dq,
        w2=w2_dq,
        b1=None,
        b2=None,
        activation=swiglu,
        requantize=requantize,
        # FP4 activations: K = 64 bytes (128 elements) or 128 bytes (256 elements);
        # the 64-row tiles from patch 0003 are generated with 128-element K only.
        sm120_tiles=[
            (128, 128, 128),
            (128, 128, 64),
            (256, 128, 64),
            (128, 256, 64),
            (128, 32, 128),
            (128, 32, 64),
            (128, 64, 128),
            (128, 64, 64),
            (64, 64, 64),
            (64, 128, 64),
        ],
    )


# ---------------------------------------------------------------------------
# Tactics
# ---------------------------------------------------------------------------


def sm120_tactic_list(tiles: List[tuple]):
    """The runner's combined tactic list on SM120/SM121 as TacticDesc, and how
    many of its entries are GEMM1's.

    The Python API passes tactics as indices into this list (GEMM1 tactics, then
    GEMM2 tactics; profile_ids=[gemm1, gemm2]) but does not expose their tile
    shapes, so it is rebuilt here the way MoeGemmRunner::
    getTmaWarpSpecializedConfigs (moe_gemm_template_dispatch.h) builds it from
    the candidate tiles: the tiles; for GEMM2 the same again with FINALIZE
    fusion; then swap-AB copies of all of those except the 64-row tiles (which
    are generated without swap-AB). sm120_tactics checks it against the runner.
    """

    def gemm(fusions):
        base = [TacticDesc(m, n, k, False, f) for f in fusions for m, n, k in tiles]
        return base + [d._replace(swap_ab=True) for d in base if d.tile_m >= 128]

    gemm1, gemm2 = gemm([NONE]), gemm([NONE, FINALIZE])
    return gemm1 + gemm2, len(gemm1)


def sm120_tactics(problem: MoeProblem):
    """sm120_tactic_list for the problem, checked against the runner: the
    per-GEMM counts must match (each 64-row tactic is also checked to dispatch,
    and the untuned-default test that the small-M rule applied to this list
    names the kernel the runner runs). Returns (tactics, GEMM1 count, runner).
    """
    tactics, gemm1_count = sm120_tactic_list(problem.sm120_tiles)
    kwargs = problem.moe_kwargs
    major, minor = torch.cuda.get_device_capability()
    runner = (
        get_cutlass_fused_moe_module(f"{major}{minor}")
        .MoERunner(
            x_dtype=problem.input_dtype,
            weight_dtype=kwargs["fc1_expert_weights"].dtype,
            output_dtype=torch.bfloat16,
            top_k=problem.top_k,
            tp_size=1,
            tp_rank=0,
            ep_size=1,
            ep_rank=0,
            cluster_size=1,
            cluster_rank=0,
            enable_alltoall=False,
            use_deepseek_fp8_block_scale=False,
            use_w4_group_scaling=False,
            use_mxfp8_act_scaling=kwargs.get("use_mxfp8_act_scaling", False),
            min_latency_mode=False,
            enable_pdl=False,
            activation_type=ActivationType.Swiglu,
            use_packed_weights=False,
            use_fused_finalize=True,
            use_wfp4afp8_humming=False,
        )
        .fused_moe_runner
    )
    counts = (runner.get_gemm1_tactic_count(), runner.get_gemm2_tactic_count())
    assert counts == (gemm1_count, len(tactics) - gemm1_count), (
        "the runner's SM120 tactic list changed: update sm120_tiles / sm120_tactic_list"
    )
    return tactics, gemm1_count, runner


# ---------------------------------------------------------------------------
# Fixtures and runs
# ---------------------------------------------------------------------------


@dataclass
class MoeCase:
    x_q: torch.Tensor
    x_sf: torch.Tensor
    experts: torch.Tensor
    weights: torch.Tensor
    ref: torch.Tensor
    mag: torch.Tensor


@pytest.fixture(
    scope="module",
    params=[gpt_oss_like_mxfp8_mxfp4, qwen3_next_like_nvfp4],
    ids=["gpt_oss_mxfp8_mxfp4", "qwen3_next_nvfp4"],
)
def problem(request) -> MoeProblem:
    return request.param()


@pytest.fixture(scope="module", params=NUM_TOKENS, ids=lambda m: f"m{m}")
def num_tokens(request) -> int:
    return request.param


@pytest.fixture(scope="module")  # one reference per problem and token count
def moe_case(problem: MoeProblem, num_tokens: int) -> MoeCase:
    torch.manual_seed(num_tokens)
    x = torch.randn(num_tokens, problem.hidden, device="cuda").bfloat16()
    logits = torch.randn(num_tokens, problem.num_experts, device="cuda")
    weights, experts = torch.topk(logits.softmax(dim=-1), problem.top_k, dim=-1)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    x_q, x_sf, x_dq = problem.quantize_input(x)
    ref, mag = moe_reference(
        x_dq,
        problem.w1,
        problem.w2,
        problem.b1,
        problem.b2,
        experts,
        weights,
        problem.activation,
        problem.requantize,
    )
    return MoeCase(x_q, x_sf, experts.int(), weights, ref, mag)


def run_moe(problem: MoeProblem, case: MoeCase, profile_ids: List[int]) -> torch.Tensor:
    out = torch.full(
        (case.x_q.shape[0], problem.padded_hidden),
        float("nan"),
        dtype=torch.bfloat16,
        device="cuda",
    )
    cutlass_fused_moe(
        case.x_q,
        case.experts,
        case.weights,
        output_dtype=torch.bfloat16,
        input_sf=case.x_sf,
        output=out,
        profile_ids=profile_ids,
        **problem.moe_kwargs,
    )
    return out


def test_untuned_default_tactic(
    problem: MoeProblem, moe_case: MoeCase, num_tokens: int
):
    """Tactic -1 for both GEMMs, what an untuned call (profile_ids=None outside
    autotune, no cached entry) resolves to; given explicitly so that a tuning
    cache from another test cannot replace it. At <= 64 tokens the runner picks
    a swap-AB 128x32 / 128x64 tile (patch 0004), else 128x128."""
    tactics, gemm1_count, _ = sm120_tactics(problem)
    out = run_moe(problem, moe_case, [-1, -1])
    assert_close_per_token(
        out, moe_case.ref, moe_case.mag, problem.top_k, "untuned default"
    )

    # Same kernels as the tactics the rule names: bit-identical (the default
    # GEMM2 keeps the non-fused finalize, which is deterministic).
    named = [
        select_sm12x_small_m_default_tactic(
            begin, end, begin, num_tokens, tactics.__getitem__
        )
        for begin, end in ((0, gemm1_count), (gemm1_count, len(tactics)))
    ]
    assert torch.equal(out, run_moe(problem, moe_case, named)), (
        f"untuned default differs from tactics {named} "
        f"({[tactics[t] for t in named]}) that the small-M rule names"
    )


def test_tile_m64_tactics(problem: MoeProblem, moe_case: MoeCase):
    """Each 64-row tactic of GEMM1 and of GEMM2 (NONE and FINALIZE fusion), with
    the other GEMM on the 128x128 tile: against the reference and against the
    128x128 tile with the same fusion."""
    tactics, gemm1_count, runner = sm120_tactics(problem)

    def tile_128x128(gemm2: bool, fusion: int) -> int:
        begin = gemm1_count if gemm2 else 0
        return tactics.index(TacticDesc(128, 128, 128, False, fusion), begin)

    runs = []
    for t, d in enumerate(tactics):
        if d.tile_m != 64:
            continue
        if t < gemm1_count:
            other = tile_128x128(True, NONE)
            runs.append((t, d, [t, other], [tile_128x128(False, NONE), other]))
        else:
            other = tile_128x128(False, NONE)
            runs.append(
                (t, d, [other, t], [other, tile_128x128(True, d.epilogue_fusion)])
            )
    assert len(runs) == 6, runs  # 2 tiles on GEMM1, 2 tiles x 2 fusions on GEMM2

    baselines = {}
    for t, d, ids, base_ids in runs:
        what = f"tactic {t} {d} (profile_ids={ids})"
        assert runner.get_tactic_occupancy(t) > 0, f"{what} does not dispatch"
        out = run_moe(problem, moe_case, ids)
        assert_close_per_token(out, moe_case.ref, moe_case.mag, problem.top_k, what)
        key = tuple(base_ids)
        if key not in baselines:
            baselines[key] = run_moe(problem, moe_case, base_ids)
        assert_close_per_token(
            out,
            baselines[key].double(),
            moe_case.mag,
            problem.top_k,
            f"{what} vs 128x128 profile_ids={base_ids}",
        )
