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

Fused (residual add +) RMSNorm / Gemma-RMSNorm / LayerNorm -> FP8 quantization
==============================================================================

One CUDA kernel (``include/flashinfer/norm/norm_quant.cuh``) reads the input (and the
residual) once, keeps the row in registers and writes the quantized row:

- MXFP8 (e4m3 values, one UE8M0 scale per 32 elements, linear or 128x4 swizzled scales,
  optional zero padding of the hidden dimension), bit-identical to
  ``mxfp8_quantize(pad(norm(x)))`` where ``norm(x)`` is the normed row rounded to the input
  dtype;
- static per-tensor FP8 (e4m3 / e5m2);
- dynamic per-token FP8 (e4m3, fp32 scale per row).

The kernels use only sm_89+ conversions, so they run on SM90 as well as on SM100+/SM12x.

Results are deterministic for a given shape. Above 512 tokens a row is spread over fewer
threads (more rows in flight per SM), which changes the order of its fp32 sums, so the
output of the same row can differ in the last bit between a batch of at most 512 tokens and
a larger one.
"""

import functools
from typing import Optional, Tuple, Union

import torch

from ..api_logging import flashinfer_api
from ..jit.norm import gen_norm_quant_module
from ..utils import device_support_pdl, register_custom_op, register_fake_op

# Matches flashinfer::norm::quant::NormType.
_RMSNORM = 0
_LAYERNORM = 1


@functools.cache
def get_norm_quant_module():
    """Get or compile the CUDA JIT fused norm + quantization module."""
    return gen_norm_quant_module().build_and_load()


def _check_input(input: torch.Tensor, name: str = "input") -> None:
    if input.dim() != 2:
        raise ValueError(
            f"{name} must be 2D (num_tokens, hidden_size), got shape {tuple(input.shape)}"
        )
    if input.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"{name} must be float16 or bfloat16, got {input.dtype}")


def _resolve_pdl(enable_pdl: Optional[bool], device: torch.device) -> bool:
    if enable_pdl is None or enable_pdl:
        return device_support_pdl(device)
    return False


def _normalize_scale(
    scale: Union[float, torch.Tensor], ref: torch.Tensor
) -> torch.Tensor:
    if not isinstance(scale, torch.Tensor):
        scale = torch.tensor([scale], dtype=torch.float32, device=ref.device)
    if scale.numel() != 1:
        raise ValueError(
            f"scale must be a scalar tensor or shape (1,), got shape {tuple(scale.shape)}"
        )
    return scale.to(device=ref.device, dtype=torch.float32).reshape(1).contiguous()


def _mxfp8_sf_numel(
    num_tokens: int, padded_hidden: int, is_sf_swizzled_layout: bool
) -> int:
    num_sf_cols = padded_hidden // 32
    if is_sf_swizzled_layout:
        return ((num_tokens + 127) // 128 * 128) * ((num_sf_cols + 3) // 4 * 4)
    return num_tokens * num_sf_cols


@register_custom_op(
    "flashinfer::norm_mxfp8_quantize",
    mutates_args=("out", "sf_out", "normed_out", "residual"),
)
def _norm_mxfp8_quantize(
    out: torch.Tensor,
    sf_out: torch.Tensor,
    normed_out: Optional[torch.Tensor],
    input: torch.Tensor,
    residual: Optional[torch.Tensor],
    weight: torch.Tensor,
    beta: Optional[torch.Tensor],
    norm_type: int,
    weight_bias: float,
    eps: float,
    is_sf_swizzled_layout: bool,
    enable_pdl: bool,
) -> None:
    get_norm_quant_module().norm_mxfp8_quantize(
        out,
        sf_out,
        normed_out,
        input,
        residual,
        weight,
        beta,
        norm_type,
        weight_bias,
        eps,
        is_sf_swizzled_layout,
        enable_pdl,
    )


@register_fake_op("flashinfer::norm_mxfp8_quantize")
def _norm_mxfp8_quantize_fake(
    out: torch.Tensor,
    sf_out: torch.Tensor,
    normed_out: Optional[torch.Tensor],
    input: torch.Tensor,
    residual: Optional[torch.Tensor],
    weight: torch.Tensor,
    beta: Optional[torch.Tensor],
    norm_type: int,
    weight_bias: float,
    eps: float,
    is_sf_swizzled_layout: bool,
    enable_pdl: bool,
) -> None:
    pass


@register_custom_op(
    "flashinfer::norm_fp8_quantize", mutates_args=("out", "normed_out", "residual")
)
def _norm_fp8_quantize(
    out: torch.Tensor,
    normed_out: Optional[torch.Tensor],
    input: torch.Tensor,
    residual: Optional[torch.Tensor],
    weight: torch.Tensor,
    beta: Optional[torch.Tensor],
    scale: torch.Tensor,
    norm_type: int,
    weight_bias: float,
    eps: float,
    enable_pdl: bool,
) -> None:
    get_norm_quant_module().norm_fp8_quantize(
        out,
        normed_out,
        input,
        residual,
        weight,
        beta,
        scale,
        norm_type,
        weight_bias,
        eps,
        enable_pdl,
    )


@register_fake_op("flashinfer::norm_fp8_quantize")
def _norm_fp8_quantize_fake(
    out: torch.Tensor,
    normed_out: Optional[torch.Tensor],
    input: torch.Tensor,
    residual: Optional[torch.Tensor],
    weight: torch.Tensor,
    beta: Optional[torch.Tensor],
    scale: torch.Tensor,
    norm_type: int,
    weight_bias: float,
    eps: float,
    enable_pdl: bool,
) -> None:
    pass


@register_custom_op(
    "flashinfer::norm_fp8_per_token_quantize",
    mutates_args=("out", "token_scale", "normed_out", "residual"),
)
def _norm_fp8_per_token_quantize(
    out: torch.Tensor,
    token_scale: torch.Tensor,
    normed_out: Optional[torch.Tensor],
    input: torch.Tensor,
    residual: Optional[torch.Tensor],
    weight: torch.Tensor,
    beta: Optional[torch.Tensor],
    scale_ub: Optional[torch.Tensor],
    norm_type: int,
    weight_bias: float,
    eps: float,
    enable_pdl: bool,
) -> None:
    get_norm_quant_module().norm_fp8_per_token_quantize(
        out,
        token_scale,
        normed_out,
        input,
        residual,
        weight,
        beta,
        scale_ub,
        norm_type,
        weight_bias,
        eps,
        enable_pdl,
    )


@register_fake_op("flashinfer::norm_fp8_per_token_quantize")
def _norm_fp8_per_token_quantize_fake(
    out: torch.Tensor,
    token_scale: torch.Tensor,
    normed_out: Optional[torch.Tensor],
    input: torch.Tensor,
    residual: Optional[torch.Tensor],
    weight: torch.Tensor,
    beta: Optional[torch.Tensor],
    scale_ub: Optional[torch.Tensor],
    norm_type: int,
    weight_bias: float,
    eps: float,
    enable_pdl: bool,
) -> None:
    pass


# ---------------------------------------------------------------------------
# MXFP8
# ---------------------------------------------------------------------------


def _norm_mxfp8(
    input: torch.Tensor,
    residual: Optional[torch.Tensor],
    weight: torch.Tensor,
    beta: Optional[torch.Tensor],
    norm_type: int,
    weight_bias: float,
    eps: float,
    is_sf_swizzled_layout: bool,
    alignment: int,
    normed_out: Optional[torch.Tensor],
    enable_pdl: Optional[bool],
) -> Tuple[torch.Tensor, torch.Tensor]:
    _check_input(input)
    num_tokens, hidden_size = input.shape
    if hidden_size % 32 != 0:
        raise ValueError(
            f"MXFP8 output requires hidden_size % 32 == 0, got hidden_size={hidden_size}"
        )
    if alignment <= 0 or alignment % 32 != 0:
        raise ValueError(
            f"alignment must be a positive multiple of 32, got {alignment}"
        )
    padded_hidden = (hidden_size + alignment - 1) // alignment * alignment
    out = torch.empty(
        (num_tokens, padded_hidden), dtype=torch.float8_e4m3fn, device=input.device
    )
    sf_out = torch.empty(
        (_mxfp8_sf_numel(num_tokens, padded_hidden, is_sf_swizzled_layout),),
        dtype=torch.uint8,
        device=input.device,
    )
    _norm_mxfp8_quantize(
        out,
        sf_out,
        normed_out,
        input,
        residual,
        weight,
        beta,
        norm_type,
        weight_bias,
        eps,
        is_sf_swizzled_layout,
        _resolve_pdl(enable_pdl, input.device),
    )
    return out, sf_out


_MXFP8_COMMON_DOC = r"""
    eps: float
        Epsilon for numerical stability.
    is_sf_swizzled_layout: bool
        ``True`` (default): scale factors in the 128x4 swizzled layout, ``False``: linear
        ``[num_tokens, padded_hidden_size // 32]`` layout; the layouts of
        :func:`flashinfer.mxfp8_quantize`.
    alignment: int
        The quantized output has ``padded_hidden_size = round_up(hidden_size, alignment)``
        columns (a multiple of 32); the padding columns are zeros and their scale factors
        are 0, as in :func:`flashinfer.mxfp8_quantize`.
    normed_out: Optional[torch.Tensor]
        If given, shape ``(num_tokens, hidden_size)`` with the input dtype: also receives the
        normalized output (before quantization), e.g. for an MoE router.
    enable_pdl: bool
        Whether to enable `programmatic dependent launch
        <https://docs.nvidia.com/cuda/cuda-c-programming-guide/index.html#programmatic-dependent-launch-and-synchronization>`_

    Returns
    -------
    out: torch.Tensor
        Quantized output, shape ``(num_tokens, padded_hidden_size)``, dtype float8_e4m3fn.
    sf: torch.Tensor
        UE8M0 scale factors, 1D uint8 with ``round_up(num_tokens, 128) *
        round_up(padded_hidden_size // 32, 4)`` entries (swizzled, padding zero-filled) or
        ``num_tokens * padded_hidden_size // 32`` entries (linear).

    Notes
    -----
    The normalized value is rounded to the input dtype first and then quantized, so ``out``
    and ``sf`` are bit-identical to ``mxfp8_quantize`` (SM100 semantics) applied to the
    zero-padded, dtype-rounded normalized tensor: ``scale = amax(block) * RN(1/448)`` rounded
    up to a power of two (UE8M0), ``out = e4m3_rn_satfinite(x * 2^-(code-127))``; an all-zero
    block has scale code 0 and zero values. A 32-element block that contains NaN or +-Inf
    (after normalization) gets scale code ``0xFF`` (the MX NaN scale) and all its values are
    e4m3 NaN (``0x7F``). Hidden sizes: multiple of 32, at most 16384. ``input`` (and
    ``residual``) rows must be 16-byte aligned with unit stride in the last dimension.
"""


@flashinfer_api
def rmsnorm_mxfp8_quant(
    input: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    is_sf_swizzled_layout: bool = True,
    alignment: int = 32,
    normed_out: Optional[torch.Tensor] = None,
    enable_pdl: Optional[bool] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    return _norm_mxfp8(
        input,
        None,
        weight,
        None,
        _RMSNORM,
        0.0,
        eps,
        is_sf_swizzled_layout,
        alignment,
        normed_out,
        enable_pdl,
    )


rmsnorm_mxfp8_quant.__doc__ = (
    r"""Root mean square normalization + MXFP8 quantization.

    ``out, sf = mxfp8_quantize((input[i] / RMS(input)) * weight[i])``

    Parameters
    ----------
    input: torch.Tensor
        Input tensor, shape (num_tokens, hidden_size), float16 or bfloat16.
    weight: torch.Tensor
        Weight tensor, shape (hidden_size,), same dtype as ``input``."""
    + _MXFP8_COMMON_DOC
)


@flashinfer_api
def fused_add_rmsnorm_mxfp8_quant(
    input: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    is_sf_swizzled_layout: bool = True,
    alignment: int = 32,
    normed_out: Optional[torch.Tensor] = None,
    enable_pdl: Optional[bool] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    return _norm_mxfp8(
        input,
        residual,
        weight,
        None,
        _RMSNORM,
        0.0,
        eps,
        is_sf_swizzled_layout,
        alignment,
        normed_out,
        enable_pdl,
    )


fused_add_rmsnorm_mxfp8_quant.__doc__ = (
    r"""Fused add + root mean square normalization + MXFP8 quantization.

    Step 1:
    ``residual[i] += input[i]`` (in place; the norm uses the fp32 sum, as
    :func:`fused_add_rmsnorm`)

    Step 2:
    ``out, sf = mxfp8_quantize((residual[i] / RMS(residual)) * weight[i])``

    Parameters
    ----------
    input: torch.Tensor
        Input tensor, shape (num_tokens, hidden_size), float16 or bfloat16. Not modified.
    residual: torch.Tensor
        Residual tensor, shape (num_tokens, hidden_size), same dtype; updated in place.
    weight: torch.Tensor
        Weight tensor, shape (hidden_size,), same dtype as ``input``."""
    + _MXFP8_COMMON_DOC
)


@flashinfer_api
def gemma_rmsnorm_mxfp8_quant(
    input: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    is_sf_swizzled_layout: bool = True,
    alignment: int = 32,
    normed_out: Optional[torch.Tensor] = None,
    enable_pdl: Optional[bool] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    return _norm_mxfp8(
        input,
        None,
        weight,
        None,
        _RMSNORM,
        1.0,
        eps,
        is_sf_swizzled_layout,
        alignment,
        normed_out,
        enable_pdl,
    )


gemma_rmsnorm_mxfp8_quant.__doc__ = (
    r"""Gemma-style root mean square normalization + MXFP8 quantization.

    ``out, sf = mxfp8_quantize((input[i] / RMS(input)) * (weight[i] + 1))``

    Parameters
    ----------
    input: torch.Tensor
        Input tensor, shape (num_tokens, hidden_size), float16 or bfloat16.
    weight: torch.Tensor
        Weight tensor, shape (hidden_size,), same dtype as ``input``."""
    + _MXFP8_COMMON_DOC
)


@flashinfer_api
def gemma_fused_add_rmsnorm_mxfp8_quant(
    input: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    is_sf_swizzled_layout: bool = True,
    alignment: int = 32,
    normed_out: Optional[torch.Tensor] = None,
    enable_pdl: Optional[bool] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    return _norm_mxfp8(
        input,
        residual,
        weight,
        None,
        _RMSNORM,
        1.0,
        eps,
        is_sf_swizzled_layout,
        alignment,
        normed_out,
        enable_pdl,
    )


gemma_fused_add_rmsnorm_mxfp8_quant.__doc__ = (
    r"""Gemma-style fused add + root mean square normalization + MXFP8 quantization.

    Step 1:
    ``residual[i] += input[i]`` (in place)

    Step 2:
    ``out, sf = mxfp8_quantize((residual[i] / RMS(residual)) * (weight[i] + 1))``

    Parameters
    ----------
    input: torch.Tensor
        Input tensor, shape (num_tokens, hidden_size), float16 or bfloat16. Not modified.
    residual: torch.Tensor
        Residual tensor, shape (num_tokens, hidden_size), same dtype; updated in place.
    weight: torch.Tensor
        Weight tensor, shape (hidden_size,), same dtype as ``input``."""
    + _MXFP8_COMMON_DOC
)


@flashinfer_api
def layernorm_mxfp8_quant(
    input: torch.Tensor,
    gemma: torch.Tensor,
    beta: torch.Tensor,
    eps: float = 1e-6,
    is_sf_swizzled_layout: bool = True,
    alignment: int = 32,
    normed_out: Optional[torch.Tensor] = None,
    enable_pdl: Optional[bool] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    return _norm_mxfp8(
        input,
        None,
        gemma,
        beta,
        _LAYERNORM,
        0.0,
        eps,
        is_sf_swizzled_layout,
        alignment,
        normed_out,
        enable_pdl,
    )


layernorm_mxfp8_quant.__doc__ = (
    r"""Layer normalization + MXFP8 quantization.

    ``out, sf = mxfp8_quantize(((input[i] - E[input]) / sqrt(Var[input] + eps)) * gemma[i] + beta[i])``

    Parameters
    ----------
    input: torch.Tensor
        Input tensor, shape (num_tokens, hidden_size), float16 or bfloat16.
    gemma: torch.Tensor
        Gamma tensor, shape (hidden_size,), float32.
    beta: torch.Tensor
        Beta tensor, shape (hidden_size,), float32."""
    + _MXFP8_COMMON_DOC
)


@flashinfer_api
def fused_add_layernorm_mxfp8_quant(
    input: torch.Tensor,
    residual: torch.Tensor,
    gemma: torch.Tensor,
    beta: torch.Tensor,
    eps: float = 1e-6,
    is_sf_swizzled_layout: bool = True,
    alignment: int = 32,
    normed_out: Optional[torch.Tensor] = None,
    enable_pdl: Optional[bool] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    return _norm_mxfp8(
        input,
        residual,
        gemma,
        beta,
        _LAYERNORM,
        0.0,
        eps,
        is_sf_swizzled_layout,
        alignment,
        normed_out,
        enable_pdl,
    )


fused_add_layernorm_mxfp8_quant.__doc__ = (
    r"""Fused add + layer normalization + MXFP8 quantization.

    Step 1:
    ``residual[i] += input[i]`` (in place; the norm uses the fp32 sum)

    Step 2:
    ``out, sf = mxfp8_quantize(LayerNorm(residual)[i] * gemma[i] + beta[i])``

    Parameters
    ----------
    input: torch.Tensor
        Input tensor, shape (num_tokens, hidden_size), float16 or bfloat16. Not modified.
    residual: torch.Tensor
        Residual tensor, shape (num_tokens, hidden_size), same dtype; updated in place.
    gemma: torch.Tensor
        Gamma tensor, shape (hidden_size,), float32.
    beta: torch.Tensor
        Beta tensor, shape (hidden_size,), float32."""
    + _MXFP8_COMMON_DOC
)


# ---------------------------------------------------------------------------
# Static per-tensor FP8
# ---------------------------------------------------------------------------


def _norm_fp8_static(
    out: torch.Tensor,
    input: torch.Tensor,
    residual: Optional[torch.Tensor],
    weight: torch.Tensor,
    beta: Optional[torch.Tensor],
    scale: Union[float, torch.Tensor],
    norm_type: int,
    weight_bias: float,
    eps: float,
    enable_pdl: Optional[bool],
    normed_out: Optional[torch.Tensor] = None,
) -> None:
    _check_input(input)
    if out.dtype not in (torch.float8_e4m3fn, torch.float8_e5m2):
        raise ValueError(f"out must be float8_e4m3fn or float8_e5m2, got {out.dtype}")
    if input.shape[1] % 8 != 0:
        raise ValueError(
            f"hidden_size must be a multiple of 8, got hidden_size={input.shape[1]}"
        )
    _norm_fp8_quantize(
        out,
        normed_out,
        input,
        residual,
        weight,
        beta,
        _normalize_scale(scale, input),
        norm_type,
        weight_bias,
        eps,
        _resolve_pdl(enable_pdl, input.device),
    )


_STATIC_COMMON_DOC = r"""
    scale: torch.Tensor
        Scale factor for quantization, shape (1,), float32:
        ``out = fp8(normed * (1 / scale))``.
    eps: float
        Epsilon for numerical stability.
    enable_pdl: bool
        Whether to enable `programmatic dependent launch
        <https://docs.nvidia.com/cuda/cuda-c-programming-guide/index.html#programmatic-dependent-launch-and-synchronization>`_

    Notes
    -----
    Values beyond the fp8 range saturate to the largest finite value (also +-Inf); NaN
    stays NaN. Hidden sizes: multiple of 8, at most 16384; rows must be 16-byte aligned with
    unit stride in the last dimension.
"""


@flashinfer_api
@register_custom_op("flashinfer::gemma_rmsnorm_quant", mutates_args=("out",))
def gemma_rmsnorm_quant(
    out: torch.Tensor,
    input: torch.Tensor,
    weight: torch.Tensor,
    scale: Union[float, torch.Tensor],
    eps: float = 1e-6,
    enable_pdl: Optional[bool] = None,
) -> None:
    _norm_fp8_static(
        out, input, None, weight, None, scale, _RMSNORM, 1.0, eps, enable_pdl
    )


gemma_rmsnorm_quant.__doc__ = (
    r"""Gemma-style root mean square normalization + fp8 quantization.

    ``out[i] = ((input[i] / RMS(input)) * (weight[i] + 1) / scale).to(fp8)``

    Like :func:`rmsnorm_quant`, the fp32 normalized value is quantized directly (no rounding
    to the input dtype first).

    Parameters
    ----------
    out: torch.Tensor
        The output tensor, shape (num_tokens, hidden_size), float8_e4m3fn or float8_e5m2.
    input: torch.Tensor
        Input tensor, shape (num_tokens, hidden_size), float16 or bfloat16.
    weight: torch.Tensor
        Weight tensor, shape (hidden_size,), same dtype as ``input``."""
    + _STATIC_COMMON_DOC
)


@register_fake_op("flashinfer::gemma_rmsnorm_quant")
def _gemma_rmsnorm_quant_fake(
    out: torch.Tensor,
    input: torch.Tensor,
    weight: torch.Tensor,
    scale: Union[float, torch.Tensor],
    eps: float = 1e-6,
    enable_pdl: Optional[bool] = None,
) -> None:
    pass


@flashinfer_api
@register_custom_op(
    "flashinfer::gemma_fused_add_rmsnorm_quant", mutates_args=("out", "residual")
)
def gemma_fused_add_rmsnorm_quant(
    out: torch.Tensor,
    input: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    scale: Union[float, torch.Tensor],
    eps: float = 1e-6,
    enable_pdl: Optional[bool] = None,
) -> None:
    _norm_fp8_static(
        out, input, residual, weight, None, scale, _RMSNORM, 1.0, eps, enable_pdl
    )


gemma_fused_add_rmsnorm_quant.__doc__ = (
    r"""Gemma-style fused add + root mean square normalization + fp8 quantization.

    Step 1:
    ``residual[i] += input[i]`` (in place; the norm uses the fp32 sum)

    Step 2:
    ``out[i] = ((residual[i] / RMS(residual)) * (weight[i] + 1) / scale).to(fp8)``

    Parameters
    ----------
    out: torch.Tensor
        The output tensor, shape (num_tokens, hidden_size), float8_e4m3fn or float8_e5m2.
    input: torch.Tensor
        Input tensor, shape (num_tokens, hidden_size), float16 or bfloat16. Not modified.
    residual: torch.Tensor
        Residual tensor, shape (num_tokens, hidden_size), same dtype; updated in place.
    weight: torch.Tensor
        Weight tensor, shape (hidden_size,), same dtype as ``input``."""
    + _STATIC_COMMON_DOC
)


@register_fake_op("flashinfer::gemma_fused_add_rmsnorm_quant")
def _gemma_fused_add_rmsnorm_quant_fake(
    out: torch.Tensor,
    input: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    scale: Union[float, torch.Tensor],
    eps: float = 1e-6,
    enable_pdl: Optional[bool] = None,
) -> None:
    pass


@flashinfer_api
@register_custom_op(
    "flashinfer::fused_add_layernorm_quant", mutates_args=("out", "residual")
)
def fused_add_layernorm_quant(
    out: torch.Tensor,
    input: torch.Tensor,
    residual: torch.Tensor,
    gemma: torch.Tensor,
    beta: torch.Tensor,
    scale: Union[float, torch.Tensor],
    eps: float = 1e-6,
    enable_pdl: Optional[bool] = None,
) -> None:
    _norm_fp8_static(
        out, input, residual, gemma, beta, scale, _LAYERNORM, 0.0, eps, enable_pdl
    )


fused_add_layernorm_quant.__doc__ = (
    r"""Fused add + layer normalization + fp8 quantization.

    Step 1:
    ``residual[i] += input[i]`` (in place; the norm uses the fp32 sum)

    Step 2:
    ``out[i] = (LayerNorm(residual)[i] * gemma[i] + beta[i]).to(input.dtype) / scale``
    cast to fp8.

    Like :func:`layernorm_quant`, the normalized value is rounded to the input dtype
    before it is scaled and quantized.

    Parameters
    ----------
    out: torch.Tensor
        The output tensor, shape (num_tokens, hidden_size), float8_e4m3fn or float8_e5m2.
    input: torch.Tensor
        Input tensor, shape (num_tokens, hidden_size), float16 or bfloat16. Not modified.
    residual: torch.Tensor
        Residual tensor, shape (num_tokens, hidden_size), same dtype; updated in place.
    gemma: torch.Tensor
        Gamma tensor, shape (hidden_size,), float32.
    beta: torch.Tensor
        Beta tensor, shape (hidden_size,), float32."""
    + _STATIC_COMMON_DOC
)


@register_fake_op("flashinfer::fused_add_layernorm_quant")
def _fused_add_layernorm_quant_fake(
    out: torch.Tensor,
    input: torch.Tensor,
    residual: torch.Tensor,
    gemma: torch.Tensor,
    beta: torch.Tensor,
    scale: Union[float, torch.Tensor],
    eps: float = 1e-6,
    enable_pdl: Optional[bool] = None,
) -> None:
    pass


# ---------------------------------------------------------------------------
# Dynamic per-token FP8
# ---------------------------------------------------------------------------


@flashinfer_api
def norm_fp8_per_token_quant(
    input: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    residual: Optional[torch.Tensor] = None,
    beta: Optional[torch.Tensor] = None,
    norm_type: str = "rmsnorm",
    scale_ub: Optional[torch.Tensor] = None,
    normed_out: Optional[torch.Tensor] = None,
    enable_pdl: Optional[bool] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""(Fused add +) RMSNorm / Gemma-RMSNorm / LayerNorm + dynamic per-token fp8 quantization.

    ``normed = norm(input (+ residual)).to(input.dtype)``

    ``scale[i] = max(min(amax(normed[i, :]), scale_ub) / 448, 1 / (448 * 512))``

    ``out[i, :] = fp8_e4m3(normed[i, :] * (1 / scale[i]))``

    Parameters
    ----------
    input: torch.Tensor
        Input tensor, shape (num_tokens, hidden_size), float16 or bfloat16.
    weight: torch.Tensor
        RMSNorm weight (input dtype) or LayerNorm gamma (float32), shape (hidden_size,).
    eps: float
        Epsilon for numerical stability.
    residual: Optional[torch.Tensor]
        If given, ``residual += input`` in place first and the fp32 sum is normalized.
    beta: Optional[torch.Tensor]
        LayerNorm beta (float32), required for ``norm_type="layernorm"``.
    norm_type: str
        ``"rmsnorm"``, ``"gemma_rmsnorm"`` (``weight + 1``) or ``"layernorm"``.
    scale_ub: Optional[torch.Tensor]
        Optional float32 upper bound (shape (1,)) on the row amax.
    normed_out: Optional[torch.Tensor]
        If given, also receives the normalized output (input dtype).
    enable_pdl: bool
        Whether to enable programmatic dependent launch.

    Returns
    -------
    out: torch.Tensor
        Shape (num_tokens, hidden_size), float8_e4m3fn.
    scale: torch.Tensor
        Shape (num_tokens, 1), float32 dequantization scale per row. A row containing NaN or
        +-Inf gets a NaN scale (and NaN values). The division ``amax / 448`` and the
        reciprocal are IEEE-rounded.
    """
    _check_input(input)
    if input.shape[1] % 8 != 0:
        raise ValueError(
            f"hidden_size must be a multiple of 8, got hidden_size={input.shape[1]}"
        )
    kinds = {"rmsnorm": (_RMSNORM, 0.0), "gemma_rmsnorm": (_RMSNORM, 1.0)}
    kinds["layernorm"] = (_LAYERNORM, 0.0)
    if norm_type not in kinds:
        raise ValueError(f"unknown norm_type {norm_type!r}")
    nt, weight_bias = kinds[norm_type]
    num_tokens, hidden_size = input.shape
    out = torch.empty(
        (num_tokens, hidden_size), dtype=torch.float8_e4m3fn, device=input.device
    )
    scale = torch.empty((num_tokens, 1), dtype=torch.float32, device=input.device)
    if scale_ub is not None:
        scale_ub = _normalize_scale(scale_ub, input)
    _norm_fp8_per_token_quantize(
        out,
        scale,
        normed_out,
        input,
        residual,
        weight,
        beta,
        scale_ub,
        nt,
        weight_bias,
        eps,
        _resolve_pdl(enable_pdl, input.device),
    )
    return out, scale
