"""Host side of a traced CuTe-DSL kernel's first use, without a GPU: `cute.compile` (what upstream does in every
new process) against finding the kernel exported ahead of time (patch 0008), per kernel of an AOT manifest's
`cute_dsl` part, on this machine's CPU.

Each case is a fresh process that sees the manifest's device as the tracer's model reports it (FakeDevice) with
the DSL targeting it. `compile` times `getter.__wrapped__(**args)` (upstream's getter body: trace, MLIR, PTX,
ptxas); `exported` times `getter(**args)` with the kernels exported once beforehand (`load_module`: the object's
host code linked in memory, the cubin not yet loaded onto a GPU). Not included: loading the cubin onto the GPU and
the first launch, which need the GPU (bench/bench_cute_dsl_first_call.py measures the whole first call there).
Also `import flashinfer` in a fresh process with the DSL importable and with it hidden.

    python bench/bench_cute_dsl_host_compile.py --tree build/tree --arch 12.1 \
        --manifest aot_build/manifests/sm121_decode.json --out bench/results/cute_dsl_host_compile_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import json, sys, time
from pathlib import Path
from export_cute_dsl import getter_of
from trace_jit_specs import DEVICES, FakeDevice

FakeDevice(DEVICES[sys.argv[2]])
from flashinfer.cute_dsl import kernel_cache

case, exported = sys.argv[1], Path(sys.argv[4])
kernel_cache.search_dirs = lambda: (exported,)
seconds = []
for entry in json.loads(Path(sys.argv[3]).read_text())["cute_dsl"]:
    getter = getter_of(entry)
    call = getter.__wrapped__ if case == "compile" else getter
    t = time.perf_counter()
    call(**entry["args"])
    seconds.append(time.perf_counter() - t)
print(json.dumps({"seconds": seconds, "stats": dict(kernel_cache.stats)}))
"""


def run_case(case: str, tree: Path, arch: str, manifest: Path, exported: Path, home: Path) -> dict:
    sys.path.insert(0, str(ROOT / "aot_build"))
    from trace_jit_specs import dsl_arch

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(ROOT / "aot_build")]),
               CUTE_DSL_ARCH=dsl_arch(arch), FLASHINFER_WORKSPACE_BASE=str(home))
    proc = subprocess.run([sys.executable, "-c", WORKER, case, arch, str(manifest), str(exported)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{case} process failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


IMPORT = """
import sys, time
if sys.argv[1] == "hidden":
    sys.modules["cutlass"] = None
t = time.perf_counter()
import flashinfer
print(time.perf_counter() - t)
"""


def import_seconds(tree: Path, dsl: str, home: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree), FLASHINFER_WORKSPACE_BASE=str(home))
    proc = subprocess.run([sys.executable, "-c", IMPORT, dsl], capture_output=True, text=True, env=env, check=True)
    return float(proc.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, required=True)
    parser.add_argument("--arch", default="12.1")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=5, help="fresh processes per case (medians)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    entries = json.loads(args.manifest.read_text())["cute_dsl"]
    with tempfile.TemporaryDirectory(prefix="cute-dsl-host-") as tmp_name:
        tmp = Path(tmp_name)
        exported = tmp / "exported"
        subprocess.run([sys.executable, str(ROOT / "aot_build" / "export_cute_dsl.py"), "--tree", str(args.tree),
                        "--arch", args.arch, "--manifest", str(args.manifest), "--out", str(exported)],
                       check=True, capture_output=True, env=dict(os.environ, FLASHINFER_WORKSPACE_BASE=str(tmp)))
        runs = {case: [run_case(case, args.tree.resolve(), args.arch, args.manifest.resolve(), exported, tmp)
                       for _ in range(args.reps)] for case in ("compile", "exported")}
        imports = {dsl: statistics.median(import_seconds(args.tree.resolve(), dsl, tmp) for _ in range(args.reps))
                   for dsl in ("importable", "hidden")}
    for run in runs["exported"]:
        if run["stats"] != {"loaded": len(entries)}:
            raise SystemExit(f"an exported run did not load every kernel: {run['stats']}")
    names = [f"{e['getter'].rsplit('.', 1)[1]} {json.dumps(e['args'], sort_keys=True)}" for e in entries]
    medians = {case: [statistics.median(r["seconds"][i] for r in rs) for i in range(len(entries))]
               for case, rs in runs.items()}
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
              "arch": args.arch, "manifest": str(args.manifest), "reps": args.reps, "kernels": names,
              "median_s": medians, "import_flashinfer_median_s": imports, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cute_dsl_host_compile.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# CuTe-DSL kernels for {args.arch} ({args.manifest.name}), host side of the first use, "
             f"{platform.machine()} ({os.cpu_count()} cores), median of {args.reps} fresh processes", "",
             "| kernel | cute.compile (s) | exported, found and loaded (s) | compile / exported |",
             "|---|---:|---:|---:|"]
    for i, name in enumerate(names):
        compiled, loaded = medians["compile"][i], medians["exported"][i]
        lines.append(f"| `{name}` | {compiled:.3f} | {loaded:.4f} | {compiled / loaded:.0f}x |")
    lines += ["", f"Total: {sum(medians['compile']):.2f} s compiling against {sum(medians['exported']):.3f} s "
              "loading. The GPU side of the first call (cubin load, launch) is not in these numbers.", "",
              f"`import flashinfer`: {imports['importable']:.2f} s with CuTe DSL importable, "
              f"{imports['hidden']:.2f} s with it hidden (median of {args.reps} fresh processes)."]
    (args.out / "cute_dsl_host_compile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
