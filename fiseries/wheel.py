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
from .cuda import (archs_in, cuda_arch_names, find_cuobjdump, nvidia_cu13_dir, resource_usage, resources_in,
                   run_logged, sass_matches)
from .errors import SeriesError
from .series import read_series
from .layout import Layout
from .tree import overlay_files

# Cross build (--host-arch aarch64 on an x86_64 box): the host half of every module (.so, nvcc's host
# stub objects) is compiled and linked by Debian's aarch64 cross g++; nvcc/cicc/ptxas stay the x86_64
# toolkit's (device code does not depend on the build machine). See aot_build/CROSS.md.
CROSS_TRIPLE = {"aarch64": "aarch64-linux-gnu"}
# aarch64 CUDA link-time libraries, pinned with hashes (`pip download --require-hashes`).
CROSS_WHEELS = {"aarch64": [
    ("nvidia-cuda-runtime==13.0.96",  # libcudart.so.13 (+ headers, byte-identical to the toolkit's)
     "ef9bcbe90493a2b9d810e43d249adb3d02e98dd30200d86607d8d02687c43f55"),
    ("nvidia-cuda-nvrtc==13.0.88",  # libnvrtc.so.13 (fused_moe_120 links -lnvrtc)
     "d27f20a0ca67a4bb34268a5e951033496c5b74870b868bacd046b1b8e0c3267b"),
]}
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}  # e_machine: EM_X86_64, EM_AARCH64



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


def check_host_arch(arch: str) -> str:
    """The machine the AOT modules run on (`--host-arch`): this one, or aarch64 cross-built on x86_64."""
    if arch != platform.machine() and (platform.machine(), arch) != ("x86_64", "aarch64"):
        raise SeriesError(f"host arch {arch} on a {platform.machine()} build machine: only x86_64 -> aarch64 "
                          "cross builds are supported")
    return arch


def elf_machine(so: Path) -> int:
    header = so.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        raise SeriesError(f"{so} is not an ELF file")
    return int.from_bytes(header[18:20], "little")


def cross_cuda_home(work: Path, arch: str) -> Path:
    """A CUDA_HOME for cross builds: the toolkit's bin/, nvvm/ and include/ (links), and under
    targets/<arch>-linux/lib (= lib64) the pinned aarch64 libcudart/libnvrtc and a libcuda stub.

    nvcc, given an aarch64 -ccbin, looks for targets/aarch64-linux/{include,lib}; the links in bin/
    make nvcc take this directory as its TOP (it resolves nvcc.profile next to argv[0])."""
    toolkit = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))
    home = work / f"cuda-{arch}"
    if home.exists():
        shutil.rmtree(home)
    lib = home / "targets" / f"{arch}-linux" / "lib"
    (lib / "stubs").mkdir(parents=True)
    (home / "bin").mkdir()
    for tool in sorted((toolkit / "bin").iterdir()):
        (home / "bin" / tool.name).symlink_to(tool)
    for name in ("nvvm", "include"):
        (home / name).symlink_to(toolkit / name)
    (lib.parent / "include").symlink_to(toolkit / "include")
    (home / "lib64").symlink_to(lib.relative_to(home))
    wheels = work / f"wheels-{arch}"
    wheels.mkdir(parents=True, exist_ok=True)
    requirements = wheels / "requirements.txt"
    requirements.write_text("".join(f"{spec} --hash=sha256:{digest}\n" for spec, digest in CROSS_WHEELS[arch]))
    run_logged([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                "--require-hashes", "--platform", f"manylinux2014_{arch}", "--python-version", "3.11",
                "-d", str(wheels), "-r", str(requirements)], dict(os.environ), f"downloading {arch} CUDA libraries")
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                if member.startswith("nvidia/cu13/lib/lib") and ".so" in member:
                    target = lib / Path(member).name
                    target.write_bytes(zf.read(member))
                    short = target.name.split(".so")[0] + ".so"  # libcudart.so.13 -> libcudart.so
                    if short != target.name and not (lib / short).exists():
                        (lib / short).symlink_to(target.name)
    stub = lib / "stubs"
    (stub / "empty.c").write_text("/* link-time stub for libcuda.so.1 */\n")
    run_logged([f"{CROSS_TRIPLE[arch]}-gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o",
                str(stub / "libcuda.so"), str(stub / "empty.c")], dict(os.environ), f"building the {arch} libcuda stub")
    return home


def cross_binutils_dir(work: Path, arch: str) -> Path:
    """`ld` and `objcopy` of the target, first on PATH: tvm_ffi.utils.embed_cubin (modules with
    embedded cubins) runs them by plain name to wrap a cubin into a host object."""
    bindir = work / f"binutils-{arch}"
    bindir.mkdir(parents=True, exist_ok=True)
    for tool in ("ld", "objcopy"):
        link = bindir / tool
        if not link.exists():
            found = shutil.which(f"{CROSS_TRIPLE[arch]}-{tool}")
            if found is None:
                raise SeriesError(f"{CROSS_TRIPLE[arch]}-{tool} not found: apt-get install g++-{CROSS_TRIPLE[arch]}")
            link.symlink_to(found)
    return bindir


