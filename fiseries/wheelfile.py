"""A wheel file from its files (PEP 427: RECORD with sha256 digests, fixed timestamps)."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def write_wheel(dist: Path, name: str, version: str, tag: str, files: dict[str, bytes]) -> Path:
    """A minimal, reproducible wheel (PEP 427) holding `files`."""
    dist_info = f"{name.replace('-', '_')}-{version}.dist-info"
    meta = {
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 "Summary: AOT-compiled FlashInfer modules (flashinfer-sm12x)\n".encode(),
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: fiseries\nRoot-Is-Purelib: false\nTag: {tag}\n".encode(),
    }
    entries = {**files, **meta}
    record = "\n".join(_record_line(p, d) for p, d in sorted(entries.items()))
    record += f"\n{dist_info}/RECORD,,\n"
    path = dist / f"{name.replace('-', '_')}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc, data in sorted(entries.items()) + [(f"{dist_info}/RECORD", record.encode())]:
            info = zipfile.ZipInfo(arc, date_time=(2000, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if arc.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path
