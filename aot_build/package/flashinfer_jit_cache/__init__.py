"""AOT-compiled FlashInfer modules for one CUDA target, found by flashinfer.jit.env.

Same interface as upstream's flashinfer-jit-cache shim: `__version__` (equal to the
flashinfer-python version it was built from) and `get_jit_cache_providers()`; each
provider names its module directory (`<name>/<name>.so`), CUDA targets and modules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

jit_cache_dir = Path(__file__).parent / "jit_cache"
_manifest = json.loads((jit_cache_dir / "manifest.json").read_text())

__version__: str = _manifest["version"]
__git_version__: str = _manifest["upstream_commit"]


@dataclass(frozen=True)
class JitCacheProvider:
    provider_id: str
    distribution: str
    version: str
    jit_cache_dir: str
    cuda_architectures: tuple[str, ...]
    modules: tuple[str, ...]


def get_jit_cache_dir() -> str:
    return str(jit_cache_dir)


def get_jit_cache_providers() -> list[JitCacheProvider]:
    return [
        JitCacheProvider(
            provider_id="-".join(_manifest["cuda_architectures"]),
            distribution="flashinfer-jit-cache",
            version=__version__,
            jit_cache_dir=str(jit_cache_dir),
            cuda_architectures=tuple(_manifest["cuda_architectures"]),
            modules=tuple(_manifest["modules"]),
        )
    ]


__all__ = ["get_jit_cache_dir", "get_jit_cache_providers"]
