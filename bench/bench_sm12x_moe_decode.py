"""Decode-shape MoE latency on SM120/SM121 per tactic: the numbers behind patches 0003 and 0004.

gpt-oss-120b (MXFP8 activations x MXFP4 experts, hidden 2880 -> 2944, intermediate 2880, 128 experts,
top-4) and Qwen3-Next (NVFP4 x NVFP4, hidden 2048, intermediate 512, 512 experts, top-10) at 1 ... 64
tokens, `cutlass_fused_moe` with
  - upstream's untuned default: the first tactic of each GEMM (what tactic -1 ran before patch 0004),
  - the series' small-M default (tactic -1 with patch 0004),
  - each TileM = 64 tile of patch 0003 on both GEMMs,
  - the swap-AB 128x32 and 128x64 tiles on both GEMMs.
The problems are the upstream-style test's (tests/sm12x_tiles/test_sm12x_small_m_moe.py: same
quantizers, weight layout and tactic list, checked against the runner there), with their 8 / 16
quantized experts repeated to the models' expert counts: latency depends on the shapes and the
routing, not on the weight values. Each point is the median of triton's do_bench (eager calls).
Writes sm12x_moe_decode.json and sm12x_moe_decode.md into --out. Needs an SM120/SM121 GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

TOKENS = (1, 2, 4, 8, 16, 32, 64)
MODELS = {  # problem constructor in the test module, experts, top-k
    "gpt-oss-120b (MXFP8 x MXFP4)": ("gpt_oss_like_mxfp8_mxfp4", 128, 4),
    "Qwen3-Next (NVFP4 x NVFP4)": ("qwen3_next_like_nvfp4", 512, 10),
}


def load_test_module(tree_tests: Path):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(tree_tests / "sm12x_tiles"))
    import test_sm12x_small_m_moe as moe_test  # noqa: PLC0415

    return moe_test


def widen(problem, experts: int, top_k: int):  # type: ignore[no-untyped-def]
    """The problem with its per-expert tensors repeated to `experts` experts and the model's top-k."""
    def grow(value):  # type: ignore[no-untyped-def]
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == problem.num_experts:
            return value.index_select(0, torch.arange(experts, device=value.device) % problem.num_experts)
        if isinstance(value, list):
            return [grow(v) for v in value]
        return value

    kwargs = {k: grow(v) for k, v in problem.moe_kwargs.items()}
    return dataclasses.replace(problem, num_experts=experts, top_k=top_k, moe_kwargs=kwargs)


def tactic_rows(moe_test, problem) -> list[tuple[str, list[int]]]:  # type: ignore[no-untyped-def]
    tactics, gemm1_count, _ = moe_test.sm120_tactics(problem)
    desc = moe_test.TacticDesc
    none = moe_test.NONE

    def index(tile: tuple[int, int, int], swap: bool, gemm2: bool) -> int | None:
        begin = gemm1_count if gemm2 else 0
        want = desc(*tile, swap, none)
        ids = [i for i in range(begin, len(tactics) if gemm2 else gemm1_count) if tactics[i] == want]
        return ids[0] if ids else None

    rows = [("upstream untuned default (first tactic)", [0, gemm1_count]),
            ("series small-M default (tactic -1)", [-1, -1])]
    for label, tile, swap in [("TileM 64: 64x64", (64, 64, 64 if problem.input_dtype == torch.uint8 else 128), False),
                              ("TileM 64: 64x128", (64, 128, 64 if problem.input_dtype == torch.uint8 else 128), False),
                              ("swap-AB 128x32", (128, 32, 128), True), ("swap-AB 128x64", (128, 64, 128), True)]:
        ids = [index(tile, swap, False), index(tile, swap, True)]
        if None not in ids:
            rows.append((label, ids))  # type: ignore[arg-type]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tree-tests", type=Path, default=None,
                        help="the series' tests/ (default: csrc_overrides/tests of this checkout)")
    parser.add_argument("--tokens", type=int, nargs="+", default=list(TOKENS))
    args = parser.parse_args()
    if not (torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 12):
        raise SystemExit("needs an SM120/SM121 GPU")
    from triton.testing import do_bench  # noqa: PLC0415

    moe_test = load_test_module(args.tree_tests or Path(__file__).resolve().parents[1] / "csrc_overrides" / "tests")
    records = []
    for model, (constructor, experts, top_k) in MODELS.items():
        problem = widen(getattr(moe_test, constructor)(), experts, top_k)
        for tokens in args.tokens:
            torch.manual_seed(tokens)
            x = torch.randn(tokens, problem.hidden, device="cuda").bfloat16()
            logits = torch.randn(tokens, problem.num_experts, device="cuda")
            weights, chosen = torch.topk(logits.softmax(dim=-1), problem.top_k, dim=-1)
            x_q, x_sf, _ = problem.quantize_input(x)
            case = moe_test.MoeCase(x_q, x_sf, chosen.int(), weights / weights.sum(-1, keepdim=True), None, None)
            for label, ids in tactic_rows(moe_test, problem):
                out = moe_test.run_moe(problem, case, ids)
                assert torch.isfinite(out).all(), f"{model} T={tokens} {label}: non-finite output"
                us = 1e3 * do_bench(lambda: moe_test.run_moe(problem, case, ids), warmup=25, rep=200,  # noqa: B023
                                    return_mode="median")
                records.append({"model": model, "tokens": tokens, "tactic": label, "profile_ids": ids, "us": us})
                print(f"{model} T={tokens} {label}: {us:.1f} us", flush=True)
    gpu = torch.cuda.get_device_name()
    driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True).stdout.strip()
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"gpu": gpu, "driver": driver, "torch": torch.__version__, "cpus": os.cpu_count(),
            "method": "triton do_bench median, eager cutlass_fused_moe calls", "records": records}
    (args.out / "sm12x_moe_decode.json").write_text(json.dumps(meta, indent=1) + "\n")
    lines = [f"# Decode-shape MoE latency per tactic, us ({gpu}, driver {driver})", ""]
    for model in MODELS:
        labels = list(dict.fromkeys(r["tactic"] for r in records if r["model"] == model))
        lines += [f"## {model}", "", "| tactic | " + " | ".join(f"T={t}" for t in args.tokens) + " |",
                  "|---|" + "---|" * len(args.tokens)]
        for label in labels:
            by_t = {r["tokens"]: r["us"] for r in records if r["model"] == model and r["tactic"] == label}
            lines.append(f"| {label} | " + " | ".join(f"{by_t[t]:.1f}" for t in args.tokens) + " |")
        lines.append("")
    (args.out / "sm12x_moe_decode.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
