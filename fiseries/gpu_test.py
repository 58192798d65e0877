"""`make gpu-test`: the series' GPU tests, upstream's own tests (pristine and patched) and the
benchmarks on the GPU of this machine, resumable, into build/gpu-test/gpu-report.{md,json}.

Environments: a GPU venv (.venv-gpu) from ci/gpu-requirements.txt; FlashInfer installed twice beside
it, upstream's release (sites/pristine) and the series' wheel with its AOT modules (sites/patched),
each step choosing one through PYTHONPATH, with its own JIT workspace. Without network (the lent
GPU machine) a carrier made by `make gpu-carrier` brings what pip would download.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .carrier import Carrier, Incomplete
from .errors import SeriesError
from .gpu_env import (Device, Environment, NoGpu, detect_device, gpu_venv, install_moe90_module, install_sites,
                      probe_environment)
from .gpu_plan import NO_JIT, SM12X_SKIP_REASON, Plan, Step, is_sm12x, resolve_plan
from .layout import Layout
from .upstream_tests import PINS as UPSTREAM_TEST_PINS, load_pins, materialise as materialise_tests
from .wheel import local_version, series_hash

NO_GPU = 2  # exit status: no CUDA GPU here
INCOMPLETE = 75  # exit status: the time budget ran out; run again to resume
MIN_STEP_SECONDS = 20
CUDA_BIN = "/usr/local/cuda/bin"  # compute-sanitizer, when it is not on PATH


@dataclass(frozen=True)
class Context:
    """Where one gpu-test run keeps things (build/gpu-test) and what its steps run with."""

    layout: Layout
    device: Device
    state: Path
    python: Path
    sites: dict[str, list[Path]]  # site name -> PYTHONPATH entries
    aot_wheel: Path
    upstream_tests: Path
    cpus: int

    @property
    def root(self) -> Path:
        return self.layout.lock.root

    def results(self, step: Step) -> Path:
        return self.state / "results" / step.id

    def env(self, step: Step) -> dict[str, str]:
        paths = self.sites[step.site] + ([self.upstream_tests] if step.kind == "upstream-test" else [])
        env = dict(os.environ, PYTHONPATH=":".join(str(p) for p in paths),
                   FLASHINFER_WORKSPACE_BASE=str(self.state / "workspace" / step.site),
                   FLASHINFER_CUDA_ARCH_LIST=self.device.arch, MAX_JOBS=str(self.cpus), PYTHONUNBUFFERED="1",
                   PATH=f"{self.python.parent}:{os.environ.get('PATH', '')}:{CUDA_BIN}", **dict(step.env))
        env.pop("PYTHONHOME", None)
        return env


# --- steps ---------------------------------------------------------------------------------------


@dataclass
class StepResult:
    id: str
    status: str  # passed | failed | not-run | interrupted
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)  # test id -> passed/failed/error/skipped
    skip_reasons: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    log: str = ""
    files: list[str] = field(default_factory=list)
    key: str = ""


def parse_junit(path: Path) -> tuple[dict[str, str], dict[str, int]]:
    """pytest's junit XML -> {test id: outcome}, {skip reason: count}."""
    outcomes: dict[str, str] = {}
    reasons: dict[str, int] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
            elif child.tag == "skipped":
                outcome = "skipped"
                reason = (child.get("message") or "").strip()
                reasons[reason] = reasons.get(reason, 0) + 1
        if outcomes.get(test_id) in ("failed", "error"):
            continue  # a teardown error reported after the call keeps the failure
        outcomes[test_id] = outcome
    return outcomes, reasons


