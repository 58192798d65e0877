"""Measured extrapolation of an AOT manifest's build time, without building all of it.

Writes every module's ninja file with upstream's own AOT setup (`flashinfer.aot --manifest`, whose
`build_jit_specs` step is replaced by writing the ninja files), then compiles a sample of each
module's translation units one at a time (all of them for modules of < --full-below units) and
extrapolates. Units are sampled per family (the name with its numbers removed: generated kernel
files come in families whose cost differs by orders of magnitude, e.g. sm90 instantiations that
compile to nothing for sm_121a next to SM120 block-scaled ones of minutes): module serial time =
sum over families of mean sampled unit time x units of the family. Wall time on N cores is
estimated as max(serial total / N, longest unit): a lower bound that assumes memory for N jobs.
Module size: modules built in full are linked and their .so measured; for sampled modules the
.so is estimated the same way from object sizes, an upper bound (norm: 2.42 MB of objects, 1.43 MB linked).

    .venv/bin/python aot_build/estimate_build_time.py --manifest aot_build/manifests/sm121_decode.json

Needs `make wheel` to have staged build/stage/flashinfer. Writes JSON and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fiseries.lock import LOCK_NAME, load_lock  # noqa: E402
from fiseries.layout import Layout  # noqa: E402
from fiseries.toolchain import aot_build_env  # noqa: E402

WRITE_NINJA = """
import sys
from pathlib import Path
from flashinfer import aot
aot.build_jit_specs = lambda specs, **kwargs: [spec.write_ninja() for spec in specs]
aot.compile_and_package_modules(None, Path(sys.argv[2]), Path.cwd(), manifest=Path(sys.argv[1]))
"""
UNIT = re.compile(r"^build (\S+\.o): (?:cuda_)?compile ", re.M)


def families(units: list[str]) -> dict[str, list[str]]:
    """Units by family: file name with digit runs replaced (`..._M128_BS_group3...` -> `..._MN_BS_groupN...`)."""
    grouped: dict[str, list[str]] = {}
    for unit in units:
        grouped.setdefault(re.sub(r"\d+", "N", Path(unit).name), []).append(unit)
    return grouped


def sample(units: list[str], count: int) -> list[str]:
    """`count` units spread evenly over a family's list."""
    if len(units) <= count:
        return units
    step = len(units) / count
    return [units[int(i * step)] for i in range(count)]


def run_ninja(ninja: Path, env: dict[str, str], build_dir: Path, name: str, *targets: str) -> None:
    proc = subprocess.run(["ninja", "-f", str(ninja), "-j1", *targets], env=env, cwd=build_dir,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: building {' '.join(targets) or 'the module'} failed:\n{proc.stdout[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--archs", default="12.1a")
    parser.add_argument("--samples", type=int, default=1, help="units compiled per family of a large module")
    parser.add_argument("--full-below", type=int, default=4, help="build every unit of smaller modules")
    parser.add_argument("--cores", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "aot-estimate")
    args = parser.parse_args()
    layout = Layout.for_lock(load_lock(ROOT / LOCK_NAME))
    stage = layout.build / "stage" / "flashinfer"
    if not stage.is_dir():
        raise SystemExit("build/stage/flashinfer missing: run `make wheel` first")
    build_dir = args.out.resolve() / "build"
    env = aot_build_env(layout.build / "aot", stage, args.archs.split(), platform.machine())
    subprocess.run([sys.executable, "-c", WRITE_NINJA, str(args.manifest.resolve()), str(build_dir.resolve())],
                   env=env, cwd=stage, check=True)
    names = [entry["name"] for entry in json.loads(args.manifest.read_text())["modules"]]
    modules = []
    for name in names:
        ninja = build_dir / "cached_ops" / name / "build.ninja"
        units = UNIT.findall(ninja.read_text())
        full = len(units) < args.full_below
        serial_est = 0.0
        bytes_est = 0.0
        seconds: list[float] = []
        for family in families(units).values():
            chosen = family if full else sample(family, args.samples)
            family_seconds, family_bytes = [], []
            for unit in chosen:
                start = time.monotonic()
                run_ninja(ninja, env, build_dir, name, unit)
                family_seconds.append(time.monotonic() - start)
                family_bytes.append((build_dir / unit).stat().st_size)
            serial_est += sum(family_seconds) / len(chosen) * len(family)
            bytes_est += sum(family_bytes) / len(chosen) * len(family)
            seconds += family_seconds
        if full:
            run_ninja(ninja, env, build_dir, name)  # links the .so
            (so,) = ninja.parent.glob("*.so")
            so_bytes, size_kind = so.stat().st_size, "linked"
        else:
            so_bytes, size_kind = round(bytes_est), "objects x units"
        modules.append({"module": name, "units": len(units), "sampled": len(seconds),
                        "sampled_seconds": [round(s, 1) for s in seconds],
                        "serial_seconds_est": round(serial_est, 1),
                        "longest_unit_seconds": round(max(seconds, default=0.0), 1),
                        "so_bytes": so_bytes, "so_bytes_kind": size_kind})
        print(json.dumps(modules[-1]), flush=True)
    serial = sum(m["serial_seconds_est"] for m in modules)
    longest = max((m["longest_unit_seconds"] for m in modules), default=0.0)
    walls = {str(n): round(max(serial / n, longest), 1) for n in args.cores}
    total_bytes = sum(m["so_bytes"] for m in modules)
    record = {"manifest": args.manifest.name, "archs": args.archs, "host": platform.machine(),
              "cpus": os.cpu_count(), "modules": modules, "serial_seconds_est": round(serial, 1),
              "wall_seconds_est_by_cores": walls, "so_bytes_total": total_bytes}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "estimate.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = ["| module | units | sampled | s per unit (sampled) | serial s (est.) | .so MB |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {m['module']} | {m['units']} | {m['sampled']} | "
              f"{', '.join(str(s) for s in m['sampled_seconds'])} | {m['serial_seconds_est']} | "
              f"{m['so_bytes'] / 1e6:.2f}{'' if m['so_bytes_kind'] == 'linked' else ' (est.)'} |" for m in modules]
    lines += ["", f"modules total {total_bytes / 1e6:.1f} MB; serial total {serial / 60:.1f} min; wall on " +
              ", ".join(f"{n} cores ≈ {float(w) / 60:.1f} min" for n, w in walls.items())]
    (args.out / "estimate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
