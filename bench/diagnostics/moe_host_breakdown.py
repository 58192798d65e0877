"""Where `cutlass_fused_moe`'s host time goes, in one FlashInfer install (a diagnostic, not a benchmark).

gpt-oss-like bf16 MoE (hidden 2880, intermediate 2880, 128 experts, top-4), untuned, `output` passed. Host
time per call (enqueue time with the GPU kept busy by `torch.cuda._sleep`), medians over 21 rounds that
interleave, 50 calls each:
  public   flashinfer.fused_moe.cutlass_fused_moe;
  inner    the module's op the public wrapper calls (its setup plus the binding call);
  binding  the C++ `run_moe` alone with the same arguments and a caller workspace (FFI, host setup, 7 launches);
  wrapper  the public wrapper with the module's op replaced by a no-op.
Run with PYTHONPATH selecting the install: python bench/diagnostics/moe_host_breakdown.py <label> [tokens]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import torch

import flashinfer.fused_moe as fused_moe
from flashinfer.fused_moe import core

HIDDEN, INTER, EXPERTS, TOP_K = 2880, 2880, 128, 4
CALLS, ROUNDS = 50, 21


def host_us(call: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    torch.cuda._sleep(200_000_000)
    started = time.perf_counter()
    for _ in range(CALLS):
        call()
    elapsed = (time.perf_counter() - started) / CALLS * 1e6
    torch.cuda.synchronize()
    return elapsed


def main() -> None:
    label, tokens = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4
    g = torch.Generator(device="cuda").manual_seed(0)
    fc1 = torch.randn(EXPERTS, 2 * INTER, HIDDEN, device="cuda", dtype=torch.bfloat16, generator=g) / 32
    fc2 = torch.randn(EXPERTS, HIDDEN, INTER, device="cuda", dtype=torch.bfloat16, generator=g) / 32
    x = torch.randn(tokens, HIDDEN, device="cuda", generator=g).bfloat16()
    scales, ids = torch.topk(torch.softmax(torch.randn(tokens, EXPERTS, device="cuda", generator=g), -1), TOP_K)
    ids, scales = ids.int(), scales.float()
    out = torch.empty(tokens, HIDDEN, device="cuda", dtype=torch.bfloat16)
    module = core.get_cutlass_fused_moe_module("90")
    op = module.cutlass_fused_moe

    def public() -> object:
        return fused_moe.cutlass_fused_moe(x, ids, scales, fc1, fc2, torch.bfloat16, quant_scales=None, output=out)

    def inner() -> object:
        return op(out, x, ids, scales, fc1, None, fc2, None, torch.bfloat16, None, None, None, None, None, None,
                  None, None, True, 1, 0, 1, 0, 1, 0, enable_pdl=True, use_fused_finalize=True)

    runner = module.MoERunner(torch.bfloat16, torch.bfloat16, torch.bfloat16, TOP_K, 1, 0, 1, 0, 1, 0, False,
                              False, False, False, False, True, fused_moe.ActivationType.Swiglu, False, True,
                              False).fused_moe_runner
    workspace = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
    args = (out, x, ids, scales, fc1, None, fc2, None, None, None, None, None, None, None, None, None, True,
            1, 0, 1, 0, 1, 0, False, False, [-1, -1], True, fused_moe.ActivationType.Swiglu, workspace,
            core.NVFP4_4OVER6_CODE_FROM_ENV)
    run_moe = runner.run_moe

    def binding() -> object:
        return run_moe(*args)

    def no_op(*_args: object, **_kwargs: object) -> list[torch.Tensor]:
        return [out]

    for call in (public, inner, binding):
        call()
    torch.cuda.synchronize()
    samples: dict[str, list[float]] = {"public": [], "inner": [], "binding": [], "wrapper": []}
    for _ in range(ROUNDS):
        for name, call in (("public", public), ("inner", inner), ("binding", binding)):
            samples[name].append(host_us(call))
        module.cutlass_fused_moe = no_op
        samples["wrapper"].append(host_us(public))
        module.cutlass_fused_moe = op
    medians = {name: round(statistics.median(values), 1) for name, values in samples.items()}
    print(f"{label} T={tokens} host us per call (medians): {medians}", flush=True)


if __name__ == "__main__":
    main()
