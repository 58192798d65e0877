"""Trace the FlashInfer JIT modules that real model call paths request on SM121 (or SM120).

Runs each workload of `workloads/` through FlashInfer's public Python APIs on a CPU-only machine
with a fake device layer (`FakeDevice`) and records every `JitSpec` the call path asks to build and
load (`SpecRecorder`): its name, the outermost `flashinfer.jit` generator that created it and that
generator's arguments, so `generator(**args)` re-creates the spec. Each workload runs in a fresh
process, as a fresh inference engine would, so FlashInfer's module caches start empty.

    python aot_build/trace_jit_specs.py --tree build/tree \
        --trace aot_build/traces/sm121.json --manifest aot_build/manifests/sm121_decode.json
    python aot_build/trace_jit_specs.py --tree build/tree --verify aot_build/manifests/sm121_decode.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
MANIFEST_DESCRIPTION = (
    "Traced SM121 set (aot_build/trace_jit_specs.py): the de-duplicated union of the FlashInfer JIT "
    "modules that gpt-oss-120b (MXFP4 MoE, sink attention) and Qwen3-Next NVFP4 request under vLLM, "
    "prefill and decode."
)


@dataclass(frozen=True)
class DeviceModel:
    """What a GB10 (SM121) or an SM120 part reports where FlashInfer asks."""

    capability: tuple[int, int]
    name: str
    sm_count: int
    smem_per_block_optin: int
    total_memory: int


DEVICES = {
    "12.1": DeviceModel((12, 1), "NVIDIA GB10", 48, 101376, 128 * 2**30),
    "12.0": DeviceModel((12, 0), "NVIDIA RTX PRO 6000 Blackwell", 188, 101376, 96 * 2**30),
}


class FakeDevice:
    """A CPU-only process that looks like one CUDA device of `model` to FlashInfer.

    - `torch.cuda` reports one device with the model's capability and properties, and
      `torch.version.cuda` a toolkit new enough for the arch (FlashInfer derives its nvcc targets,
      e.g. 12.1a, from these).
    - Tensors on "cuda" are FakeTensors (meta storage, device cuda:0): shape/dtype logic runs, no
      data exists. Operations that touch no cuda tensor (host-side plan metadata, index math) run
      for real on CPU, so `.tolist()` / `.item()` on host tensors keep working; pinned host
      buffers are plain host buffers.
    - `torch.cuda.device(...)` / streams / synchronize are no-ops, and c10's empty CUDA slot for
      device guards (a CPU-only torch build has none; ops like `copy_` on a cuda tensor open one)
      gets c10's own `NoOpDeviceGuardImpl` (`_register_noop_cuda_device_guard`).
    """

    def __init__(self, model: DeviceModel) -> None:
        import torch

        self.model = model
        self.properties = types.SimpleNamespace(
            name=model.name, major=model.capability[0], minor=model.capability[1],
            multi_processor_count=model.sm_count,
            shared_memory_per_block_optin=model.smem_per_block_optin,
            total_memory=model.total_memory,
        )
        torch.version.cuda = "13.0"
        cuda = torch.cuda
        cuda.is_available = lambda: True
        cuda.device_count = lambda: 1
        cuda.current_device = lambda: 0
        cuda.set_device = lambda device: None
        cuda.synchronize = lambda device=None: None
        cuda.get_device_capability = lambda device=None: model.capability
        cuda.get_device_properties = lambda device=None: self.properties
        cuda.get_device_name = lambda device=None: model.name
        cuda.device = lambda device: contextlib.nullcontext()
        cuda.current_stream = lambda device=None: types.SimpleNamespace(cuda_stream=0)
        _register_noop_cuda_device_guard()
        self.mode = _host_passthrough_fake_mode()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        with self.mode:
            yield


NOOP_CUDA_GUARD_CPP = """
#include <c10/core/impl/DeviceGuardImplInterface.h>
C10_REGISTER_GUARD_IMPL(CUDA, c10::impl::NoOpDeviceGuardImpl<c10::DeviceType::CUDA>);
"""


def _register_noop_cuda_device_guard() -> None:
    import ctypes

    import torch

    torch_dir = Path(torch.__file__).parent
    build = Path(tempfile.mkdtemp(prefix="noop-cuda-guard-"))
    (build / "guard.cpp").write_text(NOOP_CUDA_GUARD_CPP)
    subprocess.run(["c++", "-shared", "-fPIC", "-std=c++17", f"-I{torch_dir / 'include'}",
                    str(build / "guard.cpp"), f"-L{torch_dir / 'lib'}", "-lc10",
                    "-o", str(build / "guard.so")], check=True)
    ctypes.CDLL(str(build / "guard.so"))


def _host_passthrough_fake_mode() -> Any:
    import torch
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
    from torch.utils import _pytree as pytree

    class HostPassthroughFakeMode(FakeTensorMode):
        """FakeTensorMode for cuda tensors only; pure host operations run on real CPU tensors."""

        def __torch_dispatch__(self, func, types_, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            leaves = pytree.tree_leaves((args, kwargs))
            touches_cuda = any(isinstance(x, FakeTensor) for x in leaves) or any(
                isinstance(x, torch.device) and x.type == "cuda" for x in leaves)
            if not touches_cuda:  # host memory: real, but not pinned (no CUDA allocator here)
                if func is torch.ops.aten._pin_memory.default:
                    return args[0]
                if kwargs.get("pin_memory"):
                    kwargs = {**kwargs, "pin_memory": False}
                return func(*args, **kwargs)
            return super().__torch_dispatch__(func, types_, args, kwargs)

    return HostPassthroughFakeMode(allow_non_fake_inputs=True)


# build_backend.py:_create_data_dir: what flashinfer/data/<name> links to in a source tree.
SOURCE_TREE_DATA = {"cutlass": "3rdparty/cutlass", "spdlog": "3rdparty/spdlog",
                    "cccl": "3rdparty/cccl", "csrc": "csrc", "include": "include"}


def use_source_tree_data(tree: Path) -> None:
    """An unbuilt source tree has no flashinfer/data/ (the wheel build creates it): point
    FlashInfer's data paths at the tree's own csrc/, include/ and 3rdparty/ instead."""
    from flashinfer.jit import env as jit_env

    data = jit_env.FLASHINFER_DATA
    if data.exists():
        return

    def linked(path: Any) -> bool:
        return (isinstance(path, Path) and path.is_relative_to(data) and path != data
                and path.relative_to(data).parts[0] in SOURCE_TREE_DATA)

    def in_tree(path: Path) -> Path:
        name, *rest = path.relative_to(data).parts
        return tree.joinpath(SOURCE_TREE_DATA[name], *rest)

    for attr, value in list(vars(jit_env).items()):
        if linked(value):
            setattr(jit_env, attr, in_tree(value))
        elif isinstance(value, list) and value and all(linked(v) for v in value):
            setattr(jit_env, attr, [in_tree(v) for v in value])


class StubModule:
    """What `JitSpec.build_and_load()` returns while tracing: every function does nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None

    def __getitem__(self, key: Any) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@dataclass
