"""The traced SM121 AOT manifest (aot_build/trace_jit_specs.py), re-traced on CPU from the applied tree
(about 40 s): the committed trace is what the workloads request now (nvcc modules and CuTe-DSL kernel
keys), the manifest is its union, and every manifest entry's generator(**args) re-creates a module of
that name; the H200 measurement manifest's CuTe-DSL part is a current 9.0 trace.

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
H200_TRACE = ROOT / "aot_build" / "traces" / "sm90_cute_dsl.json"
H200_MANIFEST = ROOT / "aot_build" / "manifests" / "h200_norm_cute_dsl.json"


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
    assert committed["cute_dsl"] == manifest["cute_dsl"]
    keys = [{"getter": k["getter"], "args": k["args"]} for ks in trace["cute_dsl"].values() for k in ks]
    assert committed["cute_dsl"] == list({json.dumps(k, sort_keys=True): k for k in keys}.values())


def test_sm121_cute_dsl_kernels_all_go_through_the_kernel_cache(traced: tuple[dict, dict]) -> None:
    """Every CuTe-DSL kernel the SM121 call paths compile is one `make wheel` can export (none calls
    cute.compile outside flashinfer.cute_dsl.kernel_cache), every step runs, and each workload reaches
    its norms: gpt-oss RMSNorm (+ residual) at 2880, Qwen3-Next Gemma norms at 2048 and its q/k norm."""
    trace, _ = traced
    assert trace["cute_dsl_not_exported"] == {} and trace["steps_not_supported"] == {}
    apis = {name: [k["api"] for k in keys] for name, keys in trace["cute_dsl"].items()}
    assert apis == {"gpt_oss_120b": ["flashinfer.rmsnorm", "flashinfer.fused_add_rmsnorm"],
                    "qwen3_next_nvfp4": ["flashinfer.gemma_rmsnorm", "flashinfer.gemma_fused_add_rmsnorm",
                                         "flashinfer.gemma_rmsnorm (q/k-norm over heads)"]}
    assert {k["arch"] for keys in trace["cute_dsl"].values() for k in keys} == {"sm_121a"}


def test_h200_cute_dsl_manifest_is_current(tree: Path, tmp_path: Path) -> None:
    _tracer(tree, "--arch", "9.0", "--cute-dsl-only", ROOT / "aot_build/manifests/default.json",
            "--trace", tmp_path / "trace.json", "--manifest", tmp_path / "manifest.json")
    assert json.loads((tmp_path / "trace.json").read_text()) == json.loads(H200_TRACE.read_text())
    committed = json.loads(H200_MANIFEST.read_text())
    fresh = json.loads((tmp_path / "manifest.json").read_text())
    assert committed == fresh | {"trace": str(H200_TRACE.relative_to(ROOT))}
    assert committed["modules"] == json.loads((ROOT / "aot_build/manifests/default.json").read_text())["modules"]


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
