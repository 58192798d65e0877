"""tracking.md references: every (file, snippet) must still grep in the pinned pristine tree."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import SeriesError
from .lock import Lock

# | patch | target | commit | `file` | ~line | `` snippet `` |
REF_ROW = re.compile(
    r"^\|\s*(?P<patch>[^|]+?)\s*\|\s*(?P<target>[\w-]+)\s*\|\s*(?P<commit>[0-9a-f]{7,40})\s*\|"
    r"\s*`(?P<file>[^`]+)`\s*\|\s*~?(?P<line>\d+)\s*\|\s*``\s(?P<snippet>.+?)\s``\s*\|\s*$"
)
# | target | `path` | why |
WATCH_ROW = re.compile(r"^\|\s*(?P<target>[\w-]+)\s*\|\s*`(?P<path>[^`]+)`\s*\|(?P<why>[^|]+)\|\s*$")
# a reference's ~line may be this far from where its snippet is now; `make rebase` refreshes it
MAX_LINE_DRIFT = 40


@dataclass(frozen=True)
class Reference:
    patch: str
    target: str
    commit: str
    file: str
    line: int
    snippet: str


def _section(text: str, title: str) -> list[str]:
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    return match.group(1).splitlines() if match else []


def parse_references(text: str) -> list[Reference]:
    refs = []
    for line in _section(text, "Upstream references"):
        match = REF_ROW.match(line)
        if match:
            refs.append(Reference(match["patch"], match["target"], match["commit"], match["file"],
                                  int(match["line"]), match["snippet"]))
    return refs


def parse_watched(text: str) -> list[tuple[str, str]]:
    return [(m["target"], m["path"]) for line in _section(text, "Watched upstream areas")
            if (m := WATCH_ROW.match(line))]


def nearest_hit(path: Path, ref: Reference) -> int | None:
    """The line (1-based) holding the snippet that is closest to the reference's ~line."""
    lines = path.read_text(errors="replace").splitlines()
    hits = [i + 1 for i, line in enumerate(lines) if ref.snippet in line]
    return min(hits, key=lambda hit: abs(hit - ref.line)) if hits else None


def refresh_lines(tracking: Path, lock: Lock, pristine: Path) -> int:
    """Set each reference's ~line to its snippet's nearest hit in `pristine`; return how many moved."""
    text = tracking.read_text()
    section = re.search(r"^## Upstream references\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if section is None:
        return 0
    moved = 0
    rows = section.group(1).splitlines(keepends=True)
    for index, row in enumerate(rows):
        match = REF_ROW.match(row.rstrip("\n"))
        if not match:
            continue
        ref = Reference(match["patch"], match["target"], match["commit"], match["file"],
                        int(match["line"]), match["snippet"])
        path = pristine / lock.target(ref.target).path / ref.file
        near = nearest_hit(path, ref) if path.is_file() else None
        if near is not None and near != ref.line:
            start, end = match.span("line")
            rows[index] = row[:start] + str(near) + row[end:]
            moved += 1
    tracking.write_text(text[:section.start(1)] + "".join(rows) + text[section.end(1):])
    return moved


def check_tracking(tracking: Path, lock: Lock, pristine: Path) -> int:
    """Raise listing every stale reference; return how many references were checked."""
    text = tracking.read_text()
    refs = parse_references(text)
    watched = parse_watched(text)
    if not refs:
        raise SeriesError(f"{tracking}: no rows in '## Upstream references'; the checker found nothing to check")
    problems = []
    for ref in refs:
        target = lock.target(ref.target)
        where = f"{tracking.name}: {ref.patch}: {ref.target} {ref.file}"
        if not target.revision.startswith(ref.commit):
            problems.append(f"{where}: commit {ref.commit} is not the pinned {target.revision[:12]}")
            continue
        path = pristine / target.path / ref.file
        if not path.is_file():
            problems.append(f"{where}: file not in the pinned tree")
            continue
        near = nearest_hit(path, ref)
        if near is None:
            problems.append(f"{where}: snippet `{ref.snippet}` no longer found (near line {ref.line})")
        elif abs(near - ref.line) > MAX_LINE_DRIFT:
            problems.append(f"{where}: snippet `{ref.snippet}` is at line {near}, not near ~{ref.line}: "
                            "update the line column (`make rebase` refreshes it)")
    for target_name, rel in watched:
        target = lock.target(target_name)
        if not (pristine / target.path / rel).exists():
            problems.append(f"{tracking.name}: watched {target_name} path {rel} is not in the pinned tree")
    if problems:
        raise SeriesError(
            "tracking.md references do not resolve in the pinned upstream; update the file, line "
            "and snippet columns (grep the pinned tree under build/upstream/):\n  - "
            + "\n  - ".join(problems)
        )
    return len(refs) + len(watched)
