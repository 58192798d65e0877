"""
Copyright (c) 2026 by FlashInfer team.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

  http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.

CPU test of the SFA (A scale factor) index math of CUTLASS's SM120 block-scaled mainloops
with TileM < 128 (SFA padded in smem to whole 128-row atoms, broadcast_m, m % (128 / TileM)).

sfa_layout_dump.cu evaluates the mainloops' own types and expressions on the host (no GPU):
the SFA TMA descriptor and the producer's TMA coordinates, replayed into stage 0, and the
consumer's smem->register partition of its sSFA slice. This test compiles it once with nvcc
(host code only: ~26 s and ~1.8 GB RSS on 2 CPU cores), runs it, and checks every record
against an independent model:
- gmem (Sm1xxBlockScaledConfig): 128 x 4 atoms of 512 bytes, byte (m % 32) * 16 +
  (m % 128) // 32 * 4 + k % 4 in an atom; atoms along K, then along M;
- smem: one stage holds max(TileM, 128) rows, i.e. whole atoms (atoms along M, then along K);
- producer: CTA tile i loads, in one TMA box, all of atom i // (128 / TileM);
- consumer: CTA tile i reads its row m at smem row (i % (128 / TileM)) * TileM + m;
- end to end: row m, scale column j of tile i is gmem row i * TileM + m, column j;
- TileM >= 128 is the pristine, unpadded mapping.

Tools as in test_sm12x_tile_compile.py: nvcc from CUDA_HOME (default /usr/local/cuda),
CUTLASS from SM12X_CUTLASS_DIR (default 3rdparty/cutlass of this repository).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CUTLASS = Path(os.environ.get("SM12X_CUTLASS_DIR", REPO / "3rdparty" / "cutlass"))
CUDA_HOME = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))
NVCC = CUDA_HOME / "bin" / "nvcc"

ATOM_ROWS, ATOM_COLS, ATOM_BYTES = 128, 4, 512
CU_TENSOR_MAP_DATA_TYPE_UINT16 = 1

# (grouped, format, TileM). TileM = 256 with MXFP8 x MXFP4 is left out: the builder accepts the
# shape, but only one pipeline stage fits in SM120's shared memory.
CONFIGS = [
    (grouped, fmt, tile_m)
    for grouped in (True, False)
    for fmt in ("mxf8f4", "nvf4")
    for tile_m in (32, 64, 128, 256)
    if not (fmt == "mxf8f4" and tile_m == 256)
]
NAMES = [f"{'grouped' if g else 'dense'}_{fmt}_{tile_m}" for g, fmt, tile_m in CONFIGS]

Record = dict[str, Any]


def atom_offset(row: int, col: int) -> int:
    """Byte of (row, col) in a 128 x 4 scale-factor atom: 32 x 4 row blocks, 4 columns."""
    assert 0 <= row < ATOM_ROWS and 0 <= col < ATOM_COLS
    return (row % 32) * 16 + (row // 32) * 4 + col


def gmem_offset(row: int, col: int, k_atoms: int) -> int:
    """Byte of scale factor (row, col) in Sm1xxBlockScaledConfig's gmem layout (L = 1)."""
    return ((row // ATOM_ROWS) * k_atoms + col // ATOM_COLS) * ATOM_BYTES + atom_offset(
        row % ATOM_ROWS, col % ATOM_COLS
    )


def smem_offset(srow: int, col: int, rows: int) -> int:
    """Byte of (srow, col) in one stage of a `rows`-row SFA smem tile (whole atoms)."""
    return ((col // ATOM_COLS) * (rows // ATOM_ROWS) + srow // ATOM_ROWS) * ATOM_BYTES + atom_offset(
        srow % ATOM_ROWS, col % ATOM_COLS
    )


def expected_tiles(problem_m: int, tile_m: int) -> list[int]:
    n = problem_m // tile_m
    return sorted({t for t in (0, 1, 2, 3, 5, n - 1) if t < n})


class Model:
    """The padded SFA mapping of one configuration, from first principles."""

    def __init__(self, cfg: Record) -> None:
        self.tile_m: int = cfg["tile_m"]
        self.cols: int = cfg["tile_k"] // cfg["sf_vec"]
        self.k_atoms: int = math.ceil(cfg["problem_k"] / cfg["sf_vec"] / ATOM_COLS)
        self.k_tile: int = cfg["k_tile"]
        self.rows: int = max(self.tile_m, ATOM_ROWS)  # smem rows per stage
        self.ratio: int = max(1, ATOM_ROWS // self.tile_m)  # CTA tiles per atom

    def box_first_row(self, tile: int) -> int:
        """First gmem row the TMA box of CTA tile `tile` covers: its atom (broadcast_m)."""
        return (tile // self.ratio) * self.ratio * self.tile_m

    def consumer_row(self, tile: int, m: int) -> int:
        return (tile % self.ratio) * self.tile_m + m

    def gmem(self, row: int, col: int) -> int:
        return gmem_offset(row, self.k_tile * self.cols + col, self.k_atoms)

    def stage(self, tile: int) -> dict[int, int]:
        """smem byte -> gmem byte of stage 0 after the producer loaded K tile k_tile."""
        first = self.box_first_row(tile)
        return {
            smem_offset(srow, col, self.rows): self.gmem(first + srow, col)
            for srow in range(self.rows)
            for col in range(self.cols)
        }


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not NVCC.exists():
        pytest.skip(f"nvcc not found at {NVCC} (set CUDA_HOME)")
    assert (CUTLASS / "include" / "cute").is_dir(), f"CUTLASS not found at {CUTLASS} (set SM12X_CUTLASS_DIR)"
    exe = tmp_path_factory.mktemp("sfa") / "sfa_layout_dump"
    cmd = [
        str(NVCC), "-std=c++17", "-O3", "--expt-relaxed-constexpr",
        "-DNDEBUG", "-DCUTLASS_ENABLE_GDC_FOR_SM100=1",
        f"-I{CUTLASS / 'include'}", f"-I{CUTLASS / 'tools' / 'util' / 'include'}",
        "-gencode=arch=compute_120a,code=sm_120a", str(HERE / "sfa_layout_dump.cu"), "-o", str(exe),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    records = [json.loads(line) for line in run.stdout.splitlines()]
    configs = {r["name"]: r for r in records if r["kind"] == "config"}
    boxes: dict[str, dict[int, Record]] = {}
    reads: dict[str, list[Record]] = {}
    for r in records:
        if r["kind"] == "box":
            boxes.setdefault(r["name"], {})[r["tile"]] = r
        elif r["kind"] == "read":
            reads.setdefault(r["name"], []).append(r)
    return {"configs": configs, "boxes": boxes, "reads": reads}


def writes(box: Record) -> dict[int, int]:
    flat: list[int] = box["writes"]
    return dict(zip(flat[0::2], flat[1::2]))


def test_all_configs_dumped(dump: dict[str, Any]) -> None:
    assert sorted(dump["configs"]) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_sfa_mapping_matches_model(dump: dict[str, Any], name: str) -> None:
    cfg = dump["configs"][name]
    model = Model(cfg)
    tiles = expected_tiles(cfg["problem_m"], model.tile_m)
    stage_bytes = model.rows * model.cols

    # Types and the TMA descriptor: the box is one whole (padded) stage.
    assert cfg["sfa_tile_rows"] == model.rows
    assert cfg["pristine_types"] == (model.tile_m >= ATOM_ROWS)
    assert cfg["smem_stage_bytes"] == stage_bytes
    tma = cfg["tma"]
    assert (tma["dtype"], tma["elem_bytes"], tma["swizzle"], tma["interleave"]) == (
        CU_TENSOR_MAP_DATA_TYPE_UINT16, 2, 0, 0)
    assert math.prod(tma["box"]) * tma["elem_bytes"] == stage_bytes
    assert set(tma["elem_stride"]) == {1}

    # Producer: one TMA instruction per K tile fills stage 0 with the atom containing the tile.
    assert sorted(dump["boxes"][name]) == tiles
    for tile in tiles:
        box = dump["boxes"][name][tile]
        assert box["atom_tile"] * model.tile_m == model.box_first_row(tile), box["atom_tile"]
        assert [i["smem"] for i in box["tma"]] == [0], box["tma"]
        assert not box["written_twice"]
        assert writes(box) == model.stage(tile), f"{name} tile {tile}: stage 0 contents differ"

    # Consumer: every (row, scale column) of every dumped tile, read from the model's smem byte,
    # which holds the scale factor of gmem row tile * TileM + m.
    seen = set()
    for r in dump["reads"][name]:
        tile, m, j = r["tile"], r["m"], r["j"]
        seen.add((tile, m, j))
        smem = smem_offset(model.consumer_row(tile, m), j, model.rows)
        assert r["smem"] == [smem] and r["smem_direct"] == smem, r
        assert r["n_reads"] > 0
        assert r["gmem"] == model.gmem(tile * model.tile_m + m, j), r
    assert seen == {(t, m, j) for t in tiles for m in range(model.tile_m) for j in range(model.cols)}


@pytest.mark.parametrize("name", [n for n, (_, _, tm) in zip(NAMES, CONFIGS) if tm >= ATOM_ROWS])
def test_large_tiles_are_pristine(dump: dict[str, Any], name: str) -> None:
    """TileM >= 128: no padding, no broadcast, no row selection (the unpatched builder's layout:
    TileM / 128 atoms along M, then along K; the tile's own rows; smem row = m)."""
    cfg = dump["configs"][name]
    tile_m, cols = cfg["tile_m"], cfg["tile_k"] // cfg["sf_vec"]
    k_atoms = math.ceil(cfg["problem_k"] / cfg["sf_vec"] / ATOM_COLS)
    first_col = cfg["k_tile"] * cols

    def pristine_smem(m: int, j: int) -> int:
        return (j // 4) * (tile_m // 128) * 512 + (m // 128) * 512 + (m % 32) * 16 + (m % 128) // 32 * 4 + j % 4

    assert cfg["pristine_types"] and cfg["sfa_tile_rows"] == tile_m
    for tile, box in dump["boxes"][name].items():
        assert box["atom_tile"] == tile
        assert writes(box) == {
            pristine_smem(m, j): gmem_offset(tile * tile_m + m, first_col + j, k_atoms)
            for m in range(tile_m) for j in range(cols)
        }
    for r in dump["reads"][name]:
        assert r["smem"] == [pristine_smem(r["m"], r["j"])], r


# Device-side code of the mainloops that sfa_layout_dump.cu re-evaluates on the host (load_init(),
# load(), mma(), tensormaps_replace_global_tensor_properties() are device-only). Compared without
# comments and whitespace; if the collective changes them, update the dump.
MIRRORED = [
    "tma_load_sfa.get_tma_tensor(shape(",
    "local_tile(mSFA_mkl, TileShape{}, make_coord(_,_,_), Step<_1, X,_1>{})",
    "auto broadcast_m = make_layout(make_shape(Int<size<0>(TileShapeSFA{}) / size<0>(TileShape{})>{},"
    " Int<cute::numeric_limits<int>::max()>{}), make_stride(_0{}, size<0>(TileShapeSFA{}) / size<0>(TileShape{})));",
    "gSFA_mkl(_,_,broadcast_m(m_coord),_,l_coord)",
    "block_tma_sfa.partition_S(gSFA)",
    "block_tma_sfa.partition_D(sSFA)",
    "make_tma_copy<uint16_t>(GmemTiledCopySFA{}, tensor_sfa, SmemLayoutSFA{}(_,_,cute::Int<0>{}),"
    " make_shape(shape<0>(TileShapeSFA{}), shape<2>(TileShapeSFA{})), _1{});",
    "if constexpr (size<0>(TileShape{}) >= 128) {"
    " return make_tensor(make_smem_ptr(shared_tensors.smem_SFA.begin()), SmemLayoutSFA{}); }",
    "Tensor temp = make_tensor(make_smem_ptr(shared_tensors.smem_SFA.begin()), SmemLayoutSFA{});"
    " auto m = get<0>(blk_coord);"
    " return temp(make_coord(_,m % (size<0>(TileShapeSFA{}) / size<0>(TileShape{}))), _, _);",
    "make_tiled_copy_impl(SmemCopyAtomSFA{}, get_layoutSFA_TV(tiled_mma),"
    " make_shape(size<0>(tile_shape_mnk), size<2>(tile_shape_mnk)));",
    "smem_thr_copy_SFA.partition_S(as_position_independent_swizzle_tensor(sSFA));",
]
MIRRORED_GROUPED = [
    "layout_SFA = Sm1xxBlkScaledConfig::tile_atom_to_shape_SFA(cute::make_shape(init_M, init_N, init_K, 1));",
    "fill_tma_gmem_shape_stride(mainloop_params.tma_load_sfa, tensor_sfa, prob_shape_SFA, prob_stride_SFA);",
    "for (uint64_t& stride : prob_stride_SFA) { stride = (stride * sizeof_bits_v<ElementSF>) / 8; }",
]


def _squash(text: str) -> str:
    return "".join("".join(line.split("//")[0].split()) for line in text.splitlines())


@pytest.mark.parametrize("header,grouped", [
    ("sm120_blockscaled_mma_tma.hpp", False), ("sm120_blockscaled_mma_array_tma.hpp", True)])
def test_dump_mirrors_collective_source(header: str, grouped: bool) -> None:
    path = CUTLASS / "include" / "cutlass" / "gemm" / "collective" / header
    if not path.exists():
        pytest.skip(f"{path} not found (set SM12X_CUTLASS_DIR)")
    source = _squash(path.read_text())
    missing = [s for s in MIRRORED + (MIRRORED_GROUPED if grouped else []) if _squash(s) not in source]
    assert not missing, f"{header} changed; update sfa_layout_dump.cu: {missing}"


def test_model_self_check() -> None:
    """The model's atom is a bijection onto 512 bytes, and padding 64-row tiles puts two
    tiles' rows in one stage at disjoint bytes."""
    assert sorted(atom_offset(r, c) for r in range(128) for c in range(4)) == list(range(512))
    cfg = {"tile_m": 64, "tile_k": 128, "sf_vec": 32, "problem_k": 384, "k_tile": 1}
    model = Model(cfg)
    rows = [{smem_offset(model.consumer_row(t, m), 0, model.rows) for m in range(64)} for t in (0, 1)]
    assert not rows[0] & rows[1] and model.box_first_row(1) == model.box_first_row(0) == 0
