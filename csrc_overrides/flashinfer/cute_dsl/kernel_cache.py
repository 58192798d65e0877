"""
Copyright (c) 2026 by FlashInfer team.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

  http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.

Exported CuTe-DSL kernels, looked up before they are compiled
=============================================================

A CuTe-DSL kernel getter (``@functools.cache`` around
``cute.compile(..., options="--enable-tvm-ffi")``) compiles in-process at
first use and keeps the result in memory only, so every new process compiles
again. :func:`exported_kernel_cache` replaces that ``functools.cache``: it keeps
the in-memory cache and, before compiling, looks for the same kernel exported
with the DSL's own ahead-of-time mechanism (``export_to_c`` of the TVM-FFI
function: one object file with the host entry and the cubin, loaded by
``cute.runtime.load_module``).

An exported kernel is keyed by the getter, its arguments as the in-memory cache
sees them (defaults applied), the DSL's compile target (``sm_90a``, ...) and the
device properties the getter's compile reads (``device_facts``; the in-memory
key omits them because one process sees one device). It is found under
``cute_dsl/<arch>/`` of each AOT directory (``flashinfer/data/aot`` and the
installed ``flashinfer-jit-cache`` providers) and of
``FLASHINFER_WORKSPACE_DIR``, where ``FLASHINFER_CUTE_DSL_CACHE_WRITE=1``
writes what a process compiles, for the next process. An entry exported by
another CuTe DSL version is refused with a warning and the kernel is compiled.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import os
import pathlib
import tempfile
import warnings
from collections import Counter
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

import cutlass
import cutlass.cute as cute

from ..jit import env as jit_env

logger = logging.getLogger(__name__)

CACHE_SUBDIR = "cute_dsl"
WRITE_ENV = "FLASHINFER_CUTE_DSL_CACHE_WRITE"

#: What this process did per kernel: "compiled", "loaded" (an exported entry),
#: "refused" (an entry of another DSL version, or one that does not load).
stats: Counter[str] = Counter()


def dsl_compile_arch() -> str:
    """The target ``cute.compile`` builds for: the GPU the DSL detected at
    import, or ``CUTE_DSL_ARCH``."""
    from cutlass.cutlass_dsl import CuTeDSL

    return str(CuTeDSL._get_dsl().envar.arch)


def _json_arg(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_json_arg(v) for v in value]
    raise TypeError(f"{value!r} ({type(value).__name__}) has no exported-kernel key")


@dataclasses.dataclass(frozen=True)
class KernelKey:
    """What an exported kernel is valid for."""

    getter: str
    args: Dict[str, Any]
    arch: str
    device: Dict[str, int]

    def as_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @functools.cached_property
    def digest(self) -> str:
        text = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    @property
    def symbol(self) -> str:
        return f"flashinfer_cute_dsl_{self.digest}"

    @property
    def stem(self) -> str:
        return f"{self.getter.rsplit('.', 1)[-1].lstrip('_')}-{self.digest}"


def search_dirs() -> Tuple[pathlib.Path, ...]:
    """Where exported kernels are looked up, in order."""
    return tuple(d / CACHE_SUBDIR for d in jit_env.FLASHINFER_AOT_DIRS) + (
        runtime_dir(),
    )


def runtime_dir() -> pathlib.Path:
    """Where ``FLASHINFER_CUTE_DSL_CACHE_WRITE=1`` writes compiled kernels."""
    return jit_env.FLASHINFER_WORKSPACE_DIR / CACHE_SUBDIR


def export_kernel(kernel: Any, key: KernelKey, directory: pathlib.Path) -> pathlib.Path:
    """Write ``kernel`` (a TVM-FFI ``cute.compile`` result) as
    ``directory/<arch>/<stem>.o`` with its key beside it (``.json``)."""
    target = directory / key.arch
    target.mkdir(parents=True, exist_ok=True)
    obj = target / f"{key.stem}.o"
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        staged = pathlib.Path(tmp) / obj.name
        kernel.export_to_c(str(staged), function_name=key.symbol)
        os.replace(staged, obj)
    meta = key.as_json() | {"cutlass_dsl": cutlass.__version__, "symbol": key.symbol}
    staged_meta = obj.with_suffix(".json.tmp")
    staged_meta.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    os.replace(staged_meta, obj.with_suffix(".json"))
    return obj


def load_exported(key: KernelKey, dirs: Iterable[pathlib.Path]) -> Optional[Any]:
    """The exported kernel for ``key`` from the first directory that has it,
    or None. An entry of another DSL version, or one that does not load, is
    refused with a warning (the caller compiles)."""
    for directory in dirs:
        meta_path = directory / key.arch / f"{key.stem}.json"
        if not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as err:
            _refuse(f"{meta_path} is unreadable ({err})")
            continue
        if meta.get("cutlass_dsl") != cutlass.__version__:
            _refuse(
                f"{meta_path} was exported with CuTe DSL {meta.get('cutlass_dsl')}; "
                f"this process runs {cutlass.__version__} (rebuild the exported "
                "kernels with this DSL version)"
            )
            continue
        if {k: meta.get(k) for k in key.as_json()} != key.as_json():
            continue  # a digest collision: not this kernel
        try:
            module = cute.runtime.load_module(
                str(meta_path.with_suffix(".o")), enable_tvm_ffi=True
            )
            kernel = getattr(module, meta["symbol"])
        except Exception as err:  # a truncated or foreign object file
            _refuse(f"{meta_path.with_suffix('.o')} does not load ({err})")
            continue
        stats["loaded"] += 1
        return kernel
    return None


def _refuse(why: str) -> None:
    stats["refused"] += 1
    warnings.warn(f"{why}: the kernel is compiled instead", stacklevel=4)


class ExportedKernelCache:
    """``functools.cache`` for a CuTe-DSL kernel getter, with exported kernels
    looked up before compiling (see the module docstring)."""

    def __init__(
        self, getter: Callable[..., Any], device_facts: Callable[[], Mapping[str, int]]
    ) -> None:
        functools.update_wrapper(self, getter)
        self._signature = inspect.signature(getter)
        self._device_facts = device_facts
        self._memo: Dict[Any, Any] = {}

    def key(self, *args: Any, **kwargs: Any) -> KernelKey:
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return KernelKey(
            getter=f"{self.__wrapped__.__module__}.{self.__wrapped__.__qualname__}",
            args={name: _json_arg(v) for name, v in bound.arguments.items()},
            arch=dsl_compile_arch(),
            device=dict(self._device_facts()),
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        memo_key = (args, tuple(sorted(kwargs.items())))
        kernel = self._memo.get(memo_key)
        if kernel is None:
            kernel = self._memo[memo_key] = self._resolve(*args, **kwargs)
        return kernel

    def _resolve(self, *args: Any, **kwargs: Any) -> Any:
        try:
            key: Optional[KernelKey] = self.key(*args, **kwargs)
        except TypeError as err:  # an argument without a stable key
            logger.debug("%s: no exported-kernel key (%s)", self.__qualname__, err)
            key = None
        if key is not None:
            kernel = load_exported(key, search_dirs())
            if kernel is not None:
                return kernel
        kernel = self.__wrapped__(*args, **kwargs)
        stats["compiled"] += 1
        if key is not None and os.environ.get(WRITE_ENV) == "1":
            try:
                export_kernel(kernel, key, runtime_dir())
            except Exception as err:  # a full disk must not fail the op
                logger.warning("could not write %s to %s: %s", key.stem, runtime_dir(), err)
        return kernel

    def export(self, directory: pathlib.Path, *args: Any, **kwargs: Any) -> pathlib.Path:
        """Compile the kernel for these arguments and export it under ``directory``
        (what an AOT build does for each kernel it ships)."""
        return export_kernel(
            self.__wrapped__(*args, **kwargs), self.key(*args, **kwargs), directory
        )

    def cache_clear(self) -> None:
        self._memo.clear()


def exported_kernel_cache(
    device_facts: Callable[[], Mapping[str, int]],
) -> Callable[[Callable[..., Any]], ExportedKernelCache]:
    """Decorate a CuTe-DSL kernel getter in place of ``@functools.cache``;
    ``device_facts`` returns the device properties its compile reads."""
    return lambda getter: ExportedKernelCache(getter, device_facts)
