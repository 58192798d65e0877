"""The environment `make gpu-test` runs in: the GPU, the GPU venv (.venv-gpu from ci/gpu-requirements.txt, or
offline the machine's torch plus a carrier's wheels), and FlashInfer installed twice beside it: upstream's
release (sites/pristine) and the series' wheel with its AOT modules (sites/patched, sites/aot)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .aot import DECODE_MANIFEST, NORM_MANIFEST
from .carrier import Carrier, download_wheel
from .cuda import run_logged
from .errors import SeriesError
from .gpu_plan import arch_of_capability, is_sm12x
from .layout import Layout
from .requirements import GPU_REQUIREMENTS, gpu_pins
from .tree import apply_exactly
from .wheel import build_wheels, local_version, series_hash

MANIFEST_FOR = {True: DECODE_MANIFEST, False: NORM_MANIFEST}


class NoGpu(SeriesError):
    """No CUDA GPU on this machine."""


@dataclass(frozen=True)
class Device:
    name: str
    capability: str  # "12.1"
    driver: str
    memory_mib: int

    @property
    def arch(self) -> str:
        major, minor = self.capability.split(".")
        return arch_of_capability(int(major), int(minor))


def detect_device() -> Device:
    """The first GPU nvidia-smi lists; NoGpu when there is none (CPU-only box, CI)."""
    query = "--query-gpu=name,compute_cap,driver_version,memory.total"
    try:
        proc = subprocess.run(["nvidia-smi", query, "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=60)
    except (FileNotFoundError, subprocess.TimeoutExpired) as err:
        raise NoGpu(f"no CUDA GPU: nvidia-smi is not usable ({err}). `make gpu-test` needs an SM89+ "
                    "NVIDIA GPU and its driver; `make test` is the CPU suite") from None
    rows = [r for r in proc.stdout.splitlines() if r.strip()]
    if proc.returncode != 0 or not rows:
        raise NoGpu(f"no CUDA GPU: nvidia-smi found none ({(proc.stderr or proc.stdout).strip()[:300]}). "
                    "`make gpu-test` needs an SM89+ NVIDIA GPU; `make test` is the CPU suite")
    name, cap, driver, memory = (v.strip() for v in rows[0].split(","))
    return Device(name, cap, driver, int(float(memory)))


def _run(cmd: list[str | Path], what: str) -> str:
    return run_logged([str(c) for c in cmd], dict(os.environ), what)


def _purelib(python: Path) -> str:
    return _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                f"asking {python} for its site-packages").strip()


def gpu_venv(root: Path, carrier: Carrier | None) -> Path:
    """.venv-gpu from the pinned requirements (or, offline, the machine's torch + the carrier's wheels)."""
    venv = root / ".venv-gpu"
    requirements = (root / GPU_REQUIREMENTS).read_text()
    stamp_text = requirements + (carrier.identity if carrier else "")
    stamp = venv / ".stamp"
    python = venv / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == stamp_text and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    if carrier is None:
        _run([sys.executable, "-m", "venv", venv], "creating .venv-gpu")
        _run([python, "-m", "pip", "install", "--quiet", "-r", root / GPU_REQUIREMENTS],
             f"pip install -r {GPU_REQUIREMENTS}")
    else:
        # no network: the carrier's pinned wheels, then this interpreter's own packages (its torch and
        # pip) through a .pth file, as --system-site-packages would reach past a venv to its base
        _run([sys.executable, "-m", "venv", "--without-pip", venv], "creating .venv-gpu")
        sites = "import json, site; print(json.dumps(site.getsitepackages()))"
        machine = json.loads(_run([sys.executable, "-c", sites], "reading this interpreter's site-packages"))
        lines = [f"import site; site.addsitedir({path!r})" for path in machine]  # their .pth files too
        (Path(_purelib(python)) / "_machine_site.pth").write_text("\n".join(lines) + "\n")
        carrier.install(python)
    stamp.write_text(stamp_text)
    return python


PROBE = """
import importlib.metadata as md, json, platform, sys
import torch
names = sys.argv[1:]
versions = {}
for n in names:
    try:
        versions[n] = md.version(n)
    except md.PackageNotFoundError:
        versions[n] = None
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "gpu_visible": torch.cuda.is_available(), "versions": versions}))
"""


@dataclass(frozen=True)
class Pin:
    name: str
    pinned: str
    installed: str | None

    @property
    def ok(self) -> bool:
        return self.installed is not None and self.installed.split("+")[0] == self.pinned


@dataclass(frozen=True)
class Environment:
    """What the GPU venv's interpreter reports, and each pinned package's installed version."""

    python: str
    torch: str
    cuda: str | None
    gpu_visible: bool
    pins: list[Pin]

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "pins": [{**asdict(p), "ok": p.ok} for p in self.pins]}


def probe_environment(python: Path, root: Path) -> Environment:
    pins = gpu_pins(root)
    info = json.loads(_run([python, "-c", PROBE, *pins], "probing .venv-gpu").splitlines()[-1])
    return Environment(info["python"], info["torch"], info["cuda"], info["gpu_visible"],
                       [Pin(name, version, info["versions"][name]) for name, version in pins.items()])


def _pip_target(python: Path, wheel: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    _run([python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile", "--target",
          target, wheel], f"installing {wheel.name}")


def _dist_wheels(layout: Layout, dist: Path, arch: str) -> tuple[Path, Path] | None:
    """The patched and AOT wheels in dist/ if they were built from this series for `arch`."""
    manifest = dist / "manifest.json"
    if not manifest.is_file():
        return None
    record = json.loads(manifest.read_text())
    if record.get("series_sha256") != series_hash(layout) or arch not in record.get("archs", []):
        return None
    patched = sorted(dist.glob(f"flashinfer_python-{local_version(layout)}-*.whl"))
    aot = sorted(dist.glob("flashinfer_jit_cache-*.whl"))
    return (patched[-1], aot[-1]) if patched and aot else None


MOE90_MODULE = "fused_moe_90"
MOE90_IN_WHEEL = f"flashinfer_jit_cache/jit_cache/{MOE90_MODULE}/{MOE90_MODULE}.so"


def install_moe90_module(wheel: Path, sites: list[Path]) -> None:
    """The bf16 SM90 fused-MoE module from its jit-cache wheel into each site's FlashInfer, where FlashInfer's
    own AOT lookup finds a module first (flashinfer/data/aot/<name>/<name>.so), beside any other jit-cache."""
    with zipfile.ZipFile(wheel) as zf:
        if MOE90_IN_WHEEL not in zf.namelist():
            raise SeriesError(f"{wheel.name} has no {MOE90_IN_WHEEL}: build it with `make wheel ARCHS=9.0a "
                              "AOT_MANIFEST=aot_build/manifests/fused_moe_90_bf16.json DIST=build/dist-moe90`")
        for site in sites:
            dest = site / "flashinfer" / "data" / "aot" / MOE90_MODULE / f"{MOE90_MODULE}.so"
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(MOE90_IN_WHEEL) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out)


def install_sites(layout: Layout, python: Path, state: Path, arch: str, carrier: Carrier | None,
                  dist: Path) -> tuple[dict[str, list[Path]], Path]:
    """sites/pristine (upstream's release), sites/patched + sites/aot (the series' wheels for `arch`)."""
    sites = state / "sites"
    if carrier is not None:
        carrier.check_for(series_hash(layout), arch)
        carrier.install_sites(sites)
        aot_wheel = carrier.aot_wheel
    else:
        version = layout.lock.main.version
        cache = layout.lock.root / ".cache" / "wheels"
        _pip_target(python, download_wheel(f"flashinfer-python=={version}", cache, []), sites / "pristine")
        wheels = _dist_wheels(layout, dist, arch)
        if wheels is None:  # same build as `make wheel ARCHS=<arch>`
            apply_exactly(layout)
            manifest = layout.lock.root / MANIFEST_FOR[is_sm12x(arch)]
            built = build_wheels(layout, [arch], manifest, dist, platform.machine())
            wheels = (built.patched, built.aot)
        _pip_target(python, wheels[0], sites / "patched")
        aot_wheel = wheels[1]
    _pip_target(python, aot_wheel, sites / "aot")
    return {"pristine": [sites / "pristine"], "patched": [sites / "aot", sites / "patched"]}, aot_wheel
