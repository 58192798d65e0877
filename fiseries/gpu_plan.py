"""What `make gpu-test` runs on a GPU of a given arch: the plan, resolved without a GPU.

A plan is a list of steps. Each runs in its own process against one FlashInfer install (`site`):
upstream's own release (`pristine`) or the series' wheel with its AOT modules (`patched`). Steps that
cannot run on the arch stay in the plan with the reason, so the report says what was not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

Site = Literal["pristine", "patched"]
Kind = Literal["series-test", "upstream-test", "bench"]

ARCH_RE = re.compile(r"^(\d+)\.(\d+)(a?)$")
SM12X_SKIP_REASON = "SM120/SM121"  # what the series' SM12x runtime tests say when they skip
OVERRIDES = "csrc_overrides/tests"


@dataclass(frozen=True)
class Step:
    id: str
    kind: Kind
    site: Site
    argv: tuple[str, ...]  # a pytest target list (tests) or a script and its arguments (bench)
    sm12x_runtime: bool = False  # on SM12x: no test may skip; elsewhere: skips must name SM120/SM121
    not_run: str | None = None  # the reason this step does not run on the arch
    upstream_file: str | None = None  # for upstream tests: the pinned file it runs
    parallel: bool = False  # pytest-xdist workers (independent, light tests)
    env: tuple[tuple[str, str], ...] = ()  # extra environment variables for the step's process
    wrapper: tuple[str, ...] = ()  # a command the step's pytest runs under (compute-sanitizer)


@dataclass(frozen=True)
class Plan:
    arch: str
    steps: list[Step] = field(default_factory=list)

    @property
    def runnable(self) -> list[Step]:
        return [s for s in self.steps if s.not_run is None]

    def only(self, ids: list[str]) -> Plan:
        """The plan with every step not in `ids` marked not run (a partial run, said so in the report)."""
        unknown = sorted(set(ids) - {s.id for s in self.steps})
        if unknown:
            raise ValueError(f"no such gpu-test step: {', '.join(unknown)}")
        return Plan(self.arch, [s if s.id in ids or s.not_run is not None
                                else replace(s, not_run="not selected in this run (--only)")
                                for s in self.steps])


def parse_arch(arch: str) -> tuple[int, int]:
    m = ARCH_RE.match(arch)
    if not m:
        raise ValueError(f"arch {arch!r} is not like 9.0a, 12.0a or 12.1a")
    return int(m.group(1)), int(m.group(2))


def is_sm12x(arch: str) -> bool:
    return parse_arch(arch)[0] == 12


def arch_of_capability(major: int, minor: int) -> str:
    """torch / nvidia-smi compute capability -> FlashInfer's arch name ('a' where the arch has one)."""
    return f"{major}.{minor}" + ("a" if major >= 9 else "")


# The CUTLASS fused-MoE module the MoE steps load: in the series' AOT wheel on SM12x; on an H200 the bf16-only
# SM90 build (aot_build/manifests/fused_moe_90_bf16.json), when the run is given it; elsewhere not provided.
# FlashInfer must not fall back to JIT-building the full module (SM90: 248 units, about 30 min of 16 cores).
NO_JIT = (("FLASHINFER_DISABLE_JIT", "1"),)
MOE90_MISSING = ("needs FlashInfer's CUTLASS fused-MoE module for SM90: give the run the bf16 build (make wheel "
                 "ARCHS=9.0a AOT_MANIFEST=aot_build/manifests/fused_moe_90_bf16.json DIST=build/dist-moe90; make "
                 "gpu-test MOE90_WHEEL=...), or it would JIT-build the full module (248 units)")
MOE_OFF_ARCH = ("needs FlashInfer's CUTLASS fused-MoE module for this arch, which neither the series' wheel nor "
                "this run provides (the full module is hundreds of units to JIT-build)")


