"""First call of upstream's CuTe-DSL norm kernels: compiled at first use vs exported ahead of time (patch 0008).

Every case is a fresh Python process with its own FlashInfer workspace, run in the install it is given
(`make gpu-test` runs it in the pristine site and in the patched one). Per op the first call (compile or
load + run + synchronize) is timed and every `cute.compile` counted; nvcc is the real one behind a logging
wrapper (bench/aot_first_call.py), so any JIT build of a CUDA module is counted too.

  pristine: upstream 0.7.4 as installed (CuTe DSL included): each process compiles every kernel.
  patched:  the series' wheels, the jit-cache wheel built with the traced CuTe-DSL kernels exported
            (make wheel AOT_MANIFEST=aot_build/manifests/h200_norm_cute_dsl.json): a process compiles none.
The ops are the traced ones (aot_build/traces/sm90_cute_dsl.json: the norms of gpt-oss-120b and Qwen3-Next).
Also `import flashinfer` with and without the DSL importable. Writes cute_dsl_first_call.{json,md} into --out;
`--summarize PRISTINE_JSON PATCHED_JSON` writes the side-by-side table (cute_dsl_first_call_summary.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from aot_first_call import fake_toolkit, nvcc_invocations

# The traced norm calls (aot_build/traces/sm90_cute_dsl.json): gpt-oss-120b at hidden 2880, Qwen3-Next's
# Gemma norms at hidden 2048 and its q/k norm over heads of 256.
FIRST_CALLS = """
import json, sys, time
hide_dsl = sys.argv[1] == "hide-dsl"
if hide_dsl:
    sys.modules["cutlass"] = None
t0 = time.perf_counter()
import flashinfer
import_s = time.perf_counter() - t0
result = {"import_s": import_s}
if not hide_dsl:
    import torch
    import cutlass.cute as cute

    compiles = 0
    _compile = cute.compile

    def counting_compile(*args, **kwargs):
        global compiles
        compiles += 1
        return _compile(*args, **kwargs)

    cute.compile = counting_compile
    def bf16(*shape):
        return torch.randn(*shape, dtype=torch.bfloat16, device="cuda")

    x, r, w = bf16(4, 2880), bf16(4, 2880), bf16(2880)
    xq, rq, wq = bf16(4, 2048), bf16(4, 2048), bf16(2048)
    heads, wh = bf16(4, 16, 256), bf16(256)
    calls = {
        "gpt-oss rmsnorm H2880": lambda: flashinfer.rmsnorm(x, w),
        "gpt-oss fused_add_rmsnorm H2880": lambda: flashinfer.fused_add_rmsnorm(x, r, w),
        "Qwen3-Next gemma_rmsnorm H2048": lambda: flashinfer.gemma_rmsnorm(xq, wq),
        "Qwen3-Next gemma_fused_add_rmsnorm H2048": lambda: flashinfer.gemma_fused_add_rmsnorm(xq, rq, wq),
        "Qwen3-Next gemma_rmsnorm q/k 16x256": lambda: flashinfer.gemma_rmsnorm(heads, wh),
    }
    torch.cuda.synchronize()
    first = {}
    for name, call in calls.items():
        before = compiles
        t = time.perf_counter()
        call()
        torch.cuda.synchronize()
        first[name] = {"s": time.perf_counter() - t, "compiles": compiles - before}
    result |= {"first_call": first, "compiles": compiles}
    try:
        from flashinfer.cute_dsl import kernel_cache
        result["kernel_cache"] = dict(kernel_cache.stats)
    except ImportError:  # upstream as released
        pass
