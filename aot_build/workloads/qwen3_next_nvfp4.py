"""Qwen3-Next-80B-A3B, NVFP4 (ModelOpt) checkpoint, under vLLM with FlashInfer on SM12x (TP 1).

48 layers, 3 of 4 gated-delta-net (linear attention), 1 of 4 full attention with head_dim 256,
16 query / 2 KV heads, partial RoPE (64 of 256 dims) and Gemma-style (1 + weight) RMSNorm, also as
q/k-norm over heads; dense projections and MoE (512 experts, top-10, plus a shared expert) in
NVFP4 x NVFP4.

Where vLLM makes each call: NVFP4 activation quantization and dense GEMMs in vllm/utils/flashinfer.py
(fp4_quantize; flashinfer_scaled_fp4_mm -> mm_fp4, CUTLASS backend); MoE in
vllm/model_executor/layers/fused_moe/flashinfer_cutlass_moe.py (FlashInferExperts.apply, nvfp4
branch); full attention in vllm/v1/attention/backends/flashinfer.py (paged prefill wrapper; XQA
decode on SM12x, vLLM #49718); RoPE and sampling as in `common`. The Gemma-style norms and the KV
append are this stack's calls as specified for the flashinfer-sm12x wheel (stock vLLM uses its own
ops there).

Not traced: the gated-delta-net layers. vLLM runs them with its own FLA Triton kernels, and
FlashInfer's SM12x GDN prefill and decode are CuTe-DSL kernels (flashinfer/gdn_prefill.py,
gdn_decode.py) that the DSL compiles at run time: no nvcc JitSpec, nothing an AOT wheel can hold.
No activation op either: vLLM's SiluAndMul is its own kernel, and the MoE fuses SwiGLU."""

from __future__ import annotations

import torch

from .common import (BF16, DECODE, PAGE_SIZE, PREFILL, Batch, Step, append_kv, cuda, kv_cache,
                     rope, sampling, workspace, xqa_decode)

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, ROTARY_DIM = 2048, 16, 2, 256, 64
EXPERTS, TOP_K, MOE_INTERMEDIATE = 512, 10, 512
VOCAB = 151936
FP4 = torch.uint8  # two e2m1 values per byte


def fp4_quantize(num_tokens: int, width: int) -> None:
    """NVFP4 activation quantization: 16-element blocks, e4m3 block scales (swizzled), a global
    scale (vllm/utils/flashinfer.py: fp4_quantize)."""
    import flashinfer

    flashinfer.fp4_quantize(cuda(num_tokens, width), cuda(1, dtype=torch.float32), 16, False, True)