def judge_tests(step: Step, sm12x: bool, outcomes: dict[str, str], reasons: dict[str, int],
                returncode: int) -> list[str]:
    """What is wrong with a pytest run of `step` (empty: it passed)."""
    problems = []
    failed = [t for t, o in outcomes.items() if o in ("failed", "error")]
    if not outcomes:
        problems.append(f"no tests collected (pytest exit {returncode})")
    elif failed and step.kind != "upstream-test":  # upstream runs are judged pristine vs patched
        problems.append(f"{len(failed)} failed: " + ", ".join(failed[:10]))
    elif returncode not in (0, 1):
        problems.append(f"pytest exit {returncode}")
    if step.sm12x_runtime and sm12x and reasons:
        problems.append("skipped on an SM12x GPU, where these tests must run: " + "; ".join(reasons))
    if step.sm12x_runtime and not sm12x:
        stray = [r for r in reasons if SM12X_SKIP_REASON not in r]
        if stray:
            problems.append("skipped for a reason other than needing SM120/SM121: " + "; ".join(stray))
    return problems


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _execute(cmd: list[str], env: dict[str, str], cwd: Path, log: Path, timeout: float) -> int | None:
    """Run cmd with its output in `log`; None when it outlives `timeout` (its process group is killed)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return None
        except BaseException:
            _kill_group(proc)
            raise


def xdist_workers(cpus: int) -> int:
    """pytest-xdist workers for a run given `cpus` (one left for the controller)."""
    return max(1, min(8, cpus - 1))


def step_command(ctx: Context, step: Step, junit: Path, cpus: int) -> tuple[list[str], Path]:
    if step.kind == "bench":
        ctx.results(step).mkdir(parents=True, exist_ok=True)
        fields = {"results": str(ctx.results(step)), "state": str(ctx.state), "site": str(ctx.sites["patched"][-1]),
                  "aot_wheel": str(ctx.aot_wheel), "series_json": str(ctx.state / "series.json")}
        script, *args = step.argv
        return [str(ctx.python), str(ctx.root / script), *(a.format(**fields) for a in args)], ctx.state / "work"
    if step.kind == "upstream-test":  # upstream's checkout layout and its own pytest.ini
        rootdir = ctx.upstream_tests
        paths = [str(rootdir / p) for p in step.argv]
        ini = rootdir / "pytest.ini"
    else:
        rootdir = ctx.root / "csrc_overrides" / "tests"
        paths = [str(ctx.root / p) for p in step.argv]
        ini = ctx.state / "pytest.ini"
        ini.write_text("[pytest]\n")
    cmd = [str(ctx.python), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-c", str(ini),
           "--rootdir", str(rootdir), f"--junitxml={junit}"]
    if step.parallel:
        cmd += ["-n", str(xdist_workers(cpus))]
    return [*step.wrapper, *cmd, *paths], ctx.state / "work"


def run_step(ctx: Context, step: Step, timeout: float, key: str, beside: int = 1) -> StepResult:
    """One step; `beside` steps run at once share the CPUs."""
    log = ctx.state / "logs" / f"{step.id}.log"
    junit = ctx.state / "junit" / f"{step.id}.xml"
    junit.unlink(missing_ok=True)
    cmd, cwd = step_command(ctx, step, junit, ctx.cpus // beside)
    env = ctx.env(step)
    result = StepResult(step.id, "passed", log=str(log.relative_to(ctx.state)), key=key)
    if shutil.which(cmd[0], path=env["PATH"]) is None:
        result.status = "failed"
        result.problems.append(f"{cmd[0]} is not on PATH nor in {CUDA_BIN}")
        return result
    started = time.monotonic()
    returncode = _execute(cmd, env, cwd, log, timeout)
    result.seconds = round(time.monotonic() - started, 1)
    if returncode is None:
        result.status = "interrupted"
        result.problems.append(f"stopped after {timeout:.0f} s: the run's budget ran out")
        return result
    if step.kind == "bench":
        results = ctx.results(step)
        result.files = sorted(str(p.relative_to(ctx.state)) for p in results.rglob("*") if p.is_file()) \
            if results.is_dir() else []
        if returncode != 0:
            result.problems.append(f"exit {returncode}; see {result.log}")
    elif not junit.is_file():
        result.problems.append(f"pytest wrote no report (exit {returncode}); see {result.log}")
    else:
        result.outcomes, result.skip_reasons = parse_junit(junit)
        for outcome in result.outcomes.values():
            result.counts[outcome] = result.counts.get(outcome, 0) + 1
        result.problems += judge_tests(step, is_sm12x(ctx.device.arch), result.outcomes, result.skip_reasons,
                                       returncode)
    if result.problems:
        result.status = "failed"
    return result


def compare_upstream(pristine: StepResult, patched: StepResult) -> list[str]:
    """Tests upstream passes (or skips) on its own release that fail, error or vanish on the series."""
    problems = []
    for test, before in pristine.outcomes.items():
        after = patched.outcomes.get(test)
        if after is None:
            problems.append(f"{test}: {before} on pristine, not collected on patched")
        elif after in ("failed", "error") and before in ("passed", "skipped"):
            problems.append(f"{test}: {before} on pristine, {after} on patched")
        elif after == "skipped" and before == "passed":
            problems.append(f"{test}: passed on pristine, skipped on patched")
    return problems


MOE90_CHECK = """
import time
from flashinfer.fused_moe import core
from flashinfer.jit import env
started = time.perf_counter()
core.get_cutlass_fused_moe_module("90")
(artifact,) = env.get_aot_artifacts("fused_moe_90")
print(f"fused_moe_90 loaded from {artifact.path} in {time.perf_counter() - started:.1f} s")
"""


def check_moe90_loads(ctx: Context) -> None:
    """Before any step: both sites load the bf16 SM90 fused-MoE module through FlashInfer's own lookup, JIT off."""
    for site in ("pristine", "patched"):
        log = ctx.state / "logs" / f"moe90-load-{site}.log"
        env = ctx.env(Step(f"moe90-load-{site}", "bench", site, (), env=NO_JIT))
        returncode = _execute([str(ctx.python), "-c", MOE90_CHECK], env, ctx.state / "work", log, 600)
        if returncode != 0:
            raise SeriesError(f"the bf16 SM90 fused-MoE module does not load in sites/{site} "
                              f"(exit {returncode}): {log.read_text()[-1500:]}")
        print(f"gpu-test: {site}: {log.read_text().strip().splitlines()[-1]}", flush=True)


