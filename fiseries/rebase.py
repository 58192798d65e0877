"""`make rebase UPSTREAM=<version>`: move the series onto a new upstream release."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import SeriesError
from .export import export_all, record_trees
from .git import commit_all, git_out, run_git
from .lock import Lock, Sdist
from .pins import rewrite_pins
from .tracking import refresh_lines
from .layout import Layout
from .tree import Applied, apply_target, create_tree
from .upstream import fetch_release, materialise, submodule_populated

STATE = "rebase-state.json"


def _replace_contents(repo: Path, source: Path, keep: list[str]) -> None:
    """Make repo's work tree equal `source` (tracked files), leaving the `keep` subtrees alone."""
    for tracked in git_out(repo, "ls-files", "-z").split("\0"):
        if tracked:
            (repo / tracked).unlink()
    run_git(repo, "rm", "-r", "-q", "--cached", ".")  # re-hash everything: stat data can lie
    for path in source.rglob("*"):
        rel = path.relative_to(source)
        if any(str(rel) == k or str(rel).startswith(k + "/") for k in keep) or path.is_dir():
            continue
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, repo / rel, follow_symlinks=False)


def _upstream_patch_ids(layout: Layout, old: str, new: str) -> dict[str, str]:
    """patch-id -> upstream commit for commits old..new, when the submodule has that history."""
    if not submodule_populated(layout.submodule):
        return {}
    log = run_git(layout.submodule, "log", "-p", "--format=commit %H", f"{old}..{new}", check=False)
    if log.returncode != 0:
        return {}
    ids = run_git(layout.submodule, "patch-id", "--stable", stdin=log.stdout).stdout
    return {pid: commit for pid, commit in (line.split() for line in ids.splitlines())}


def start_rebase(layout: Layout, version: str, sdist_file: Path | None) -> list[str]:
    """Apply the series onto `version` in build/rebase; stop on a conflict, else finish."""
    lock = layout.lock
    old = materialise(lock, layout.build, layout.submodule, layout.cache)
    release = fetch_release(lock, version, layout.build / "upstream" / version, layout.submodule, layout.cache,
                            sdist_file, pinned=False)
    work = layout.build / "rebase"
    create_tree(lock, old.path, work)
    for target in lock.targets:
        repo = work / target.path
        keep = lock.vendored_paths if target.is_main else []
        _replace_contents(repo, release.path / target.path, keep)
        commit_all(repo, f"Upstream {target.name} {version}", tag=f"upstream/{version}")
    state: dict[str, object] = {"version": version, "revision": release.revision, "sdist_sha256": release.sdist_sha256,
             "vendored": release.vendored_revisions, "old_revision": lock.main.revision,
             "done": [], "current": None, "dropped": {}}
    (layout.build / STATE).write_text(json.dumps(state, indent=2))
    return continue_rebase(layout)


def continue_rebase(layout: Layout) -> list[str]:
    """Apply what is left (after the user resolved a conflict), export, and re-pin."""
    state_file = layout.build / STATE
    if not state_file.is_file():
        raise SeriesError("no rebase in progress (start one with `make rebase UPSTREAM=<version>`)")
    state = json.loads(state_file.read_text())
    lock = layout.lock
    work = layout.build / "rebase"
    ids = _upstream_patch_ids(layout, state["old_revision"], state["revision"])
    results: list[Applied] = []
    for target in lock.targets:
        if target.name in state["done"]:
            continue
        repo = work / target.path
        if (repo / ".git" / "rebase-apply").exists():
            raise SeriesError(f"git am is still in progress in {repo}: finish it with "
                              f"`git -C {repo} am --continue` (or --skip), then `make rebase-continue`")
        skip = 0
        if state["current"] and state["current"]["target"] == target.name:
            skip = state["current"]["applied"] + 1  # the conflicting patch was resolved by the user
        applied_before = len(git_out(repo, "rev-list", f"upstream/{state['version']}..HEAD").split())
        state["current"] = {"target": target.name, "applied": applied_before}
        state_file.write_text(json.dumps(state, indent=2))
        try:
            result = apply_target(lock, layout, target, repo, rebasing=True, skip=skip,
                                  upstream_ids=ids if target.is_main else None)
        except SeriesError:
            count = len(git_out(repo, "rev-list", f"upstream/{state['version']}..HEAD").split())
            state["current"]["applied"] = count
            state_file.write_text(json.dumps(state, indent=2))
            raise
        for patch in result.dropped:
            state["dropped"][patch.name] = state["revision"]
        for patch, commit in result.backports.items():
            state["dropped"][patch.name] = commit
        state["done"].append(target.name)
        state["current"] = None
        state_file.write_text(json.dumps(state, indent=2))
        results.append(result)
    return _finish(layout, state)


