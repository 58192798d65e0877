"""`make wheel`: the patched flashinfer-python wheel and the AOT module wheel, with a manifest."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .aot import build_aot_modules, build_aot_wheel
from .coverage import require_coverage
from .cuda import run_logged
from .cute_dsl import export_kernels
from .layout import Layout
from .series import read_series
from .toolchain import check_host_arch
from .tree import overlay_files


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


def build_wheels(layout: Layout, archs: list[str], manifest: Path, dist: Path, host: str,
                 dsl_python: str | None = None) -> Wheels:
    """Both wheels and dist/manifest.json from the applied build/tree; `dsl_python`: the command of a Python
    of the `host` CPU that exports the CuTe-DSL kernels (fiseries.cute_dsl.export_kernels)."""
    dist.mkdir(parents=True, exist_ok=True)
    for stale in [*dist.glob("flashinfer_python-*.whl"), *dist.glob("flashinfer_jit_cache-*.whl")]:
        stale.unlink()
    version = local_version(layout)
    stage = layout.build / "stage" / "flashinfer"
    stage_tree(layout, stage, version)
    patched = build_patched_wheel(stage, dist)
    modules_dir = layout.build / "aot" / "modules"
    arch = check_host_arch(host)
    started = time.monotonic()
    modules = build_aot_modules(layout, stage, archs, manifest, modules_dir, arch)
    aot_seconds = round(time.monotonic() - started, 1)
    cute_dsl_dir = layout.build / "aot" / "cute_dsl"
    kernels = export_kernels(layout, stage, archs, manifest, cute_dsl_dir, arch, dsl_python)
    aot = build_aot_wheel(layout, version, archs, modules_dir, modules, dist, arch, cute_dsl_dir)
    trace = json.loads(manifest.read_text()).get("trace")
    not_exported = kernels.get("not_exported")
    coverage = require_coverage(aot, layout.lock.root / trace, archs,
                                str(not_exported) if not_exported else None) if trace else []
    record = {
        "version": version,
        "upstream": {"name": layout.lock.main.name, "version": layout.lock.main.version,
                     "commit": layout.lock.main.revision},
        "series_sha256": series_hash(layout),
        "patches": {t.name: [p.name for p in read_series(layout.series_file(t))] for t in layout.lock.targets},
        "archs": archs,
        "host_arch": arch,
        "build_arch": platform.machine(),
        "aot_manifest": manifest.name,
        "aot_build": {"wall_seconds": aot_seconds, "jobs": int(os.environ.get("MAX_JOBS", os.cpu_count() or 1))},
        "modules": modules,
        "cute_dsl": kernels,
        "coverage": coverage,
        "wheels": {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in (patched, aot)},
    }
    out = dist / "manifest.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    return Wheels(patched, aot, out)
