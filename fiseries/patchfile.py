"""Deterministic `git format-patch` output and byte comparison of patch files."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from .git import run_git

FORMAT_PATCH_FLAGS = (
    "--zero-commit",
    "--full-index",
    "--no-signature",
    "--no-stat",
    "--keep-subject",
    "--find-renames=50%",
    "--binary",
    "--encoding=UTF-8",
)
FILE_SECTION = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.M)


def strip_date(text: str) -> str:
    """Drop the Date: header so exports do not depend on when a commit was made."""
    head, sep, rest = text.partition("\n\n")
    kept = [line for line in head.split("\n") if not line.startswith("Date: ")]
    return "\n".join(kept) + sep + rest


def format_patch(repo: Path, commit: str, number: int) -> tuple[str, str]:
    """(file name, text) of one commit, formatted exactly as the series stores it."""
    with tempfile.TemporaryDirectory() as tmp:
        run_git(repo, "format-patch", *FORMAT_PATCH_FLAGS, f"--start-number={number}",
                "-o", tmp, "-1", commit)
        (produced,) = Path(tmp).iterdir()
        return produced.name, strip_date(produced.read_text())


def file_sections(text: str) -> dict[str, str]:
    """Per-file diff sections of a patch (key: the b/ path), plus the message under ''."""
    sections: dict[str, str] = {}
    matches = list(FILE_SECTION.finditer(text))
    sections[""] = text[: matches[0].start()] if matches else text
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        sections[match.group(2)] = text[match.start():end]
    return sections


def drifted_files(expected: str, actual: str) -> list[str]:
    """Files whose diff differs between two patch texts ('commit message' for the header)."""
    old, new = file_sections(expected), file_sections(actual)
    names = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            names.append(key or "commit message")
    return names
