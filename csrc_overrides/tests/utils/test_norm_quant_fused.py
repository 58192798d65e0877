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

Tests for the fused (add +) RMSNorm / Gemma-RMSNorm / LayerNorm -> FP8 / MXFP8 kernels
(flashinfer/norm/norm_quant.py).

Two kinds of checks:
- stage checks (bit-exact): the quantized output equals the reference quantizer applied to
  the kernel's own normalized output (``normed_out``), and the residual equals the
  dtype-rounded fp32 sum;
- end-to-end checks: against a float64 reference norm; differences can only come from the
  reduction order (>= 99.9% identical bytes, the rest within one fp8 ulp).
"""

import pytest
import torch

import flashinfer
from flashinfer.norm.norm_quant import (
    _LAYERNORM,
    _RMSNORM,
    _norm_fp8_per_token_quantize,
    _norm_fp8_quantize,
    _norm_mxfp8_quantize,
    _mxfp8_sf_numel,
    get_norm_quant_module,
)

POISON = 0xA5
RCP_448 = torch.tensor(1.0, dtype=torch.float32) / 448.0  # RN(1/448) = 0x3B124925


def _skip_if_unsupported():
    if not torch.cuda.is_available():
        pytest.skip("CUDA is required")
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip(
            "fused norm -> fp8 kernels require SM89+ (hardware fp8 conversions)"
        )


@pytest.fixture(autouse=True)
def _device_check():
    _skip_if_unsupported()


# ---------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------

NORM_KINDS = ["rmsnorm", "gemma_rmsnorm", "layernorm"]


def _norm_type(kind):
    return (
        (_LAYERNORM, 0.0)
        if kind == "layernorm"
        else (_RMSNORM, 1.0 if kind == "gemma_rmsnorm" else 0.0)
    )


def _make_weights(kind, hidden, dtype, device):
    if kind == "layernorm":
        gamma = torch.randn(hidden, device=device, dtype=torch.float32)
        beta = torch.randn(hidden, device=device, dtype=torch.float32)
        return gamma, beta
    w = torch.randn(hidden, device=device, dtype=dtype)
    if kind == "gemma_rmsnorm":
        w = w * 0.1  # Gemma weights are centered at zero
    return w, None


def ref_norm_f64(x, residual, weight, beta, kind, eps):
    """float64 norm of the fp32 sum; returns (normed_f64, new_residual)."""
    h = x.float()
    new_res = None
    if residual is not None:
        h = h + residual.float()
        new_res = h.to(x.dtype)
    h = h.double()
    if kind == "layernorm":
        mean = h.mean(-1, keepdim=True)
        var = ((h - mean) ** 2).mean(-1, keepdim=True)
        y = (h - mean) * torch.rsqrt(var + eps) * weight.double() + beta.double()
    else:
        rstd = torch.rsqrt((h * h).mean(-1, keepdim=True) + eps)
        wb = 1.0 if kind == "gemma_rmsnorm" else 0.0
        y = h * rstd * (wb + weight.double())
    return y, new_res


def _swizzle_128x4(sf_linear, num_rows, num_sf_cols):
    """Scatter a [num_rows, num_sf_cols] scale matrix into the 128x4 layout (zero padded)."""
    padded_rows = (num_rows + 127) // 128 * 128
    num_k_tiles = (num_sf_cols + 3) // 4
    out = torch.zeros(
        padded_rows * num_k_tiles * 4, dtype=torch.uint8, device=sf_linear.device
    )
    m = torch.arange(num_rows, device=sf_linear.device).view(-1, 1)
    k = torch.arange(num_sf_cols, device=sf_linear.device).view(1, -1)
    off = (
        (m // 128) * (num_k_tiles * 512)
        + (k // 4) * 512
        + (m % 32) * 16
        + ((m % 128) // 32) * 4
        + (k % 4)
    )
    out[off.reshape(-1)] = sf_linear.reshape(-1)
    return out


def mxfp8_quantize_ref(x, padded_hidden, swizzled):
    """Reference MXFP8 quantizer (mxfp8_quantize semantics) of a [M, K] fp16/bf16 tensor.

    scale = RN(amax * RN(1/448)) rounded up to a power of two (UE8M0, code <= 254; code 0 for
    scales <= 2^-127), q = e4m3_rn(clamp(x * 2^(127 - code), +-448)). Blocks with NaN/Inf get
    code 0xFF and NaN values (0x7F). Runs in IEEE fp32 (no FTZ)."""
    m, k = x.shape
    xf = torch.zeros(m, padded_hidden, dtype=torch.float32, device=x.device)
    xf[:, :k] = x.float()
    blocks = xf.view(m, padded_hidden // 32, 32)
    nonfinite = ~torch.isfinite(blocks).all(-1)
    amax = torch.where(
        nonfinite, torch.zeros_like(blocks[..., 0]), blocks.abs().amax(-1)
    )
    s = amax * RCP_448.to(x.device)
    bits = s.view(torch.int32).to(torch.int64)
    e = (bits >> 23) & 0xFF
    mant = bits & 0x7FFFFF
    code = e + ((mant != 0) & ((e != 0) | (mant > 0x400000))).to(torch.int64)
    code = torch.clamp(code, max=254)
    code = torch.where(amax == 0, torch.zeros_like(code), code)
    inv = torch.where(
        code == 0,
        torch.zeros_like(code, dtype=torch.float64),
        torch.ldexp(
            torch.ones_like(code, dtype=torch.float64), (127 - code).to(torch.float64)
        ),
    ).float()
    q = (
        (blocks * inv.unsqueeze(-1))
        .clamp(-448.0, 448.0)
        .to(torch.float8_e4m3fn)
        .view(torch.uint8)
    )
    q = torch.where(nonfinite.unsqueeze(-1), torch.full_like(q, 0x7F), q)
    code = torch.where(nonfinite, torch.full_like(code, 0xFF), code).to(torch.uint8)
    q = q.view(m, padded_hidden)
    sf = _swizzle_128x4(code, m, padded_hidden // 32) if swizzled else code.reshape(-1)
    return q, sf


def dequant_mxfp8(q_u8, sf_linear_codes):
    m, k = q_u8.shape
    vals = q_u8.view(torch.float8_e4m3fn).float().view(m, k // 32, 32)
    scale = torch.ldexp(
        torch.ones_like(sf_linear_codes, dtype=torch.float32),
        sf_linear_codes.float() - 127,
    )
    return (vals * scale.unsqueeze(-1)).view(m, k)


def _unswizzle(sf, m, num_sf_cols):
    num_k_tiles = (num_sf_cols + 3) // 4
    mm = torch.arange(m, device=sf.device).view(-1, 1)
    k = torch.arange(num_sf_cols, device=sf.device).view(1, -1)
    off = (
        (mm // 128) * (num_k_tiles * 512)
        + (k // 4) * 512
        + (mm % 32) * 16
        + ((mm % 128) // 32) * 4
        + (k % 4)
    )
    return sf[off]


def _assert_fp8_close(actual_u8, expected_u8, fp8_dtype, min_identical=0.999):
    """>= min_identical identical bytes; mismatching values within one fp8 ulp."""
    assert actual_u8.shape == expected_u8.shape
    same = actual_u8 == expected_u8
    frac = same.float().mean().item()
    # tiny tensors: a couple of reduction-order flips are allowed regardless of the fraction
    assert frac >= min_identical or (~same).sum().item() <= 2, (
        f"only {frac * 100:.4f}% identical bytes"
    )
    if not same.all():
        a = actual_u8[~same].view(fp8_dtype).float()
        e = expected_u8[~same].view(fp8_dtype).float()
        mant_bits = 3 if fp8_dtype == torch.float8_e4m3fn else 2
        min_sub = 2.0**-9 if fp8_dtype == torch.float8_e4m3fn else 2.0**-16
        ulp = torch.clamp(
            torch.maximum(a.abs(), e.abs()) * 2.0**-mant_bits, min=min_sub
        )
        assert ((a - e).abs() <= ulp * 1.0001).all(), "mismatch larger than one fp8 ulp"


def _assert_dtype_close(actual, expected, min_identical=0.999):
    same = actual.view(torch.int16) == expected.view(torch.int16)
    frac = same.float().mean().item()
    assert frac >= min_identical or (~same).sum().item() <= 2, (
        f"only {frac * 100:.4f}% identical normed values"
    )
    mant = 7 if actual.dtype == torch.bfloat16 else 10
    a, e = actual.float(), expected.float()
    tol = torch.maximum(a.abs(), e.abs()) * 2.0**-mant + 1e-6
    assert ((a - e).abs() <= tol).all(), "normed output differs by more than one ulp"


def _assert_mxfp8_close(q_u8, sf_linear, q_ref_u8, sf_ref_linear):
    """MXFP8 outputs that differ only by the reduction order of the norm: >= 99.9% identical
    bytes and scales; dequantized values within one e4m3 ulp (and one ulp of the block's
    scale) of each other."""
    assert (sf_linear == sf_ref_linear).float().mean().item() >= 0.999
    assert (q_u8 == q_ref_u8).float().mean().item() >= 0.999
    deq = dequant_mxfp8(q_u8, sf_linear)
    deq_ref = dequant_mxfp8(q_ref_u8, sf_ref_linear)
    scale = torch.ldexp(
        torch.ones_like(sf_ref_linear, dtype=torch.float32),
        sf_ref_linear.float() - 127,
    )
    tol = torch.maximum(deq.abs(), deq_ref.abs()) * 2.0**-3 + (
        scale * 2.0**-9
    ).repeat_interleave(32, -1)
    assert ((deq - deq_ref).abs() <= tol * 1.0001).all()


def _poisoned(shape, dtype, device):
    numel = 1
    for s in shape:
        numel *= s
    itemsize = torch.empty((), dtype=dtype).element_size()
    t = torch.full((numel * itemsize,), POISON, dtype=torch.uint8, device=device)
    return t.view(dtype).view(shape)


# ---------------------------------------------------------------------------
# MXFP8
# ---------------------------------------------------------------------------


def _run_mxfp8(
    x,
    residual,
    weight,
    beta,
    kind,
    eps,
    swizzled,
    alignment,
    enable_pdl,
    want_normed=True,
):
    m, k = x.shape
    padded = (k + alignment - 1) // alignment * alignment
    out = _poisoned((m, padded), torch.float8_e4m3fn, x.device)
    sf = _poisoned((_mxfp8_sf_numel(m, padded, swizzled),), torch.uint8, x.device)
    normed = _poisoned((m, k), x.dtype, x.device) if want_normed else None
    nt, wb = _norm_type(kind)
    _norm_mxfp8_quantize(
        out, sf, normed, x, residual, weight, beta, nt, wb, eps, swizzled, enable_pdl
    )
    return out, sf, normed, padded


@pytest.mark.parametrize("num_tokens", [1, 33, 300, 1000])
@pytest.mark.parametrize("hidden_size", [256, 2880, 4096, 5120, 7168, 8192, 16384])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", NORM_KINDS)
@pytest.mark.parametrize("add_residual", [False, True])
@pytest.mark.parametrize("swizzled", [True, False])
def test_norm_mxfp8(num_tokens, hidden_size, dtype, kind, add_residual, swizzled):
    torch.manual_seed(num_tokens * 7 + hidden_size)
    device = "cuda"
    eps = 1e-6
    alignment = 128 if hidden_size == 2880 else 32  # 2880 -> 2944 like gpt-oss
    x = torch.randn(num_tokens, hidden_size, device=device, dtype=dtype) * 2
    residual = torch.randn_like(x) if add_residual else None
    res_in = residual.clone() if add_residual else None
    weight, beta = _make_weights(kind, hidden_size, dtype, device)

    out, sf, normed, padded = _run_mxfp8(
        x,
        residual,
        weight,
        beta,
        kind,
        eps,
        swizzled,
        alignment,
        enable_pdl=num_tokens % 2 == 1,
    )

    # stage check: bit-exact against the reference quantizer of the kernel's normed output
    q_ref, sf_ref = mxfp8_quantize_ref(normed, padded, swizzled)
    assert torch.equal(out.view(torch.uint8), q_ref)
    assert torch.equal(sf, sf_ref)
    if add_residual:
        assert torch.equal(residual, (x.float() + res_in.float()).to(dtype))

    # end to end against the float64 norm
    y64, _ = ref_norm_f64(x, res_in, weight, beta, kind, eps)
    normed_ref = y64.to(dtype)
    _assert_dtype_close(normed, normed_ref)
    q_e2e, sf_e2e = mxfp8_quantize_ref(normed_ref, padded, swizzled)
    n_sf = padded // 32
    sf_lin = _unswizzle(sf, num_tokens, n_sf) if swizzled else sf.view(num_tokens, n_sf)
    sf_lin_ref = (
        _unswizzle(sf_e2e, num_tokens, n_sf)
        if swizzled
        else sf_e2e.view(num_tokens, n_sf)
    )
    _assert_mxfp8_close(out.view(torch.uint8), sf_lin, q_e2e, sf_lin_ref)


@pytest.mark.parametrize("kind", NORM_KINDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_norm_mxfp8_public_api(kind, dtype):
    """Public wrappers: shapes, padding, residual update, normed_out; large batch."""
    torch.manual_seed(0)
    device = "cuda"
    m, k = 4096, 2880
    x = torch.randn(m, k, device=device, dtype=dtype)
    weight, beta = _make_weights(kind, k, dtype, device)
    for add_residual in (False, True):
        residual = torch.randn_like(x) if add_residual else None
        res_in = residual.clone() if add_residual else None
        normed = torch.empty_like(x)
        if kind == "layernorm":
            fn = (
                flashinfer.fused_add_layernorm_mxfp8_quant
                if add_residual
                else flashinfer.layernorm_mxfp8_quant
            )
            args = (x, residual, weight, beta) if add_residual else (x, weight, beta)
        else:
            if kind == "rmsnorm":
                fn = (
                    flashinfer.fused_add_rmsnorm_mxfp8_quant
                    if add_residual
                    else flashinfer.rmsnorm_mxfp8_quant
                )
            else:
                fn = (
                    flashinfer.gemma_fused_add_rmsnorm_mxfp8_quant
                    if add_residual
                    else flashinfer.gemma_rmsnorm_mxfp8_quant
                )
            args = (x, residual, weight) if add_residual else (x, weight)
        out, sf = fn(
            *args,
            eps=1e-5,
            is_sf_swizzled_layout=True,
            alignment=128,
            normed_out=normed,
        )
        assert out.shape == (m, 2944) and out.dtype == torch.float8_e4m3fn
        assert sf.shape == (m * 2944 // 32,) and sf.dtype == torch.uint8  # m % 128 == 0
        q_ref, sf_ref = mxfp8_quantize_ref(normed, 2944, True)
        assert torch.equal(out.view(torch.uint8), q_ref)
        assert torch.equal(sf, sf_ref)
        y64, _ = ref_norm_f64(x, res_in, weight, beta, kind, 1e-5)
        _assert_dtype_close(normed, y64.to(dtype))
        if add_residual:
            assert torch.equal(residual, (x.float() + res_in.float()).to(dtype))
        # without normed_out: same bytes
        if add_residual:
            residual.copy_(res_in)
        out2, sf2 = fn(*args, eps=1e-5, is_sf_swizzled_layout=True, alignment=128)
        assert torch.equal(out2.view(torch.uint8), out.view(torch.uint8))
        assert torch.equal(sf2, sf)


@pytest.mark.parametrize("kind", NORM_KINDS)
@pytest.mark.parametrize("add_residual", [False, True])
def test_norm_mxfp8_batch_size(kind, add_residual):
    """Deterministic for a given shape. Above 512 tokens a row is spread over fewer threads
    (another fp32 summation order, documented): the first 512 rows of a 600-token batch
    match a 512-token batch up to reduction-order differences."""
    torch.manual_seed(5)
    device = "cuda"
    m, k, dtype = 600, 2880, torch.bfloat16
    x = torch.randn(m, k, device=device, dtype=dtype) * 2
    residual = torch.randn_like(x) if add_residual else None
    weight, beta = _make_weights(kind, k, dtype, device)

    def run(rows):
        res = residual[:rows].clone() if add_residual else None
        out, sf, normed, padded = _run_mxfp8(
            x[:rows], res, weight, beta, kind, 1e-6, False, 128, enable_pdl=False
        )
        return out.view(torch.uint8), sf.view(rows, padded // 32), normed

    out, sf, normed = run(m)
    out2, sf2, normed2 = run(m)
    assert torch.equal(out, out2) and torch.equal(sf, sf2)
    assert torch.equal(normed, normed2)
    out_512, sf_512, normed_512 = run(512)
    _assert_dtype_close(normed_512, normed[:512])
    _assert_mxfp8_close(out_512, sf_512, out[:512], sf[:512])


def _edge_values(dtype):
    """32-element blocks whose normed values are set exactly (LayerNorm with gamma = 0)."""
    if dtype == torch.bfloat16:
        ks = [-127, -126, -125, -100, -20, -1, 0, 1, 7, 20, 100, 118]
    else:
        ks = [-20, -10, -1, 0, 1, 5, 7]
    blocks = []
    for k in ks:
        a = 448.0 * 2.0**k
        for amax in (a, torch.tensor(a, dtype=dtype).item()):
            t = torch.tensor(amax, dtype=dtype)
            bits = t.view(torch.int16)
            for delta in (-1, 0, 1):
                v = (bits + delta).view(dtype).float().item()
                blk = torch.zeros(32)
                blk[0] = v
                blk[5] = -v
                blk[9] = v * 0.3
                blk[17] = v * 0.07
                blocks.append(blk)
    blocks.append(torch.zeros(32))  # amax == 0
    ramp = torch.linspace(-1, 1, 32)
    blocks.append(ramp)
    big = 3.0e38 if dtype == torch.bfloat16 else 60000.0
    blocks.append(ramp * big)
    nan_blk = ramp.clone()
    nan_blk[3] = float("nan")
    blocks.append(nan_blk)
    inf_blk = ramp.clone()
    inf_blk[7] = float("inf")
    blocks.append(inf_blk)
    ninf_blk = ramp.clone()
    ninf_blk[31] = float("-inf")
    blocks.append(ninf_blk)
    return torch.cat(blocks)


def _assert_edge_blocks(out, sf, normed, padded, swizzled):
    """Bit-exact vs the reference quantizer of the kernel's normed output; NaN/Inf blocks get the
    0xFF scale and NaN values."""
    m = normed.shape[0]
    q_ref, sf_ref = mxfp8_quantize_ref(normed, padded, swizzled)
    assert torch.equal(out.view(torch.uint8), q_ref)
    assert torch.equal(sf, sf_ref)
    n_sf = padded // 32
    sf_lin = _unswizzle(sf, m, n_sf) if swizzled else sf.view(m, n_sf)
    bad = ~torch.isfinite(normed.float().view(m, -1, 32)).all(-1)
    assert bad.any()
    assert (sf_lin[bad] == 0xFF).all()
    assert (out.view(torch.uint8).view(m, -1, 32)[bad] == 0x7F).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("swizzled", [True, False])
def test_norm_mxfp8_edge_blocks(dtype, swizzled):
    """amax = 448 * 2^k (+-1 ulp), zero blocks, tiny/huge blocks, NaN/Inf blocks."""
    device = "cuda"
    vals = _edge_values(dtype)
    hidden = (vals.numel() + 255) // 256 * 256
    beta = torch.zeros(hidden)
    beta[: vals.numel()] = vals
    beta = beta.to(device)
    gamma = torch.zeros(hidden, device=device)
    m = 3
    x = torch.randn(m, hidden, device=device, dtype=dtype)
    out, sf, normed, padded = _run_mxfp8(
        x, None, gamma, beta, "layernorm", 1e-6, swizzled, 32, True
    )
    assert torch.equal(
        normed.float()[:, : vals.numel()].isnan(),
        beta[: vals.numel()].to(dtype).float().isnan().expand(m, -1),
    )
    _assert_edge_blocks(out, sf, normed, padded, swizzled)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("swizzled", [True, False])
def test_norm_mxfp8_edge_blocks_rmsnorm(dtype, swizzled):
    """The same blocks through RMSNorm without residual (x = 1, eps = 0, so normed == weight), on
    more than 512 tokens and hidden 4096: the path where each thread quantizes whole 32-element
    blocks (4 vectors per thread)."""
    device = "cuda"
    vals = _edge_values(dtype)
    hidden = 4096
    assert vals.numel() <= hidden
    weight = torch.zeros(hidden, dtype=dtype)
    weight[: vals.numel()] = vals.to(dtype)
    weight = weight.to(device)
    m = 600
    x = torch.ones(m, hidden, device=device, dtype=dtype)
    out, sf, normed, padded = _run_mxfp8(
        x, None, weight, None, "rmsnorm", 0.0, swizzled, 32, False
    )
    got, want = normed.float(), weight.float().expand(m, -1)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got[~got.isnan()], want[~want.isnan()])
    _assert_edge_blocks(out, sf, normed, padded, swizzled)


def test_norm_mxfp8_nan_row():
    """A NaN input makes the whole RMSNorm row NaN: every block of that row is NaN."""
    device = "cuda"
    x = torch.randn(4, 2880, device=device, dtype=torch.bfloat16)
    x[2, 100] = float("nan")
    w = torch.randn(2880, device=device, dtype=torch.bfloat16)
    out, sf, normed, padded = _run_mxfp8(
        x, None, w, None, "rmsnorm", 1e-6, False, 32, False
    )
    sf = sf.view(4, -1)
    assert (sf[2] == 0xFF).all() and (out.view(torch.uint8)[2] == 0x7F).all()
    assert (sf[[0, 1, 3]] != 0xFF).all()


def test_norm_mxfp8_strided_input():
    device = "cuda"
    base = torch.randn(70, 4096 + 64, device=device, dtype=torch.bfloat16)
    x = base[:, :4096]
    w = torch.randn(4096, device=device, dtype=torch.bfloat16)
    out, sf, normed, padded = _run_mxfp8(
        x, None, w, None, "rmsnorm", 1e-6, True, 32, False
    )
    out_c, sf_c, normed_c, _ = _run_mxfp8(
        x.contiguous(), None, w, None, "rmsnorm", 1e-6, True, 32, False
    )
    assert torch.equal(out.view(torch.uint8), out_c.view(torch.uint8))
    assert torch.equal(sf, sf_c) and torch.equal(normed, normed_c)


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 10,
    reason="mxfp8_quantize (CUDA backend) only quantizes on SM100+; it is a no-op on SM90",
)
@pytest.mark.parametrize("kind", NORM_KINDS)
def test_norm_mxfp8_matches_mxfp8_quantize(kind):
    """Bit-identical to the unfused pair norm -> pad -> mxfp8_quantize on SM100+/SM12x."""
    device = "cuda"
    m, k = 257, 2880
    dtype = torch.bfloat16
    x = torch.randn(m, k, device=device, dtype=dtype)
    weight, beta = _make_weights(kind, k, dtype, device)
    out, sf, normed, padded = _run_mxfp8(
        x, None, weight, beta, kind, 1e-6, True, 128, False
    )
    q_up, sf_up = flashinfer.mxfp8_quantize(normed, True, 128)
    assert torch.equal(out.view(torch.uint8), q_up.view(torch.uint8))
    assert torch.equal(sf, sf_up.view(-1))


# ---------------------------------------------------------------------------
# Static per-tensor FP8
# ---------------------------------------------------------------------------


def _static_ref_bytes(y64, kind, dtype, scale, fp8_dtype):
    """rmsnorm-type: fp32 value quantized directly; layernorm: rounded to dtype first."""
    y = y64.to(dtype).double() if kind == "layernorm" else y64
    fmax = torch.finfo(fp8_dtype).max
    q = (y / scale).clamp(-fmax, fmax).to(fp8_dtype)
    return q.view(torch.uint8)


@pytest.mark.parametrize("num_tokens", [1, 19, 99, 1000])
@pytest.mark.parametrize("hidden_size", [256, 2880, 4096, 7168, 16384])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", NORM_KINDS)
@pytest.mark.parametrize("add_residual", [False, True])
@pytest.mark.parametrize("fp8_dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_norm_fp8_static(num_tokens, hidden_size, dtype, kind, add_residual, fp8_dtype):
    torch.manual_seed(num_tokens + hidden_size)
    device = "cuda"
    eps = 1e-6
    x = torch.randn(num_tokens, hidden_size, device=device, dtype=dtype)
    residual = torch.randn_like(x) if add_residual else None
    res_in = residual.clone() if add_residual else None
    weight, beta = _make_weights(kind, hidden_size, dtype, device)
    scale_val = [0.01, 1.0, 3.7][num_tokens % 3]
    scale = torch.tensor([scale_val], device=device)
    out = _poisoned((num_tokens, hidden_size), fp8_dtype, device)
    normed = _poisoned((num_tokens, hidden_size), dtype, device)
    nt, wb = _norm_type(kind)
    _norm_fp8_quantize(
        out, normed, x, residual, weight, beta, scale, nt, wb, eps, num_tokens % 2 == 0
    )
    y64, _ = ref_norm_f64(x, res_in, weight, beta, kind, eps)
    _assert_fp8_close(
        out.view(torch.uint8),
        _static_ref_bytes(y64, kind, dtype, scale_val, fp8_dtype),
        fp8_dtype,
    )
    _assert_dtype_close(normed, y64.to(dtype))
    if add_residual:
        assert torch.equal(residual, (x.float() + res_in.float()).to(dtype))
    if kind == "layernorm" and scale_val == 1.0:
        # stage check: quantization of the kernel's own rounded normed output is exact
        fmax = torch.finfo(fp8_dtype).max
        q = normed.float().clamp(-fmax, fmax).to(fp8_dtype).view(torch.uint8)
        assert torch.equal(out.view(torch.uint8), q)


@pytest.mark.parametrize("num_tokens", [1, 19, 99, 989, 4096])
@pytest.mark.parametrize("hidden_size", [256, 1024, 2880, 4096, 8192, 16384])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("add_residual", [False, True])
def test_rmsnorm_static_matches_upstream(num_tokens, hidden_size, dtype, add_residual):
    """RMSNorm -> static fp8 through the fused kernel vs upstream rmsnorm_quant /
    fused_add_rmsnorm_quant (both quantize the fp32 normed value)."""
    torch.manual_seed(hidden_size)
    device = "cuda"
    x = torch.randn(num_tokens, hidden_size, device=device, dtype=dtype)
    w = torch.randn(hidden_size, device=device, dtype=dtype)
    scale = torch.tensor([0.5], device=device)
    ours = _poisoned((num_tokens, hidden_size), torch.float8_e4m3fn, device)
    theirs = torch.empty(
        num_tokens, hidden_size, device=device, dtype=torch.float8_e4m3fn
    )
    if add_residual:
        r = torch.randn_like(x)
        r_ours, r_theirs = r.clone(), r.clone()
        _norm_fp8_quantize(
            ours, None, x, r_ours, w, None, scale, _RMSNORM, 0.0, 1e-6, False
        )
        flashinfer.fused_add_rmsnorm_quant(theirs, x, r_theirs, w, scale, 1e-6)
        assert torch.equal(r_ours, r_theirs)
    else:
        _norm_fp8_quantize(
            ours, None, x, None, w, None, scale, _RMSNORM, 0.0, 1e-6, False
        )
        flashinfer.rmsnorm_quant(theirs, x, w, scale, 1e-6)
    _assert_fp8_close(
        ours.view(torch.uint8), theirs.view(torch.uint8), torch.float8_e4m3fn
    )


@pytest.mark.parametrize("num_tokens", [1, 19, 99, 989, 8192])
@pytest.mark.parametrize("hidden_size", [256, 1024, 2880, 4096, 7168, 16384])
@pytest.mark.parametrize("fp8_dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_layernorm_quant_matches_previous_kernel(num_tokens, hidden_size, fp8_dtype):
    """The norm_quant module's layernorm_quant (the fused kernel, same contract as upstream's
    layernorm_quant) vs the norm module's generalLayerNorm kernel, and vs the float64
    reference. The public layernorm_quant keeps upstream's dispatch (CuTe DSL by default)."""
    from flashinfer.norm import get_norm_module

    torch.manual_seed(hidden_size + 1)
    device = "cuda"
    x = torch.randn(num_tokens, hidden_size, device=device, dtype=torch.bfloat16)
    gamma = torch.randn(hidden_size, device=device)
    beta = torch.randn(hidden_size, device=device)
    scale = torch.tensor([0.25], device=device)
    ours = _poisoned((num_tokens, hidden_size), fp8_dtype, device)
    get_norm_quant_module().layernorm_quant(ours, x, gamma, beta, scale, 1e-6)
    prev = torch.empty(num_tokens, hidden_size, device=device, dtype=fp8_dtype)
    get_norm_module().layernorm_quant(prev, x, gamma, beta, scale, 1e-6)
    _assert_fp8_close(ours.view(torch.uint8), prev.view(torch.uint8), fp8_dtype)
    y64, _ = ref_norm_f64(x, None, gamma, beta, "layernorm", 1e-6)
    _assert_fp8_close(
        ours.view(torch.uint8),
        _static_ref_bytes(y64, "layernorm", torch.bfloat16, 0.25, fp8_dtype),
        fp8_dtype,
    )


