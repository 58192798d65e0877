"""Materialise the pristine upstream tree: from the populated submodule, else from the PyPI sdist."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import SeriesError
from .git import git_out, run_git
from .lock import Lock, Sdist, Target

PRISTINE_MARK = ".fiseries-pristine.json"
BUILD_META = "flashinfer/_build_meta.py"


@dataclass(frozen=True)
class Pristine:
    """A pristine release tree and where it came from."""

    path: Path
    source: str  # "submodule" or "sdist"
    version: str
    revision: str
    sdist_sha256: str | None
    vendored_revisions: dict[str, str] = field(default_factory=dict)  # submodule source only


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def submodule_populated(submodule: Path) -> bool:
    return (submodule / ".git").exists() and any(p.name != ".git" for p in submodule.iterdir())


def read_build_meta(tree: Path) -> tuple[str, str]:
    """(version, commit) recorded by upstream's release build in flashinfer/_build_meta.py."""
    meta = tree / BUILD_META
    if not meta.is_file():
        raise SeriesError(f"{meta} missing: this is not a FlashInfer sdist tree")
    text = meta.read_text()
    version = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    commit = re.search(r'__git_commit__\s*=\s*"([0-9a-f]{40})"', text)
    if not version or not commit:
        raise SeriesError(f"{meta} does not record __version__ and a 40-hex __git_commit__")
    return version.group(1), commit.group(1)


def download_sdist(project: str, version: str, cache: Path) -> Path:
    """Fetch the sdist into `cache` with pip (no wheels), returning its path."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", project,
               f"{project}=={version}", "-d", tmp, "--quiet"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SeriesError(
                f"could not download the {project}=={version} sdist from PyPI:\n{proc.stderr}\n"
                "Check the network to PyPI and that the version exists (pip index versions "
                f"{project}), or pass a local copy with UPSTREAM_SDIST=<path>."
            )
        found = sorted(Path(tmp).glob("*.tar.gz"))
        if len(found) != 1:
            raise SeriesError(f"pip download of {project}=={version} gave {found}, expected one .tar.gz")
        final = cache / found[0].name
        shutil.move(str(found[0]), final)
    return final


def fetch_verified_sdist(target: Target, cache: Path, sdist_file: Path | None) -> tuple[Path, str]:
    """Return (path, sha256) of the target's sdist, verified against the pin when one exists."""
    if target.sdist is None:
        raise SeriesError(f"target {target.name} has no sdist pin in the lock file")
    path = sdist_file or cache / target.sdist.filename(target.version)
    if not path.exists():
        if sdist_file is not None:
            raise SeriesError(f"UPSTREAM_SDIST={sdist_file} does not exist")
        path = download_sdist(target.sdist.project, target.version, cache)
    actual = sha256_of(path)
    expected = target.sdist.sha256
    if expected and actual != expected:
        raise SeriesError(
            f"sdist {path} has sha256 {actual}, but the lock pins {expected}.\n"
            "The file is corrupt or not the pinned release. Delete it "
            f"(rm {path}) and run `make upstream` again to re-download; if the pin itself is "
            "wrong, fix the sha256 in upstreams.lock.json (or re-pin with `make rebase`)."
        )
    return path, actual


def _check_revision(tree: Path, target: Target, what: str) -> None:
    version, commit = read_build_meta(tree)
    if commit != target.revision or version != target.version:
        raise SeriesError(
            f"{what} records version {version} at commit {commit}, but the lock pins "
            f"{target.version} at {target.revision}. It is not the pinned release: delete it "
            "and run `make upstream` again, or re-pin with `make rebase`."
        )


