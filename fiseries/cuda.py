"""CUDA build helpers shared by `make wheel` and the AOT coverage check: arch names, the pinned
CUDA binary tools (cuobjdump, nvdisasm from PyPI) and what they read out of a module."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from .errors import SeriesError

ARCH_RE = re.compile(r"^\d+\.\d+[af]?$")
ELF_ARCH = re.compile(r"^arch = (sm_\d+[af]?)$", re.M)
SASS_NAME = re.compile(r"^sm_(\d+)(\d)([af]?)$")


def cuda_arch_names(archs: list[str]) -> list[str]:
    """'12.1a' -> 'sm121a', as flashinfer.jit.env names provider targets."""
    for arch in archs:
        if not ARCH_RE.match(arch):
            raise SeriesError(f"ARCHS entry {arch!r} is not like 12.1a, 12.0a or 9.0a")
    return [f"sm{a.replace('.', '')}" for a in archs]


def run_logged(cmd: list[str], env: dict[str, str], what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SeriesError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def resource_usage(so: Path, cuobjdump: str | None = None) -> str:
    """`cuobjdump --dump-resource-usage` of `so`: one `arch =` line per cubin, then its kernels."""
    return run_logged([cuobjdump or find_cuobjdump(), "--dump-resource-usage", str(so)], dict(os.environ),
                      f"cuobjdump --dump-resource-usage {so}")


def archs_in(usage: str) -> set[str]:
    """The exact target of every cubin (sm_121a, sm_120f, sm_120, ...) in a resource_usage() dump. The
    cubin file names of --list-elf drop the family suffix, so each ELF's `arch =` line is read."""
    return set(ELF_ARCH.findall(usage))


def elf_archs(so: Path, cuobjdump: str) -> set[str]:
    return archs_in(resource_usage(so, cuobjdump))


def sass_serves(cubin: str, wanted: str) -> bool:
    """Whether a cubin built for `cubin` is machine code for the `wanted` target: the same target,
    or a family-specific cubin (sm_120f) of the same major and a minor <= wanted's, which CUDA runs
    on every such device. A plain sm_120 cubin does not serve sm_121a (upstream #3294)."""
    have, want = SASS_NAME.match(cubin), SASS_NAME.match(wanted)
    if have is None or want is None:
        raise SeriesError(f"unexpected SASS target {cubin!r} / {wanted!r}")
    if cubin == wanted:
        return True
    return have[3] == "f" and have[1] == want[1] and int(have[2]) <= int(want[2])


def sass_matches(found: set[str], wanted: set[str]) -> bool:
    """Every wanted target is served by some cubin and every cubin serves a wanted target."""
    return (all(any(sass_serves(c, w) for c in found) for w in wanted)
            and all(any(sass_serves(c, w) for w in wanted) for c in found))


def resources_in(usage: str) -> dict[str, dict[str, int]]:
    """Per kernel (mangled name, arch-qualified): REG, STACK, SHARED, LOCAL from a resource_usage() dump."""
    resources: dict[str, dict[str, int]] = {}
    arch = ""
    kernel = ""
    for line in usage.splitlines():
        if line.startswith("arch = "):
            arch = line.split("=", 1)[1].strip()
        elif line.strip().startswith("Function "):
            kernel = line.strip()[len("Function "):].rstrip(":")
        elif kernel and "REG:" in line:
            fields = dict(re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", line))
            resources[f"{arch}:{kernel}"] = {k: int(v) for k, v in fields.items()}
            kernel = ""
    return resources


def kernel_resources(so: Path) -> dict[str, dict[str, int]]:
    return resources_in(resource_usage(so))


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


EM_CUDA = 190  # ELF e_machine of a cubin


def embedded_cubins(obj: Path) -> list[bytes]:
    """The cubins inside a host object file (a CuTe-DSL `export_to_c` object holds its cubin as a plain
    byte array, which cuobjdump does not look into): each little-endian ELF64 image after the object's
    own header whose machine is CUDA, cut at the end of its last header table or section."""
    data = obj.read_bytes()
    cubins = []
    start = data.find(b"\x7fELF", 1)
    while start != -1:
        (machine,) = struct.unpack_from("<H", data, start + 18)
        if machine == EM_CUDA:
            phoff, shoff = struct.unpack_from("<QQ", data, start + 0x20)
            phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, start + 0x36)
            end = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
            for index in range(shnum):
                header = start + shoff + index * shentsize
                (kind,) = struct.unpack_from("<I", data, header + 4)
                offset, size = struct.unpack_from("<QQ", data, header + 0x18)
                if kind != 8:  # SHT_NOBITS occupies no bytes in the file
                    end = max(end, offset + size)
            cubins.append(data[start:start + end])
            start += end
        else:
            start += 4
        start = data.find(b"\x7fELF", start)
    return cubins


def nvidia_cu13_dir() -> Path:
    """CUDA 13 pieces the system toolkit lacks (cuobjdump, cuBLAS headers), pinned from PyPI."""
    for entry in sys.path:
        candidate = Path(entry) / "nvidia" / "cu13"
        if candidate.is_dir():
            return candidate
    raise SeriesError("nvidia/cu13 (nvidia-cuda-cuobjdump, nvidia-cublas) is not installed: run `make venv`")


def find_cuobjdump() -> str:
    return str(nvidia_cu13_dir() / "bin" / "cuobjdump")
