"""The pin block: what docs say about the pinned upstream, generated from the lock file.

tracking.md (required) and README.md (optional) hold one block between PIN_BEGIN and PIN_END;
`make rebase` rewrites it and `make check` fails while it differs from the lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .errors import SeriesError
from .lock import Lock

PIN_BEGIN = "<!-- pins: generated from upstreams.lock.json by `make rebase`; `make check` fails if stale -->"
PIN_END = "<!-- /pins -->"
PIN_DOCS = ("tracking.md", "README.md")  # the first is required to hold a block


def render_pins(lock: Lock) -> str:
    """One line per target: version, full revision, and the sdist pin where there is one."""
    lines = []
    for target in lock.targets:
        where = "" if target.is_main else f" under `{target.path}`"
        line = f"- {target.name} {target.version}{where}: commit `{target.revision}`"
        if target.sdist is not None:
            line += (f", PyPI sdist `{target.sdist.filename(target.version)}` "
                     f"(sha256 `{target.sdist.sha256}`)")
        lines.append(line)
    return "\n".join([PIN_BEGIN, *lines, PIN_END])


def _span(text: str, doc: Path) -> tuple[int, int] | None:
    begin = text.find(PIN_BEGIN)
    if begin < 0:
        return None
    end = text.find(PIN_END, begin)
    if end < 0:
        raise SeriesError(f"{doc}: pin block opened but not closed with {PIN_END}")
    return begin, end + len(PIN_END)


def _docs(lock: Lock) -> Iterator[tuple[str, Path, str, tuple[int, int] | None]]:
    """(name, path, text, pin-block span) of each pin doc that exists."""
    for name in PIN_DOCS:
        doc = lock.root / name
        if doc.is_file():
            text = doc.read_text()
            yield name, doc, text, _span(text, doc)


def rewrite_pins(lock: Lock) -> list[Path]:
    """Replace the pin block of every doc that has one; return the docs rewritten."""
    written = []
    for _, doc, text, span in _docs(lock):
        if span is None:
            continue
        new = text[:span[0]] + render_pins(lock) + text[span[1]:]
        if new != text:
            doc.write_text(new)
            written.append(doc)
    return written


def check_pins(lock: Lock) -> list[str]:
    """Raise if a pin block is missing (tracking.md) or differs from the lock; list docs checked."""
    checked, problems = [], []
    for name, _, text, span in _docs(lock):
        if span is None:
            if name == PIN_DOCS[0]:
                problems.append(f"{name} has no pin block (add the lines `{PIN_BEGIN}` and `{PIN_END}`)")
            continue
        if text[span[0]:span[1]] != render_pins(lock):
            problems.append(f"{name}: pin block differs from {lock.path.name}")
        checked.append(name)
    if problems:
        raise SeriesError("pinned-upstream docs are stale:\n  - " + "\n  - ".join(problems) +
                          "\nRewrite them from the lock with `make pins`.")
    return checked
