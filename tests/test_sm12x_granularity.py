"""Patch 0005 (SM12x MXFP8 x MXFP4 activation scale granularity) on this GPU-less box: every kernel,
tile and epilogue of the path compiled with CuTe DSL for sm_120a and sm_121a at 128 / 64 / 32, the
machine code read back (block-scaled MMA present, no local memory, shared memory within SM12x's
99 KB), and the Q1 epilogue's per-group amax reduction checked in SASS against an independent count;
the PyTorch reference of the upstream-style test checked against hand-computed encodings."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from fiseries.cuda import kernel_resources, nvidia_cu13_dir

pytestmark = [pytest.mark.upstream, pytest.mark.compile]

HARNESS = ROOT / "tests/sm12x_dsl/compile_mxfp8_mxfp4.py"
SM12X_SMEM_PER_BLOCK = 101376  # 99 KB opt-in shared memory per block on SM120/SM121
GRANULARITIES = (128, 64, 32)


def q1_shuffles(tile: tuple[int, int, int], epi: str, g: int) -> int:
    """SHFL.BFLY count of the Q1 amax reductions, from the drain layouts (not from the patch's code).

    Draining lanes hold 8 contiguous bf16 per chunk; 8 lanes cover one 64-element pass of the
    128-wide quant extent (tile N, or tile M after swap-AB), so a lane has 2 chunks per row. A group
    of g elements is reduced once per lane-local group, over min(g, 64) / 8 lanes (log2 shuffles).
    Rows per thread: 256 MMA threads over bm rows of 8 lanes (after S2R); one token per lane group
    (swap-AB)."""
    lanes, vec, extent = 8, 8, 128
    span = lanes * vec
    rounds = extent // span if g <= span else extent // g
    per_round = int(math.log2(min(g, span) // vec))
    rows = 1 if epi == "WG_QUANT_SWAP" else tile[0] * lanes // 256
    return rows * rounds * per_round


@pytest.fixture(scope="module", params=["sm_120a", "sm_121a"])
def compiled(request: pytest.FixtureRequest, checked: str, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp(f"dsl_{request.param}")
    proc = subprocess.run([sys.executable, str(HARNESS), "--tree", str(ROOT / "build/tree"), "--arch",
                           request.param, "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return request.param, json.loads((out / "compiled.json").read_text())


def test_every_tactic_compiles_at_every_granularity(compiled) -> None:
    arch, records = compiled
    built = {(r["kernel"], tuple(r["tile"]), r["epi"], r["granularity"]) for r in records if r["cubin"]}
    rejected = {(r["kernel"], tuple(r["tile"]), r["epi"], r["granularity"]) for r in records if not r["cubin"]}
    tactics = {key[:3] for key in built | rejected}
    assert len(tactics) == 6 + 4 + 5 + 3, sorted(tactics)  # gemm, fc1_act, fc1_act_q1, fc2_finalize
    # quant-before-R2S reduces amax across warps over whole rows: 128 only, rejected (not miscompiled) below
    assert rejected == {("fc1_act_q1", (bm, 128, 128), "WG_QUANT_R2S", g) for bm in (64, 32) for g in (64, 32)}
    for tactic in tactics - {("fc1_act_q1", (bm, 128, 128), "WG_QUANT_R2S") for bm in (64, 32)}:
        assert all((*tactic, g) in built for g in GRANULARITIES), tactic
    for r in records:
        if r["cubin"]:
            assert r["arch"] == arch and r["smem_bytes"] <= SM12X_SMEM_PER_BLOCK, r


def test_machine_code(compiled) -> None:
    arch, records = compiled
    nvdisasm = str(nvidia_cu13_dir() / "bin" / "nvdisasm")
    for r in (r for r in records if r["cubin"]):
        cubin = Path(r["cubin"])
        resources = kernel_resources(cubin)
        assert resources and all(v["LOCAL"] == 0 for v in resources.values()), (r, resources)
        # g = 64 leaves a 16-byte stack frame in the 32x128 gemm / fc2 kernels (tracking.md); none else
        stack_limit = 16 if r["granularity"] == 64 else 0
        assert all(v["STACK"] <= stack_limit for v in resources.values()), (r, resources)
        sass = subprocess.run([nvdisasm, str(cubin)], capture_output=True, text=True, check=True).stdout
        assert re.search(rf"^\s*\.target\s+{arch}$", sass, re.M), (r, sass[:200])
        assert "QMMA.SF" in sass, r  # the block-scaled MMA
        if r["kernel"] == "fc1_act_q1" and r["epi"] != "WG_QUANT_R2S":  # R2S: unchanged, 128 only
            found = len(re.findall(r"SHFL\.BFLY", sass))
            assert found == q1_shuffles(tuple(r["tile"]), r["epi"], r["granularity"]), (r, found)


def test_reference_quantizer_encodings() -> None:
    sys.path.insert(0, str(ROOT / "build/tree/tests/moe"))
    from sm12x_mxfp8_reference import pack_words, reference_mxfp8

    block = torch.zeros(4, 32)
    block[0, :2] = torch.tensor([448.0, 1.0])  # amax 448 -> scale 2^0 exactly (e = 127)
    block[1, :2] = torch.tensor([450.0, -3.0])  # just above -> 2^1 (e = 128); -3 / 2 = -1.5
    block[2, 0] = 0.0  # all zero: amax floored at 1e-4 -> 2^ceil(log2(1e-4 / 448)) = 2^-22
    block[3, :3] = torch.tensor([17.0, 0.0703125, 0.07421875])  # 17 / 448 -> scale 2^-4 (e = 123)
    q, exp = reference_mxfp8(block.to(torch.bfloat16), 32)
    assert exp[:, 0].tolist() == [127, 128, 105, 123]
    assert q[0, :2].float().tolist() == [448.0, 1.0]
    assert q[1, :2].float().tolist() == [224.0, -1.5]  # 450 / 2 = 225 -> 224 on the 16-step grid
    # x 16: 272 is a tie between 256 and 288 -> even 256; 1.125 exact; 1.1875 a tie -> even 1.25
    assert q[3, :3].float().tolist() == [256.0, 1.125, 1.25]
    assert pack_words(torch.tensor([[1, 2, 3, 255]])).tolist() == [[1 | 2 << 8 | 3 << 16 | -1 << 24]]
