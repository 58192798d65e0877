"""Compile-only checks for SM120/SM121 block-scaled GEMMs with TileM < 128.

No SM12x GPU is needed: each translation unit in this directory is compiled
with nvcc for sm_120a and sm_121a against the bundled CUTLASS, and the test
records, per kernel and arch, registers, spills and dynamic shared memory, and
checks that the SASS contains the block-scaled MMA instruction (QMMA.SF for
MXFP8 x MXFP4, OMMA.SF for NVFP4).

Heavy (about 1-3 min and 6 GB RSS per TU and arch): run one at a time
(``-p no:xdist``) and select with ``-m sm12x_heavy_compile``.

Tools: nvcc from CUDA_HOME (default /usr/local/cuda); cuobjdump from the
pinned ``nvidia-cuda-cuobjdump`` wheel if importable, else from CUDA_HOME.
"""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CUTLASS = Path(os.environ.get("SM12X_CUTLASS_DIR", REPO / "3rdparty" / "cutlass"))
CUDA_HOME = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))
ARCHS = ("120a", "121a")
SMEM_LIMIT = 99 * 1024  # SM120/SM121 max dynamic shared memory per block

# (source, zero-spill required). The dense Pingpong kernels spill a few bytes
# also at TileM = 128 with pristine CUTLASS (18 B stores), so for them only the
# grouped kernels - the ones FlashInfer's MoE uses - are held to zero spills.
CASES = [
    ("grouped_64x128x128_mxf8f6f4.cu", True),
    ("grouped_32x128x128_mxf8f6f4.cu", True),
    ("grouped_64x128x128_nvf4.cu", True),
    ("dense_64x128x128_mxf8f6f4.cu", False),
]


def _find_tool(name):
    for base in sys.path:
        cand = Path(base) / "nvidia" / "cu13" / "bin" / name
        if cand.exists():
            return str(cand)
    cand = CUDA_HOME / "bin" / name
    if cand.exists():
        return str(cand)
    return shutil.which(name)


def parse_ptxas(log):
    """Return [{'arch', 'registers', 'spill_stores', 'spill_loads'}] per kernel."""
    out = []
    cur_arch = None
    pending = None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for '(sm_\w+)'", line)
        if m:
            cur_arch = m.group(2)
            pending = {"kernel": m.group(1), "arch": cur_arch}
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and pending is not None:
            pending["spill_stores"] = int(m.group(1))
            pending["spill_loads"] = int(m.group(2))
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and pending is not None:
            pending["registers"] = int(m.group(1))
            out.append(pending)
            pending = None
    return out


def host_constant(obj, symbol):
    """The value of `extern "C" const int symbol = K;` in a little-endian ELF64 object: the
    symbol's bytes in its section, read from the symbol table (no disassembly, so it works for
    x86_64 and aarch64 host objects alike)."""
    data = Path(obj).read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, f"{obj}: not a little-endian ELF64 file"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    # (type, offset, size, link) of each section header
    sections = [struct.unpack_from("<4xI16xQQI", data, shoff + i * shentsize) for i in range(shnum)]
    symtab = next(s for s in sections if s[0] == 2)  # SHT_SYMTAB
    strtab = sections[symtab[3]]
    for entry in range(symtab[1], symtab[1] + symtab[2], 24):  # Elf64_Sym
        name_at, shndx, value, size = struct.unpack_from("<I2xHQQ", data, entry)
        end = data.index(b"\0", strtab[1] + name_at)
        if data[strtab[1] + name_at:end].decode() != symbol:
            continue
        assert size == 4 and 0 < shndx < len(sections), f"{symbol} in {obj} is not a defined int"
        kind, offset = sections[shndx][:2]
        if kind == 8:  # SHT_NOBITS (.bss): zero-initialised
            return 0
        return int.from_bytes(data[offset + value:offset + value + size], "little", signed=True)
    raise AssertionError(f"{symbol} not in the symbol table of {obj}")


