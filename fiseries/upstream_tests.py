"""Upstream's own test files, pinned by git blob id in ci/upstream-tests.json.

The PyPI sdist ships no tests, so `make gpu-test` takes them from one upstream commit (the newest
snapshot that was checked, recorded with its date), downloads each file once into .cache/, and refuses
any file whose git blob id differs from the pin. Upstream's code is never committed here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import SeriesError

PINS = Path("ci/upstream-tests.json")
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"


@dataclass(frozen=True)
class UpstreamTests:
    repository: str  # owner/name on GitHub
    commit: str
    date: str
    files: dict[str, str]  # path in upstream's repo -> git blob id


def load_pins(path: Path) -> UpstreamTests:
    raw = json.loads(path.read_text())
    return UpstreamTests(raw["repository"], raw["commit"], raw["date"], dict(raw["files"]))


def blob_id(data: bytes) -> str:
    """What `git hash-object` prints for a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _cached(cache: Path, blob: str) -> bytes | None:
    path = cache / blob
    if path.is_file():
        data = path.read_bytes()
        if blob_id(data) == blob:
            return data
    return None


def _download(pins: UpstreamTests, rel: str) -> bytes:
    url = RAW_URL.format(repo=pins.repository, commit=pins.commit, path=rel)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data: bytes = response.read()
            return data
    except OSError as err:
        raise SeriesError(f"cannot download {url}: {err}; on a machine without network, bring the files "
                          "with `make gpu-carrier` (see README)") from None


def fill_from_git(pins: UpstreamTests, git_dir: Path, cache: Path) -> list[str]:
    """Fill the cache from a local clone of upstream (no network): `git cat-file blob <id>`."""
    cache.mkdir(parents=True, exist_ok=True)
    for rel, blob in pins.files.items():
        proc = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "blob", blob], capture_output=True)
        if proc.returncode != 0:
            raise SeriesError(f"{git_dir} has no blob {blob} ({rel}): fetch upstream commit {pins.commit}")
        (cache / blob).write_bytes(proc.stdout)
    return sorted(pins.files)


def materialise(pins: UpstreamTests, cache: Path, dest: Path) -> list[Path]:
    """Every pinned file at dest/<its upstream path>, each checked against its blob id."""
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for rel, blob in sorted(pins.files.items()):
        data = _cached(cache, blob)
        if data is None:
            data = _download(pins, rel)
            if blob_id(data) != blob:
                raise SeriesError(f"{rel} at {pins.commit} has blob {blob_id(data)}, the pin says {blob}")
            (cache / blob).write_bytes(data)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        out.append(target)
    return out


def copy_cache(pins: UpstreamTests, cache: Path, dest: Path) -> None:
    """The pinned blobs (only) from `cache` into `dest`: what a carrier takes along."""
    dest.mkdir(parents=True, exist_ok=True)
    for blob in pins.files.values():
        if _cached(cache, blob) is None:
            raise SeriesError(f"blob {blob} is not in {cache}: run `make gpu-test` once with network, or "
                              "`python -m fiseries upstream-tests --from-git <upstream clone>`")
        shutil.copy2(cache / blob, dest / blob)
