"""`make gpu-test` without a GPU: its plan for each arch, its early exit, how it judges and compares
test runs, the pinned upstream test files, and the carrier's two-part stash."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import ROOT
from fiseries.carrier import Carrier, Incomplete
from fiseries.gpu_plan import SM12X_SKIP_REASON, arch_of_capability, moe_not_run, resolve_plan
from fiseries.gpu_test import StepResult, compare_upstream, judge_tests, parse_junit
from fiseries.upstream_tests import PINS, blob_id, fill_from_git, load_pins, materialise
from fiseries.errors import SeriesError

SM12X_TESTS = {"series-sm12x-small-m-moe", "series-sm12x-act-granularity", "series-mm-fp4-workspace"}


MOE_STEPS = {"upstream-trtllm-cutlass-fused-moe-pristine", "upstream-trtllm-cutlass-fused-moe-patched",
             "series-moe-call-cache", "series-moe-graph-memcheck", "bench-moe-call-overhead-pristine",
             "bench-moe-call-overhead-patched", "bench-moe-call-overhead-summary"}
SM12X_ONLY_STEPS = {"upstream-b12x-fused-moe-pristine", "upstream-b12x-fused-moe-patched", "bench-sm12x-moe-decode"}


@pytest.mark.parametrize("arch", ["9.0a", "12.0a", "12.1a"])
def test_plan_resolves(arch: str) -> None:
    plan = resolve_plan(arch)
    pins = load_pins(ROOT / PINS)
    ids = [s.id for s in plan.steps]
    assert len(ids) == len(set(ids))
    for step in plan.steps:
        if step.kind == "series-test":
            assert all((ROOT / p.split("::")[0]).is_file() for p in step.argv), step
        elif step.kind == "upstream-test":
            assert step.upstream_file in pins.files, f"{step.upstream_file} is not pinned in {PINS}"
        else:
            assert (ROOT / step.argv[0]).is_file(), step
    # every upstream file runs on pristine and patched alike
    upstream = [s for s in plan.steps if s.kind == "upstream-test"]
    pairs = {(s.upstream_file, s.site): s.not_run for s in upstream}
    assert all(pairs[(f, "pristine")] == pairs[(f, "patched")] for f, _ in pairs)
    assert {s.id for s in plan.steps if s.sm12x_runtime} == SM12X_TESTS
    not_run = {s.id: s.not_run for s in plan.steps if s.not_run}
    if arch.startswith("12."):
        assert not not_run, not_run
    else:
        assert not_run.keys() == SM12X_ONLY_STEPS | MOE_STEPS
        assert all("SM120/SM121" in not_run[s] for s in SM12X_ONLY_STEPS)
        assert all("bf16 build" in not_run[s] and "MOE90_WHEEL" in not_run[s] for s in MOE_STEPS)
        assert {"upstream-norm-pristine", "upstream-norm-patched", "bench-norm-quant"} <= set(ids)
        with_module = resolve_plan(arch, moe90=True)
        assert {s.id for s in with_module.steps if s.not_run} == SM12X_ONLY_STEPS
        # no MoE step may fall back to JIT-building the full module
        assert all(("FLASHINFER_DISABLE_JIT", "1") in s.env for s in with_module.steps
                   if s.id in MOE_STEPS - {"bench-moe-call-overhead-summary"})


def test_plan_moe_steps_elsewhere() -> None:
    assert moe_not_run("12.1a", False) is None and moe_not_run("9.0a", True) is None
    assert "neither the series' wheel nor" in (moe_not_run("10.0a", True) or "")
    memcheck = next(s for s in resolve_plan("9.0a", moe90=True).steps if s.id == "series-moe-graph-memcheck")
    assert memcheck.wrapper[0] == "compute-sanitizer" and "::" in memcheck.argv[0]


def test_plan_only_marks_the_other_steps_not_run() -> None:
    plan = resolve_plan("9.0a")
    chosen = ["bench-norm-quant", "bench-norm-quant-summary"]
    partial = plan.only(chosen)
    assert [s.id for s in partial.runnable] == chosen
    for step, before in zip(partial.steps, plan.steps, strict=True):
        assert step.id == before.id
        if step.id not in chosen:
            assert step.not_run == (before.not_run or "not selected in this run (--only)")
    with pytest.raises(ValueError, match="no such gpu-test step: nope"):
        plan.only(["nope"])


def test_plan_arch_names() -> None:
    assert arch_of_capability(12, 1) == "12.1a" and arch_of_capability(9, 0) == "9.0a"
    assert arch_of_capability(8, 9) == "8.9"
    with pytest.raises(ValueError, match="SM89 or newer"):
        resolve_plan("8.0")


def _fake_smi(tmp_path: Path, script: str | None) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if script is not None:
        smi = bin_dir / "nvidia-smi"
        smi.write_text(f"#!/bin/sh\n{script}\n")
        smi.chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin", PYTHONPATH=str(ROOT))


@pytest.mark.parametrize("smi", [None, "echo 'NVIDIA-SMI has failed' >&2; exit 9", "exit 0"],
                         ids=["no-nvidia-smi", "smi-fails", "no-gpu-listed"])
def test_gpu_test_without_gpu_exits_early(tmp_path: Path, smi: str | None) -> None:
    proc = subprocess.run([sys.executable, "-m", "fiseries", "--root", str(ROOT), "gpu-test"],
                          capture_output=True, text=True, env=_fake_smi(tmp_path, smi), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no CUDA GPU" in proc.stderr and "make test" in proc.stderr, proc.stderr
    assert not (ROOT / ".venv-gpu").exists() or proc.stdout == ""


def test_gpu_test_on_a_gpu_older_than_sm89_exits_early(tmp_path: Path) -> None:
    env = _fake_smi(tmp_path, "echo 'NVIDIA A100-SXM4-80GB, 8.0, 580.1, 81920'")
    proc = subprocess.run([sys.executable, "-m", "fiseries", "--root", str(ROOT), "gpu-test"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "SM89 or newer" in proc.stderr, proc.stdout + proc.stderr


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.utils.test_norm" name="test_a[1]"/>
<testcase classname="tests.utils.test_norm" name="test_a[2]"><failure message="boom"/></testcase>
<testcase classname="tests.utils.test_norm" name="test_b"><skipped message="needs an SM120/SM121 GPU"/></testcase>
<testcase classname="tests.utils.test_norm" name="test_c"><error message="setup"/></testcase>
</testsuite></testsuites>"""


