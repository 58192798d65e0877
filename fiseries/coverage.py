"""AOT coverage: does a jit-cache wheel hold every module a traced workload loads, for exactly the
requested archs, and every CuTe-DSL kernel it compiles? (A traced name or kernel key missing from the
wheel means a runtime compile on the user's machine.)"""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SeriesError
from .cuda import cuda_arch_names, elf_archs, find_cuobjdump, sass_matches
from .cute_dsl import SUBDIR, key_of

JIT_CACHE_DIR = "flashinfer_jit_cache/jit_cache/"


@dataclass
class Coverage:
    wheel: str
    archs: list[str]
    missing: dict[str, list[str]] = field(default_factory=dict)  # workload -> module names
    wrong_archs: dict[str, list[str]] = field(default_factory=dict)  # module -> SASS archs found
    covered: list[str] = field(default_factory=list)
    missing_kernels: dict[str, list[str]] = field(default_factory=dict)  # workload -> API of each kernel
    kernels_covered: int = 0
    kernels_not_exported: str | None = None  # why the wheel has no CuTe-DSL part (a cross build)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.wrong_archs and (
            self.kernels_not_exported is not None or not self.missing_kernels)

    def lines(self) -> list[str]:
        out = [f"{self.wheel}: {len(self.covered)} traced modules present with SASS for exactly "
               f"{', '.join(self.archs)} (or its family cubin)"]
        for workload, names in sorted(self.missing.items()):
            out.append(f"  {workload}: not in the wheel (runtime JIT): {', '.join(names)}")
        for name, found in sorted(self.wrong_archs.items()):
            out.append(f"  {name}: SASS for {', '.join(found) or 'none (PTX only?)'}")
        out.append(f"{self.wheel}: {self.kernels_covered} traced CuTe-DSL kernels present")
        for workload, apis in sorted(self.missing_kernels.items()):
            out.append(f"  {workload}: CuTe-DSL kernels not in the wheel (compiled at first call): "
                       f"{', '.join(apis)}" + (f" ({self.kernels_not_exported})" if self.kernels_not_exported else ""))
        return out


def traced_modules(trace: Path) -> dict[str, list[str]]:
    """Workload -> module names, in first-use order, from a trace of aot_build/trace_jit_specs.py."""
    data = json.loads(trace.read_text())
    workloads = data.get("workloads", {})
    return {workload: list(dict.fromkeys(spec["name"] for spec in specs))
            for workload, specs in workloads.items()}


def traced_kernels(trace: Path) -> dict[str, list[dict[str, object]]]:
    """Workload -> the CuTe-DSL kernel keys it asked for (each with its `api`)."""
    return dict(json.loads(trace.read_text()).get("cute_dsl", {}))


def check_coverage(wheel: Path, trace: Path, archs: list[str], kernels_not_exported: str | None = None) -> Coverage:
    wanted = sorted(name.replace("sm", "sm_", 1) for name in cuda_arch_names(archs))
    result = Coverage(wheel.name, wanted, kernels_not_exported=kernels_not_exported)
    cuobjdump = find_cuobjdump()
    with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
        exported = {key_of(json.loads(zf.read(n))) for n in zf.namelist()
                    if n.startswith(f"{JIT_CACHE_DIR}{SUBDIR}/") and n.endswith(".json")}
        for workload, keys in traced_kernels(trace).items():
            missing = [str(k["api"]) for k in keys if key_of(k) not in exported]
            result.kernels_covered += len(keys) - len(missing)
            if missing:
                result.missing_kernels[workload] = missing
        present = {Path(n).parent.name for n in zf.namelist()
                   if n.startswith(JIT_CACHE_DIR) and n.endswith(".so")}
        checked: dict[str, list[str]] = {}
        for workload, names in traced_modules(trace).items():
            missing = [n for n in names if n not in present]
            if missing:
                result.missing[workload] = missing
            for name in names:
                if name in present and name not in checked:
                    so = zf.extract(f"{JIT_CACHE_DIR}{name}/{name}.so", tmp)
                    checked[name] = sorted(elf_archs(Path(so), cuobjdump))
                    Path(so).unlink()
    for name, found in checked.items():
        if sass_matches(set(found), set(wanted)):
            result.covered.append(name)
        else:
            result.wrong_archs[name] = found
    return result


def require_coverage(wheel: Path, trace: Path, archs: list[str], kernels_not_exported: str | None = None) -> list[str]:
    """The coverage lines; fails on a missing module or kernel, except kernels a cross build cannot export
    (`kernels_not_exported` says why, and the lines list them)."""
    result = check_coverage(wheel, trace, archs, kernels_not_exported)
    if not result.ok:
        raise SeriesError("AOT coverage check failed:\n" + "\n".join(result.lines()) +
                          "\nadd the missing modules or kernels to the AOT manifest "
                          "(re-trace: see aot_build/README.md)")
    return result.lines()