def moe_not_run(arch: str, moe90: bool) -> str | None:
    """Why the CUTLASS fused-MoE steps do not run on `arch` (None: they run)."""
    if is_sm12x(arch) or (arch == "9.0a" and moe90):
        return None
    return MOE90_MISSING if arch == "9.0a" else MOE_OFF_ARCH


# upstream's test files for the ops the series touches: (file, why it does not run off SM12x, xdist workers)
B12X_OFF_SM12X = ("SM120/SM121 MoE kernels (b12x, CuTe DSL); off SM12x only its dispatch unit tests could run, on "
                  "moe_dispatch.py, which the series does not change")
UPSTREAM_TESTS: tuple[tuple[str, str | None, bool], ...] = (
    ("tests/utils/test_norm.py", None, True),
    ("tests/utils/test_fp8_quantize.py", None, True),  # mostly SM100+: skips with upstream's reason
    ("tests/moe/test_b12x_w4a16_route_pack.py", None, False),  # the SM12x MoE package's routing, any GPU
    ("tests/moe/test_b12x_fused_moe.py", B12X_OFF_SM12X, False),
    ("tests/gemm/test_mm_fp4.py", None, False),  # SM100+ / SM12x: elsewhere it skips with upstream's reason
)
# runs where the CUTLASS fused-MoE module is there (moe_not_run); upstream marks it `solo`. With the bf16 SM90
# module its fp8 / fp4 cases fail alike on pristine and patched, so they count as no change.
CUTLASS_MOE_TESTS = "tests/moe/test_trtllm_cutlass_fused_moe.py"
SM12X_ONLY = "SM120/SM121 only: the series' MoE tiles and default tactic run there alone"


MOE_CALL_CACHE_TEST = f"{OVERRIDES}/moe/test_cutlass_fused_moe_call_cache.py"
# memory errors only: CUDA API errors (the DSL probing cuGetProcAddress at import) are not what is checked
MEMCHECK = ("compute-sanitizer", "--tool", "memcheck", "--report-api-errors", "no", "--error-exitcode", "86")


def _series_tests(moe: str | None) -> list[Step]:
    tests = [
        ("series-norm-quant", f"{OVERRIDES}/utils/test_norm_quant_fused.py", False),
        ("series-aot-manifest", f"{OVERRIDES}/test_aot_manifest.py", False),
        ("series-sm12x-default-tactic", f"{OVERRIDES}/sm12x_tiles/test_sm12x_default_tactic.py", False),
        ("series-sm12x-small-m-moe", f"{OVERRIDES}/sm12x_tiles/test_sm12x_small_m_moe.py", True),
        ("series-sm12x-act-granularity", f"{OVERRIDES}/moe/test_sm12x_mxfp8_act_granularity.py", True),
        ("series-mm-fp4-workspace", f"{OVERRIDES}/gemm/test_mm_fp4_sm120_workspace.py", True),
        ("series-cute-dsl-kernel-cache", f"{OVERRIDES}/utils/test_cute_dsl_kernel_cache.py", False),
    ]
    steps = [Step(step_id, "series-test", "patched", (path,), sm12x_runtime=runtime)
             for step_id, path, runtime in tests]
    steps.append(Step("series-moe-workspace-cache", "series-test", "patched",
                      (f"{OVERRIDES}/moe/test_moe_workspace_cache.py",
                       f"{OVERRIDES}/autotuner/test_autotuner_selection_generation.py")))
    steps.append(Step("series-moe-call-cache", "series-test", "patched", (MOE_CALL_CACHE_TEST,), not_run=moe,
                      env=NO_JIT))
    # #4827 under compute-sanitizer: the replay after the workspace grew touches no invalid memory
    steps.append(Step("series-moe-graph-memcheck", "series-test", "patched",
                      (f"{MOE_CALL_CACHE_TEST}::test_growth_after_capture_keeps_the_graph_workspace",),
                      not_run=moe, env=NO_JIT, wrapper=MEMCHECK))
    return steps


