"""`build/tree`: pristine upstream as git repos (one per target) + one commit per patch + the overlay."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SeriesError
from .git import commit_paths, git_out, init_repo_from_dir, run_git, tree_hash
from .layout import Layout
from .lock import Lock, Target
from .patchfile import drifted_files, format_patch
from .series import check_headers, read_series
from .upstream import PRISTINE_MARK, Pristine, materialise

OVERLAY_SUBJECT = "fiseries: overlay csrc_overrides"
PATCH_FAILED = re.compile(r"^error: (?:patch failed: |)(\S+?):\d+", re.M)


@dataclass
class Drift:
    patch: Path
    files: list[str]


@dataclass
class Applied:
    """Result of applying one target's series."""

    target: Target
    repo: Path
    commits: list[tuple[Path, str]] = field(default_factory=list)
    dropped: list[Path] = field(default_factory=list)  # empty after the 3-way merge
    backports: dict[Path, str] = field(default_factory=dict)  # patch-id equals this upstream commit
    drift: list[Drift] = field(default_factory=list)


def patch_id(patch: Path) -> str:
    """`git patch-id --stable` of a patch file (or of `git log -p` output)."""
    out = run_git(patch.parent, "patch-id", "--stable", stdin=patch.read_text()).stdout.split()
    return out[0] if out else ""