print(json.dumps(result))
"""


def run(mode: str, workspace: Path, real_cuda: Path) -> dict:
    """One fresh process in its own workspace, nvcc logged: its result line plus the nvcc compiles it ran."""
    log = workspace / "nvcc.log"
    cuda_home = fake_toolkit(workspace / "cuda", log, real_cuda)
    env = dict(os.environ, FLASHINFER_WORKSPACE_BASE=str(workspace), CUDA_HOME=str(cuda_home),
               PATH=f"{cuda_home / 'bin'}:{os.environ['PATH']}")
    for name in ("FLASHINFER_USE_CUDA_NORM", "FLASHINFER_CUTE_DSL_CACHE_WRITE"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", FIRST_CALLS, mode], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"first-call process ({mode}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.splitlines()[-1]) | {"nvcc_compiles": nvcc_invocations(log)[0]}


def median_first_calls(runs: list[dict]) -> dict[str, float]:
    return {op: statistics.median(r["first_call"][op]["s"] for r in runs) for op in runs[0]["first_call"]}


def summarize(pristine: Path, patched: Path, out: Path) -> None:
    """Upstream's first call (a compile per kernel) next to the series' (the wheel's exported kernels)."""
    up, series = json.loads(pristine.read_text()), json.loads(patched.read_text())
    up_s, series_s = up["first_call_median_s"], series["first_call_median_s"]
    lines = [f"# First call of the traced CuTe-DSL norm kernels in a fresh process (median of {up['reps']} / "
             f"{series['reps']} processes)", "",
             "| op | upstream 0.7.4 (s) | series, kernels from the wheel (s) | upstream / series |",
             "|---|---:|---:|---:|"]
    for op, seconds in up_s.items():
        lines.append(f"| {op} | {seconds:.4f} | {series_s[op]:.4f} | {seconds / series_s[op]:.1f}x |")
    lines += ["", f"`cute.compile` calls per process: upstream {up['compiles_per_process']}, "
              f"series {series['compiles_per_process']}",
              f"nvcc compiles per process: upstream {up['nvcc_compiles_per_process']}, "
              f"series {series['nvcc_compiles_per_process']}",
              f"kernel cache per process (series): {[r.get('kernel_cache') for r in series['runs']]}",
              "", "`import flashinfer` (s, median): " + "; ".join(
                  f"{site} {k} {v:.2f}" for site, r in (("upstream", up), ("series", series))
                  for k, v in r["import_median_s"].items())]
    out.mkdir(parents=True, exist_ok=True)
    (out / "cute_dsl_first_call_summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", choices=("pristine", "patched"))
    parser.add_argument("--reps", type=int, default=5, help="fresh processes per case (medians)")
    parser.add_argument("--summarize", nargs=2, type=Path, metavar=("PRISTINE_JSON", "PATCHED_JSON"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cuda", type=Path, default=Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")))
    args = parser.parse_args()
    if args.summarize:
        summarize(*args.summarize, args.out)
        return
    if args.site is None:
        parser.error("--site or --summarize")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cute-dsl-first-call-") as tmp_name:
        tmp = Path(tmp_name)
        runs = [run("dsl", tmp / f"first-{i}", args.cuda) for i in range(args.reps)]
        hidden = [run("hide-dsl", tmp / f"nodsl-{i}", args.cuda)["import_s"] for i in range(args.reps)]
        imports = {"with CuTe DSL": [r["import_s"] for r in runs], "without CuTe DSL": hidden}
    result = {"site": args.site, "reps": args.reps, "runs": runs,
              "first_call_median_s": median_first_calls(runs),
              "compiles_per_process": [r["compiles"] for r in runs],
              "nvcc_compiles_per_process": [r["nvcc_compiles"] for r in runs],
              "import_median_s": {k: statistics.median(v) for k, v in imports.items()}}
    (args.out / "cute_dsl_first_call.json").write_text(json.dumps(result, indent=1) + "\n")
    medians = result["first_call_median_s"]
    lines = [f"# CuTe-DSL norm kernels, first call in a fresh process ({args.site} site, median of {args.reps})",
             "", "| op | first call (s) |", "|---|---:|"]
    lines += [f"| {op} | {seconds:.4f} |" for op, seconds in medians.items()]
    lines += ["", f"cute.compile calls per process: {result['compiles_per_process']}",
              f"nvcc compiles per process: {result['nvcc_compiles_per_process']}", "",
              "`import flashinfer` (s): " + ", ".join(f"{k} {v:.2f}" for k, v in result["import_median_s"].items())]
    (args.out / "cute_dsl_first_call.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