def dense_nvfp4(num_tokens: int, out_features: int) -> None:
    """vllm/utils/flashinfer.py: flashinfer_scaled_fp4_mm -> mm_fp4(a, b.t(), a_sf, b_sf.t(),
    alpha, bf16, block_size=16, backend="cutlass") (the SM120 CUTLASS FP4 GEMM)."""
    import flashinfer

    a = cuda(num_tokens, HIDDEN // 2, dtype=FP4)
    b = cuda(out_features, HIDDEN // 2, dtype=FP4)
    a_sf = cuda(-(-num_tokens // 128) * 128, HIDDEN // 16, dtype=torch.uint8)
    b_sf = cuda(out_features, HIDDEN // 16, dtype=torch.uint8)
    flashinfer.mm_fp4(a, b.t(), a_sf, b_sf.t(), cuda(1, dtype=torch.float32), BF16,
                      block_size=16, backend="cutlass")


def moe(num_tokens: int) -> None:
    """vllm/model_executor/layers/fused_moe/flashinfer_cutlass_moe.py: FlashInferExperts.apply,
    nvfp4 branch: NVFP4-quantized input + input_sf, weights viewed as int64, quant_scales =
    [a1_gscale, w1_scale.view(int32), g1_alphas, a2_gscale, w2_scale.view(int32), g2_alphas]."""
    from flashinfer.fused_moe import cutlass_fused_moe

    w1_scale = cuda(EXPERTS, 2 * MOE_INTERMEDIATE, HIDDEN // 16, dtype=torch.uint8)
    w2_scale = cuda(EXPERTS, HIDDEN, MOE_INTERMEDIATE // 16, dtype=torch.uint8)
    per_expert = [cuda(EXPERTS, dtype=torch.float32) for _ in range(4)]
    cutlass_fused_moe(
        input=cuda(num_tokens, HIDDEN // 2, dtype=FP4),
        token_selected_experts=cuda(num_tokens, TOP_K, dtype=torch.int32),
        token_final_scales=cuda(num_tokens, TOP_K, dtype=torch.float32),
        fc1_expert_weights=cuda(EXPERTS, 2 * MOE_INTERMEDIATE, HIDDEN // 2, dtype=FP4).view(torch.long),
        fc2_expert_weights=cuda(EXPERTS, HIDDEN, MOE_INTERMEDIATE // 2, dtype=FP4).view(torch.long),
        output_dtype=BF16, output=cuda(num_tokens, HIDDEN),
        quant_scales=[per_expert[0], w1_scale.view(torch.int32), per_expert[1], per_expert[2],
                      w2_scale.view(torch.int32), per_expert[3]],
        input_sf=cuda(num_tokens * HIDDEN // 16, dtype=torch.uint8))


def prefill(batch: Batch) -> None:
    """vllm/v1/attention/backends/flashinfer.py: FlashInferMetadataBuilder._get_prefill_wrapper
    (BatchPrefillWithPagedKVCacheWrapper, backend auto = fa2 on SM12x), plan() in build(), run()
    in FlashInferImpl.forward."""
    import flashinfer

    wrapper = flashinfer.BatchPrefillWithPagedKVCacheWrapper(workspace(), "NHD")
    wrapper.plan(batch.qo_indptr(), batch.kv_indptr(), batch.kv_indices(), batch.last_page_len(),
                 HEADS, KV_HEADS, HEAD_DIM, PAGE_SIZE, causal=True, sm_scale=HEAD_DIM**-0.5,
                 window_left=-1, q_data_type=BF16, kv_data_type=BF16)
    wrapper.run(cuda(batch.num_tokens, HEADS, HEAD_DIM), kv_cache(KV_HEADS, HEAD_DIM))


def steps() -> list[Step]:
    import flashinfer

    weight = cuda(HIDDEN)
    steps = []
    for batch in (PREFILL, DECODE):
        n = batch.num_tokens
        steps += [
            Step("flashinfer.gemma_rmsnorm", lambda n=n: flashinfer.gemma_rmsnorm(cuda(n, HIDDEN), weight)),
            Step("flashinfer.gemma_fused_add_rmsnorm",
                 lambda n=n: flashinfer.gemma_fused_add_rmsnorm(cuda(n, HIDDEN), cuda(n, HIDDEN), weight)),
            Step("flashinfer.gemma_rmsnorm (q/k-norm over heads)",
                 lambda n=n: flashinfer.gemma_rmsnorm(cuda(n, HEADS, HEAD_DIM), cuda(HEAD_DIM))),
            Step("flashinfer.fp4_quantize", lambda n=n: fp4_quantize(n, HIDDEN)),
            Step("flashinfer.mm_fp4", lambda n=n: dense_nvfp4(n, 2 * HEADS * HEAD_DIM)),
            Step("flashinfer.apply_rope_with_cos_sin_cache_inplace",
                 lambda n=n: rope(n, HEADS, KV_HEADS, HEAD_DIM, ROTARY_DIM)),
            Step("flashinfer.append_paged_kv_cache", lambda b=batch: append_kv(b, KV_HEADS, HEAD_DIM)),
            Step("flashinfer.BatchPrefillWithPagedKVCacheWrapper", lambda: prefill(PREFILL))
            if batch is PREFILL else
            Step("flashinfer.decode.xqa_batch_decode_with_kv_cache",
                 lambda: xqa_decode(HEADS, KV_HEADS, HEAD_DIM, -1, None)),
            Step("flashinfer.fused_moe.cutlass_fused_moe", lambda n=n: moe(n)),
        ]
    return steps + sampling(VOCAB)
