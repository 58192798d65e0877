"""AOT coverage: does a jit-cache wheel hold every module a traced workload loads, for exactly the
requested archs? (A traced name missing from the wheel means a runtime JIT on the user's machine.)"""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SeriesError
from .cuda import cuda_arch_names, elf_archs, find_cuobjdump, sass_matches

JIT_CACHE_DIR = "flashinfer_jit_cache/jit_cache/"


@dataclass
class Coverage:
    wheel: str
    archs: list[str]
    missing: dict[str, list[str]] = field(default_factory=dict)  # workload -> module names
    wrong_archs: dict[str, list[str]] = field(default_factory=dict)  # module -> SASS archs found
    covered: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.wrong_archs

    def lines(self) -> list[str]:
        out = [f"{self.wheel}: {len(self.covered)} traced modules present with SASS for exactly "
               f"{', '.join(self.archs)} (or its family cubin)"]
        for workload, names in sorted(self.missing.items()):
            out.append(f"  {workload}: not in the wheel (runtime JIT): {', '.join(names)}")
        for name, found in sorted(self.wrong_archs.items()):
            out.append(f"  {name}: SASS for {', '.join(found) or 'none (PTX only?)'}")
        return out


def traced_modules(trace: Path) -> dict[str, list[str]]:
    """Workload -> module names, in first-use order, from a trace of aot_build/trace_jit_specs.py."""
    data = json.loads(trace.read_text())
    workloads = data["workloads"]
    return {workload: list(dict.fromkeys(spec["name"] for spec in specs))
            for workload, specs in workloads.items()}


def check_coverage(wheel: Path, trace: Path, archs: list[str]) -> Coverage:
    wanted = sorted(name.replace("sm", "sm_", 1) for name in cuda_arch_names(archs))
    result = Coverage(wheel.name, wanted)
    cuobjdump = find_cuobjdump()
    with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
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


def require_coverage(wheel: Path, trace: Path, archs: list[str]) -> list[str]:
    result = check_coverage(wheel, trace, archs)
    if not result.ok:
        raise SeriesError("AOT coverage check failed:\n" + "\n".join(result.lines()) +
                          "\nadd the missing modules to the AOT manifest (re-trace: see aot_build/README.md)")
    return result.lines()
