"""The traced SM121 AOT manifest (aot_build/trace_jit_specs.py), re-traced on CPU from the applied tree
(about 20 s): the committed trace is what the workloads request now, the manifest is its union, and
every manifest entry's generator(**args) re-creates a module of that name.

AOT_TRACE_TREE=<path> traces a copy of the applied tree instead of build/tree (no `checked` then)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.upstream

TRACER = ROOT / "aot_build" / "trace_jit_specs.py"
TRACE = ROOT / "aot_build" / "traces" / "sm121.json"
MANIFEST = ROOT / "aot_build" / "manifests" / "sm121_decode.json"


def _tracer(tree: Path, *args: str | Path) -> str:
    proc = subprocess.run([sys.executable, str(TRACER), "--tree", str(tree), *map(str, args)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc.stdout


@pytest.fixture(scope="module")
def tree(request: pytest.FixtureRequest) -> Path:
    """The applied tree: build/tree after `checked`, or AOT_TRACE_TREE."""
    override = os.environ.get("AOT_TRACE_TREE")
    if override:
        return Path(override)
    request.getfixturevalue("checked")
    return ROOT / "build" / "tree"


@pytest.fixture(scope="module")
def traced(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("aot-trace")
    _tracer(tree, "--trace", out / "sm121.json", "--manifest", out / "manifest.json")
    return json.loads((out / "sm121.json").read_text()), json.loads((out / "manifest.json").read_text())


def test_committed_trace_is_current(traced: tuple[dict, dict]) -> None:
    trace, _ = traced
    assert (trace["compute_capability"], trace["targets"]) == ([12, 1], ["12.1a"])
    assert trace == json.loads(TRACE.read_text()), "re-trace: see aot_build/README.md"


def test_manifest_is_the_traced_union(traced: tuple[dict, dict]) -> None:
    trace, manifest = traced
    committed = json.loads(MANIFEST.read_text())
    union = list(dict.fromkeys(spec["name"] for specs in trace["workloads"].values() for spec in specs))
    assert [module["name"] for module in committed["modules"]] == union
    assert committed["modules"] == manifest["modules"]
    assert committed["trace"] == str(TRACE.relative_to(ROOT))


def test_manifest_generators_recreate_their_modules(tree: Path) -> None:
    names = json.loads(_tracer(tree, "--verify", MANIFEST).splitlines()[-1])
    assert names == [module["name"] for module in json.loads(MANIFEST.read_text())["modules"]]


def test_bf16_fused_moe_90_generator(tree: Path, tmp_path: Path) -> None:
    """The test-only bf16 SM90 fused-MoE module: upstream's generator narrowed to the 56 units that
    serve bf16/fp16/fp32, under the name FlashInfer's loader looks up, without the FP8/FP4 macros."""
    probe = ("import json; from fused_moe_90_bf16 import gen_fused_moe_90_bf16_module as gen; s = gen(); "
             "print(json.dumps([s.name, [str(p) for p in s.sources], s.extra_cuda_cflags]))")
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{ROOT / 'aot_build' / 'generators'}",
               FLASHINFER_WORKSPACE_BASE=str(tmp_path), FLASHINFER_CUDA_ARCH_LIST="9.0a")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name, sources, flags = json.loads(proc.stdout.splitlines()[-1])
    assert name == "fused_moe_90" and len(sources) == 56
    assert not any("fp8" in Path(s).name or "fp4" in Path(s).name or "_Mixed_" in s for s in sources)
    assert "-Duse_fp8_input=false" in flags and "-DENABLE_BF16" in flags
    assert not {"-DENABLE_FP8", "-DENABLE_FP4", "-DENABLE_FP8_BLOCK_SCALE"} & set(flags)