def extract_sdist(sdist: Path, dest: Path) -> None:
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        try:
            with tarfile.open(sdist) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise SeriesError(
                f"sdist {sdist} cannot be unpacked ({err}); delete it and run `make upstream` again"
            ) from None
        tops = list(Path(tmp).iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise SeriesError(f"sdist {sdist} does not hold exactly one top-level directory")
        shutil.move(str(tops[0]), dest)


def copy_tracked(repo: Path, dest: Path, nested: list[str]) -> None:
    """Copy the files git tracks in `repo` and in each nested repo (vendored submodules) to `dest`."""
    for sub in ["."] + nested:
        source = repo / sub
        files = run_git(source, "ls-files", "-z").stdout.split("\0")
        for rel in filter(None, files):
            src, dst = source / rel, dest / sub / rel
            if src.is_dir() and not src.is_symlink():
                continue  # a gitlink: copied from its own repo when it is a vendored target
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                dst.symlink_to(src.readlink())
            else:
                shutil.copy2(src, dst)


def _check_submodule(lock: Lock, submodule: Path) -> None:
    for target in lock.targets:
        repo = submodule / target.path
        head = run_git(repo, "rev-parse", "HEAD", check=False).stdout.strip()
        if not target.is_main and not (repo / ".git").exists():
            raise SeriesError(
                f"{repo} is not populated: run `git submodule update --init --recursive`"
            )
        if head != target.revision:
            raise SeriesError(
                f"{repo} is at {head or 'no commit'}, but the lock pins {target.name} at "
                f"{target.revision}: run `git -C {repo} checkout {target.revision}` "
                "(or `git submodule update --init --recursive`)."
            )


def fetch_release(lock: Lock, version: str, dest: Path, submodule: Path, cache: Path,
                  sdist_file: Path | None, pinned: bool) -> Pristine:
    """`version` of FlashInfer (and its vendored trees) at dest, from the populated submodule unless an
    sdist is given, else from the sdist. pinned: it must be the lock's release (commit, sdist sha256);
    otherwise (a rebase) whatever that release is, recorded."""
    main = lock.main
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if sdist_file is None and submodule_populated(submodule):
        if pinned:
            _check_submodule(lock, submodule)
        dest.mkdir()
        copy_tracked(submodule, dest, lock.vendored_paths)
        vendored = {t.name: git_out(submodule / t.path, "rev-parse", "HEAD") for t in lock.targets if not t.is_main}
        return Pristine(dest, "submodule", version, git_out(submodule, "rev-parse", "HEAD"), None, vendored)
    if main.sdist is None:
        raise SeriesError(f"{lock.path}: {main.name} has no sdist pin and {submodule} is not populated")
    wanted = main if pinned else replace(main, version=version, sdist=Sdist(main.sdist.project, ""))
    sdist, sha = fetch_verified_sdist(wanted, cache, sdist_file)
    extract_sdist(sdist, dest)
    found_version, revision = read_build_meta(dest)
    if pinned:
        _check_revision(dest, main, f"sdist {sdist}")
    elif found_version != version:
        raise SeriesError(f"sdist {sdist} is version {found_version}, not the requested {version}")
    return Pristine(dest, "sdist", version, revision, sha)


def materialise(
    lock: Lock, build: Path, submodule: Path, cache: Path, sdist_file: Path | None = None
) -> Pristine:
    """The pristine tree of lock.main at build/upstream/<version>, verified; cached between runs."""
    main = lock.main
    use_submodule = sdist_file is None and submodule_populated(submodule)
    dest = build / "upstream" / main.version
    mark = dest / PRISTINE_MARK
    source = "submodule" if use_submodule else "sdist"
    sdist_sha = main.sdist.sha256 if main.sdist and not use_submodule else None
    wanted = {"source": source, "version": main.version, "revision": main.revision, "sdist_sha256": sdist_sha}
    if mark.is_file() and json.loads(mark.read_text()) == wanted:
        return Pristine(dest, source, main.version, main.revision, sdist_sha)
    pristine = fetch_release(lock, main.version, dest, submodule, cache, sdist_file, pinned=True)
    wanted["sdist_sha256"] = pristine.sdist_sha256
    mark.write_text(json.dumps(wanted))
    return pristine