def test_layernorm_quant_invalid_inputs():
    """The module's layernorm_quant keeps upstream's contract: bf16 input, contiguous rows,
    fp32 gamma / beta, a one-element scale."""
    module = get_norm_quant_module()
    device = "cuda"
    gamma = torch.randn(1024, device=device)
    beta = torch.randn(1024, device=device)
    scale = torch.tensor([1.0], device=device)
    out = torch.empty(8, 1024, device=device, dtype=torch.float8_e4m3fn)
    x = torch.randn(8, 1024, device=device, dtype=torch.bfloat16)
    with pytest.raises(Exception, match="bfloat16"):
        module.layernorm_quant(out, x.half(), gamma, beta, scale, 1e-6)
    with pytest.raises(Exception, match="contiguous"):
        strided = torch.randn(8, 2048, device=device, dtype=torch.bfloat16)[:, :1024]
        module.layernorm_quant(out, strided, gamma, beta, scale, 1e-6)
    with pytest.raises(Exception, match="float32"):
        module.layernorm_quant(out, x, gamma.bfloat16(), beta, scale, 1e-6)
    with pytest.raises(Exception):
        module.layernorm_quant(out, x, gamma, beta, torch.ones(2, device=device), 1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_static_public_api(dtype):
    torch.manual_seed(1)
    device = "cuda"
    m, k = 513, 5120
    x = torch.randn(m, k, device=device, dtype=dtype)
    w = torch.randn(k, device=device, dtype=dtype) * 0.1
    gamma = torch.randn(k, device=device)
    beta = torch.randn(k, device=device)
    scale = torch.tensor([0.3], device=device)
    out = torch.empty(m, k, device=device, dtype=torch.float8_e4m3fn)

    flashinfer.gemma_rmsnorm_quant(out, x, w, scale, 1e-6)
    y64, _ = ref_norm_f64(x, None, w, None, "gemma_rmsnorm", 1e-6)
    _assert_fp8_close(
        out.view(torch.uint8),
        _static_ref_bytes(y64, "gemma_rmsnorm", dtype, 0.3, torch.float8_e4m3fn),
        torch.float8_e4m3fn,
    )

    r = torch.randn_like(x)
    r0 = r.clone()
    flashinfer.gemma_fused_add_rmsnorm_quant(out, x, r, w, scale, 1e-6)
    y64, _ = ref_norm_f64(x, r0, w, None, "gemma_rmsnorm", 1e-6)
    _assert_fp8_close(
        out.view(torch.uint8),
        _static_ref_bytes(y64, "gemma_rmsnorm", dtype, 0.3, torch.float8_e4m3fn),
        torch.float8_e4m3fn,
    )
    assert torch.equal(r, (x.float() + r0.float()).to(dtype))
    # Gemma fused-add against upstream gemma_fused_add_rmsnorm's residual and normed output
    x2, r2 = x.clone(), r0.clone()
    flashinfer.gemma_fused_add_rmsnorm(x2, r2, w, 1e-6)
    assert torch.equal(r2, r)

    r = r0.clone()
    flashinfer.fused_add_layernorm_quant(out, x, r, gamma, beta, scale, 1e-6)
    y64, _ = ref_norm_f64(x, r0, gamma, beta, "layernorm", 1e-6)
    _assert_fp8_close(
        out.view(torch.uint8),
        _static_ref_bytes(y64, "layernorm", dtype, 0.3, torch.float8_e4m3fn),
        torch.float8_e4m3fn,
    )
    assert torch.equal(r, (x.float() + r0.float()).to(dtype))


def test_static_nan_inf():
    """Static fp8: NaN stays NaN, +-Inf and overflow saturate to +-max."""
    device = "cuda"
    k = 256
    gamma = torch.zeros(k, device=device)
    beta = torch.zeros(k, device=device)
    beta[0], beta[1], beta[2], beta[3], beta[4] = (
        float("nan"),
        float("inf"),
        float("-inf"),
        1e6,
        -1e6,
    )
    x = torch.randn(2, k, device=device, dtype=torch.bfloat16)
    out = _poisoned((2, k), torch.float8_e4m3fn, device)
    get_norm_quant_module().layernorm_quant(
        out, x, gamma, beta, torch.tensor([1.0], device=device), 1e-6
    )
    o = out.float()
    assert o[:, 0].isnan().all()
    assert (o[:, 1] == 448).all() and (o[:, 2] == -448).all()
    assert (o[:, 3] == 448).all() and (o[:, 4] == -448).all()
    assert (o[:, 5:] == 0).all()


# ---------------------------------------------------------------------------
# Dynamic per-token FP8
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("num_tokens", [1, 77, 1024])
@pytest.mark.parametrize("hidden_size", [256, 2880, 7168])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", NORM_KINDS)
@pytest.mark.parametrize("add_residual", [False, True])
@pytest.mark.parametrize("use_ub", [False, True])
def test_norm_fp8_per_token(num_tokens, hidden_size, dtype, kind, add_residual, use_ub):
    torch.manual_seed(num_tokens + 3 * hidden_size)
    device = "cuda"
    x = torch.randn(num_tokens, hidden_size, device=device, dtype=dtype)
    residual = torch.randn_like(x) if add_residual else None
    res_in = residual.clone() if add_residual else None
    weight, beta = _make_weights(kind, hidden_size, dtype, device)
    ub = torch.tensor([2.0], device=device) if use_ub else None
    out = _poisoned((num_tokens, hidden_size), torch.float8_e4m3fn, device)
    scale = _poisoned((num_tokens, 1), torch.float32, device)
    normed = _poisoned((num_tokens, hidden_size), dtype, device)
    nt, wb = _norm_type(kind)
    _norm_fp8_per_token_quantize(
        out, scale, normed, x, residual, weight, beta, ub, nt, wb, 1e-6, True
    )
    # stage check (bit-exact)
    amax = normed.float().abs().amax(-1, keepdim=True)
    if use_ub:
        amax = torch.clamp(amax, max=2.0)
    # tensor / tensor: torch turns division by a Python scalar into a multiplication by its
    # reciprocal, the kernel divides (IEEE) by 448
    s_ref = torch.clamp(amax / torch.full_like(amax, 448.0), min=1.0 / (448.0 * 512.0))
    q_ref = (
        (normed.float() * (torch.ones_like(s_ref) / s_ref))
        .clamp(-448, 448)
        .to(torch.float8_e4m3fn)
    )
    assert torch.equal(scale, s_ref)
    assert torch.equal(out.view(torch.uint8), q_ref.view(torch.uint8))
    # end to end
    y64, _ = ref_norm_f64(x, res_in, weight, beta, kind, 1e-6)
    _assert_dtype_close(normed, y64.to(dtype))
    if add_residual:
        assert torch.equal(residual, (x.float() + res_in.float()).to(dtype))
    # public API gives the same bytes
    if add_residual:
        residual.copy_(res_in)
    out2, scale2 = flashinfer.norm_fp8_per_token_quant(
        x, weight, 1e-6, residual=residual, beta=beta, norm_type=kind, scale_ub=ub
    )
    assert torch.equal(out2.view(torch.uint8), out.view(torch.uint8))
    assert torch.equal(scale2, scale)


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


def test_invalid_inputs():
    device = "cuda"
    bf = torch.bfloat16
    w = torch.randn(4096, device=device, dtype=bf)
    x = torch.randn(4, 4096, device=device, dtype=bf)
    with pytest.raises(ValueError, match="hidden_size % 32"):
        flashinfer.rmsnorm_mxfp8_quant(
            torch.randn(4, 4104, device=device, dtype=bf),
            torch.randn(4104, device=device, dtype=bf),
        )
    with pytest.raises(ValueError, match="alignment"):
        flashinfer.rmsnorm_mxfp8_quant(x, w, alignment=48)
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        flashinfer.rmsnorm_mxfp8_quant(x.float(), w)
    with pytest.raises(ValueError, match="2D"):
        flashinfer.rmsnorm_mxfp8_quant(x.view(2, 2, 4096), w)
    with pytest.raises(Exception, match="hidden_size must be"):
        flashinfer.rmsnorm_mxfp8_quant(
            torch.randn(2, 16384 + 32, device=device, dtype=bf),
            torch.randn(16384 + 32, device=device, dtype=bf),
        )
    with pytest.raises(Exception, match="16-byte aligned"):
        base = torch.randn(4, 4096 + 8, device=device, dtype=bf)
        flashinfer.rmsnorm_mxfp8_quant(base[:, 4:4100], w)
    with pytest.raises(Exception, match="contiguous in the last dim"):
        xt = torch.randn(4096, 4, device=device, dtype=bf).t()
        flashinfer.rmsnorm_mxfp8_quant(xt, w)
    with pytest.raises(Exception, match="weight"):
        flashinfer.rmsnorm_mxfp8_quant(x, w.float())
    with pytest.raises(Exception, match="gamma"):
        flashinfer.layernorm_mxfp8_quant(x, w, w)
    with pytest.raises(Exception, match="residual"):
        flashinfer.fused_add_rmsnorm_mxfp8_quant(
            x, torch.randn(4, 4096, device=device, dtype=torch.float16), w
        )
    out = torch.empty(4, 4100, device=device, dtype=torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="multiple of 8"):
        flashinfer.gemma_rmsnorm_quant(
            out,
            torch.randn(4, 4100, device=device, dtype=bf),
            torch.randn(4100, device=device, dtype=bf),
            torch.ones(1, device=device),
        )
    with pytest.raises(ValueError, match="out must be"):
        flashinfer.gemma_rmsnorm_quant(
            torch.empty_like(x), x, w, torch.ones(1, device=device)
        )
