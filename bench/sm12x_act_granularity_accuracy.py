"""Accuracy of the SM12x MXFP8 x MXFP4 MoE vs its activation scale granularity (128 / 64 / 32).

A float64 emulation on CPU, not a kernel run: the MoE output with both activation quantizations
the path performs (FC1 input; the bf16 SwiGLU output feeding FC2) applied at granularity g, vs the
same MoE with exact activations and the same MXFP4 weights, so the error is the activation
quantization's alone. The quantizer is the reference the Triton kernel matches bit for bit
(tests/moe/sm12x_mxfp8_reference.py of the patched tree). Writes JSON and a markdown table.

Usage: python bench/sm12x_act_granularity_accuracy.py --tree build/tree --out bench/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import mean

import torch

GRANULARITIES = (128, 64, 32)
HIDDEN, INTER, EXPERTS, TOP_K, TOKENS, SEEDS = 3072, 3072, 16, 4, 32, (0, 1)
# (name, outlier channels, their gain): LLM hidden states carry a few massive channels
PROFILES = (("gaussian", 0, 1.0), ("4 outlier channels x40", 4, 40.0), ("4 outlier channels x1000", 4, 1e3),
            ("4 outlier channels x10000", 4, 1e4), ("4 outlier channels x100000", 4, 1e5))


def activations(gen: torch.Generator, outliers: int, gain: float) -> tuple[torch.Tensor, torch.Tensor]:
    """bf16 activations and the mask of their ordinary (non-outlier) channels."""
    x = torch.randn(TOKENS, HIDDEN, generator=gen)
    channels = torch.randperm(HIDDEN, generator=gen)[:outliers]
    x[:, channels] *= gain
    ordinary = torch.ones(HIDDEN, dtype=torch.bool)
    ordinary[channels] = False
    return x.to(torch.bfloat16), ordinary


def run(tree: Path) -> list[dict]:
    sys.path.insert(0, str(tree / "tests" / "moe"))
    from sm12x_mxfp8_reference import dequant_mxfp4, fake_quant_mxfp8, moe_reference

    torch.set_num_threads(2)
    rows = []
    for name, outliers, gain in PROFILES:
        errors: dict[int, list[float]] = {g: [] for g in GRANULARITIES}
        input_errors: dict[int, list[float]] = {g: [] for g in GRANULARITIES}
        for seed in SEEDS:
            gen = torch.Generator().manual_seed(seed)
            w1 = dequant_mxfp4(torch.randint(0, 256, (EXPERTS, 2 * INTER, HIDDEN // 2), generator=gen).to(torch.uint8),
                               torch.randint(118, 124, (EXPERTS, 2 * INTER, HIDDEN // 32), generator=gen))
            w2 = dequant_mxfp4(torch.randint(0, 256, (EXPERTS, HIDDEN, INTER // 2), generator=gen).to(torch.uint8),
                               torch.randint(118, 124, (EXPERTS, HIDDEN, INTER // 32), generator=gen))
            x, ordinary = activations(gen, outliers, gain)
            ids = torch.stack([torch.randperm(EXPERTS, generator=gen)[:TOP_K] for _ in range(TOKENS)])
            weights = torch.softmax(torch.randn(TOKENS, TOP_K, generator=gen), -1)
            exact = moe_reference(x, ids, weights, w1, w2)
            for g in GRANULARITIES:
                got = moe_reference(x, ids, weights, w1, w2, quantize=lambda t, g=g: fake_quant_mxfp8(t, g))
                errors[g].append(float((got - exact).norm() / exact.norm()))
                xq, xd = fake_quant_mxfp8(x, g)[:, ordinary], x.double()[:, ordinary]
                input_errors[g].append(float((xq - xd).norm() / xd.norm()))
        for g in GRANULARITIES:
            rows.append({"profile": name, "granularity": g, "rel_error_mean": mean(errors[g]),
                         "rel_error_per_seed": errors[g],
                         "input_ordinary_channels_rel_error_mean": mean(input_errors[g])})
        print(name, {g: f"{mean(errors[g]):.5e}" for g in GRANULARITIES}, flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    by = {(r["profile"], r["granularity"]): r["rel_error_mean"] for r in rows}
    inp = {(r["profile"], r["granularity"]): r["input_ordinary_channels_rel_error_mean"] for r in rows}
    lines = [f"MoE output relative error (L2) vs exact activations; H {HIDDEN}, I {INTER}, {EXPERTS} experts, "
             f"top-{TOP_K}, {TOKENS} tokens, mean of {len(SEEDS)} seeds; float64 CPU emulation",
             "", "| activations | MoE out g = 128 | g = 64 | g = 32 "
             "| FC1 input, ordinary channels: g = 128 | g = 64 | g = 32 |",
             "|---|---|---|---|---|---|---|"]
    for name, _, _ in PROFILES:
        e = [by[(name, g)] for g in GRANULARITIES]
        i = [inp[(name, g)] for g in GRANULARITIES]
        lines.append(f"| {name} | {e[0]:.4e} | {e[1]:.4e} | {e[2]:.4e} | {i[0]:.3e} | {i[1]:.3e} | {i[2]:.3e} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=Path("build/tree"))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    rows = run(args.tree.resolve())
    config = {"hidden": HIDDEN, "intermediate": INTER, "experts": EXPERTS, "top_k": TOP_K, "tokens": TOKENS,
              "seeds": list(SEEDS), "weights": "random MXFP4 codes, UE8M0 exponents 118..123",
              "method": "float64 CPU emulation with the reference quantizer (bit-exact to the Triton q0 on H200)"}
    record = {"config": config, "rows": rows}
    (args.out / "sm12x_act_granularity_accuracy.json").write_text(json.dumps(record, indent=1))
    (args.out / "sm12x_act_granularity_accuracy.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
