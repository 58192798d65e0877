"""First call of the AOT-built modules vs a cold JIT build, side by side on one GPU.

Each case runs in a fresh Python process with a fresh FlashInfer workspace:
  aot: the patched flashinfer-python plus the jit-cache wheel (installed with pip into a new target
       directory); CUDA_HOME points at a fake toolkit whose nvcc only logs its arguments and fails,
       so any compile attempt would show up and break the call;
  jit: the patched flashinfer-python alone; CUDA_HOME is the real toolkit behind a logging nvcc.
Per module the first call (load + run + synchronize) is timed, and every nvcc invocation counted.
Writes aot_first_call.json and aot_first_call.md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FIRST_CALLS = """
import json, sys, time
import torch
t0 = time.perf_counter()
import flashinfer
import_s = time.perf_counter() - t0
x = torch.randn(16, 2880, dtype=torch.bfloat16, device="cuda")
w = torch.randn(2880, dtype=torch.bfloat16, device="cuda")
calls = {
    "norm (flashinfer.rmsnorm)": lambda: flashinfer.rmsnorm(x, w),
    "norm_quant (flashinfer.rmsnorm_mxfp8_quant)": lambda: flashinfer.rmsnorm_mxfp8_quant(x, w),
}
torch.cuda.synchronize()
result = {"import_s": import_s}
for name, call in calls.items():
    t = time.perf_counter()
    call()
    torch.cuda.synchronize()
    result[name] = time.perf_counter() - t
print(json.dumps(result))
"""

LOGGING_NVCC = """#!/bin/sh
echo "$*" >> {log}
{action}
"""


def fake_toolkit(root: Path, log: Path, real_cuda: Path | None) -> Path:
    """A CUDA_HOME whose bin/nvcc logs each invocation; it runs the real nvcc when given one."""
    (root / "bin").mkdir(parents=True)
    if real_cuda is not None:
        for entry in real_cuda.iterdir():
            if entry.name != "bin":
                (root / entry.name).symlink_to(entry)
        for tool in (real_cuda / "bin").iterdir():
            if tool.name != "nvcc":
                (root / "bin" / tool.name).symlink_to(tool)
        action = f'exec {real_cuda / "bin" / "nvcc"} "$@"'
    else:
        action = "exit 1"
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text(LOGGING_NVCC.format(log=log, action=action))
    nvcc.chmod(0o755)
    return root


def nvcc_invocations(log: Path) -> tuple[int, int]:
    """(compiles, --version queries) the logging nvcc of `fake_toolkit` recorded in `log`."""
    invocations = log.read_text().splitlines() if log.exists() else []
    versions = sum("--version" in line for line in invocations)
    return len(invocations) - versions, versions


def run_case(name: str, pythonpath: list[Path], cuda_home: Path, log: Path, work: Path) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=":".join(str(p) for p in pythonpath), CUDA_HOME=str(cuda_home),
               PATH=f"{cuda_home / 'bin'}:{os.environ['PATH']}",
               FLASHINFER_WORKSPACE_BASE=str(work / f"ws-{name}"))
    env.pop("FLASHINFER_CUDA_ARCH_LIST", None)
    proc = subprocess.run([sys.executable, "-c", FIRST_CALLS], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} case failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    timings = json.loads(proc.stdout.strip().splitlines()[-1])
    compiles, versions = nvcc_invocations(log)
    return {"case": name, "seconds": timings, "nvcc_invocations": compiles + versions,
            "nvcc_compiles": compiles, "nvcc_version_queries": versions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--site", type=Path, required=True, help="patched flashinfer-python site dir")
    parser.add_argument("--aot-wheel", type=Path, required=True)
    parser.add_argument("--cuda", type=Path, default=Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        target = work / "jit-cache-env"
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                        "--target", str(target), str(args.aot_wheel)], check=True)
        results = [
            run_case("aot", [target, args.site], fake_toolkit(work / "no-cuda", work / "aot.log", None),
                     work / "aot.log", work),
            run_case("jit", [args.site], fake_toolkit(work / "cuda", work / "jit.log", args.cuda),
                     work / "jit.log", work),
        ]
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
    record = {"gpu": gpu, "aot_wheel": args.aot_wheel.name, "cpus": os.cpu_count(), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "aot_first_call.json").write_text(json.dumps(record, indent=1) + "\n")
    calls = [k for k in results[0]["seconds"] if k != "import_s"]  # type: ignore[union-attr]
    lines = [f"# First call: AOT wheel vs cold JIT ({gpu}, {os.cpu_count()} CPUs)", "",
             "| case | import s | " + " | ".join(f"first call {c} s" for c in calls) +
             " | nvcc compiles | nvcc --version |", "|---|---|" + "---|" * len(calls) + "---|---|"]
    for r in results:
        seconds = r["seconds"]
        assert isinstance(seconds, dict)
        lines.append(f"| {r['case']} | {seconds['import_s']:.2f} | " +
                     " | ".join(f"{seconds[c]:.3f}" for c in calls) +
                     f" | {r['nvcc_compiles']} | {r['nvcc_version_queries']} |")
    (args.out / "aot_first_call.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
