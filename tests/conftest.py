"""Fixtures: a tiny synthetic upstream (fast machinery tests) and the real pinned one."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fiseries.git import commit_all, run_git  # noqa: E402
from fiseries.lock import LOCK_NAME, load_lock  # noqa: E402
from fiseries.layout import Layout  # noqa: E402

FAKE_REVISION = "1" * 40
NORM = "".join(f"// upstream norm line {i}\n" for i in range(1, 41))
GEMM = "".join(f"// cutlass gemm line {i}\n" for i in range(1, 31))


def make_sdist(dest: Path, version: str, revision: str, files: dict[str, str]) -> Path:
    """A flashinfer-python-shaped sdist tarball holding `files` plus _build_meta.py."""
    top = f"flashinfer_python-{version}"
    files = {**files, "flashinfer/_build_meta.py":
             f'__version__ = "{version}"\n__git_commit__ = "{revision}"\n'}
    path = dest / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def base_files() -> dict[str, str]:
    return {"csrc/norm.cu": NORM, "include/flashinfer/norm.cuh": "// header\n",
            "3rdparty/cutlass/include/cutlass/gemm.h": GEMM}


@dataclass
class FakeProject:
    root: Path
    sdist: Path

    @property
    def layout(self) -> Layout:
        return Layout.for_lock(load_lock(self.root / LOCK_NAME))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        return subprocess.run([sys.executable, "-m", "fiseries", "--root", str(self.root), *args],
                              capture_output=True, text=True, env=env)

    def ok(self, *args: str) -> str:
        proc = self.cli(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def fail(self, *args: str) -> str:
        proc = self.cli(*args)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stderr.startswith("error: ")
        return proc.stderr

    def snapshot(self) -> dict[str, bytes]:
        """Bytes of every file the series tooling may write (patches, overlay, lock, tracking)."""
        out = {}
        for sub in ("patches", "csrc_overrides"):
            for p in sorted((self.root / sub).rglob("*")):
                if p.is_file():
                    out[str(p.relative_to(self.root))] = p.read_bytes()
        for name in (LOCK_NAME, "tracking.md"):
            out[name] = (self.root / name).read_bytes()
        return out


PATCH_MESSAGE = """{subject}

Why: the measured problem, with a number.

What: what the change does.

Tested: how it is tested.

Upstream-Status: Pending{extra}"""


def commit_patch(repo: Path, subject: str, edits: dict[str, str], extra: str = "") -> None:
    for rel, text in edits.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", PATCH_MESSAGE.format(subject=subject, extra=extra))


TRACKING = """# Tracking

<!-- pins: generated from upstreams.lock.json by `make rebase`; `make check` fails if stale -->
<!-- /pins -->

## Upstream references

| patch | target | commit | file | line | snippet |
|---|---|---|---|---|---|
| 0001 | flashinfer | {rev} | `csrc/norm.cu` | ~5 | `` upstream norm line 5 `` |
| 0001 | cutlass | {crev} | `include/cutlass/gemm.h` | ~3 | `` cutlass gemm line 3 `` |

## Watched upstream areas

| target | path | why |
|---|---|---|
| flashinfer | `csrc/norm.cu` | the norm kernels we hook |
"""


@pytest.fixture
def fake(tmp_path: Path) -> FakeProject:
    """A project pinned to a synthetic 1.0 release with a 2-patch FlashInfer series,
    a 1-patch CUTLASS series and one overlay file, exported by the tooling itself."""
    root = tmp_path / "project"
    root.mkdir()
    sdist = make_sdist(tmp_path, "1.0", FAKE_REVISION, base_files())
    cache = root / ".cache" / "sdist"
    cache.mkdir(parents=True)
    (cache / sdist.name).write_bytes(sdist.read_bytes())
    lock = {"targets": [
        {"name": "flashinfer", "path": ".", "upstream": "https://example.invalid/flashinfer",
         "version": "1.0", "revision": FAKE_REVISION, "series": "patches/flashinfer/series",
         "overlay": "csrc_overrides",
         "sdist": {"project": "flashinfer-python",
                   "sha256": hashlib.sha256(sdist.read_bytes()).hexdigest()}},
        {"name": "cutlass", "path": "3rdparty/cutlass", "upstream": "https://example.invalid/cutlass",
         "version": "4.5.0", "revision": "2" * 40, "series": "patches/cutlass/series"},
    ]}
    (root / LOCK_NAME).write_text(json.dumps(lock, indent=2) + "\n")
    for target in ("flashinfer", "cutlass"):
        (root / "patches" / target).mkdir(parents=True)
        (root / "patches" / target / "series").write_text("")
    (root / "csrc_overrides").mkdir()
    (root / "tracking.md").write_text(TRACKING.format(rev=FAKE_REVISION[:12], crev="2" * 12))
    project = FakeProject(root, sdist)
    project.ok("pins")
    project.ok("apply")
    tree = root / "build" / "tree"
    commit_patch(tree, "norm: scale by two", {"csrc/norm.cu": NORM.replace("line 10\n", "line 10 x2\n")})
    commit_patch(tree, "norm: hook the fused quant header",
                 {"include/flashinfer/norm.cuh": '// header\n#include "norm_quant.cuh"\n'},
                 extra="\nAdds-File: include/flashinfer/norm_quant.cuh")
    (tree / "include/flashinfer/norm_quant.cuh").write_text("// new fused kernel\n")
    commit_all(tree, "fiseries: overlay csrc_overrides")
    commit_patch(tree / "3rdparty/cutlass", "sm120: pad SFA to 128 rows",
                 {"include/cutlass/gemm.h": GEMM.replace("line 20\n", "line 20 padded\n")})
    project.ok("export")
    return project


# --- the real pinned upstream (session-scoped: one apply/check and one wheel build per run) ---


def fiseries(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "fiseries", "--root", str(ROOT), *args],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="session")
def checked() -> str:
    """`make check`: apply with zero fuzz/offset, byte-identical re-export, lock trees, tracking refs."""
    return fiseries("check")


@pytest.fixture(scope="session")
def wheels(checked: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`make wheel` for 12.1a into a temporary dist/: real sm_121a compiles of the default AOT set and the
    CuTe-DSL kernels of the traced SM121 manifest (sm121_decode.json's `cute_dsl` part)."""
    dist = tmp_path_factory.mktemp("dist")
    manifests = ROOT / "aot_build" / "manifests"
    manifest_path = dist.parent / "wheel-manifest.json"
    manifest_path.write_text(json.dumps(
        json.loads((manifests / "default.json").read_text())
        | {"cute_dsl": json.loads((manifests / "sm121_decode.json").read_text())["cute_dsl"]}))
    fiseries("wheel", "--archs", "12.1a", "--manifest", str(manifest_path), "--dist", str(dist))
    manifest = json.loads((dist / "manifest.json").read_text())
    return {"dist": dist, "manifest": manifest}


