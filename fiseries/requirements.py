"""The GPU venv's pinned requirements (ci/gpu-requirements.txt): `name==version` lines, options and comments aside."""

from __future__ import annotations

import re
from pathlib import Path

GPU_REQUIREMENTS = Path("ci/gpu-requirements.txt")
PIN_LINE = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)")


def gpu_pins(root: Path) -> dict[str, str]:
    """Package name -> pinned version, in file order."""
    pins = {}
    for line in (root / GPU_REQUIREMENTS).read_text().splitlines():
        m = PIN_LINE.match(line.strip())
        if m:
            pins[m.group(1)] = m.group(2)
    return pins
