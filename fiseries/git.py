"""Deterministic git invocations (no user or system config, fixed identities and dates)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .errors import SeriesError

# Identity and date used for every commit the tooling makes itself (bases, overlays),
# so that commit and tree hashes do not depend on who runs it or when.
TOOL_IDENT = {
    "GIT_AUTHOR_NAME": "flashinfer-sm12x",
    "GIT_AUTHOR_EMAIL": "flashinfer-sm12x@invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "flashinfer-sm12x",
    "GIT_COMMITTER_EMAIL": "flashinfer-sm12x@invalid",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
}

# Settings that change what format-patch / am produce are pinned here, not read from the user.
PINNED_CONFIG = [
    "core.autocrlf=false",
    "core.compression=0",
    "core.looseCompression=0",
    "diff.renames=true",
    "diff.algorithm=myers",
    "diff.noprefix=false",
    "diff.mnemonicPrefix=false",
    "am.keepcr=false",
    "am.threeWay=false",
    "advice.detachedHead=false",
    "init.defaultBranch=main",
    "gc.auto=0",
]


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(TOOL_IDENT)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["LC_ALL"] = "C"
    return env


def run_git(
    cwd: Path, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run git in `cwd` with pinned config; raise SeriesError with git's output on failure."""
    cmd = ["git"]
    for item in PINNED_CONFIG:
        cmd += ["-c", item]
    cmd += list(args)
    proc = subprocess.run(
        cmd, cwd=cwd, env=git_env(), input=stdin, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise SeriesError(
            f"git {' '.join(args)} failed in {cwd} (exit {proc.returncode}):\n"
            f"{proc.stdout}{proc.stderr}"
        )
    return proc


def git_out(cwd: Path, *args: str) -> str:
    return run_git(cwd, *args).stdout.strip()


def init_repo_from_dir(repo: Path, tag: str, message: str, exclude: list[str]) -> str:
    """Make `repo` (a directory of files) a git repo with one commit of its contents, tagged `tag`."""
    run_git(repo, "init", "-q")
    info = repo / ".git" / "info"
    info.mkdir(parents=True, exist_ok=True)
    # bytecode from running Python inside a tree (resolving a rebase, say) is never committed
    ignored = ["__pycache__/", "*.pyc"] + [f"/{path}/" for path in exclude]
    (info / "exclude").write_text("".join(f"{pattern}\n" for pattern in ignored))
    return commit_all(repo, message, tag)


def commit_all(repo: Path, message: str, tag: str | None = None) -> str:
    return commit_paths(repo, message, ["."], tag)


def commit_paths(repo: Path, message: str, paths: list[str], tag: str | None = None) -> str:
    """Commit exactly `paths` (added, changed or removed), nothing else that lies in the work tree."""
    run_git(repo, "add", "-A", "--", *paths)
    run_git(repo, "commit", "-q", "--allow-empty", "--no-verify", "-m", message)
    if tag is not None:
        run_git(repo, "tag", "-f", tag)
    return git_out(repo, "rev-parse", "HEAD")


def tree_hash(repo: Path, rev: str = "HEAD") -> str:
    return git_out(repo, "rev-parse", f"{rev}^{{tree}}")