def test_junit_judging_and_upstream_comparison(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    outcomes, reasons = parse_junit(path)
    assert outcomes == {"tests.utils.test_norm::test_a[1]": "passed", "tests.utils.test_norm::test_a[2]": "failed",
                        "tests.utils.test_norm::test_b": "skipped", "tests.utils.test_norm::test_c": "error"}
    assert reasons == {"needs an SM120/SM121 GPU": 1}
    plan = resolve_plan("9.0a")
    series = next(s for s in plan.steps if s.id == "series-sm12x-small-m-moe")
    upstream = next(s for s in plan.steps if s.id == "upstream-norm-patched")
    assert "2 failed" in judge_tests(series, False, outcomes, reasons, 1)[0]
    assert judge_tests(upstream, False, outcomes, reasons, 1) == []  # judged pristine vs patched instead
    only_skips = {"t::b": "skipped"}
    assert judge_tests(series, False, only_skips, {"needs an SM120/SM121 GPU": 1}, 0) == []
    assert "must run" in judge_tests(series, True, only_skips, {"needs an SM120/SM121 GPU": 1}, 0)[0]
    assert "other than" in judge_tests(series, False, only_skips, {"no triton": 1}, 0)[0]
    assert "no tests collected" in judge_tests(series, False, {}, {}, 5)[0]
    assert SM12X_SKIP_REASON in "needs an SM120/SM121 GPU"

    pristine = StepResult("p", "passed", outcomes={"a": "passed", "b": "skipped", "c": "failed", "d": "passed",
                                                   "e": "passed"})
    patched = StepResult("q", "passed", outcomes={"a": "passed", "b": "failed", "c": "failed", "d": "skipped"})
    problems = compare_upstream(pristine, patched)
    assert problems == ["b: skipped on pristine, failed on patched", "d: passed on pristine, skipped on patched",
                        "e: passed on pristine, not collected on patched"]


def test_upstream_test_pins(tmp_path: Path) -> None:
    repo = tmp_path / "upstream"
    repo.mkdir()
    (repo / "tests").mkdir()
    (repo / "tests" / "test_x.py").write_text("def test_x():\n    assert True\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    blob = subprocess.run([*git, "rev-parse", "HEAD:tests/test_x.py"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert blob_id((repo / "tests" / "test_x.py").read_bytes()) == blob
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    pins_file = tmp_path / "pins.json"
    pins_file.write_text(json.dumps({"repository": "o/r", "commit": commit, "date": "d",
                                     "files": {"tests/test_x.py": blob}}))
    pins = load_pins(pins_file)
    cache = tmp_path / "cache"
    assert fill_from_git(pins, repo / ".git", cache) == ["tests/test_x.py"]
    out = materialise(pins, cache, tmp_path / "out")
    assert out == [tmp_path / "out" / "tests" / "test_x.py"] and out[0].read_bytes() == (cache / blob).read_bytes()
    (cache / blob).write_text("tampered\n")  # a cached file that fails its blob id is not used
    with pytest.raises(SeriesError, match="cannot download"):
        materialise(load_pins(pins_file), cache, tmp_path / "out2")
    real = load_pins(ROOT / PINS)
    assert len(real.commit) == 40 and all(len(b) == 40 for b in real.files.values())
    assert "tests/utils/test_norm.py" in real.files and "tests/utils/test_fp8_quantize.py" in real.files


def test_carrier_waits_for_its_parts(tmp_path: Path) -> None:
    """Part 1 alone is stashed (the first call); with part 2 the carrier opens and its parts join."""
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "pkg.py").write_text("VALUE = 1\n")
    packed = tmp_path / "packed.tar.xz"
    with tarfile.open(packed, "w:xz") as tar:
        tar.add(payload / "pkg.py", arcname="pkg.py")
    data = packed.read_bytes()
    carrier = tmp_path / "carrier"
    (carrier / "1").mkdir(parents=True)
    (carrier / "1" / "x.tar.xz.part1").write_bytes(data[:100])
    stash = tmp_path / "stash"
    with pytest.raises(Incomplete, match="no carrier.json"):
        Carrier.open(carrier, stash)
    assert (stash / "x.tar.xz.part1").read_bytes() == data[:100]
    # the second call: part 1 is no longer carried, part 2 and the metadata are
    (carrier / "1" / "x.tar.xz.part1").unlink()
    (carrier / "2").mkdir()
    meta = {"series_sha256": "s", "archs": ["9.0a"], "wheels": [], "aot_wheel": "a.whl",
            "packed": [{"name": "x.whl", "sha256": hashlib.sha256(data).hexdigest(),
                        "parts": ["x.tar.xz.part1", "x.tar.xz.part2", "x.tar.xz.part3"]}]}
    (carrier / "2" / "carrier.json").write_text(json.dumps(meta))
    (carrier / "2" / "x.tar.xz.part2").write_bytes(data[100:200])
    with pytest.raises(Incomplete, match="part3"):
        Carrier.open(carrier, stash)
    (carrier / "2" / "x.tar.xz.part3").write_bytes(data[200:])
    opened = Carrier.open(carrier, stash)
    assert opened.root == carrier / "2"
    assert opened.moe90_wheel is None  # a carrier built without the MoE module
    opened.check_for("s", "9.0a")
    with pytest.raises(SeriesError, match="make gpu-carrier"):
        opened.check_for("other", "9.0a")
    with pytest.raises(SeriesError, match="12.1a"):
        opened.check_for("s", "12.1a")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    opened.install(venv / "bin" / "python")
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", "import pkg; print(pkg.VALUE)"],
                          capture_output=True, text=True)
    assert proc.stdout.strip() == "1", proc.stderr


