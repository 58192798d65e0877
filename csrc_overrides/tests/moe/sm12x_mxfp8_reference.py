"""PyTorch reference for the SM12x MXFP8 x MXFP4 MoE numerics (no Triton, no CuTe DSL).

MXFP8 activations at a K-granularity g: per block of g elements, UE8M0 = amax / 448 rounded up
to a power of two (amax floored at 1e-4, exponent clamped to [1, 254]), e4m3 = round to nearest
even of value * 2^(127 - e). MXFP4 weights: E2M1 nibbles (low nibble first) with one UE8M0 per 32.
"""

import torch

E4M3_MAX = 448.0
AMAX_FLOOR = 1e-4
E2M1_VALUES = (0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6)


def reference_mxfp8(x: torch.Tensor, granularity: int):
    """(e4m3 [T, H], UE8M0 exponents [T, H // granularity] as int32) for a 2-D x."""
    t, h = x.shape
    blocks = x.float().view(t, h // granularity, granularity)
    amax = blocks.abs().amax(-1).clamp_min(AMAX_FLOOR)
    bits = (amax / E4M3_MAX).view(torch.int32)
    exp = ((bits >> 23) & 0xFF) + ((bits & 0x7FFFFF) != 0).to(torch.int32)
    exp = exp.clamp(1, 254)
    inv_scale = ((254 - exp) << 23).view(torch.float32).unsqueeze(-1)  # 2^(127 - e), exact
    q = (blocks * inv_scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q.view(t, h), exp


def dequant_mxfp8(q: torch.Tensor, exp: torch.Tensor, granularity: int) -> torch.Tensor:
    return q.double() * torch.exp2(exp.double() - 127).repeat_interleave(granularity, -1)


def fake_quant_mxfp8(x: torch.Tensor, granularity: int) -> torch.Tensor:
    """x quantized to MXFP8 at `granularity` and back, in float64."""
    return dequant_mxfp8(*reference_mxfp8(x, granularity), granularity)


def pack_words(exp: torch.Tensor) -> torch.Tensor:
    """Four UE8M0 exponents per int32, little-endian, as the kernels read them: [T, n // 4]."""
    t, n = exp.shape
    parts = exp.view(t, n // 4, 4).to(torch.int64)
    word = parts[..., 0] | parts[..., 1] << 8 | parts[..., 2] << 16 | parts[..., 3] << 24
    return torch.where(word >= 2**31, word - 2**32, word).to(torch.int32)


def dequant_mxfp4(packed: torch.Tensor, exp: torch.Tensor) -> torch.Tensor:
    """E2M1 nibbles [..., K / 2] x UE8M0 exponents [..., K / 32] -> float64 [..., K]."""
    lut = torch.tensor(E2M1_VALUES, dtype=torch.float64, device=packed.device)
    vals = torch.stack([lut[(packed & 0xF).long()], lut[(packed >> 4).long()]], -1)
    return vals.flatten(-2) * torch.exp2(exp.double() - 127).repeat_interleave(32, -1)


def moe_reference(x, ids, weights, w1, w2, quantize=None):
    """float64 SwiGLU MoE: w1 [E, 2I, H] (up rows first, then gate), w2 [E, H, I].

    `quantize` (float64 [T, n] -> float64) models the activation quantization of the FC1 input
    and of the bf16 SwiGLU output that feeds FC2; None keeps both exact (and in float64).
    """
    inter = w1.shape[1] // 2
    xin = x.double() if quantize is None else quantize(x)
    out = torch.zeros(x.shape[0], w2.shape[1], dtype=torch.float64, device=x.device)
    for e in ids.unique().tolist():
        if e < 0:
            continue
        token, slot = (ids == e).nonzero(as_tuple=True)
        gate_up = xin[token] @ w1[e].t()
        up, gate = gate_up[:, :inter], gate_up[:, inter:]
        h = gate * torch.sigmoid(gate) * up
        if quantize is not None:
            h = quantize(h.to(torch.bfloat16))
        out.index_add_(0, token, weights[token, slot].double().unsqueeze(1) * (h @ w2[e].t()))
    return out
