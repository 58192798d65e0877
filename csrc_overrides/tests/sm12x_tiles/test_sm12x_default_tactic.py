"""CPU tests for the SM120/SM121 small-M default MoE GEMM tactic.

Checks the Python rule (flashinfer/fused_moe/sm12x_default_tactic.py) on a
tactic list shaped like the runner's, and that it agrees with the C++ header
(csrc/fused_moe/cutlass_backend/sm12x_default_tactic.h) compiled with the host
C++ compiler. No GPU, torch or CUDA is needed.
"""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "csrc" / "fused_moe" / "cutlass_backend" / "sm12x_default_tactic.h"

_spec = importlib.util.spec_from_file_location(
    "sm12x_default_tactic", REPO / "flashinfer" / "fused_moe" / "sm12x_default_tactic.py"
)
mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mod)
D = mod.TacticDesc

NONE, FINALIZE = 0, 1


def runner_like_tactics():
    """Candidate order as the runner builds it on SM120 for MXFP8 x MXFP4:
    tiles, then the same with FINALIZE fusion, then all of that swap-AB
    (64-row tiles have no swap-AB variant)."""
    tiles = [(128, 128, 128), (128, 32, 128), (128, 64, 128), (64, 64, 128), (64, 128, 128)]
    base = [D(m, n, k, False, f) for f in (NONE, FINALIZE) for (m, n, k) in tiles]
    return base + [d._replace(swap_ab=True) for d in base if d.tile_m >= 128]


@pytest.mark.parametrize(
    "rows,expected_n",
    [(0, 0), (1, 32), (8, 32), (32, 32), (33, 64), (64, 64), (65, 0), (4096, 0)],
)
def test_tile_n_rule(rows, expected_n):
    assert mod.sm12x_small_m_default_tile_n(rows) == expected_n


def test_selection_on_runner_like_list():
    t = runner_like_tactics()
    pick = lambda rows, fb=0: mod.select_sm12x_small_m_default_tactic(  # noqa: E731
        0, len(t), fb, rows, t.__getitem__
    )
    # Large M: unchanged (first tactic, non-swapped 128x128).
    assert pick(1000) == 0
    # Decode: swap-AB 128x32, same fusion as the fallback.
    d = t[pick(1)]
    assert (d.tile_m, d.tile_n, d.swap_ab, d.epilogue_fusion) == (128, 32, True, NONE)
    d = t[pick(48)]
    assert (d.tile_m, d.tile_n, d.swap_ab) == (128, 64, True)
    # A FINALIZE fallback keeps FINALIZE.
    fb = next(i for i, x in enumerate(t) if x.epilogue_fusion == FINALIZE)
    assert t[pick(4, fb)].epilogue_fusion == FINALIZE
    # No swap-AB tactics at all: keep the fallback.
    no_swap = [x for x in t if not x.swap_ab]
    assert mod.select_sm12x_small_m_default_tactic(0, len(no_swap), 0, 1, no_swap.__getitem__) == 0


def test_cpp_header_matches_python(tmp_path):
    cxx = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    t = runner_like_tactics()
    table = ",\n".join(
        f"{{{d.tile_m},{d.tile_n},{d.tile_k_bytes},{'true' if d.swap_ab else 'false'},{d.epilogue_fusion}}}"
        for d in t
    )
    src = tmp_path / "main.cpp"
    src.write_text(
        f"""
#include "{HEADER}"
#include <cstdio>
#include <initializer_list>
using flashinfer::fused_moe_sm12x::TacticDesc;
static const TacticDesc kT[] = {{ {table} }};
int main() {{
  const long n = sizeof(kT) / sizeof(kT[0]);
  for (long rows = 0; rows <= 300; ++rows) {{
    for (long fb : {{0L, 5L}}) {{
      long i = flashinfer::fused_moe_sm12x::selectSmallMDefaultTactic(
          0, n, fb, rows, [](long j) {{ return kT[j]; }});
      std::printf("%ld %ld %d %ld\\n", rows, fb,
                  flashinfer::fused_moe_sm12x::smallMDefaultSwapAbTileN(rows), i);
    }}
  }}
  return 0;
}}
"""
    )
    exe = tmp_path / "main"
    subprocess.run([cxx, "-std=c++17", "-O1", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        rows, fb, tile_n, idx = map(int, line.split())
        assert tile_n == mod.sm12x_small_m_default_tile_n(rows)
        assert idx == mod.select_sm12x_small_m_default_tactic(0, len(t), fb, rows, t.__getitem__)