def test_dist_wheels_are_taken_only_for_this_series_and_arch(tmp_path: Path) -> None:
    from fiseries.gpu_env import _dist_wheels
    from fiseries.layout import Layout
    from fiseries.lock import LOCK_NAME, load_lock
    from fiseries.wheel import local_version, series_hash

    layout = Layout.for_lock(load_lock(ROOT / LOCK_NAME))
    patched = tmp_path / f"flashinfer_python-{local_version(layout)}-py3-none-any.whl"
    aot = tmp_path / f"flashinfer_jit_cache-{local_version(layout)}-py3-none-linux_x86_64.whl"
    assert _dist_wheels(layout, tmp_path, "12.1a") is None  # no dist/manifest.json: build them
    for wheel in (patched, aot):
        wheel.write_bytes(b"")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"series_sha256": series_hash(layout), "archs": ["12.1a"]}))
    assert _dist_wheels(layout, tmp_path, "12.1a") == (patched, aot)
    assert _dist_wheels(layout, tmp_path, "12.0a") is None  # built for another arch
    manifest.write_text(json.dumps({"series_sha256": "0" * 64, "archs": ["12.1a"]}))
    assert _dist_wheels(layout, tmp_path, "12.1a") is None  # built from another series


def test_gpu_pins_cover_what_a_carrier_takes_along() -> None:
    from fiseries.carrier import CARRIED, PACKED
    from fiseries.requirements import gpu_pins

    pins = gpu_pins(ROOT)
    assert pins["torch"] == "2.11.0" and pins["nvidia-cutlass-dsl"] == "4.8.1"
    assert all(name in pins for name in CARRIED + PACKED)
    assert len({pins[n] for n in pins if n.startswith("nvidia-cutlass-dsl")}) == 1  # one DSL version


def test_moe90_module_lands_where_flashinfer_looks_first(tmp_path: Path) -> None:
    import zipfile

    from fiseries.gpu_env import MOE90_IN_WHEEL, install_moe90_module

    wheel = tmp_path / "flashinfer_jit_cache-0.7.4+sm12x.6-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(MOE90_IN_WHEEL, b"\x7fELF module")
    sites = [tmp_path / "pristine", tmp_path / "patched"]
    install_moe90_module(wheel, sites)
    for site in sites:  # flashinfer.jit.env.FLASHINFER_AOT_DIR / name / name.so
        assert (site / "flashinfer/data/aot/fused_moe_90/fused_moe_90.so").read_bytes() == b"\x7fELF module"
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("flashinfer_jit_cache/__init__.py", "")
    with pytest.raises(SeriesError, match="fused_moe_90_bf16.json"):
        install_moe90_module(empty, sites)
