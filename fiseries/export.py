"""`make export`: regenerate each series (and the overlay) from build/tree, deterministically."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from .git import git_out, run_git, tree_hash
from .lock import Lock, Target
from .patchfile import format_patch
from .layout import Layout
from .tree import OVERLAY_SUBJECT

SERIES_HEADER = "# Applied in this order by `make apply` (git am --3way); written by `make export`.\n"


def series_commits(repo: Path, base_tag: str) -> list[tuple[str, bool]]:
    """(commit, is_overlay) from the base tag to HEAD, oldest first."""
    revs = git_out(repo, "rev-list", "--reverse", f"{base_tag}..HEAD").split()
    return [(rev, git_out(repo, "log", "-1", "--format=%s", rev) == OVERLAY_SUBJECT) for rev in revs]


def export_target(layout: Layout, target: Target, repo: Path, series_dir: Path,
                  overlay_dir: Path | None) -> list[str]:
    """Write the target's patches + series into `series_dir`; sync overlay files into `overlay_dir`."""
    series_dir.mkdir(parents=True, exist_ok=True)
    for stale in series_dir.glob("*.patch"):
        stale.unlink()
    names: list[str] = []
    overlay_touched: set[str] = set()
    for rev, is_overlay in series_commits(repo, layout.lock.base_tag):
        if is_overlay:
            changed = git_out(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", rev)
            overlay_touched.update(changed.split())
            continue
        name, text = format_patch(repo, rev, len(names) + 1)
        (series_dir / name).write_text(text)
        names.append(name)
    (series_dir / "series").write_text(SERIES_HEADER + "".join(f"{n}\n" for n in names))
    if overlay_dir is not None and overlay_touched:
        if overlay_dir.exists():
            shutil.rmtree(overlay_dir)
        for rel in sorted(overlay_touched):
            content = run_git(repo, "show", f"HEAD:{rel}").stdout
            (overlay_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (overlay_dir / rel).write_text(content)
    return names


def export_all(layout: Layout, into: Path | None = None) -> dict[str, list[str]]:
    """Export every target from build/tree into the project (or a mirror of it rooted at `into`)."""
    root = into or layout.lock.root
    exported = {}
    for target in layout.lock.targets:
        overlay = root / target.overlay if target.overlay else None
        series_dir = (root / target.series).parent
        exported[target.name] = export_target(layout, target, layout.tree / target.path,
                                              series_dir, overlay)
    return exported


def record_trees(layout: Layout) -> Lock:
    """Write the tree hash of each target's build/tree HEAD into the lock file."""
    lock = layout.lock
    for target in lock.targets:
        lock = lock.with_target(replace(target, tree=tree_hash(layout.tree / target.path)))
    lock.save()
    return lock
