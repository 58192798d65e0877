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
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def getter_of(entry: dict[str, Any]) -> Any:
    """The kernel getter a manifest or trace entry names (`"getter": "<module>.<function>"`)."""
    module, _, name = str(entry["getter"]).rpartition(".")
    return getattr(importlib.import_module(module), name)


def export_entries(manifest: Path, out: Path, arch: str) -> list[dict[str, object]]:
    from trace_jit_specs import DEVICES, FakeDevice

    FakeDevice(DEVICES[arch])
    exported = []
    for entry in json.loads(manifest.read_text()).get("cute_dsl", []):
        obj = getter_of(entry).export(out, **entry["args"])
        meta = json.loads(obj.with_suffix(".json").read_text())
        exported.append({"object": str(obj.relative_to(out)), "bytes": obj.stat().st_size, **meta})
    return exported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, required=True, help="FlashInfer source tree to import")
    parser.add_argument("--arch", required=True, help="a trace_jit_specs.DEVICES arch: 12.1, 12.0, 9.0")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sys.path[:0] = [str(args.tree.resolve()), str(HERE)]
    from trace_jit_specs import dsl_arch

    os.environ["CUTE_DSL_ARCH"] = dsl_arch(args.arch)  # read once, when the DSL is first imported (below)
    # one JSON line, last: what `make wheel` reads (fiseries.cute_dsl.export_kernels)
    print(json.dumps(export_entries(args.manifest.resolve(), args.out.resolve(), args.arch)))


if __name__ == "__main__":
    main()
