"""Where the project keeps things: the lock, build/, the upstream submodule, the sdist cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .lock import Lock, Target


@dataclass(frozen=True)
class Layout:
    """Where the project keeps things; tests build one around a temporary project."""

    lock: Lock
    build: Path
    submodule: Path
    cache: Path

    @classmethod
    def for_lock(cls, lock: Lock) -> Layout:
        root = lock.root
        return cls(lock, root / "build", root / "flashinfer", root / ".cache" / "sdist")

    @property
    def tree(self) -> Path:
        return self.build / "tree"

    def series_file(self, target: Target) -> Path:
        return self.lock.root / target.series

    def overlay_dir(self, target: Target) -> Path | None:
        return self.lock.root / target.overlay if target.overlay else None
