"""`make check`: re-apply, re-export and fail on any byte of drift; verify lock and tracking."""

from __future__ import annotations

import filecmp
import re
import shutil
import subprocess
from pathlib import Path

from .errors import SeriesError
from .export import export_all
from .git import git_env
from .pins import check_pins
from .tracking import check_tracking
from .layout import Layout
from .tree import applied_trees, apply_all

UPDATE_PATCH = "update-patches.patch"


def _managed_paths(layout: Layout) -> list[str]:
    paths = []
    for target in layout.lock.targets:
        paths.append(str(Path(target.series).parent))
        if target.overlay:
            paths.append(target.overlay)
    return paths


def _copy_managed(src_root: Path, dest_root: Path, managed: list[str]) -> None:
    for rel in managed:
        if (src_root / rel).is_dir():
            shutil.copytree(src_root / rel, dest_root / rel)


def _differing(a: Path, b: Path) -> list[str]:
    """Relative paths of files that differ (or exist on one side only) under a and b."""
    files = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files |= {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    return sorted(str(f) for f in files
                  if not ((a / f).is_file() and (b / f).is_file()
                          and filecmp.cmp(a / f, b / f, shallow=False)))


def write_update_patch(workdir: Path, dest: Path) -> None:
    """A patch, applicable with `git apply` at the project root, turning old/ into new/."""
    proc = subprocess.run(["git", "diff", "--no-index", "--binary", "old", "new"], cwd=workdir,
                          capture_output=True, text=True, env=git_env())
    text = re.sub(r"(^|\s)([ab])/(?:old|new)/", r"\1\2/", proc.stdout, flags=re.M)
    dest.write_text(text)


def check_series(layout: Layout, tracking: Path) -> list[str]:
    """Run every series check; return human-readable lines of what passed."""
    pristine, results = apply_all(layout)
    report = [f"pristine {layout.lock.main.name} {pristine.version} from {pristine.source}"]
    work = layout.build / "check"
    if work.exists():
        shutil.rmtree(work)
    managed = _managed_paths(layout)
    _copy_managed(layout.lock.root, work / "old", managed)
    (work / "new").mkdir(parents=True)
    export_all(layout, into=work / "new")
    differing = _differing(work / "old", work / "new")
    if differing:
        update = layout.build / UPDATE_PATCH
        write_update_patch(work, update)
        raise SeriesError(
            "the series is not byte-identical to its re-export (offset, fuzz, a hand edit or a "
            "non-deterministic export); drifting files:\n  " + "\n  ".join(differing) + "\n"
            f"The re-exported series is in {work / 'new'}; apply the fix with "
            f"`git apply {update}` (or run `make export`), review, and commit."
        )
    report.append(f"series re-export byte-identical ({', '.join(managed)})")
    trees = applied_trees(results)
    for target in layout.lock.targets:
        if pristine.source != "sdist":
            report.append(f"{target.name}: tree {trees[target.name]} "
                          "(lock hashes are for the sdist source; not compared)")
        elif target.tree != trees[target.name]:
            raise SeriesError(
                f"lock file pins {target.name} tree {target.tree}, applying the series gives "
                f"{trees[target.name]}: run `make export` to record it, and commit the lock file"
            )
        else:
            report.append(f"{target.name}: tree {target.tree} matches the lock")
    count = check_tracking(tracking, layout.lock, pristine.path)
    report.append(f"tracking.md: {count} references resolve")
    report.append(f"pin blocks match the lock: {', '.join(check_pins(layout.lock))}")
    return report