class SpecRecord:
    name: str
    generator: str
    args: dict[str, Any]
    api: str
    kind: str
    getter_fallback: str | None = None

    def as_json(self) -> dict[str, Any]:
        out = {"name": self.name, "generator": self.generator, "args": self.args, "api": self.api}
        if self.getter_fallback:
            out["getter_fallback"] = self.getter_fallback
        return out


def json_value(value: Any) -> Any:
    """A generator argument as manifest JSON (flashinfer.aot._manifest_arg reads it back)."""
    import torch

    if isinstance(value, torch.dtype):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    raise TypeError(f"generator argument {value!r} ({type(value).__name__}) has no JSON form")


@dataclass
class SpecRecorder:
    """Records the generator call behind each JitSpec and every spec a call path loads.

    A profile hook notes the arguments of each `gen_*` function of `flashinfer.jit` at entry; when a
    JitSpec is constructed, the outermost such call on the stack is its generator. Loading
    (`build_and_load`) appends the spec to the trace once and returns a `StubModule`."""

    api: str = ""
    getter_fallback: str | None = None
    records: list[SpecRecord] = field(default_factory=list)
    _generators: dict[types.CodeType, str] = field(default_factory=dict)
    _calls: list[tuple[types.FrameType, str, dict[str, Any]]] = field(default_factory=list)
    _origin: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def install(self) -> None:
        from flashinfer.jit import core

        self._find_generators()
        recorder = self
        for cls in _jit_spec_classes(core.JitSpec):
            original_init = cls.__init__

            def init(self: Any, *args: Any, __init: Callable[..., None] = original_init,
                     **kwargs: Any) -> None:
                __init(self, *args, **kwargs)
                recorder._origin.setdefault(id(self), recorder._outermost_generator())

            cls.__init__ = init
        core.JitSpec.build_and_load = lambda spec: self._load(spec)
        sys.setprofile(self._profile)

    def _find_generators(self) -> None:
        import flashinfer.jit

        root = Path(flashinfer.jit.__file__).parent
        for path in sorted(root.rglob("*.py")):
            module_name = ".".join(("flashinfer", "jit", *path.relative_to(root).with_suffix("").parts))
            module_name = module_name.removesuffix(".__init__")
            try:
                module = importlib.import_module(module_name)
            except Exception:  # an optional dependency missing on this box: no generator from it
                continue
            for attr, value in vars(module).items():
                function = inspect.unwrap(value) if callable(value) else None
                if (attr.startswith("gen_") and inspect.isfunction(function)
                        and function.__module__ == module_name and attr != "gen_jit_spec"):
                    self._generators[function.__code__] = f"{module_name}:{attr}"

    def _profile(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in self._generators:
            code = frame.f_code
            names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
            self._calls.append((frame, self._generators[code], {n: frame.f_locals[n] for n in names}))
        elif event == "return" and self._calls and self._calls[-1][0] is frame:
            self._calls.pop()

    def _outermost_generator(self) -> tuple[str, dict[str, Any]]:
        if not self._calls:
            raise RuntimeError("a JitSpec was created outside any flashinfer.jit gen_* function")
        _, generator, args = self._calls[0]
        return generator, {name: json_value(value) for name, value in args.items()}

    def _load(self, spec: Any) -> StubModule:
        from flashinfer.jit.core import JitSpecNvcc

        generator, args = self._origin[id(spec)]
        if not any(r.name == spec.name for r in self.records):
            kind = "nvcc" if isinstance(spec, JitSpecNvcc) else type(spec).__name__
            self.records.append(SpecRecord(spec.name, generator, args, self.api, kind,
                                           self.getter_fallback))
        return StubModule()


def _jit_spec_classes(base: type) -> list[type]:
    found = [base]
    for sub in base.__subclasses__():
        found += _jit_spec_classes(sub)
    return [cls for cls in found if "__init__" in vars(cls)]


def run_workload(tree: Path, name: str, arch: str) -> dict[str, Any]:
    device = FakeDevice(DEVICES[arch])
    import flashinfer
    from flashinfer.jit import core

    use_source_tree_data(tree)

    targets = sorted(f"{major}.{minor}" for major, minor in core.current_compilation_context.TARGET_CUDA_ARCHS)
    recorder = SpecRecorder()
    recorder.install()
    workload = importlib.import_module(f"workloads.{name}")
    with device.active():
        for step in workload.steps():
            recorder.api, recorder.getter_fallback = step.api, step.getter_fallback
            step.run()
    sys.setprofile(None)
    from flashinfer.cute_dsl.availability import is_cute_dsl_available

    return {
        "flashinfer": flashinfer.__version__,
        "targets": targets,
        "cute_dsl_available": is_cute_dsl_available(),
        "specs": [r.as_json() for r in recorder.records if r.kind == "nvcc"],
        "not_aot": [r.as_json() | {"kind": r.kind} for r in recorder.records if r.kind != "nvcc"],
    }


def verify_manifest(tree: Path, manifest: Path, arch: str) -> list[str]:
    """Re-create every manifest entry with upstream's loader (generator(**args), name checked)."""
    FakeDevice(DEVICES[arch])
    from flashinfer.aot import gen_manifest_modules

    use_source_tree_data(tree)

    return [spec.name for spec in gen_manifest_modules(manifest)]


def _in_fresh_process(tree: Path, arch: str, *args: str) -> Any:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(HERE)]))
    with tempfile.TemporaryDirectory(prefix="flashinfer-trace-") as workspace:
        env["FLASHINFER_WORKSPACE_BASE"] = workspace  # generated sources and caches stay out of $HOME
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--tree", str(tree),
                               "--arch", arch, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-6000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def trace(tree: Path, arch: str) -> dict[str, Any]:
    from workloads import WORKLOADS

    started = time.monotonic()
    results = {name: _in_fresh_process(tree, arch, "--worker", name) for name in WORKLOADS}
    first = next(iter(results.values()))
    return {
        "description": "FlashInfer JitSpecs requested per workload, in first-use order "
                       "(aot_build/trace_jit_specs.py; see aot_build/README.md).",
        "compute_capability": list(DEVICES[arch].capability),
        "targets": first["targets"],
        "flashinfer": first["flashinfer"],
        "cute_dsl_available": first["cute_dsl_available"],
        "trace_seconds": round(time.monotonic() - started, 1),
        "workloads": {name: r["specs"] for name, r in results.items()},
        "not_aot": {name: r["not_aot"] for name, r in results.items() if r["not_aot"]},
    }


