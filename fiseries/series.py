"""A target's patch series: the order file, the patch files, and their headers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SeriesError

UPSTREAM_STATUS = re.compile(
    r"^(Pending"
    r"|Submitted \[?https?://\S+\]?"
    r"|Backport \[?[0-9a-f]{7,40}\]?"
    r"|Denied \[?\S.*\]?"
    r"|Inappropriate \[?\S.*\]?)$"
)
FORWARDED = re.compile(r"^(no|not-needed|https?://\S+)$")
APPLIED_UPSTREAM = re.compile(r"^(\d+(\.\d+)+\S*|https?://\S+|commit:[0-9a-f]{7,40})$")
SECTIONS = ("Why:", "What:", "Tested:")
TRAILER = re.compile(r"^([A-Za-z][A-Za-z0-9-]*): (.+)$")


@dataclass(frozen=True)
class PatchHeader:
    subject: str
    body: str
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.trailers if k.lower() == key.lower()]

    @property
    def adds_files(self) -> list[str]:
        """Overlay files (csrc_overrides/ paths, upstream-relative) this patch brings."""
        return self.values("Adds-File")


def read_series(series_file: Path) -> list[Path]:
    """Patch files in series order; every .patch in the directory must be listed."""
    if not series_file.is_file():
        raise SeriesError(f"series file {series_file} missing: create it (an empty file is a valid series)")
    names = []
    for raw in series_file.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            names.append(line)
    directory = series_file.parent
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise SeriesError(f"{series_file} lists missing patch files: {', '.join(missing)}")
    unlisted = sorted(p.name for p in directory.glob("*.patch") if p.name not in names)
    if unlisted:
        raise SeriesError(
            f"{directory} holds patches not in {series_file.name}: {', '.join(unlisted)}; "
            "add them to the series or delete them"
        )
    if len(set(names)) != len(names):
        raise SeriesError(f"{series_file} lists a patch twice")
    return [directory / n for n in names]


def parse_patch_message(text: str) -> PatchHeader:
    """Subject, body and trailers of a `git format-patch` file."""
    lines = text.split("\n")
    subject_parts: list[str] = []
    i = 0
    while i < len(lines) and lines[i] != "":
        if lines[i].startswith("Subject: "):
            subject_parts.append(lines[i][len("Subject: "):])
            while i + 1 < len(lines) and lines[i + 1][:1] in (" ", "\t"):
                i += 1
                subject_parts.append(lines[i].strip())
        i += 1
    body_lines: list[str] = []
    for line in lines[i + 1:]:
        if line == "---" or line.startswith("diff --git "):
            break
        body_lines.append(line)
    body = "\n".join(body_lines).strip("\n")
    paragraphs = body.split("\n\n")
    trailers: list[tuple[str, str]] = []
    if paragraphs:
        candidate = [TRAILER.match(line) for line in paragraphs[-1].split("\n")]
        if all(candidate):
            trailers = [(m.group(1), m.group(2).strip()) for m in candidate if m]
    return PatchHeader(" ".join(subject_parts).strip(), body, trailers)


def header_problems(header: PatchHeader) -> list[str]:
    """Everything wrong with a patch header; empty when it is valid."""
    problems = []
    if not header.subject:
        problems.append("no Subject")
    for section in SECTIONS:
        if not re.search(rf"(^|\n){re.escape(section)}\s+\S", header.body):
            problems.append(f"no '{section}' paragraph (why / what / how tested)")
    statuses = header.values("Upstream-Status")
    if len(statuses) != 1:
        problems.append(
            f"needs exactly one 'Upstream-Status:' trailer in the last paragraph, found {len(statuses)}"
        )
    for status in statuses:
        if not UPSTREAM_STATUS.match(status):
            problems.append(
                f"malformed 'Upstream-Status: {status}': use Pending | Submitted <PR url> | "
                "Backport <upstream commit> | Denied <reason> | Inappropriate <reason>"
            )
    for value in header.values("Forwarded"):
        if not FORWARDED.match(value):
            problems.append(f"malformed 'Forwarded: {value}': use no | not-needed | <url>")
    for value in header.values("Applied-Upstream"):
        if not APPLIED_UPSTREAM.match(value):
            problems.append(f"malformed 'Applied-Upstream: {value}': use <version> | <url> | commit:<id>")
    return problems


def check_headers(patches: list[Path]) -> dict[Path, PatchHeader]:
    headers: dict[Path, PatchHeader] = {}
    failures = []
    for patch in patches:
        header = parse_patch_message(patch.read_text())
        problems = header_problems(header)
        if problems:
            failures.append(f"{patch}:\n  - " + "\n  - ".join(problems))
        headers[patch] = header
    if failures:
        raise SeriesError(
            "invalid patch headers (edit the commit message in build/tree with "
            "`git commit --amend` / `rebase -i`, then `make export`):\n" + "\n".join(failures)
        )
    return headers
