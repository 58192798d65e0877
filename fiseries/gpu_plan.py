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


# upstream's test files for the ops the series touches: (file, why it does not run off SM12x, xdist workers)
CUTLASS_MOE_OFF_SM12X = ("SM120/SM121 cases here; on other GPUs its ungated cases would build FlashInfer's CUTLASS "
                         "fused-MoE module for that arch (SM90: 248 units, about 30 min of 16 cores), which the series "
                         "does not change there")
B12X_OFF_SM12X = ("SM120/SM121 MoE kernels (b12x, CuTe DSL); off SM12x only its dispatch unit tests could run, on "
                  "moe_dispatch.py, which the series does not change")
UPSTREAM_TESTS: tuple[tuple[str, str | None, bool], ...] = (
    ("tests/utils/test_norm.py", None, True),
    ("tests/utils/test_fp8_quantize.py", None, True),  # mostly SM100+: skips with upstream's reason
    ("tests/moe/test_b12x_w4a16_route_pack.py", None, False),  # the SM12x MoE package's routing, any GPU
    ("tests/moe/test_trtllm_cutlass_fused_moe.py", CUTLASS_MOE_OFF_SM12X, False),  # upstream marks it `solo`
    ("tests/moe/test_b12x_fused_moe.py", B12X_OFF_SM12X, False),
)
SM12X_ONLY = "SM120/SM121 only: the series' MoE tiles and default tactic run there alone"


def _series_tests() -> list[Step]:
    tests = [
        ("series-norm-quant", f"{OVERRIDES}/utils/test_norm_quant_fused.py", False),
        ("series-aot-manifest", f"{OVERRIDES}/test_aot_manifest.py", False),
        ("series-sm12x-default-tactic", f"{OVERRIDES}/sm12x_tiles/test_sm12x_default_tactic.py", False),
        ("series-sm12x-small-m-moe", f"{OVERRIDES}/sm12x_tiles/test_sm12x_small_m_moe.py", True),
        ("series-sm12x-act-granularity", f"{OVERRIDES}/moe/test_sm12x_mxfp8_act_granularity.py", True),
    ]
    return [Step(step_id, "series-test", "patched", (path,), sm12x_runtime=runtime)
            for step_id, path, runtime in tests]


def _upstream_tests(sm12x: bool) -> list[Step]:
    steps = []
    for rel, off_sm12x, parallel in UPSTREAM_TESTS:
        name = rel.rsplit("/", 1)[1].removeprefix("test_").removesuffix(".py").replace("_", "-")
        not_run = None if sm12x else off_sm12x
        sites: tuple[Site, ...] = ("pristine", "patched")
        for site in sites:
            steps.append(Step(f"upstream-{name}-{site}", "upstream-test", site, (rel,),
                              not_run=not_run, upstream_file=rel, parallel=parallel))
    return steps


def _benchmarks(sm12x: bool) -> list[Step]:
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
        Step("bench-sm12x-moe-decode", "bench", "patched",
             ("bench/bench_sm12x_moe_decode.py", "--out", "{results}"),
             not_run=None if sm12x else SM12X_ONLY),
    ]


def resolve_plan(arch: str) -> Plan:
    """Every step for `arch`; SM89 and newer only (FP8 and the norm kernels' minimum)."""
    major, minor = parse_arch(arch)
    if (major, minor) < (8, 9):
        raise ValueError(f"arch {arch}: the series needs SM89 or newer (FP8)")
    sm12x = major == 12
    return Plan(arch, _series_tests() + _upstream_tests(sm12x) + _benchmarks(sm12x))
