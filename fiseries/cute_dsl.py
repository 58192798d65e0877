"""The CuTe-DSL part of the AOT wheel: the manifest's `cute_dsl` kernels exported ahead of time (patch 0008)
by aot_build/export_cute_dsl.py, checked (host ELF, SASS target) and placed under `cute_dsl/<arch>/`."""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from .cuda import embedded_cubins, find_cuobjdump, run_logged
from .errors import SeriesError
from .layout import Layout
from .toolchain import ELF_MACHINE, elf_machine

SUBDIR = "cute_dsl"
# CuTe DSL 4.8.1 refuses --enable-tvm-ffi with --host-target (CONFIG_INCOMPATIBLE_FLAGS), and
# FlashInfer's kernels are TVM-FFI functions: they are exported by a Python of the host they run on
CROSS_HOST = ("not exported: CuTe DSL cannot export a TVM-FFI kernel for another host CPU "
              "(--enable-tvm-ffi with --host-target is refused); build the wheel on a {host} machine, or give "
              "a {host} Python (DSL_PYTHON=, aot_build/qemu_aarch64_python.sh)")


def manifest_kernels(manifest: Path) -> list[dict[str, object]]:
    return list(json.loads(manifest.read_text()).get("cute_dsl", []))


def device_arch(arch: str) -> str:
    """A `make wheel` arch (12.1a) as the tracer's device model names it (12.1)."""
    return arch.removesuffix("a")


def export_kernels(layout: Layout, stage: Path, archs: list[str], manifest: Path, out: Path,
                   host: str, dsl_python: str | None = None) -> dict[str, object]:
    """Export every `cute_dsl` entry of `manifest` for each arch into `out/<sm_arch>/`; the record for
    dist/manifest.json. The exporter runs in `dsl_python` (a command: a Python of the `host` CPU with the
    pinned CuTe DSL and torch) or, by default, in this Python; a cross build without one exports nothing and
    says why."""
    kernels = manifest_kernels(manifest)
    if out.exists():
        shutil.rmtree(out)
    if not kernels:
        return {"kernels": []}
    if dsl_python is None and host != platform.machine():
        return {"kernels": [], "not_exported": CROSS_HOST.format(host=host), "wanted": len(kernels)}
    python = shlex.split(dsl_python) if dsl_python is not None else [sys.executable]
    script = layout.lock.root / "aot_build" / "export_cute_dsl.py"
    exported: list[dict[str, object]] = []
    cuobjdump = find_cuobjdump()
    with tempfile.TemporaryDirectory(prefix="cute-dsl-export-") as home:
        env = dict(os.environ, FLASHINFER_WORKSPACE_BASE=home)  # the DSL's and FlashInfer's caches stay here
        for arch in archs:
            printed = run_logged([*python, str(script), "--tree", str(stage), "--arch", device_arch(arch),
                                  "--manifest", str(manifest.resolve()), "--out", str(out.resolve())],
                                 env, f"exporting the CuTe-DSL kernels of {manifest.name} for {arch}")
            for record in json.loads(printed.splitlines()[-1]):
                obj = out / str(record["object"])
                check_object(obj, str(record["arch"]), host, cuobjdump, Path(home))
                exported.append(record)
    return {"kernels": exported}


def check_object(obj: Path, target: str, host: str, cuobjdump: str, work: Path) -> None:
    """An exported kernel is a `host` object holding one cubin of exactly the `target` SASS."""
    if elf_machine(obj) != ELF_MACHINE[host]:
        raise SeriesError(f"{obj.name} is not a {host} object (ELF e_machine {elf_machine(obj)})")
    cubins = embedded_cubins(obj)
    if len(cubins) != 1:
        raise SeriesError(f"{obj.name} holds {len(cubins)} cubins, expected 1")
    cubin = work / f"{obj.stem}.cubin"
    cubin.write_bytes(cubins[0])
    sass = run_logged([cuobjdump, "--dump-sass", str(cubin)], dict(os.environ), f"cuobjdump --dump-sass {cubin}")
    cubin.unlink()
    found = set(re.findall(r"^\s*code for (sm_\w+)", sass, re.M))
    if found != {target}:
        raise SeriesError(f"{obj.name} holds SASS for {sorted(found)}, expected exactly {target}")


def wheel_files(out: Path, prefix: str) -> dict[str, bytes]:
    """The exported kernels as jit-cache wheel entries under `prefix` (flashinfer_jit_cache/jit_cache/)."""
    if not out.is_dir():
        return {}
    return {f"{prefix}{SUBDIR}/{p.relative_to(out)}": p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file()}


KEY_FIELDS = ("getter", "args", "arch", "device")


def key_of(meta: dict[str, object]) -> str:
    """An exported kernel's key (as traced, or from its .json in a wheel) in one comparable form."""
    return json.dumps({k: meta[k] for k in KEY_FIELDS}, sort_keys=True)
