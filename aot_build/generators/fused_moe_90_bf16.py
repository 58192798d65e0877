"""A bf16-only build of FlashInfer's SM90 CUTLASS fused-MoE module, for the MoE runner tests on the lent H200.

The full `fused_moe_90` is 248 translation units (about 30 min of 16 cores). This is the same module under the
same name, from upstream's own generator, sources and flags, with the FP8/FP4 feature macros left out: 56 units
(bf16, fp16 and fp32 same-type GEMMs, their int8/int4 weight-only variants, the SM80 fallback tactics). fp8/fp4
requests fail at runner construction; bf16 x bf16 runs the same runner, binding and TMA warp-specialized SM90
grouped GEMMs as the full module. Why each unit stays or goes: ../../shared notes, fused_moe_90_bf16.md (2026-12-02).

Built like any AOT module (aot_build/manifests/fused_moe_90_bf16.json):
    make wheel ARCHS=9.0a AOT_MANIFEST=aot_build/manifests/fused_moe_90_bf16.json DIST=build/dist-moe90
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from flashinfer.jit.core import JitSpec
from flashinfer.jit.fused_moe import gen_cutlass_fused_moe_sm90_module

DROPPED_FLAGS = ("-DENABLE_FP8", "-DENABLE_FP8_BLOCK_SCALE", "-DENABLE_FP4",
                 "-DCUTLASS_MIXED_GEMM_FP4_FP8_PREPROCESSED_SIGNS=1")
# moe_kernels.h declares use_fp8_input only under ENABLE_FP8; its #else branch lacks it
ADDED_FLAGS = ("-Duse_fp8_input=false",)
DROPPED_UNITS = ("moe_gemm_kernels_fp8_uint4.cu", "moe_gemm_kernels_fp8_fp8.cu", "moe_gemm_kernels_fp8_fp4.cu",
                 "moe_gemm_kernels_fp4_fp4.cu", "moe_gemm_kernels_bf16_fp8.cu", "moe_gemm_kernels_bf16_fp4.cu",
                 "moe_gemm_kernels_fp16_fp4.cu", "fp8_blockscale_gemm.cu")
UNITS = 56


def _kept(source: Path) -> bool:
    if source.name in DROPPED_UNITS:
        return False
    if not source.name.endswith(".generated.cu"):
        return True
    if "gemm_grouped" not in source.parts:  # gemm/90: fpA_intB launchers no fused-MoE code references
        return False
    if "80" in source.parts:  # the SM80 fused-MoE fallback tactics (fp16, bf16)
        return True
    return "_Mixed_" not in source.name and "__nv_fp8_e4m3" not in source.read_text()


def gen_fused_moe_90_bf16_module() -> JitSpec:
    spec = gen_cutlass_fused_moe_sm90_module()
    sources = [s for s in spec.sources if _kept(Path(s))]
    if len(sources) != UNITS:
        raise RuntimeError(f"the bf16 fused_moe_90 set has {len(sources)} units, not {UNITS}: upstream's "
                           "module changed; re-derive the set")
    flags = [f for f in spec.extra_cuda_cflags if f not in DROPPED_FLAGS] + list(ADDED_FLAGS)
    return dataclasses.replace(spec, sources=sources, extra_cuda_cflags=flags)
