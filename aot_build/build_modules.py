"""Compile the JitSpecs named by an AOT manifest with FlashInfer's own JIT machinery.

Runs inside the patched flashinfer-python (PYTHONPATH set by fiseries.wheel), with
FLASHINFER_CUDA_ARCH_LIST naming the targets and FLASHINFER_WORKSPACE_BASE a scratch dir.
Copies each module to <out>/<name>/<name>.so and prints one JSON line per module.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import time
from pathlib import Path


def build(manifest: Path, out: Path) -> None:
    entries = json.loads(manifest.read_text())["modules"]
    for entry in entries:
        module_name, _, func = entry["generator"].partition(":")
        spec = getattr(importlib.import_module(module_name), func)(**entry.get("args", {}))
        if spec.name != entry["name"]:
            raise SystemExit(f"{entry['generator']} made JitSpec {spec.name!r}, manifest says {entry['name']!r}")
        start = time.monotonic()
        spec.build(verbose=False)
        dest = out / spec.name / f"{spec.name}.so"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(spec.jit_library_path, dest)
        print(json.dumps({"module": spec.name, "seconds": round(time.monotonic() - start, 1),
                          "bytes": dest.stat().st_size}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    build(args.manifest, args.out)