def link_libraries_dir(work: Path) -> Path:
    """Link-time libraries the minimal toolkit lacks, for LIBRARY_PATH: a stand-in for the CUDA
    driver (`-lcuda`, as the toolkit's lib64/stubs provides) and the pinned NVRTC (`-lnvrtc`).

    On a build box without a driver or the toolkit's stubs we link against an empty libcuda.so
    whose soname is libcuda.so.1, so the module records the same DT_NEEDED entry and binds to the
    real driver when it is loaded on a GPU machine; libnvrtc.so links to the wheel's libnvrtc.so.13.
    """
    stub = work / "link-libraries"
    lib = stub / "libcuda.so"
    if not lib.exists():
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "empty.c").write_text("/* link-time stub for libcuda.so.1 */\n")
        run_logged(["cc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(lib),
                    str(stub / "empty.c")], dict(os.environ), "building the libcuda link stub")
    nvrtc = stub / "libnvrtc.so"
    if not nvrtc.is_symlink():
        nvrtc.symlink_to(nvidia_cu13_dir() / "lib" / "libnvrtc.so.13")
    return stub


def library_headers_dir(work: Path) -> Path:
    """Only the cuBLAS/cuRAND/NVRTC headers from the pinned PyPI wheels, for CPATH.

    nvidia/cu13/include also holds crt/ headers of other CUDA versions that must not shadow
    the toolkit's own, so the build sees links to just these libraries' headers.
    """
    dest = work / "library-headers"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    source = nvidia_cu13_dir() / "include"
    for header in sorted(source.glob("*.h")):
        if header.name.startswith(("cublas", "curand", "nvrtc")):
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


def aot_build_env(work: Path, stage: Path, archs: list[str], arch: str) -> dict[str, str]:
    """Environment for FlashInfer's own AOT build in the staged source tree; for a cross build
    (arch != this machine) FlashInfer's own knobs select the target toolchain: CC is passed to
    nvcc as -ccbin (and makes nvcc pick targets/<arch>-linux), CXX links, CUDA_HOME gives -L."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the venv's ninja
    env = dict(os.environ, PATH=path, PYTHONPATH=str(stage), FLASHINFER_CUDA_ARCH_LIST=" ".join(archs),
               CUDA_HOME=os.environ.get("CUDA_HOME", "/usr/local/cuda"),
               CPATH=str(library_headers_dir(work)),
               LIBRARY_PATH=str(link_libraries_dir(work)),
               MAX_JOBS=os.environ.get("MAX_JOBS", str(os.cpu_count() or 1)))
    if arch != platform.machine():
        compiler = shutil.which(f"{CROSS_TRIPLE[arch]}-g++")
        if compiler is None:
            raise SeriesError(f"host arch {arch} needs {CROSS_TRIPLE[arch]}-g++: "
                              f"apt-get install g++-{CROSS_TRIPLE[arch]}")
        env.update(CC=compiler, CXX=compiler, CUDA_HOME=str(cross_cuda_home(work, arch)),
                   PATH=f"{cross_binutils_dir(work, arch)}{os.pathsep}{path}")
        env.pop("LIBRARY_PATH")  # x86_64 libcuda stub and libnvrtc; the aarch64 ones are in $CUDA_HOME/lib64
    return env


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
    names = [str(entry["name"]) for entry in json.loads(manifest.read_text())["modules"]]
    run_logged([sys.executable, "-m", "flashinfer.aot", "--manifest", str(manifest.resolve()),
                "--out-dir", str(out.resolve()), "--build-dir", str(build_dir.resolve())],
               env, f"AOT build of {manifest.name} for {' '.join(archs)}", cwd=stage)
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
                    modules: list[dict[str, object]], dist: Path, arch: str) -> Path:
    package = layout.lock.root / "aot_build" / "package" / "flashinfer_jit_cache"
    manifest = {"version": version, "upstream_commit": layout.lock.main.revision,
                "cuda_architectures": cuda_arch_names(archs),
                "modules": sorted(str(m["module"]) for m in modules)}
    files = {"flashinfer_jit_cache/__init__.py": (package / "__init__.py").read_bytes(),
             "flashinfer_jit_cache/jit_cache/manifest.json": (json.dumps(manifest, indent=2) + "\n").encode()}
    for so in sorted(modules_dir.rglob("*.so")):
        files[f"flashinfer_jit_cache/jit_cache/{so.relative_to(modules_dir)}"] = so.read_bytes()
    tag = f"py3-none-linux_{arch}"
    return write_wheel(dist, "flashinfer-jit-cache", version, tag, files)


def build_wheels(layout: Layout, archs: list[str], manifest: Path, dist: Path, host: str) -> Wheels:
    """Both wheels and dist/manifest.json from the applied build/tree."""
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
    aot = build_aot_wheel(layout, version, archs, modules_dir, modules, dist, arch)
    trace = json.loads(manifest.read_text()).get("trace")
    coverage = require_coverage(aot, layout.lock.root / trace, archs) if trace else []
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
        "coverage": coverage,
        "wheels": {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in (patched, aot)},
    }
    out = dist / "manifest.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    return Wheels(patched, aot, out)
