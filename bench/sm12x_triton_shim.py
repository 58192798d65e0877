"""pytest plugin for GPU boxes without CuTe DSL (the lent H100/H200): lets the arch-portable Triton
route + quantize module of the SM12x MXFP8 x MXFP4 path import.

That module needs only Triton, but its package __init__ imports the CuTe-DSL kernels and its layout
constants live beside CuTe-DSL classes. Without `cutlass` installed, register the two packages bare
(no __init__ run) and an empty `cutlass` / `cutlass.cute` (identity `cute.jit`) so the constants
import. With CuTe DSL installed this plugin does nothing.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

PKG = "flashinfer.fused_moe.cute_dsl.blackwell_sm12x"


def pytest_configure(config: object) -> None:
    if importlib.util.find_spec("cutlass") is not None:
        return
    import flashinfer.fused_moe.cute_dsl as cute_dsl  # without CuTe DSL it imports no kernels

    root = Path(cute_dsl.__file__).parent / "blackwell_sm12x"
    for name, path in ((PKG, root), (f"{PKG}._moe_utils", root / "_moe_utils")):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    cutlass = types.ModuleType("cutlass")
    cute = types.ModuleType("cutlass.cute")
    cute.jit = lambda fn: fn  # type: ignore[attr-defined]
    cutlass.cute = cute  # type: ignore[attr-defined]
    sys.modules["cutlass"], sys.modules["cutlass.cute"] = cutlass, cute
