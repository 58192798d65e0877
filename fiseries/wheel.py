"""`make wheel`: the patched flashinfer-python wheel and the AOT module wheel, with a manifest."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import SeriesError
from .series import read_series
from .tree import Layout, overlay_files

ARCH_RE = re.compile(r"^\d+\.\d+[af]?$")
ELF_ARCH = re.compile(r"\.(sm_\d+[af]?)\.cubin")


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


def cuda_arch_names(archs: list[str]) -> list[str]:
    """'12.1a' -> 'sm121a', as flashinfer.jit.env names provider targets."""
    for arch in archs:
        if not ARCH_RE.match(arch):
            raise SeriesError(f"ARCHS entry {arch!r} is not like 12.1a, 12.0a or 9.0a")
    return [f"sm{a.replace('.', '')}" for a in archs]


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


def run_logged(cmd: list[str], env: dict[str, str], what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SeriesError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def build_patched_wheel(stage: Path, dist: Path) -> Path:
    """Build with upstream's own backend (build_backend.py), no isolation: the venv pins its deps."""
    before = set(dist.glob("flashinfer_python-*.whl"))
    env = dict(os.environ, BUILD_NVEP="0", BUILD_NIXL_EP="0", BUILD_NCCL_EP="0")
    run_logged([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "--quiet", "-w", str(dist), str(stage)], env, "building the patched wheel")
    made = sorted(set(dist.glob("flashinfer_python-*.whl")) - before) or sorted(dist.glob("flashinfer_python-*.whl"))
    return made[-1]


def elf_archs(so: Path, cuobjdump: str) -> set[str]:
    out = run_logged([cuobjdump, "--list-elf", str(so)], dict(os.environ), f"cuobjdump --list-elf {so}")
    return set(ELF_ARCH.findall(out))


def kernel_resources(so: Path) -> dict[str, dict[str, int]]:
    """Per kernel (mangled name, arch-qualified): REG, STACK, SHARED, LOCAL from cuobjdump."""
    out = run_logged([find_cuobjdump(), "--dump-resource-usage", str(so)], dict(os.environ),
                     f"cuobjdump --dump-resource-usage {so}")
    resources: dict[str, dict[str, int]] = {}
    arch = ""
    kernel = ""
    for line in out.splitlines():
        if line.startswith("arch = "):
            arch = line.split("=", 1)[1].strip()
        elif line.strip().startswith("Function "):
            kernel = line.strip()[len("Function "):].rstrip(":")
        elif kernel and "REG:" in line:
            fields = dict(re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", line))
            resources[f"{arch}:{kernel}"] = {k: int(v) for k, v in fields.items()}
            kernel = ""
    return resources


def sass_opcodes(so: Path, workdir: Path) -> dict[str, int]:
    """Opcode (with modifiers) counts over every cubin in `so`, disassembled with nvdisasm."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    run_logged([find_cuobjdump(), "-xelf", "all", str(so.resolve())], dict(os.environ), f"extracting {so}", cwd=workdir)
    counts: dict[str, int] = {}
    for cubin in sorted(workdir.glob("*.cubin")):
        text = run_logged([str(nvidia_cu13_dir() / "bin" / "nvdisasm"), str(cubin)], dict(os.environ),
                          f"nvdisasm {cubin.name}")
        for opcode in re.findall(r"^\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", text, re.M):
            counts[opcode] = counts.get(opcode, 0) + 1
    return counts


def nvidia_cu13_dir() -> Path:
    """CUDA 13 pieces the system toolkit lacks (cuobjdump, cuBLAS headers), pinned from PyPI."""
    for entry in sys.path:
        candidate = Path(entry) / "nvidia" / "cu13"
        if candidate.is_dir():
            return candidate
    raise SeriesError("nvidia/cu13 (nvidia-cuda-cuobjdump, nvidia-cublas) is not installed: run `make venv`")


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


def find_cuobjdump() -> str:
    return str(nvidia_cu13_dir() / "bin" / "cuobjdump")


def build_aot_modules(layout: Layout, patched: Path, archs: list[str], manifest: Path,
                      out: Path) -> list[dict[str, object]]:
    """Compile the manifest's modules inside the patched package; check each .so's SASS targets."""
    work = layout.build / "aot"
    site = work / "site"
    if site.exists():
        shutil.rmtree(site)
    with zipfile.ZipFile(patched) as wheel:
        wheel.extractall(site)
    if out.exists():
        shutil.rmtree(out)
    env = dict(os.environ, PYTHONPATH=str(site), FLASHINFER_CUDA_ARCH_LIST=" ".join(archs),
               FLASHINFER_WORKSPACE_BASE=str(work / "workspace"),
               CUDA_HOME=os.environ.get("CUDA_HOME", "/usr/local/cuda"),
               CPATH=str(library_headers_dir(work)),
               LIBRARY_PATH=str(driver_stub_dir(work)),
               MAX_JOBS=os.environ.get("MAX_JOBS", str(os.cpu_count() or 1)))
    script = layout.lock.root / "aot_build" / "build_modules.py"
    stdout = run_logged([sys.executable, str(script), "--manifest", str(manifest), "--out", str(out)],
                        env, f"AOT build of {manifest.name} for {' '.join(archs)}")
    modules = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    wanted = {name.replace("sm", "sm_", 1) for name in cuda_arch_names(archs)}
    cuobjdump = find_cuobjdump()
    for module in modules:
        so = out / str(module["module"]) / f"{module['module']}.so"
        found = elf_archs(so, cuobjdump)
        if found != wanted:
            raise SeriesError(f"AOT module {so.name} holds SASS for {sorted(found)}, expected exactly "
                              f"{sorted(wanted)}; the build did not target the requested archs")
        module["sass"] = sorted(found)
        resources = kernel_resources(so).values()
        module["kernels"] = len(resources)
        module["max_registers"] = max((r["REG"] for r in resources), default=0)
        module["max_shared_bytes"] = max((r["SHARED"] for r in resources), default=0)
        module["kernels_with_local_memory"] = sum(1 for r in resources if r["LOCAL"] or r["STACK"])
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
    version = local_version(layout)
    stage = layout.build / "stage" / "flashinfer"
    stage_tree(layout, stage, version)
    patched = build_patched_wheel(stage, dist)
    modules_dir = layout.build / "aot" / "modules"
    modules = build_aot_modules(layout, patched, archs, manifest, modules_dir)
    aot = build_aot_wheel(layout, version, archs, modules_dir, modules, dist)
    record = {
        "version": version,
        "upstream": {"name": layout.lock.main.name, "version": layout.lock.main.version,
                     "commit": layout.lock.main.revision},
        "series_sha256": series_hash(layout),
        "patches": {t.name: [p.name for p in read_series(layout.series_file(t))] for t in layout.lock.targets},
        "archs": archs,
        "host_arch": platform.machine(),
        "aot_manifest": manifest.name,
        "modules": modules,
        "wheels": {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in (patched, aot)},
    }
    out = dist / "manifest.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    return Wheels(patched, aot, out)
