"""gpt-oss-120b under vLLM with FlashInfer on SM12x (TP 1, bf16 activations, bf16 paged KV cache).

36 layers alternating sliding-window (128) and full attention, both with per-head sinks; head_dim
64, 64 query / 8 KV heads; MoE: 128 experts, top-4, MXFP4 weights with MXFP8 activations, expert
biases and clamped SwiGLU (alpha / beta / limit).

Where vLLM makes each call: attention in vllm/v1/attention/backends/flashinfer.py (SM12x: sink-aware
paged prefill wrapper, vLLM #52148; XQA decode, vLLM #49718); MoE in the FlashInfer MXFP4 x MXFP8
CUTLASS path of vllm/model_executor/layers/quantization/mxfp4.py (Mxfp4MoEMethod); RoPE and
sampling as in `common`. The norms and the KV append are this stack's calls as specified for the
flashinfer-sm12x wheel (stock vLLM uses its own rms_norm and reshape_and_cache_flash ops there):
RMSNorm / fused add + RMSNorm, and the series' fused norm -> MXFP8 ops feeding the MoE."""

from __future__ import annotations

import torch

from .common import (BF16, CUDA, DECODE, PAGE_SIZE, PREFILL, Batch, Step, append_kv, cuda,
                     kv_cache, rope, sampling, workspace, xqa_decode)

HIDDEN, HEADS, KV_HEADS, HEAD_DIM = 2880, 64, 8, 64
EXPERTS, TOP_K = 128, 4
MOE_HIDDEN = MOE_INTERMEDIATE = 3072  # 2880 padded to a multiple of 256 for the FlashInfer MoE
SLIDING_WINDOW, VOCAB = 128, 201088


def sink_prefill(batch: Batch, window_left: int) -> None:
    """SM12x prefill with sinks: BatchAttentionWithAttentionSinkWrapper, specialised for the
    layer's dtypes, head_dim and sliding window (backend auto = fa2 on SM12x)."""
    import flashinfer

    wrapper = flashinfer.BatchAttentionWithAttentionSinkWrapper(
        workspace(), "NHD", backend="auto", q_data_type=BF16, kv_data_type=BF16,
        head_dim_qk=HEAD_DIM, head_dim_vo=HEAD_DIM, window_left=window_left)
    wrapper.plan(batch.qo_indptr(), batch.kv_indptr(), batch.kv_indices(), batch.last_page_len(),
                 HEADS, KV_HEADS, HEAD_DIM, PAGE_SIZE, causal=True, window_left=window_left,
                 q_data_type=BF16, kv_data_type=BF16)
    wrapper.run(cuda(batch.num_tokens, HEADS, HEAD_DIM), kv_cache(KV_HEADS, HEAD_DIM),
                cuda(HEADS, dtype=torch.float32), HEAD_DIM**-0.5)


def moe(num_tokens: int) -> None:
    """flashinfer_cutlass_fused_moe(..., use_mxfp8_act_scaling=True, input_sf=x_scale, expert
    biases, swiglu_alpha/beta/limit) on the output of mxfp8_quantize(x, True, 32) (its own step)."""
    from flashinfer.fused_moe import cutlass_fused_moe

    w13_scale = cuda(EXPERTS, 2 * MOE_INTERMEDIATE, MOE_HIDDEN // 32, dtype=torch.uint8)
    w2_scale = cuda(EXPERTS, MOE_HIDDEN, MOE_INTERMEDIATE // 32, dtype=torch.uint8)
    fake_input_scale = torch.ones(EXPERTS, device=CUDA)
    alpha, beta, limit = (cuda(EXPERTS, dtype=torch.float32) for _ in range(3))
    cutlass_fused_moe(
        input=cuda(num_tokens, MOE_HIDDEN, dtype=torch.float8_e4m3fn),
        token_selected_experts=cuda(num_tokens, TOP_K, dtype=torch.int32),
        token_final_scales=cuda(num_tokens, TOP_K, dtype=torch.float32),
        fc1_expert_weights=cuda(EXPERTS, 2 * MOE_INTERMEDIATE, MOE_HIDDEN // 2, dtype=torch.uint8),
        fc2_expert_weights=cuda(EXPERTS, MOE_HIDDEN, MOE_INTERMEDIATE // 2, dtype=torch.uint8),
        output_dtype=BF16, output=cuda(num_tokens, MOE_HIDDEN),
        quant_scales=[w13_scale.view(torch.int32), fake_input_scale, w2_scale.view(torch.int32),
                      fake_input_scale],
        fc1_expert_biases=cuda(EXPERTS, 2 * MOE_INTERMEDIATE), fc2_expert_biases=cuda(EXPERTS, MOE_HIDDEN),
        swiglu_alpha=alpha, swiglu_beta=beta, swiglu_limit=limit,
        use_mxfp8_act_scaling=True, input_sf=cuda(num_tokens * MOE_HIDDEN // 32, dtype=torch.uint8))


def steps() -> list[Step]:
    import flashinfer

    weight = cuda(HIDDEN)
    sinks = cuda(HEADS, dtype=torch.float32)
    steps = []
    for batch in (PREFILL, DECODE):
        n = batch.num_tokens
        steps += [
            Step("flashinfer.rmsnorm", lambda n=n: flashinfer.rmsnorm(cuda(n, HIDDEN), weight)),
            Step("flashinfer.fused_add_rmsnorm",
                 lambda n=n: flashinfer.fused_add_rmsnorm(cuda(n, HIDDEN), cuda(n, HIDDEN), weight)),
            Step("flashinfer.rmsnorm_mxfp8_quant",
                 lambda n=n: flashinfer.rmsnorm_mxfp8_quant(cuda(n, HIDDEN), weight)),
            Step("flashinfer.fused_add_rmsnorm_mxfp8_quant",
                 lambda n=n: flashinfer.fused_add_rmsnorm_mxfp8_quant(cuda(n, HIDDEN), cuda(n, HIDDEN), weight)),
            Step("flashinfer.apply_rope_with_cos_sin_cache_inplace",
                 lambda n=n: rope(n, HEADS, KV_HEADS, HEAD_DIM, HEAD_DIM)),
            Step("flashinfer.append_paged_kv_cache", lambda b=batch: append_kv(b, KV_HEADS, HEAD_DIM)),
        ]
        for window_left in (SLIDING_WINDOW - 1, -1):  # sliding-window layers, full layers
            if batch is PREFILL:
                steps.append(Step("flashinfer.BatchAttentionWithAttentionSinkWrapper",
                                  lambda w=window_left: sink_prefill(PREFILL, w)))
            else:
                steps.append(Step("flashinfer.decode.xqa_batch_decode_with_kv_cache",
                                  lambda w=window_left: xqa_decode(HEADS, KV_HEADS, HEAD_DIM, w, sinks)))
        steps += [
            Step("flashinfer.mxfp8_quantize",
                 lambda n=n: flashinfer.mxfp8_quantize(cuda(n, MOE_HIDDEN), True, 32)),
            Step("flashinfer.fused_moe.cutlass_fused_moe", lambda n=n: moe(n)),
        ]
    return steps + sampling(VOCAB)