def compile_tu(src, out_dir):
    obj = out_dir / (Path(src).stem + ".o")
    cmd = [
        str(CUDA_HOME / "bin" / "nvcc"), "-std=c++17", "-O3", "--expt-relaxed-constexpr",
        "-DNDEBUG", "-DCUTLASS_ENABLE_GDC_FOR_SM100=1",
        f"-I{CUTLASS / 'include'}", f"-I{CUTLASS / 'tools' / 'util' / 'include'}",
        "-Xptxas", "-v", "-c", str(HERE / src), "-o", str(obj),
    ]
    for a in ARCHS:
        cmd.insert(1, f"-gencode=arch=compute_{a},code=sm_{a}")
    res = subprocess.run(cmd, capture_output=True, text=True)
    return res, obj


@pytest.mark.sm12x_heavy_compile
@pytest.mark.parametrize("src,zero_spill", CASES)
def test_sm12x_small_tile_compiles(src, zero_spill, tmp_path):
    if not (CUDA_HOME / "bin" / "nvcc").exists():
        pytest.skip("nvcc not found")
    res, obj = compile_tu(src, tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    kernels = [k for k in parse_ptxas(res.stdout + res.stderr) if "device_kernel" in k["kernel"]]
    assert sorted(k["arch"] for k in kernels) == sorted(f"sm_{a}" for a in ARCHS)

    smem = host_constant(obj, "sm12x_tile_pin_smem_bytes")
    stages = host_constant(obj, "sm12x_tile_pin_stages")
    assert smem <= SMEM_LIMIT
    assert stages >= 2

    cuobjdump = _find_tool("cuobjdump")
    assert cuobjdump, "cuobjdump not found"
    record = {"source": src, "smem_bytes": smem, "stages": stages, "kernels": []}
    for k in kernels:
        sass = subprocess.run(
            [cuobjdump, "-sass", "-arch", k["arch"], str(obj)],
            check=True, capture_output=True, text=True,
        ).stdout
        mma = sorted(set(re.findall(r"\b[OQ]MMA\.SF\.[A-Z0-9_.]+", sass)))
        assert mma, f"no block-scaled MMA (QMMA.SF / OMMA.SF) in SASS for {k['arch']}"
        if zero_spill:
            assert k["spill_stores"] == 0 and k["spill_loads"] == 0, k
        record["kernels"].append(
            {"arch": k["arch"], "registers": k["registers"],
             "spill_stores": k["spill_stores"], "spill_loads": k["spill_loads"],
             "block_scaled_mma": mma}
        )
    print(json.dumps(record))
    report = os.environ.get("SM12X_TILE_REPORT")
    if report:
        with open(report, "a") as f:
            f.write(json.dumps(record) + "\n")


def test_parse_ptxas_sample():
    """CPU-only self-test of the ptxas log parser."""
    log = (
        "ptxas info    : Compiling entry function '_ZN7cutlass13device_kernelIX' for 'sm_121a'\n"
        "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 168 registers, used 8 barriers\n"
    )
    assert parse_ptxas(log) == [
        {"kernel": "_ZN7cutlass13device_kernelIX", "arch": "sm_121a",
         "spill_stores": 0, "spill_loads": 0, "registers": 168}
    ]


def test_host_constant_sample(tmp_path):
    """CPU-only self-test of the symbol-table reader on a host object made by the system compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc/gcc) on PATH")
    src = tmp_path / "k.c"
    src.write_text("const int pin_a = 101376;\nconst int pin_b = -7;\nint pin_zero = 0;\n")
    subprocess.run([cc, "-O2", "-c", str(src), "-o", str(tmp_path / "k.o")], check=True)
    obj = tmp_path / "k.o"
    assert host_constant(obj, "pin_a") == 101376
    assert host_constant(obj, "pin_b") == -7
    assert host_constant(obj, "pin_zero") == 0
    with pytest.raises(AssertionError, match="not in the symbol table"):
        host_constant(obj, "pin_missing")
