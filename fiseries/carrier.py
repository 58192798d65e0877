"""A carrier: what `make gpu-test` would download, packed for a GPU machine without network.

`make gpu-carrier` (here, with network) writes `.devcarry/1/` and `.devcarry/2/`, each small enough
for one call of the lent GPU machine (64 MiB): upstream's flashinfer-python unpacked and slimmed to
the op families the plan tests, the series' files at their wheel paths, the AOT wheel for the arch,
the pinned wheels the machine lacks (CuTe DSL, tvm-ffi), upstream's pinned test files, and the one
wheel too large for a call (CuTe DSL's MLIR libraries) as an xz tar in two parts. There,
`make gpu-test CARRIER=.devcarry` copies any part it finds to a stash in /tmp (which survives into a
call made at once) and runs once every part is there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import SeriesError
from .git import git_out
from .layout import Layout
from .requirements import GPU_REQUIREMENTS, gpu_pins
from .upstream import sha256_of
from .upstream_tests import PINS as UPSTREAM_TEST_PINS, copy_cache, load_pins

CARRIER_JSON = "carrier.json"
STASH = Path(os.environ.get("FISERIES_STASH", "/tmp/fiseries-carry"))
PART_BYTES = 56_000_000  # part 1 rides alone in the first call, with the working tree
# upstream csrc units the 9.0a plan reads: the norm module's (JIT), and the single-decode sources the AOT
# manifest test's generator copies; FP8/MXFP8 quantize lives in nv_internal; headers all stay
KEEP_CSRC_UNITS = ("norm.cu", "flashinfer_norm_binding.cu", "single_decode.cu", "single_decode_jit_binding.cu")
KEEP_CSRC_DIRS = ("nv_internal",)
WHEEL_PATHS = {"csrc/": "flashinfer/data/csrc/", "include/": "flashinfer/data/include/", "flashinfer/": "flashinfer/"}
# pinned wheels the lent machine's image lacks, for its Python (the image has torch, numpy, pytest...)
CARRIED = ("nvidia-cutlass-dsl", "nvidia-cutlass-dsl-libs-base", "nvidia-cutlass-dsl-libs-core",
           "apache-tvm-ffi")
PACKED = ("nvidia-cutlass-dsl-libs-cu13",)
SM_NAME = re.compile(r"^sm(\d+)(\d)([af]?)$")


class Incomplete(SeriesError):
    """Run again: the budget ran out, or a carrier part is still to come."""


@dataclass(frozen=True)
class Packed:
    """A wheel too large for one call: its files as an xz tar, in parts."""

    name: str
    sha256: str
    parts: list[str]


@dataclass(frozen=True)
class CarrierMeta:
    series_sha256: str
    archs: list[str]
    aot_wheel: str
    wheels: list[str]
    packed: list[Packed]
    moe90_wheel: str | None  # the bf16 SM90 fused-MoE module's wheel, for the MoE steps on an H200

    @classmethod
    def load(cls, path: Path) -> CarrierMeta:
        raw = json.loads(path.read_text())
        return cls(raw["series_sha256"], list(raw["archs"]), raw["aot_wheel"], list(raw["wheels"]),
                   [Packed(p["name"], p["sha256"], list(p["parts"])) for p in raw["packed"]],
                   raw.get("moe90_wheel"))


@dataclass(frozen=True)
class Carrier:
    root: Path  # the folder holding carrier.json (.devcarry/2)
    meta: CarrierMeta
    stash: Path

    @classmethod
    def open(cls, root: Path, stash: Path = STASH) -> Carrier:
        """Stash every part found under root; the carrier once its metadata and all parts are there."""
        stash.mkdir(parents=True, exist_ok=True)
        for part in root.rglob("*.part[0-9]*"):
            kept = stash / part.name
            if not kept.is_file() or kept.stat().st_size != part.stat().st_size:
                shutil.copy2(part, kept)
        found = sorted(root.rglob(CARRIER_JSON))
        if not found:
            raise Incomplete(f"{root}: no {CARRIER_JSON} yet (parts stashed in {stash}: "
                             f"{sorted(p.name for p in stash.iterdir())}); carry the rest and run again")
        meta = CarrierMeta.load(found[0])
        missing = [p for packed in meta.packed for p in packed.parts if not (stash / p).is_file()]
        if missing:
            raise Incomplete(f"carrier parts not here yet: {missing} (stash {stash}); carry them in a call made "
                             "at once (the machine keeps /tmp while warm) and run again")
        return cls(found[0].parent, meta, stash)

    @property
    def identity(self) -> str:
        return self.meta.series_sha256 + ":" + ",".join(sorted(self.meta.wheels))

    @property
    def aot_wheel(self) -> Path:
        return self.root / self.meta.aot_wheel

    @property
    def moe90_wheel(self) -> Path | None:
        return self.root / self.meta.moe90_wheel if self.meta.moe90_wheel else None

    @property
    def upstream_tests(self) -> Path:
        return self.root / "upstream-tests"

    def check_for(self, series: str, arch: str) -> None:
        if self.meta.series_sha256 != series:
            raise SeriesError(f"the carrier holds series {self.meta.series_sha256[:12]}, this tree is "
                              f"{series[:12]}: rebuild it with `make gpu-carrier`")
        if arch not in self.meta.archs:
            raise SeriesError(f"the carrier's AOT wheel is for {self.meta.archs}, this GPU is {arch}: "
                              f"`make gpu-carrier ARCHS={arch}`")

    def install(self, python: Path) -> None:
        """The carried wheels into the venv of `python`, and the packed ones unpacked into its site-packages."""
        wheels = [str(self.root / "wheels" / w) for w in self.meta.wheels]
        if wheels:
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", *wheels],
                           check=True)
        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        for packed in self.meta.packed:
            with tempfile.TemporaryDirectory() as tmp:
                joined = Path(tmp) / "packed.tar.xz"
                with joined.open("wb") as out:
                    for part in packed.parts:
                        with (self.stash / part).open("rb") as f:
                            shutil.copyfileobj(f, out)
                if sha256_of(joined) != packed.sha256:
                    raise SeriesError(f"{packed.name}: the joined parts do not match the carrier's sha256")
                with tarfile.open(joined) as tar:
                    tar.extractall(purelib, filter="data")

    def install_sites(self, sites: Path) -> None:
        """sites/pristine: upstream's release; sites/patched: the same with the series' files on top."""
        for name in ("pristine", "patched"):
            shutil.rmtree(sites / name, ignore_errors=True)
        (sites / "pristine").mkdir(parents=True)
        with tarfile.open(self.root / "upstream-site.tar.xz") as tar:
            tar.extractall(sites / "pristine", filter="data")
        shutil.copytree(sites / "pristine", sites / "patched", symlinks=True)
        with tarfile.open(self.root / "series-overlay.tar") as tar:
            tar.extractall(sites / "patched", filter="data")


# --- building one (on a machine with network) ----------------------------------------------------


def download_wheel(spec: str, dest: Path, platform_args: list[str]) -> Path:
    """`pip download` one pinned wheel (`name==version`, for the platform args given) into dest; its path."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    *platform_args, "-d", str(dest), spec], check=True)
    name, version = spec.split("==")
    found = sorted(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not found:
        raise SeriesError(f"pip download {spec} left no wheel in {dest}")
    return found[-1]


def slim_site(wheel: Path, site: Path) -> None:
    """Upstream's wheel unpacked, without the csrc units no planned 9.0a test compiles."""
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    csrc = site / "flashinfer" / "data" / "csrc"
    for path in csrc.iterdir():
        if path.is_dir() and path.name not in KEEP_CSRC_DIRS:
            shutil.rmtree(path)
        elif path.suffix == ".cu" and path.name not in KEEP_CSRC_UNITS:
            path.unlink()


def series_overlay(layout: Layout, dest: Path) -> list[str]:
    """Every file the series changes or adds in FlashInfer, at its wheel path."""
    changed = git_out(layout.tree, "diff", "--name-only", "--diff-filter=AM", layout.lock.base_tag, "HEAD").split()
    shipped = []
    with tarfile.open(dest, "w") as tar:
        for rel in changed:
            for prefix, wheel_prefix in WHEEL_PATHS.items():
                if rel.startswith(prefix):
                    tar.add(layout.tree / rel, arcname=wheel_prefix + rel[len(prefix):])
                    shipped.append(rel)
    return shipped


def pack_wheel(wheel: Path, dest: Path, part_bytes: int) -> Packed:
    """A wheel's files as one xz tar split into parts (xz packs a wheel's .so files far tighter)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tree)
        joined = Path(tmp) / "packed.tar.xz"
        with tarfile.open(joined, "w:xz", preset=7) as tar:
            for path in sorted(tree.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(tree)), recursive=False)
        sha = sha256_of(joined)
        parts = []
        with joined.open("rb") as f:
            for index, block in enumerate(iter(lambda: f.read(part_bytes), b""), start=1):
                # named by content: a stash never mixes the parts of two carriers
                name = f"{wheel.stem}.{sha[:16]}.tar.xz.part{index}"
                (dest / str(index)).mkdir(parents=True, exist_ok=True)
                (dest / str(index) / name).write_bytes(block)
                parts.append(name)
        return Packed(wheel.name, sha, parts)


def wheel_archs(aot_wheel: Path) -> list[str]:
    """The archs a jit-cache wheel was built for ('sm90a' in its manifest -> '9.0a')."""
    with zipfile.ZipFile(aot_wheel) as zf:
        manifest = json.loads(zf.read("flashinfer_jit_cache/jit_cache/manifest.json"))
    archs = []
    for name in manifest["cuda_architectures"]:
        m = SM_NAME.match(name)
        if m is None:
            raise SeriesError(f"{aot_wheel.name}: unexpected arch {name!r} in its manifest")
        archs.append(f"{m.group(1)}.{m.group(2)}{m.group(3)}")
    return archs


def build_carrier(layout: Layout, out: Path, aot_wheel: Path, python_version: str, platform_tag: str,
                  series_sha256: str, moe90_wheel: Path | None = None) -> list[str]:
    if not layout.tree.is_dir():
        raise SeriesError(f"{layout.tree} missing: run `make apply` first")
    shutil.rmtree(out, ignore_errors=True)
    main = out / "2"  # everything but the first part of the packed wheel
    (main / "wheels").mkdir(parents=True)
    root = layout.lock.root
    pins = gpu_pins(root)
    missing = [name for name in CARRIED + PACKED if name not in pins]
    if missing:
        raise SeriesError(f"{GPU_REQUIREMENTS} pins none of {missing}")
    platform_args = ["--python-version", python_version, "--implementation", "cp", "--platform", platform_tag,
                     "--platform", "manylinux_2_24_x86_64", "--platform", "manylinux_2_17_x86_64"]
    cache = root / ".cache" / "wheels"
    upstream = download_wheel(f"flashinfer-python=={layout.lock.main.version}", cache, [])
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        slim_site(upstream, site)
        subprocess.run(["tar", "-cJf", str(main / "upstream-site.tar.xz"), "-C", str(site), "."], check=True)
    shipped = series_overlay(layout, main / "series-overlay.tar")
    wheels = []
    for name in CARRIED:
        wheel = download_wheel(f"{name}=={pins[name]}", cache, platform_args)
        shutil.copy2(wheel, main / "wheels" / wheel.name)
        wheels.append(wheel.name)
    packed = [pack_wheel(download_wheel(f"{name}=={pins[name]}", cache, platform_args), out, PART_BYTES)
              for name in PACKED]
    shutil.copy2(aot_wheel, main / aot_wheel.name)
    if moe90_wheel is not None:
        (main / "moe90").mkdir()
        shutil.copy2(moe90_wheel, main / "moe90" / moe90_wheel.name)
    test_pins = load_pins(root / UPSTREAM_TEST_PINS)
    copy_cache(test_pins, root / ".cache" / "upstream-tests", main / "upstream-tests")
    meta = {"series_sha256": series_sha256, "archs": wheel_archs(aot_wheel),
            "upstream_version": layout.lock.main.version,
            "upstream_wheel": upstream.name, "aot_wheel": aot_wheel.name, "wheels": wheels,
            "moe90_wheel": f"moe90/{moe90_wheel.name}" if moe90_wheel else None,
            "packed": [asdict(p) for p in packed],
            "python": python_version, "platform": platform_tag, "series_files": shipped}
    (main / CARRIER_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    lines = []
    for part_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        size = sum(p.stat().st_size for p in part_dir.rglob("*") if p.is_file())
        lines.append(f"{part_dir}: {size / 2**20:.1f} MiB")
    return lines
