"""`make engines`: pip's resolver decides which engine pins a series' wheel satisfies."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from fiseries.engines import ENGINES_FILE, check_engines, load_engine_pins, resolved_version
from fiseries.errors import SeriesError
from fiseries.lock import LOCK_NAME, Lock, load_lock


def fake_wheel(dist: Path, version: str) -> Path:
    """A flashinfer_python wheel with metadata only: all that pip's resolver reads."""
    dist.mkdir(parents=True, exist_ok=True)
    info = f"flashinfer_python-{version}.dist-info"
    path = dist / f"flashinfer_python-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: flashinfer-python\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


def test_local_version_satisfies_the_release_pin_only(tmp_path: Path) -> None:
    fake_wheel(tmp_path, "0.7.4+sm12x.5")
    assert resolved_version("flashinfer-python==0.7.4", tmp_path) == "0.7.4+sm12x.5"
    assert resolved_version("flashinfer-python>=0.7.4", tmp_path) == "0.7.4+sm12x.5"
    assert resolved_version("flashinfer-python==0.7.2.post1", tmp_path) is None


def _project(tmp_path: Path, version: str, engines: list[dict[str, object]]) -> Lock:
    lock = json.loads((ROOT / LOCK_NAME).read_text())
    lock["targets"][0]["version"] = version
    (tmp_path / LOCK_NAME).write_text(json.dumps(lock))
    (tmp_path / ENGINES_FILE).write_text(json.dumps({"engines": engines}))
    return load_lock(tmp_path / LOCK_NAME)


def test_each_series_serves_exactly_its_engines(tmp_path: Path) -> None:
    """The committed engines.json, against a wheel of each series it names."""
    pins = load_engine_pins(ROOT / ENGINES_FILE)
    rows = [{"engine": p.engine, "requirement": p.requirement, "series": p.series} for p in pins]
    for series in sorted({p.series for p in pins if p.series}):
        dist = tmp_path / series
        fake_wheel(dist, f"{series}+sm12x.5")
        lines = check_engines(_project(dist, series, rows), dist)
        assert sum("served by" in line for line in lines) == sum(p.series == series for p in pins)


def test_a_pin_the_wheel_misses_fails(tmp_path: Path) -> None:
    fake_wheel(tmp_path, "0.7.4+sm12x.5")
    lock = _project(tmp_path, "0.7.4", [{"engine": "vLLM 0.33.0", "requirement": "flashinfer-python==0.7.2.post1",
                                         "series": "0.7.4"}])
    with pytest.raises(SeriesError, match="vLLM 0.33.0: `flashinfer-python==0.7.2.post1` is not satisfied"):
        check_engines(lock, tmp_path)
