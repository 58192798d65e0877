"""`make wheel`: the patched flashinfer-python wheel and the AOT module wheel, with a manifest."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .coverage import require_coverage
from .cuda import cuda_arch_names, elf_archs, find_cuobjdump, kernel_resources, nvidia_cu13_dir, run_logged
from .errors import SeriesError
from .series import read_series
from .tree import Layout, overlay_files



@dataclass(frozen=True)
class Wheels:
    patched: Path
    aot: Path
    manifest: Path


def series_hash(layout: Layout) -> str:
    """sha256 over every target's patches (in order) and overlay files: what the wheel was built from."""
    digest = hashlib.sha256()
    for target in layout.lock.targets:
        for patch in read_series(layout.series_file(target)):
            digest.update(f"{target.name}/{patch.name}\0".encode() + patch.read_bytes())
        overlay = layout.overlay_dir(target)
        if overlay is not None and overlay.is_dir():
            for rel in overlay_files(overlay):
                digest.update(f"{target.overlay}/{rel}\0".encode() + (overlay / rel).read_bytes())
    return digest.hexdigest()


def patch_count(layout: Layout) -> int:
    return sum(len(read_series(layout.series_file(t))) for t in layout.lock.targets)


def local_version(layout: Layout) -> str:
    return f"{layout.lock.main.version}+sm12x.{patch_count(layout)}"


def stage_tree(layout: Layout, dest: Path, version: str) -> None:
    """Copy the applied tree without git metadata and stamp upstream's _build_meta.py."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(layout.tree, dest, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    (dest / "flashinfer" / "_build_meta.py").write_text(
        '"""Build metadata for flashinfer package."""\n'
        f'__version__ = "{version}"\n'
        f'__git_commit__ = "{layout.lock.main.revision}"\n'
    )


def build_patched_wheel(stage: Path, dist: Path) -> Path:
    """Build with upstream's own backend (build_backend.py), no isolation: the venv pins its deps."""
    before = set(dist.glob("flashinfer_python-*.whl"))
    env = dict(os.environ, BUILD_NVEP="0", BUILD_NIXL_EP="0", BUILD_NCCL_EP="0")
    run_logged([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "--quiet", "-w", str(dist), str(stage)], env, "building the patched wheel")
    made = sorted(set(dist.glob("flashinfer_python-*.whl")) - before) or sorted(dist.glob("flashinfer_python-*.whl"))
    return made[-1]


def driver_stub_dir(work: Path) -> Path:
    """A link-time stand-in for the CUDA driver (`-lcuda`), as the toolkit's lib64/stubs provides.

    The JIT link line asks for -lcuda; on a build box without a driver or the toolkit's stubs
    we link against an empty libcuda.so whose soname is libcuda.so.1, so the module records
    the same DT_NEEDED entry and binds to the real driver when it is loaded on a GPU machine.
    """
    stub = work / "driver-stub"
    lib = stub / "libcuda.so"
    if not lib.exists():
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "empty.c").write_text("/* link-time stub for libcuda.so.1 */\n")
        run_logged(["cc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(lib),
                    str(stub / "empty.c")], dict(os.environ), "building the libcuda link stub")
    return stub


def library_headers_dir(work: Path) -> Path:
    """Only the cuBLAS/cuRAND headers from the pinned PyPI wheels, for CPATH.

    nvidia/cu13/include also holds crt/ headers of other CUDA versions that must not shadow
    the toolkit's own, so the build sees links to just these libraries' headers.
    """
    dest = work / "library-headers"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    source = nvidia_cu13_dir() / "include"
    for header in sorted(source.glob("*.h")):
        if header.name.startswith(("cublas", "curand")):
            (dest / header.name).symlink_to(header)
    return dest


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


