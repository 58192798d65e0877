"""Export the CuTe-DSL kernels of an AOT manifest (its `cute_dsl` entries) for one arch, on a box without
that GPU: what `make wheel` puts under the jit-cache wheel's `cute_dsl/<arch>/`.

Each entry is `{"getter": "<module>.<function>", "args": {...}}`, as aot_build/trace_jit_specs.py traced
it; the getter is a `flashinfer.cute_dsl.kernel_cache.ExportedKernelCache` and `getter.export(out,
**args)` compiles the kernel with the DSL targeting the arch and writes it with its key. The process sees
the device as the tracer's `FakeDevice` model reports it, so the key's device facts are the ones the
traced call paths computed.

    python aot_build/export_cute_dsl.py --tree <staged tree> --arch 12.1 \
        --manifest aot_build/manifests/sm121_decode.json --out <dir>
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def export_entries(manifest: Path, out: Path, arch: str) -> list[dict[str, object]]:
    from trace_jit_specs import DEVICES, FakeDevice

    FakeDevice(DEVICES[arch])
    exported = []
    for entry in json.loads(manifest.read_text()).get("cute_dsl", []):
        module, _, name = str(entry["getter"]).rpartition(".")
        getter = getattr(importlib.import_module(module), name)
        obj = getter.export(out, **entry["args"])
        meta = json.loads(obj.with_suffix(".json").read_text())
        exported.append({"object": str(obj.relative_to(out)), "bytes": obj.stat().st_size, **meta})
    return exported


def export_in_fresh_process(tree: Path, manifest: Path, out: Path, arch: str) -> list[dict[str, object]]:
    """Run the export in a process of its own: the DSL reads its target (CUTE_DSL_ARCH) at import."""
    from trace_jit_specs import dsl_arch

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(HERE)]), CUTE_DSL_ARCH=dsl_arch(arch))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--tree", str(tree), "--arch", arch,
                           "--manifest", str(manifest), "--out", str(out), "--worker"],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"exporting the CuTe-DSL kernels of {manifest} failed:\n{proc.stderr[-6000:]}")
    return list(json.loads(proc.stdout.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, required=True, help="FlashInfer source tree to import")
    parser.add_argument("--arch", required=True, help="a trace_jit_specs.DEVICES arch: 12.1, 12.0, 9.0")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path[:0] = [str(args.tree.resolve()), str(HERE)]
    if args.worker:
        print(json.dumps(export_entries(args.manifest, args.out, args.arch)))
    else:
        # one JSON line, last: what `make wheel` reads (fiseries.cute_dsl.export_kernels)
        print(json.dumps(export_in_fresh_process(args.tree.resolve(), args.manifest.resolve(),
                                                 args.out.resolve(), args.arch)))


if __name__ == "__main__":
    main()
