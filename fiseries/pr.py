"""`make pr PATCH=<n>`: one patch as a branch on pristine upstream, ready to push."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .errors import SeriesError
from .git import git_env, init_repo_from_dir, run_git
from .lock import Target
from .series import parse_patch_message, read_series
from .layout import Layout
from .upstream import PRISTINE_MARK, materialise

# Trailers that only mean something inside this fork; upstream reviewers never see them.
FORK_TRAILERS = ("Upstream-Status", "Forwarded", "Applied-Upstream", "Adds-File")
MESSAGE_CALLBACK = (
    "import re\n"
    "message = re.sub(rb'(?m)^(" + "|".join(FORK_TRAILERS) + "): .*\\n?', b'', message)\n"
    "return message.rstrip(b'\\n') + b'\\n'\n"
)


def filter_repo_command() -> list[str]:
    """git-filter-repo from this interpreter's environment (the venv), else from PATH."""
    local = Path(sys.executable).parent / "git-filter-repo"
    return [str(local)] if local.exists() else ["git", "filter-repo"]


def find_patch(layout: Layout, wanted: str) -> tuple[Target, Path]:
    """A patch by series number (flashinfer's, or `cutlass/2`), file name or name fragment."""
    target_name, _, key = wanted.rpartition("/")
    matches = []
    for target in layout.lock.targets:
        if target_name and target.name != target_name:
            continue
        for number, patch in enumerate(read_series(layout.series_file(target)), start=1):
            by_number = key.isdigit() and int(key) == number and (target_name or target.is_main)
            if by_number or (not key.isdigit() and key in patch.name):
                matches.append((target, patch))
    if len(matches) != 1:
        found = ", ".join(f"{t.name}/{p.name}" for t, p in matches) or "none"
        raise SeriesError(f"PATCH={wanted} must name exactly one patch (matches: {found}); "
                          "use a number (flashinfer), <target>/<number>, or part of the file name")
    return matches[0]


def make_pr(layout: Layout, wanted: str) -> tuple[Path, str]:
    """Create build/pr/<name> with branch pr/<name>; return (repo, branch)."""
    target, patch = find_patch(layout, wanted)
    lock = layout.lock
    pristine = materialise(lock, layout.build, layout.submodule, layout.cache)
    name = patch.stem
    repo = layout.build / "pr" / name
    if repo.exists():
        shutil.rmtree(repo)
    keep_out = lock.vendored_paths if target.is_main else []
    shutil.copytree(pristine.path / target.path, repo, symlinks=True,
                    ignore=shutil.ignore_patterns(PRISTINE_MARK))
    for vendored in keep_out:
        shutil.rmtree(repo / vendored, ignore_errors=True)
    init_repo_from_dir(repo, lock.base_tag,
                       f"Upstream {target.name} {target.version} ({target.revision})", [])
    branch = f"pr/{name}"
    run_git(repo, "checkout", "-q", "-b", branch)
    run_git(repo, "am", str(patch))
    overlay = layout.overlay_dir(target)
    adds = parse_patch_message(patch.read_text()).adds_files
    if adds:
        assert overlay is not None
        for rel in adds:
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(overlay / rel, repo / rel)
            run_git(repo, "add", rel)
        run_git(repo, "commit", "-q", "--amend", "--no-edit", "--no-verify")
    proc = subprocess.run(
        [*filter_repo_command(), "--force", "--quiet", "--refs", f"{lock.base_tag}..{branch}",
         "--message-callback", MESSAGE_CALLBACK],
        cwd=repo, env=git_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SeriesError(f"git filter-repo failed in {repo}:\n{proc.stdout}{proc.stderr}\n"
                          "Is git-filter-repo installed (`make venv`)?")
    return repo, branch