# --- the run -------------------------------------------------------------------------------------


def _load_result(path: Path) -> StepResult | None:
    if not path.is_file():
        return None
    return StepResult(**json.loads(path.read_text()))


def _units(plan: Plan) -> list[list[Step]]:
    """Steps in plan order, an upstream file's pristine and patched runs as one unit (run side by side)."""
    units: list[list[Step]] = []
    by_file: dict[str, list[Step]] = {}
    for step in plan.steps:
        if step.upstream_file is not None and step.upstream_file in by_file:
            by_file[step.upstream_file].append(step)
            continue
        units.append([step])
        if step.upstream_file is not None:
            by_file[step.upstream_file] = units[-1]
    return units


def run_plan(ctx: Context, plan: Plan, budget_s: float | None) -> tuple[list[StepResult], bool]:
    """Every step of the plan not already done under the same key; (results, complete)."""
    deadline = None if budget_s is None else time.monotonic() + budget_s
    steps_dir = ctx.state / "steps"
    steps_dir.mkdir(parents=True, exist_ok=True)
    series = series_hash(ctx.layout)
    done: dict[str, StepResult] = {}
    complete = True
    for unit in _units(plan):
        todo = []
        for step in unit:
            key = f"{series}:{ctx.device.name}:{plan.arch}:{' '.join(step.argv)}:{step.env}"
            saved = _load_result(steps_dir / f"{step.id}.json")
            if step.not_run is not None:
                done[step.id] = StepResult(step.id, "not-run", problems=[step.not_run], key=key)
            elif saved is not None and saved.key == key and saved.status in ("passed", "failed"):
                done[step.id] = saved
            else:
                todo.append((step, key))
        if not todo:
            continue
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining < MIN_STEP_SECONDS:
            for step, key in todo:
                done[step.id] = StepResult(step.id, "interrupted", problems=["not started: the budget ran out"],
                                           key=key)
            complete = False
            continue
        print(f"gpu-test: {', '.join(s.id for s, _ in todo)} ...", flush=True)
        timeout = remaining if remaining is not None else 24 * 3600
        with ThreadPoolExecutor(len(todo)) as pool:
            futures = [pool.submit(run_step, ctx, step, timeout, key, len(todo)) for step, key in todo]
            for future in futures:
                result = future.result()
                print(f"gpu-test: {result.id}: {result.status} in {result.seconds:.0f} s {result.counts or ''}",
                      flush=True)
                complete = complete and result.status != "interrupted"
                (steps_dir / f"{result.id}.json").write_text(json.dumps(asdict(result)) + "\n")
                done[result.id] = result
    results = [done[s.id] for s in plan.steps]
    by_id = {r.id: r for r in results}
    for step in plan.steps:
        if step.kind == "upstream-test" and step.site == "patched" and step.not_run is None:
            pristine = by_id[step.id.removesuffix("-patched") + "-pristine"]
            patched = by_id[step.id]
            if pristine.status in ("passed", "failed") and patched.status in ("passed", "failed"):
                patched.problems += compare_upstream(pristine, patched)
                patched.status = "failed" if patched.problems else "passed"
    return results, complete