def _finish(layout: Layout, state: dict[str, Any]) -> list[str]:
    lock = layout.lock
    version = state["version"]
    new_targets = []
    for target in lock.targets:
        changes: dict[str, Any] = {"version": version} if target.is_main else {}
        if target.is_main:
            changes["revision"] = state["revision"]
            if target.sdist is not None and state["sdist_sha256"]:
                changes["sdist"] = Sdist(target.sdist.project, state["sdist_sha256"])
        elif target.name in state["vendored"]:
            changes["revision"] = state["vendored"][target.name]
        new_targets.append(replace(target, **changes))
    new_lock = Lock(lock.path, new_targets)
    old_tree = layout.tree
    if old_tree.exists():
        backup = layout.build / f"tree.before-rebase-{lock.main.version}"
        if backup.exists():
            shutil.rmtree(backup)
        old_tree.rename(backup)
    (layout.build / "rebase").rename(old_tree)
    new_layout = Layout(new_lock, layout.build, layout.submodule, layout.cache)
    export_all(new_layout)
    pinned = record_trees(new_layout)
    _record_backports(lock, state)
    moved = refresh_lines(lock.root / "tracking.md", pinned, layout.build / "upstream" / version)
    rewritten = rewrite_pins(pinned)
    gitlink = _repin_submodule(pinned)
    (layout.build / STATE).unlink()
    lines = [f"rebased onto {lock.main.name} {version} ({state['revision']})"]
    lines += [f"{doc.name}: pin block rewritten from the lock" for doc in rewritten]
    lines += [f"tracking.md: {moved} reference line numbers refreshed"] if moved else []
    lines += [gitlink] if gitlink else []
    lines += [f"dropped {name}: Backport {commit}" for name, commit in state["dropped"].items()]
    lines += [f"{t.name}: vendored revision kept at {t.revision} (an sdist does not record it); "
              "check it against the new release's submodule pin" for t in lock.targets
              if not t.is_main and t.name not in state["vendored"]]
    return lines


def _repin_submodule(lock: Lock) -> str | None:
    """Point the project's `flashinfer` gitlink and its .gitmodules branch at the new release."""
    root, main = lock.root, lock.main
    if not (root / ".gitmodules").is_file() or run_git(root, "rev-parse", "--git-dir", check=False).returncode:
        return None
    path = Layout.for_lock(lock).submodule.relative_to(root).as_posix()
    staged = run_git(root, "ls-files", "-s", "--", path).stdout.split()
    if not staged or staged[0] != "160000":
        return None
    run_git(root, "update-index", "--cacheinfo", f"160000,{main.revision},{path}")
    run_git(root, "config", "-f", ".gitmodules", f"submodule.{path}.branch", f"v{main.version}")
    return (f"{path}: gitlink staged at {main.revision}, .gitmodules branch v{main.version} "
            f"(run `git submodule update {path}` to check it out)")


def _record_backports(old_lock: Lock, state: dict[str, Any]) -> None:
    tracking = old_lock.root / "tracking.md"
    if not tracking.is_file():
        return
    text = tracking.read_text()
    old_short, new_short = old_lock.main.revision[:12], state["revision"][:12]
    text = re.sub(rf"\b{old_short}[0-9a-f]*\b", new_short, text)
    entries = "".join(
        f"- `{name}`: Upstream-Status: Backport {commit} (dropped in the rebase to "
        f"{state['version']})\n" for name, commit in state["dropped"].items())
    if entries:
        heading = "## Dropped patches\n"
        if heading in text:
            text = text.replace(heading, heading + "\n" + entries, 1)
        else:
            text = text.rstrip("\n") + "\n\n" + heading + "\n" + entries
    tracking.write_text(text)