def aot_build_env(work: Path, stage: Path, archs: list[str]) -> dict[str, str]:
    """Environment for FlashInfer's own AOT build in the staged source tree."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the venv's ninja
    return dict(os.environ, PATH=path, PYTHONPATH=str(stage), FLASHINFER_CUDA_ARCH_LIST=" ".join(archs),
                CUDA_HOME=os.environ.get("CUDA_HOME", "/usr/local/cuda"),
                CPATH=str(library_headers_dir(work)),
                LIBRARY_PATH=str(driver_stub_dir(work)),
                MAX_JOBS=os.environ.get("MAX_JOBS", str(os.cpu_count() or 1)))


def build_aot_modules(layout: Layout, stage: Path, archs: list[str], manifest: Path,
                      out: Path) -> list[dict[str, object]]:
    """Compile the manifest's modules with upstream's `flashinfer.aot --manifest` in the staged
    source tree; check each .so's SASS targets and record its size, build time and resources."""
    work = layout.build / "aot"
    build_dir = work / "build"
    for stale in (build_dir, out):
        if stale.exists():
            shutil.rmtree(stale)
    env = aot_build_env(work, stage, archs)
    names = [str(entry["name"]) for entry in json.loads(manifest.read_text())["modules"]]
    run_logged([sys.executable, "-m", "flashinfer.aot", "--manifest", str(manifest.resolve()),
                "--out-dir", str(out.resolve()), "--build-dir", str(build_dir.resolve())],
               env, f"AOT build of {manifest.name} for {' '.join(archs)}", cwd=stage)
    seconds = ninja_seconds_per_module(build_dir / "cached_ops" / ".ninja_log", names)
    wanted = {name.replace("sm", "sm_", 1) for name in cuda_arch_names(archs)}
    cuobjdump = find_cuobjdump()
    modules: list[dict[str, object]] = []
    for name in names:
        so = out / name / f"{name}.so"
        if not so.is_file():
            raise SeriesError(f"AOT build of {manifest.name} did not produce {name}/{name}.so")
        found = elf_archs(so, cuobjdump)
        if found != wanted:
            raise SeriesError(f"AOT module {so.name} holds SASS for {sorted(found)}, expected exactly "
                              f"{sorted(wanted)}; the build did not target the requested archs")
        resources = kernel_resources(so).values()
        modules.append({
            "module": name, "compile_seconds": seconds[name], "bytes": so.stat().st_size,
            "sass": sorted(found), "kernels": len(resources),
            "max_registers": max((r["REG"] for r in resources), default=0),
            "max_shared_bytes": max((r["SHARED"] for r in resources), default=0),
            "kernels_with_local_memory": sum(1 for r in resources if r["LOCAL"] or r["STACK"]),
        })
    return modules


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def write_wheel(dist: Path, name: str, version: str, tag: str, files: dict[str, bytes]) -> Path:
    """A minimal, reproducible wheel (PEP 427) holding `files`."""
    dist_info = f"{name.replace('-', '_')}-{version}.dist-info"
    meta = {
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 "Summary: AOT-compiled FlashInfer modules (flashinfer-sm12x)\n".encode(),
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: fiseries\nRoot-Is-Purelib: false\nTag: {tag}\n".encode(),
    }
    entries = {**files, **meta}
    record = "\n".join(_record_line(p, d) for p, d in sorted(entries.items()))
    record += f"\n{dist_info}/RECORD,,\n"
    path = dist / f"{name.replace('-', '_')}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc, data in sorted(entries.items()) + [(f"{dist_info}/RECORD", record.encode())]:
            info = zipfile.ZipInfo(arc, date_time=(2000, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if arc.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


def build_aot_wheel(layout: Layout, version: str, archs: list[str], modules_dir: Path,
                    modules: list[dict[str, object]], dist: Path) -> Path:
    package = layout.lock.root / "aot_build" / "package" / "flashinfer_jit_cache"
    manifest = {"version": version, "upstream_commit": layout.lock.main.revision,
                "cuda_architectures": cuda_arch_names(archs),
                "modules": sorted(str(m["module"]) for m in modules)}
    files = {"flashinfer_jit_cache/__init__.py": (package / "__init__.py").read_bytes(),
             "flashinfer_jit_cache/jit_cache/manifest.json": (json.dumps(manifest, indent=2) + "\n").encode()}
    for so in sorted(modules_dir.rglob("*.so")):
        files[f"flashinfer_jit_cache/jit_cache/{so.relative_to(modules_dir)}"] = so.read_bytes()
    tag = f"py3-none-linux_{platform.machine()}"
    return write_wheel(dist, "flashinfer-jit-cache", version, tag, files)


def build_wheels(layout: Layout, archs: list[str], manifest: Path, dist: Path) -> Wheels:
    """Both wheels and dist/manifest.json from the applied build/tree."""
    dist.mkdir(parents=True, exist_ok=True)
    for stale in [*dist.glob("flashinfer_python-*.whl"), *dist.glob("flashinfer_jit_cache-*.whl")]:
        stale.unlink()
    version = local_version(layout)
    stage = layout.build / "stage" / "flashinfer"
    stage_tree(layout, stage, version)
    patched = build_patched_wheel(stage, dist)
    modules_dir = layout.build / "aot" / "modules"
    started = time.monotonic()
    modules = build_aot_modules(layout, stage, archs, manifest, modules_dir)
    aot_seconds = round(time.monotonic() - started, 1)
    aot = build_aot_wheel(layout, version, archs, modules_dir, modules, dist)
    trace = json.loads(manifest.read_text()).get("trace")
    coverage = require_coverage(aot, layout.lock.root / trace, archs) if trace else []
    record = {
        "version": version,
        "upstream": {"name": layout.lock.main.name, "version": layout.lock.main.version,
                     "commit": layout.lock.main.revision},
        "series_sha256": series_hash(layout),
        "patches": {t.name: [p.name for p in read_series(layout.series_file(t))] for t in layout.lock.targets},
        "archs": archs,
        "host_arch": platform.machine(),
        "aot_manifest": manifest.name,
        "aot_build": {"wall_seconds": aot_seconds, "jobs": int(os.environ.get("MAX_JOBS", os.cpu_count() or 1))},
        "modules": modules,
        "coverage": coverage,
        "wheels": {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in (patched, aot)},
    }
    out = dist / "manifest.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    return Wheels(patched, aot, out)