def _upstream_tests(sm12x: bool, moe: str | None) -> list[Step]:
    steps = []
    runs: list[tuple[str, str | None, bool, tuple[tuple[str, str], ...]]] = [
        (rel, None if sm12x else off_sm12x, parallel, ()) for rel, off_sm12x, parallel in UPSTREAM_TESTS]
    runs.insert(3, (CUTLASS_MOE_TESTS, moe, False, NO_JIT))
    for rel, not_run, parallel, env in runs:
        name = rel.rsplit("/", 1)[1].removeprefix("test_").removesuffix(".py").replace("_", "-")
        sites: tuple[Site, ...] = ("pristine", "patched")
        for site in sites:
            steps.append(Step(f"upstream-{name}-{site}", "upstream-test", site, (rel,),
                              not_run=not_run, upstream_file=rel, parallel=parallel, env=env))
    return steps


def _benchmarks(sm12x: bool, moe: str | None) -> list[Step]:
    overhead = "{state}/results/bench-moe-call-overhead-%s/moe_call_overhead.json"
    first_call = "{state}/results/bench-cute-dsl-first-call-%s/cute_dsl_first_call.json"
    return [
        Step("bench-norm-quant", "bench", "patched",
             ("bench/bench_norm_quant_fused.py", "--eager", "--series-json", "{series_json}", "--out", "{results}")),
        # the same, with upstream's norm ops on their CUDA fallback instead of the CuTe-DSL default
        Step("bench-norm-quant-cuda-fallback", "bench", "patched",
             ("bench/bench_norm_quant_fused.py", "--eager", "--series-json", "{series_json}", "--out", "{results}"),
             env=(("FLASHINFER_USE_CUDA_NORM", "1"),)),
        Step("bench-norm-quant-summary", "bench", "patched",
             ("bench/summarize_norm_quant.py", "{state}/results/bench-norm-quant/bench_norm_quant_fused.json",
              "{results}/norm_quant_fused_summary.md", "--fallback",
              "{state}/results/bench-norm-quant-cuda-fallback/bench_norm_quant_fused.json")),
        Step("bench-aot-first-call", "bench", "patched",
             ("bench/aot_first_call.py", "--site", "{site}", "--aot-wheel", "{aot_wheel}", "--out", "{results}")),
        *(Step(f"bench-cute-dsl-first-call-{site}", "bench", site,
               ("bench/bench_cute_dsl_first_call.py", "--site", site, "--out", "{results}"))
          for site in ("pristine", "patched")),
        Step("bench-cute-dsl-first-call-summary", "bench", "patched",
             ("bench/bench_cute_dsl_first_call.py", "--summarize", first_call % "pristine", first_call % "patched",
              "--out", "{results}")),
        Step("bench-sm12x-moe-decode", "bench", "patched",
             ("bench/bench_sm12x_moe_decode.py", "--out", "{results}"),
             not_run=None if sm12x else SM12X_ONLY),
        *(Step(f"bench-moe-call-overhead-{site}", "bench", site,
               ("bench/bench_moe_call_overhead.py", "--site", site, "--out", "{results}"), not_run=moe, env=NO_JIT)
          for site in ("pristine", "patched")),
        Step("bench-moe-call-overhead-summary", "bench", "patched",
             ("bench/summarize_moe_call_overhead.py", overhead % "pristine", overhead % "patched",
              "--out", "{results}"), not_run=moe),
    ]


def resolve_plan(arch: str, moe90: bool = False) -> Plan:
    """Every step for `arch`; SM89 and newer only (FP8 and the norm kernels' minimum). `moe90`: the run has
    the bf16 SM90 fused-MoE module (what the MoE steps need on an H200)."""
    major, minor = parse_arch(arch)
    if (major, minor) < (8, 9):
        raise ValueError(f"arch {arch}: the series needs SM89 or newer (FP8)")
    sm12x = major == 12
    moe = moe_not_run(arch, moe90)
    return Plan(arch, _series_tests(moe) + _upstream_tests(sm12x, moe) + _benchmarks(sm12x, moe))
