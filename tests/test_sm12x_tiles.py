"""The SM12x small-M MoE patches on the real pinned upstream: their upstream-style tests (CPU: the default
tactic rule, C++ header vs Python mirror; heavy: the TileM < 128 compile pins for sm_120a and sm_121a with
resources and SASS), and the regression pin against pristine CUTLASS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from fiseries.lock import LOCK_NAME, load_lock
from fiseries.layout import Layout

pytestmark = pytest.mark.upstream

SUITE = ROOT / "build/tree/tests/sm12x_tiles"
TMA_ERROR = "TMA requires CTA_Tile and SLayout top-level size equivalence"

COMPILE_PIN = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import test_sm12x_tile_compile as pins
result, _ = pins.compile_tu("grouped_64x128x128_mxf8f6f4.cu", Path(sys.argv[2]))
print(result.returncode)
print(result.stdout + result.stderr)
"""


def _run_suite(tmp_path: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", **extra_env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                           str(SUITE), *args], capture_output=True, text=True, env=env, cwd=tmp_path)


def test_default_tactic_rule(checked: str, tmp_path: Path) -> None:
    proc = _run_suite(tmp_path, str(SUITE / "test_sm12x_default_tactic.py"))
    assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.compile
def test_pristine_cutlass_rejects_the_64_row_tile(checked: str, tmp_path: Path) -> None:
    layout = Layout.for_lock(load_lock(ROOT / LOCK_NAME))
    pristine = layout.build / "upstream" / layout.lock.main.version / layout.lock.target("cutlass").path
    env = dict(os.environ, SM12X_CUTLASS_DIR=str(pristine))
    proc = subprocess.run([sys.executable, "-c", COMPILE_PIN, str(SUITE), str(tmp_path)],
                          capture_output=True, text=True, env=env)
    returncode, _, log = proc.stdout.partition("\n")
    assert returncode.strip() not in ("", "0"), "pristine CUTLASS compiled the 64-row tile: the pin is stale"
    assert TMA_ERROR in log, log[-3000:]


@pytest.mark.compile
def test_small_tile_compile_pins(checked: str, tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    proc = _run_suite(tmp_path, "-m", "sm12x_heavy_compile", str(SUITE / "test_sm12x_tile_compile.py"),
                      SM12X_TILE_REPORT=str(report))
    assert proc.returncode == 0 and "4 passed" in proc.stdout, proc.stdout[-6000:] + proc.stderr[-2000:]
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(records) == 4 and all(len(r["kernels"]) == 2 for r in records)
    (ROOT / "build" / "sm12x_tile_pins.json").write_text(json.dumps(records, indent=1) + "\n")


@pytest.mark.compile
def test_sfa_layout_model(checked: str, tmp_path: Path) -> None:
    """The patched mainloops' SFA producer/consumer index math, evaluated on the host from CUTLASS's
    own types, equals an independent Python model for every tile config (TileM 32 ... 256)."""
    proc = _run_suite(tmp_path, str(SUITE / "test_sm12x_sfa_layout.py"))
    assert proc.returncode == 0 and " passed" in proc.stdout and "skipped" not in proc.stdout, \
        proc.stdout[-6000:] + proc.stderr[-2000:]


def _on_sm12x_gpu() -> bool:
    """Does this interpreter's torch see an SM120/SM121 GPU (a CUDA build on an SM12x machine)?"""
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 12


def test_sm12x_moe_numerics_run_only_on_sm12x(checked: str, tmp_path: Path) -> None:
    """The SM12x runtime test collects everywhere; on an SM120/SM121 GPU every case runs (none may
    skip), elsewhere every case skips with the reason (`make gpu-test` runs it on the GPU)."""
    proc = _run_suite(tmp_path, "-rs", str(SUITE / "test_sm12x_small_m_moe.py"), PYTHONPATH=str(SUITE.parent.parent))
    log = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, log
    if _on_sm12x_gpu():
        assert " passed" in proc.stdout and "skipped" not in proc.stdout, log
    else:
        assert " passed" not in proc.stdout and "SM120/SM121 GPU" in proc.stdout, log
