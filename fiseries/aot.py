"""The AOT modules: built with upstream's `flashinfer.aot --manifest`, checked (host ELF, SASS targets,
resources) and packed into the flashinfer-jit-cache wheel."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from . import cute_dsl
from .cuda import (archs_in, cuda_arch_names, find_cuobjdump, resource_usage, resources_in, run_logged,
                   sass_matches)
from .errors import SeriesError
from .layout import Layout
from .toolchain import ELF_MACHINE, aot_build_env, elf_machine
from .wheelfile import write_wheel

# The manifests a plain build takes: the traced SM121 decode set, and the norm modules (other arches).
DECODE_MANIFEST = Path("aot_build/manifests/sm121_decode.json")
NORM_MANIFEST = Path("aot_build/manifests/default.json")


def ninja_seconds_per_module(ninja_log: Path, names: list[str]) -> dict[str, float]:
    """Compile + link seconds per module, summed over its ninja edges (serial time, not wall)."""
    seconds = dict.fromkeys(names, 0.0)
    for line in ninja_log.read_text().splitlines():
        fields = line.split("\t")
        if line.startswith("#") or len(fields) < 4:
            continue
        parts = Path(fields[3]).parts
        for name in names:
            if name in parts:
                seconds[name] += (int(fields[1]) - int(fields[0])) / 1000
                break
    return {name: round(value, 1) for name, value in seconds.items()}


def build_aot_modules(layout: Layout, stage: Path, archs: list[str], manifest: Path,
                      out: Path, arch: str) -> list[dict[str, object]]:
    """Compile the manifest's modules with upstream's `flashinfer.aot --manifest` in the staged
    source tree; check each .so's SASS targets and record its size, build time and resources."""
    work = layout.build / "aot"
    build_dir = work / "build"
    for stale in (build_dir, out):
        if stale.exists():
            shutil.rmtree(stale)
    env = aot_build_env(work, stage, archs, arch)
    entries = json.loads(manifest.read_text())["modules"]
    names = [str(entry["name"]) for entry in entries]
    # a manifest may name one of the project's own (test-only) generators as flashinfer.jit.<name>:
    # it is placed in the staged package for this build only
    own = layout.lock.root / "aot_build" / "generators"
    modules = {str(entry["generator"]).partition(":")[0].removeprefix("flashinfer.jit.") for entry in entries}
    placed = [stage / "flashinfer" / "jit" / f"{m}.py" for m in sorted(modules) if (own / f"{m}.py").is_file()]
    for target in placed:
        if target.exists():
            raise SeriesError(f"{own / target.name} would replace upstream's {target}: rename the generator")
        shutil.copyfile(own / target.name, target)
    try:
        run_logged([sys.executable, "-m", "flashinfer.aot", "--manifest", str(manifest.resolve()),
                    "--out-dir", str(out.resolve()), "--build-dir", str(build_dir.resolve())],
                   env, f"AOT build of {manifest.name} for {' '.join(archs)}", cwd=stage)
    finally:
        for target in placed:
            target.unlink()
    seconds = ninja_seconds_per_module(build_dir / "cached_ops" / ".ninja_log", names)
    return inspect_aot_modules(out, names, archs, arch, seconds)


def inspect_aot_modules(out: Path, names: list[str], archs: list[str], arch: str,
                        seconds: dict[str, float]) -> list[dict[str, object]]:
    """Check each built module's host ELF and SASS targets; record size, build time, resources."""
    wanted = {name.replace("sm", "sm_", 1) for name in cuda_arch_names(archs)}
    cuobjdump = find_cuobjdump()
    modules: list[dict[str, object]] = []
    for name in names:
        so = out / name / f"{name}.so"
        if not so.is_file():
            raise SeriesError(f"the AOT build did not produce {name}/{name}.so")
        if elf_machine(so) != ELF_MACHINE[arch]:
            raise SeriesError(f"AOT module {so.name} is not a {arch} shared object (ELF e_machine "
                              f"{elf_machine(so)}); the host toolchain was not the {arch} one")
        usage = resource_usage(so, cuobjdump)
        found = archs_in(usage)
        if not sass_matches(found, wanted):
            raise SeriesError(f"AOT module {so.name} holds SASS for {sorted(found)}, expected exactly "
                              f"{sorted(wanted)} (or their family cubins, e.g. sm_120f for sm_121a); "
                              "the build did not target the requested archs")
        resources = resources_in(usage).values()
        modules.append({
            "module": name, "compile_seconds": seconds[name], "bytes": so.stat().st_size,
            "sass": sorted(found), "kernels": len(resources),
            "max_registers": max((r["REG"] for r in resources), default=0),
            "max_shared_bytes": max((r["SHARED"] for r in resources), default=0),
            "kernels_with_local_memory": sum(1 for r in resources if r["LOCAL"] or r["STACK"]),
        })
    return modules


def build_aot_wheel(layout: Layout, version: str, archs: list[str], modules_dir: Path,
                    modules: list[dict[str, object]], dist: Path, arch: str, cute_dsl_dir: Path) -> Path:
    """The jit-cache wheel: the modules (`<name>/<name>.so`) and the exported CuTe-DSL kernels
    (`cute_dsl/<arch>/`) under flashinfer_jit_cache/jit_cache/."""
    package = layout.lock.root / "aot_build" / "package" / "flashinfer_jit_cache"
    manifest = {"version": version, "upstream_commit": layout.lock.main.revision,
                "cuda_architectures": cuda_arch_names(archs),
                "modules": sorted(str(m["module"]) for m in modules)}
    files = {"flashinfer_jit_cache/__init__.py": (package / "__init__.py").read_bytes(),
             "flashinfer_jit_cache/jit_cache/manifest.json": (json.dumps(manifest, indent=2) + "\n").encode()}
    for so in sorted(modules_dir.rglob("*.so")):
        files[f"flashinfer_jit_cache/jit_cache/{so.relative_to(modules_dir)}"] = so.read_bytes()
    files |= cute_dsl.wheel_files(cute_dsl_dir, "flashinfer_jit_cache/jit_cache/")
    tag = f"py3-none-linux_{arch}"
    return write_wheel(dist, "flashinfer-jit-cache", version, tag, files)
