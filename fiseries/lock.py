"""The lock file: one machine-readable pin per series target; `make rebase` rewrites it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import SeriesError

LOCK_NAME = "upstreams.lock.json"


@dataclass(frozen=True)
class Sdist:
    """The PyPI source distribution the pristine tree can be rebuilt from."""

    project: str
    sha256: str

    def filename(self, version: str) -> str:
        return f"{self.project.replace('-', '_')}-{version}.tar.gz"


@dataclass(frozen=True)
class Target:
    """One patched tree: FlashInfer itself, or a tree vendored inside it (its CUTLASS)."""

    name: str
    path: str  # relative to the FlashInfer root; "." for FlashInfer itself
    upstream: str
    version: str
    revision: str
    series: str  # relative to the project root
    tree: str | None = None  # tree hash that applying the series (and overlay) yields
    overlay: str | None = None  # directory of new files at upstream-relative paths
    sdist: Sdist | None = None

    @property
    def is_main(self) -> bool:
        """FlashInfer itself, the release every other target is vendored in."""
        return self.path == "."


@dataclass
class Lock:
    path: Path
    targets: list[Target] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def main(self) -> Target:
        """The target whose release everything else is vendored in (path ".")."""
        for target in self.targets:
            if target.is_main:
                return target
        raise SeriesError(f"{self.path}: no target with path '.'; add the FlashInfer target")

    @property
    def vendored_paths(self) -> list[str]:
        """Where every target other than FlashInfer sits inside the FlashInfer tree."""
        return [t.path for t in self.targets if not t.is_main]

    @property
    def base_tag(self) -> str:
        """Tag of the pristine commit in every target's repo: the FlashInfer release vendoring it."""
        return f"upstream/{self.main.version}"

    def target(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        names = ", ".join(t.name for t in self.targets)
        raise SeriesError(f"{self.path}: no target named {name!r} (targets: {names})")

    def with_target(self, updated: Target) -> Lock:
        return Lock(self.path, [updated if t.name == updated.name else t for t in self.targets])

    def save(self) -> None:
        data = {"targets": [_target_to_json(t) for t in self.targets]}
        self.path.write_text(json.dumps(data, indent=2) + "\n")


def _target_to_json(target: Target) -> dict[str, object]:
    data = asdict(target)
    return {k: v for k, v in data.items() if v is not None}


def load_lock(path: Path) -> Lock:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise SeriesError(f"lock file {path} not found; run make from the project root") from None
    except json.JSONDecodeError as err:
        raise SeriesError(f"lock file {path} is not valid JSON: {err}") from None
    targets = []
    for entry in raw.get("targets", []):
        sdist = entry.pop("sdist", None)
        try:
            target = Target(**entry, sdist=Sdist(**sdist) if sdist else None)
        except TypeError as err:
            raise SeriesError(f"lock file {path}: bad target entry {entry}: {err}") from None
        targets.append(target)
    lock = Lock(path, targets)
    _ = lock.main  # raises: a lock without the main target is unusable
    return lock