def manifest_from_trace(traced: dict[str, Any], trace_path: str) -> dict[str, Any]:
    modules: dict[str, dict[str, Any]] = {}
    for specs in traced["workloads"].values():
        for spec in specs:
            entry = {"name": spec["name"], "generator": spec["generator"], "args": spec["args"]}
            if modules.setdefault(spec["name"], entry) != entry:
                raise RuntimeError(f"{spec['name']}: two generator calls give this module name")
    return {"description": MANIFEST_DESCRIPTION, "trace": trace_path, "modules": list(modules.values())}


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, required=True, help="FlashInfer source tree to import")
    parser.add_argument("--arch", choices=sorted(DEVICES), default="12.1")
    parser.add_argument("--trace", type=Path, help="write the per-workload trace here")
    parser.add_argument("--manifest", type=Path, help="write the union as an AOT manifest here")
    parser.add_argument("--verify", type=Path, help="re-create every module of this manifest")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--verify-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    tree = args.tree.resolve()
    sys.path[:0] = [str(tree), str(HERE)]
    if args.worker:
        print(json.dumps(run_workload(tree, args.worker, args.arch)))
    elif args.verify_worker:
        print(json.dumps(verify_manifest(tree, args.verify_worker, args.arch)))
    elif args.verify:
        print(json.dumps(_in_fresh_process(tree, args.arch, "--verify-worker", str(args.verify.resolve()))))
    else:
        traced = trace(tree, args.arch)
        if args.trace:
            write_json(args.trace, traced)
        if args.manifest:
            write_json(args.manifest, manifest_from_trace(traced, str(args.trace or "")))
        print(json.dumps({name: [s["name"] for s in specs] for name, specs in traced["workloads"].items()},
                         indent=2))


if __name__ == "__main__":
    main()