def create_tree(lock: Lock, pristine: Path, dest: Path) -> None:
    """Copy the pristine tree to `dest` and make each target a git repo tagged with its version."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(pristine, dest, symlinks=True, ignore=shutil.ignore_patterns(PRISTINE_MARK))
    for target in sorted(lock.targets, key=lambda t: t.is_main):
        repo = dest / target.path
        if not repo.is_dir():
            raise SeriesError(f"pristine tree has no {target.path} for target {target.name}")
        nested = lock.vendored_paths if target.is_main else []
        init_repo_from_dir(repo, lock.base_tag,
                           f"Upstream {target.name} {target.version} ({target.revision})", nested)


def overlay_files(overlay: Path) -> list[str]:
    return sorted(str(p.relative_to(overlay)) for p in overlay.rglob("*") if p.is_file())


def check_overlay_owners(lock: Lock, layout: Layout) -> None:
    """Every overlay file is claimed by exactly one patch (Adds-File:), and every claim exists."""
    for target in lock.targets:
        overlay = layout.overlay_dir(target)
        files = set(overlay_files(overlay)) if overlay and overlay.is_dir() else set()
        claims: dict[str, list[str]] = {}
        headers = check_headers(read_series(layout.series_file(target)))
        for patch, header in headers.items():
            for rel in header.adds_files:
                claims.setdefault(rel, []).append(patch.name)
        problems = [f"{target.overlay}/{f} is not claimed by any patch (add 'Adds-File: {f}' "
                    "to the patch that uses it)" for f in sorted(files - set(claims))]
        problems += [f"'Adds-File: {f}' in {', '.join(p)} names a file missing from "
                     f"{target.overlay or 'the overlay'}/" for f, p in claims.items() if f not in files]
        problems += [f"{f} is claimed by several patches: {', '.join(p)}"
                     for f, p in claims.items() if len(p) > 1]
        if problems:
            raise SeriesError("overlay ownership problems:\n  - " + "\n  - ".join(problems))


def apply_overlay(lock: Lock, target: Target, repo: Path, overlay: Path) -> str | None:
    """Copy new files onto the patched tree as one commit; refuse to replace upstream files."""
    files = overlay_files(overlay) if overlay.is_dir() else []
    if not files:
        return None
    for rel in files:
        inside = [v for v in lock.vendored_paths if rel == v or rel.startswith(v + "/")]
        if inside:
            raise SeriesError(
                f"overlay file {overlay.name}/{rel} lies in the vendored tree {inside[0]}: "
                f"add it with a patch in that target's series instead"
            )
        if (repo / rel).exists() or (repo / rel).is_symlink():
            raise SeriesError(
                f"overlay file {overlay.name}/{rel} would replace the existing upstream file {rel}. "
                "csrc_overrides/ may only add new files: change an upstream file with a patch "
                "(edit it in build/tree, commit, `make export`) and remove it from the overlay."
            )
    for rel in files:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(overlay / rel, repo / rel)
    return commit_paths(repo, OVERLAY_SUBJECT, files)


def am_one(repo: Path, patch: Path) -> tuple[bool, list[str], str]:
    """git am --3way one patch: (applied?, conflicted or failing files, git's output)."""
    proc = run_git(repo, "am", "--3way", "--keep-non-patch", str(patch), check=False)
    output = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return True, [], output
    unmerged = git_out(repo, "diff", "--name-only", "--diff-filter=U").split()
    return False, unmerged or sorted(set(PATCH_FAILED.findall(output))), output


def apply_target(lock: Lock, layout: Layout, target: Target, repo: Path,
                 rebasing: bool = False, skip: int = 0,
                 upstream_ids: dict[str, str] | None = None) -> Applied:
    """Apply one target's series with git am --3way; record per-patch drift (offset, fuzz, merge).

    When rebasing, a conflict stops with the am state kept for the user, and a patch that
    comes out empty (upstream already has it) is dropped; otherwise both are errors.
    """
    result = Applied(target, repo)
    for number, patch in enumerate(read_series(layout.series_file(target)), start=1):
        if number <= skip:
            continue
        if upstream_ids and patch_id(patch) in upstream_ids:
            result.backports[patch] = upstream_ids[patch_id(patch)]
            continue
        before = git_out(repo, "rev-parse", "HEAD")
        ok, files, output = am_one(repo, patch)
        if not ok:
            if rebasing:
                raise ConflictStop(target, repo, patch, files)
            run_git(repo, "am", "--abort", check=False)
            raise SeriesError(
                f"patch {patch.name} ({target.name}) does not apply to {target.name} "
                f"{target.version}: conflict in {', '.join(files) or 'unknown files'}.\n"
                f"{output.strip()}\nRebuild the patch on this base (`make rebase` when "
                "upstream moved), or fix the patch file."
            )
        commit = git_out(repo, "rev-parse", "HEAD")
        if commit == before:
            if not rebasing:
                raise SeriesError(
                    f"patch {patch.name} ({target.name}) changes nothing on {target.name} "
                    f"{target.version}: upstream already has it. Drop it with `make rebase`."
                )
            result.dropped.append(patch)
            continue
        result.commits.append((patch, commit))
        _, exported = format_patch(repo, commit, number)
        drift = drifted_files(patch.read_text(), exported)
        if drift:
            result.drift.append(Drift(patch, drift))
    overlay = layout.overlay_dir(target)
    if overlay is not None:
        apply_overlay(lock, target, repo, overlay)
    return result


class ConflictStop(SeriesError):
    """git am stopped on a conflict and the state was kept for the user to resolve."""

    def __init__(self, target: Target, repo: Path, patch: Path, files: list[str]):
        self.target, self.repo, self.patch, self.files = target, repo, patch, files
        listed = "\n".join(f"    {f}" for f in files) or "    (see `git -C {repo} status`)"
        super().__init__(
            f"patch {patch.name} ({target.name}) conflicts with the new upstream in:\n{listed}\n"
            "Nothing is lost: patches/ and the lock file are unchanged until the rebase finishes.\n"
            "Next steps:\n"
            f"  1. edit the files above in {repo} to resolve the conflict markers\n"
            f"  2. git -C {repo} add <files> && git -C {repo} am --continue\n"
            f"     (or `git -C {repo} am --skip` if upstream already has this change)\n"
            "  3. make rebase-continue   # applies the remaining patches, exports, updates the lock\n"
            f"To give up: git -C {repo} am --abort && make apply"
        )


def apply_all(layout: Layout, sdist_file: Path | None = None) -> tuple[Pristine, list[Applied]]:
    """Materialise the pristine tree and apply every target's series into build/tree."""
    lock = layout.lock
    pristine = materialise(lock, layout.build, layout.submodule, layout.cache, sdist_file)
    check_overlay_owners(lock, layout)
    create_tree(lock, pristine.path, layout.tree)
    results = [apply_target(lock, layout, t, layout.tree / t.path) for t in lock.targets]
    return pristine, results


def apply_exactly(layout: Layout, sdist_file: Path | None = None) -> list[Applied]:
    """`make apply`: apply_all, failing when a patch applied only with offset, fuzz or a 3-way merge."""
    _, results = apply_all(layout, sdist_file)
    drift = drift_report(results)
    if drift:
        raise SeriesError(
            "patches applied only with offset, fuzz or a 3-way merge (patch, files):\n" + drift +
            f"\nThe resolved result is in {layout.tree}; run `make export` to rewrite the series "
            "from it, review `git diff patches/`, and commit.")
    return results


def drift_report(results: list[Applied]) -> str:
    lines = [f"  {d.patch.name} ({r.target.name}): {', '.join(d.files)}"
             for r in results for d in r.drift]
    return "\n".join(lines)


def applied_trees(results: list[Applied]) -> dict[str, str]:
    return {r.target.name: tree_hash(r.repo) for r in results}