# --- the report ----------------------------------------------------------------------------------


def _counts(result: StepResult) -> str:
    c = result.counts
    return f"{c.get('passed', 0)} / {c.get('failed', 0) + c.get('error', 0)} / {c.get('skipped', 0)}"


def write_report(ctx: Context, plan: Plan, results: list[StepResult], environment: Environment,
                 complete: bool) -> tuple[Path, Path]:
    lock = ctx.layout.lock
    pins = load_pins(ctx.root / UPSTREAM_TEST_PINS)
    by_id = {r.id: r for r in results}
    steps = []
    for step in plan.steps:
        record = asdict(by_id[step.id])
        record.pop("outcomes")
        record.pop("key")
        steps.append({"kind": step.kind, "site": step.site, "upstream_file": step.upstream_file, **record})
    failed = [r.id for r in results if r.status == "failed"]
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": {**asdict(ctx.device), "arch": ctx.device.arch},
        "host": {"machine": platform.machine(), "cpus": ctx.cpus, "system": platform.platform()},
        "environment": environment.to_json(),
        "series": {"sha256": series_hash(ctx.layout), "version": local_version(ctx.layout)},
        "upstream": {"version": lock.main.version, "revision": lock.main.revision},
        "upstream_tests": {"repository": pins.repository, "commit": pins.commit, "date": pins.date,
                           "files": pins.files},
        "complete": complete,
        "ok": complete and not failed,
        "failed": failed,
        "steps": steps,
    }
    json_path = ctx.state / "gpu-report.json"
    json_path.write_text(json.dumps(report, indent=1) + "\n")

    env = environment
    deviations = [p for p in env.pins if not p.ok]
    verdict = ("PASS" if report["ok"] else "FAIL: " + ", ".join(failed)) if complete else \
        "INCOMPLETE: run `make gpu-test` again to resume"
    lines = [f"# gpu-test report: {verdict}", "",
             f"- device: {ctx.device.name} (sm_{ctx.device.capability.replace('.', '')}, {ctx.device.arch}), "
             f"driver {ctx.device.driver}, {ctx.device.memory_mib} MiB",
             f"- host: {platform.machine()}, {ctx.cpus} CPUs; Python {env.python}, torch {env.torch} "
             f"(CUDA {env.cuda})",
             f"- series {series_hash(ctx.layout)[:12]} ({local_version(ctx.layout)}) on upstream "
             f"{lock.main.version} ({lock.main.revision[:12]})",
             f"- upstream tests: {pins.repository} at {pins.commit[:12]} ({pins.date})",
             "- pinned packages not as pinned: " + (", ".join(f"{p.name} {p.installed} (pin {p.pinned})"
                                                            for p in deviations) or "none"),
             f"- {report['date']}", "",
             "| step | site | status | passed / failed / skipped | s | notes |", "|---|---|---|---|---|---|"]
    for step in plan.steps:
        r = by_id[step.id]
        notes = "; ".join(r.problems)[:400] or "; ".join(f"{n}x skipped: {k}" for k, n in r.skip_reasons.items())[:300]
        lines.append(f"| {step.id} | {step.site} | {r.status} | {_counts(r) if r.counts else ''} | "
                     f"{r.seconds:.0f} | {notes.replace('|', '/')} |")
    for step in plan.steps:
        r = by_id[step.id]
        for rel in r.files:
            if rel.endswith(".md"):
                lines += ["", f"## {step.id}: {Path(rel).name}", "", (ctx.state / rel).read_text().strip()]
    md_path = ctx.state / "gpu-report.md"
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, json_path


