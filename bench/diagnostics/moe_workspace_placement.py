"""Does the workspace buffer change `cutlass_fused_moe`'s GPU time? (a diagnostic, not a benchmark)

In one FlashInfer install, the same gpt-oss-like bf16 MoE call (hidden 2880, intermediate 2880, 128 experts,
top-4, untuned, `output` passed) at 1 and 4 tokens, GPU time per call of 50 back-to-back eager calls,
medians of 15 interleaved rounds, with:
  default   no workspace_buffer (upstream: allocated per call; the series: its cached workspace);
  exact_ws  a caller buffer of exactly cutlass_fused_moe_workspace_size bytes;
  big_ws    a caller buffer of 64 MiB;
  no_pdl    the default, with enable_pdl=False.
Same kernels, tactics and inputs in every variant: only the workspace's address and size change.
Run with PYTHONPATH selecting the install: python bench/diagnostics/moe_workspace_placement.py <label>
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable

import torch

import flashinfer.fused_moe as fused_moe

HIDDEN, INTER, EXPERTS, TOP_K = 2880, 2880, 128, 4
CALLS, ROUNDS = 50, 15


def measure(label: str, tokens: int, fc1: torch.Tensor, fc2: torch.Tensor) -> None:
    g = torch.Generator(device="cuda").manual_seed(1000 * tokens + EXPERTS)
    x = torch.randn(tokens, HIDDEN, device="cuda", generator=g).bfloat16()
    scales, ids = torch.topk(torch.softmax(torch.randn(tokens, EXPERTS, device="cuda", generator=g), -1),
                             TOP_K, dim=-1)
    ids, scales = ids.int(), (scales / scales.sum(-1, keepdim=True)).float()
    out = torch.empty(tokens, HIDDEN, device="cuda", dtype=torch.bfloat16)
    need = fused_moe.cutlass_fused_moe_workspace_size(tokens, HIDDEN, INTER, EXPERTS, TOP_K,
                                                      x_dtype=torch.bfloat16, weight_dtype=torch.bfloat16)
    exact = torch.empty(need, dtype=torch.uint8, device="cuda")
    big = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")

    def moe(**kwargs: object) -> Callable[[], object]:
        return lambda: fused_moe.cutlass_fused_moe(x, ids, scales, fc1, fc2, torch.bfloat16, quant_scales=None,
                                                   output=out, **kwargs)

    variants = {"default": moe(), "exact_ws": moe(workspace_buffer=exact), "big_ws": moe(workspace_buffer=big),
                "no_pdl": moe(enable_pdl=False)}
    for call in variants.values():
        for _ in range(3):
            call()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, call in variants.items():
            start.record()
            for _ in range(CALLS):
                call()
            end.record()
            end.synchronize()
            samples[name].append(start.elapsed_time(end) / CALLS * 1e3)
    medians = {name: round(statistics.median(values), 1) for name, values in samples.items()}
    print(f"{label} T={tokens} workspace bytes {need}: GPU us per call {medians}", flush=True)


def main() -> None:
    g = torch.Generator(device="cuda").manual_seed(EXPERTS)
    fc1 = torch.randn(EXPERTS, 2 * INTER, HIDDEN, device="cuda", generator=g, dtype=torch.bfloat16) / 32
    fc2 = torch.randn(EXPERTS, HIDDEN, INTER, device="cuda", generator=g, dtype=torch.bfloat16) / 32
    for tokens in (1, 4):
        measure(sys.argv[1], tokens, fc1, fc2)


if __name__ == "__main__":
    main()
