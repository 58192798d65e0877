"""`make engines`: does the patched wheel satisfy the flashinfer-python pins of the engines it serves?

engines.json names, per engine, its requirement and the series (upstream release) meant to serve it.
pip's own resolver decides (`pip install --dry-run --no-deps --no-index --find-links <dist>`):
each engine of this series must resolve to the wheel in dist/, every other engine must not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import SeriesError
from .lock import Lock

ENGINES_FILE = "engines.json"


@dataclass(frozen=True)
class EnginePin:
    engine: str
    requirement: str
    series: str | None  # the upstream release whose series serves it; None: no series does


def load_engine_pins(path: Path) -> list[EnginePin]:
    try:
        rows = json.loads(path.read_text())["engines"]
        return [EnginePin(r["engine"], r["requirement"], r["series"]) for r in rows]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise SeriesError(f"{path}: not an engines file ({err})") from None


def resolved_version(requirement: str, dist: Path) -> str | None:
    """The flashinfer-python version pip picks from `dist` alone for `requirement`, or None."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps", "--no-index",
           "--ignore-installed", "--find-links", str(dist), "--report", "-", requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    report = json.loads(proc.stdout)
    versions = [item["metadata"]["version"] for item in report.get("install", [])]
    return versions[0] if versions else None


def check_engines(lock: Lock, dist: Path) -> list[str]:
    """One line per engine; raise if pip's answer contradicts engines.json for this series."""
    pins = load_engine_pins(lock.root / ENGINES_FILE)
    version = lock.main.version
    lines, problems = [], []
    for pin in pins:
        got = resolved_version(pin.requirement, dist)
        ours = pin.series == version
        if ours and got is None:
            problems.append(f"{pin.engine}: `{pin.requirement}` is not satisfied by the wheels in {dist}")
        elif not ours and got is not None:
            problems.append(f"{pin.engine}: `{pin.requirement}` resolves to {got}, but engines.json "
                            f"gives it to the {pin.series or 'no'} series")
        served = f"served by {got}" if got else f"not served here ({pin.series or 'no'} series)"
        lines.append(f"{pin.engine}: {pin.requirement}: {served}")
    if problems:
        raise SeriesError("engine pins and wheels disagree:\n  - " + "\n  - ".join(problems))
    return lines
