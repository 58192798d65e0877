"""The build environment of the AOT modules: FlashInfer's own nvcc build, given the CUDA pieces this
box's minimal toolkit lacks (cuBLAS/cuRAND/NVRTC headers, libcuda/libnvrtc to link) from pinned wheels,
and for --host-arch aarch64 on x86_64 the cross toolchain (aot_build/CROSS.md)."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import zipfile
from pathlib import Path

from .cuda import nvidia_cu13_dir, run_logged
from .errors import SeriesError

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