def gpu_test(layout: Layout, carrier_dir: Path | None, dist: Path, budget_s: float | None, fresh: bool,
             only: list[str] | None = None, moe90_wheel: Path | None = None) -> int:
    """The whole run (or the steps in `only`); returns the exit status (0 pass, 1 a failure, NO_GPU,
    INCOMPLETE). `moe90_wheel`: the bf16 SM90 fused-MoE module's wheel (a carrier may bring it instead)."""
    root = layout.lock.root
    try:
        device = detect_device()
    except NoGpu as err:
        print(f"gpu-test: {err}", file=sys.stderr)
        return NO_GPU
    try:
        carrier = Carrier.open(carrier_dir.resolve()) if carrier_dir is not None else None
    except Incomplete as err:
        print(f"gpu-test: {err}", file=sys.stderr)
        return INCOMPLETE
    if carrier is not None and carrier.moe90_wheel is not None:
        moe90_wheel = carrier.moe90_wheel
    try:
        plan = resolve_plan(device.arch, moe90=moe90_wheel is not None)
    except ValueError as err:  # a GPU older than SM89
        print(f"gpu-test: {err}", file=sys.stderr)
        return NO_GPU
    if only:
        try:
            plan = plan.only(only)
        except ValueError as err:
            raise SeriesError(str(err)) from err
    state = layout.build / "gpu-test"
    if fresh:
        shutil.rmtree(state / "steps", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    print(f"gpu-test: {device.name} ({device.arch}); {len(plan.runnable)} of {len(plan.steps)} steps run here",
          flush=True)
    python = gpu_venv(root, carrier)
    environment = probe_environment(python, root)
    if not environment.gpu_visible:
        raise SeriesError(f"torch in .venv-gpu ({environment.torch}) sees no GPU: install a CUDA build "
                          f"(ci/gpu-requirements.txt) matching the driver {device.driver}")
    sites, aot_wheel = install_sites(layout, python, state, device.arch, carrier, dist.resolve())
    moe90 = moe90_wheel if device.arch == "9.0a" else None
    if moe90 is not None:
        install_moe90_module(moe90, [sites["pristine"][-1], sites["patched"][-1]])
    tests_dir = state / "upstream-tests"
    shutil.rmtree(tests_dir, ignore_errors=True)
    pins = load_pins(root / UPSTREAM_TEST_PINS)
    materialise_tests(pins, carrier.upstream_tests if carrier else root / ".cache" / "upstream-tests", tests_dir)
    ctx = Context(layout, device, state, python, sites, aot_wheel, tests_dir, os.cpu_count() or 1)
    if moe90 is not None:
        check_moe90_loads(ctx)
    series = {"series_sha256": series_hash(layout), "version": local_version(layout),
              "upstream_version": layout.lock.main.version, "upstream_commit": layout.lock.main.revision}
    (state / "series.json").write_text(json.dumps(series, indent=1) + "\n")
    results, complete = run_plan(ctx, plan, budget_s)
    md_path, json_path = write_report(ctx, plan, results, environment, complete)
    print(md_path.read_text().split("\n\n## ")[0])
    print(f"gpu-test: report {md_path} and {json_path}")
    if not complete:
        return INCOMPLETE
    return 0 if all(r.status in ("passed", "not-run") for r in results) else 1
