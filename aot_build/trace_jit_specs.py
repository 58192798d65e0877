"""Trace the FlashInfer JIT modules that real model call paths request on SM121 (or SM120).

Runs each workload of `workloads/` through FlashInfer's public Python APIs on a CPU-only machine
with a fake device layer (`FakeDevice`) and records every `JitSpec` the call path asks to build and
load (`SpecRecorder`): its name, the outermost generator (`gen_*`) that created it and that
generator's arguments, so `generator(**args)` re-creates the spec. Each workload runs in a fresh
process, as a fresh inference engine would, so FlashInfer's module caches start empty. The
manifest is the de-duplicated union; `--verify` re-creates each of its modules with upstream's
manifest loader (flashinfer.aot.gen_manifest_modules), which checks every name.

A second pass per workload runs with CuTe DSL importable, as users install FlashInfer, and the DSL
targeting the device (`CUTE_DSL_ARCH`): it records the key of every CuTe-DSL kernel the call path
asks for through `flashinfer.cute_dsl.kernel_cache` (what `make wheel` exports ahead of time) and,
as `cute_dsl_not_exported`, every other `cute.compile` call, which would compile at run time.
`--cute-dsl-only` runs that pass alone (a trace for an arch whose nvcc modules are not wanted).

    python aot_build/trace_jit_specs.py --tree build/tree \
        --trace aot_build/traces/sm121.json --manifest aot_build/manifests/sm121_decode.json
    python aot_build/trace_jit_specs.py --tree build/tree --verify aot_build/manifests/sm121_decode.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
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
PROJECT = HERE.parent
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
    "9.0": DeviceModel((9, 0), "NVIDIA H200", 132, 232448, 141 * 2**30),
}


def dsl_arch(arch: str) -> str:
    """CuTe DSL's name of a DEVICES arch: 12.1 -> sm_121a."""
    major, minor = DEVICES[arch].capability
    return f"sm_{major}{minor}a"


class FakeDevice:
    """A CPU-only process that looks like one CUDA device of `model` to FlashInfer.

    - `torch.cuda` reports one device with the model's capability and properties, and
      `torch.version.cuda` a toolkit new enough for the arch (FlashInfer derives its nvcc targets,
      e.g. 12.1a, from these).
    - Tensors on "cuda" are FakeTensors (meta storage, device cuda:0): shape/dtype logic runs, no
      data exists. Operations that touch no cuda tensor (host-side plan metadata, index math) run
      for real on CPU, so `.tolist()` / `.item()` on host tensors keep working; pinned host
      buffers are plain host buffers.
    - `torch.cuda.device(...)` / streams / synchronize are no-ops, no stream is capturing, memory pools
      are no-ops, the default generator has the
      CUDA (Philox) state layout, and c10's empty CUDA slot for device guards (a CPU-only torch
      build has none; ops such as `copy_` on a cuda tensor open one) gets c10's own
      `NoOpDeviceGuardImpl` (`_register_noop_cuda_device_guard`, a two-line C++ shim).
    """

    def __init__(self, model: DeviceModel) -> None:
        import torch

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
        cuda.is_current_stream_capturing = lambda: False
        # per-stream scratch caches (flashinfer.utils._get_stream_cache_buf): one stream, no pools
        torch._C._cuda_getCurrentRawStream = lambda device_index: 0
        cuda.MemPool = lambda *args, **kwargs: None
        cuda.use_mem_pool = lambda pool, device=None: contextlib.nullcontext()
        cuda.init = lambda: None
        cuda.default_generators = (PhiloxGenerator(),)
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
    with tempfile.TemporaryDirectory(prefix="noop-cuda-guard-") as tmp:
        build = Path(tmp)
        (build / "guard.cpp").write_text(NOOP_CUDA_GUARD_CPP)
        subprocess.run(["c++", "-shared", "-fPIC", "-std=c++17", f"-I{torch_dir / 'include'}",
                        str(build / "guard.cpp"), f"-L{torch_dir / 'lib'}", "-lc10",
                        "-o", str(build / "guard.so")], check=True)
        ctypes.CDLL(str(build / "guard.so"))  # registers at load; the mapping outlives the file


class PhiloxGenerator:
    """The CUDA default generator's state protocol: a 16-byte (seed, offset) tensor, which
    FlashInfer's sampling reads and advances (`get_seed_and_offset`)."""

    def __init__(self) -> None:
        import torch

        self.state = torch.zeros(2, dtype=torch.int64).view(torch.uint8)

    def get_state(self) -> Any:
        return self.state.clone()

    def set_state(self, state: Any) -> None:
        self.state = state.clone()


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
            # host inputs of a device op become fake too (else FakeTensorMode runs it for real)
            args, kwargs = pytree.tree_map_only(
                torch.Tensor, lambda t: t if isinstance(t, FakeTensor) else self.from_tensor(t),
                (args, kwargs))
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
    """What `JitSpec.build_and_load()` returns while tracing: every function does nothing and
    returns another stub, an opaque handle the Python call path can keep and pass back (plan info,
    a MoE runner object) whose own methods do nothing either. Read as a number (a workspace size
    query, compared with a size) a stub is 0."""

    def __getattr__(self, name: str) -> Callable[..., StubModule]:
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: StubModule()

    def __getitem__(self, key: Any) -> Callable[..., StubModule]:
        return lambda *args, **kwargs: StubModule()

    def __index__(self) -> int:
        return 0

    def __lt__(self, other: int) -> bool:
        return 0 < other

    def __le__(self, other: int) -> bool:
        return 0 <= other

    def __gt__(self, other: int) -> bool:
        return 0 > other

    def __ge__(self, other: int) -> bool:
        return 0 >= other


@dataclass
class SpecRecord:
    name: str
    generator: str
    args: dict[str, Any]
    api: str
    kind: str  # "nvcc" (what an AOT wheel holds) or the JitSpec class of another toolchain

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "generator": self.generator, "args": self.args, "api": self.api}


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

    A profile hook notes, at entry, the arguments of every module-level `gen_*` function of the
    flashinfer package; when a JitSpec is constructed, the outermost such call on the stack is its
    generator. Loading (`build_and_load`) appends the spec to the trace once and returns a
    `StubModule`. A generator outside `flashinfer.jit` (a private copy, e.g. in
    flashinfer/quantization/) is replaced by its `flashinfer.jit` twin: the function of the same
    name there whose spec, re-created from the same arguments, is identical (`jit_twin`)."""

    package_dir: Path
    api: str = ""
    records: list[SpecRecord] = field(default_factory=list)
    _calls: list[tuple[types.FrameType, str, dict[str, Any]]] = field(default_factory=list)
    _origin: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def install(self) -> None:
        from flashinfer.jit import core

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

    def _is_generator(self, code: types.CodeType) -> bool:
        return (code.co_name.startswith("gen_") and code.co_name != "gen_jit_spec"
                and code.co_qualname == code.co_name  # module level: getattr(module, name) finds it
                and code.co_filename.startswith(str(self.package_dir)))

    def _profile(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call" and self._is_generator(frame.f_code):
            code = frame.f_code
            names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
            generator = f"{frame.f_globals['__name__']}:{code.co_name}"
            self._calls.append((frame, generator, {n: frame.f_locals[n] for n in names}))
        elif event == "return" and self._calls and self._calls[-1][0] is frame:
            self._calls.pop()

    def _outermost_generator(self) -> tuple[str, dict[str, Any]]:
        if not self._calls:
            raise RuntimeError("a JitSpec was created outside any flashinfer gen_* function")
        _, generator, args = self._calls[0]
        return generator, dict(args)

    def _load(self, spec: Any) -> StubModule:
        from flashinfer.jit.core import JitSpecNvcc

        if not any(r.name == spec.name for r in self.records):
            generator, args = self._origin[id(spec)]
            kind = "nvcc" if isinstance(spec, JitSpecNvcc) else type(spec).__name__
            if kind == "nvcc" and not generator.startswith("flashinfer.jit."):
                generator = jit_twin(spec, generator, args)
            self.records.append(SpecRecord(spec.name, generator,
                                           {k: json_value(v) for k, v in args.items()},
                                           self.api, kind))
        return StubModule()


def _build_inputs(spec: Any) -> tuple[Any, ...]:
    """A spec's fields for comparison: callables (post-load adapters) only by presence."""
    return tuple(True if callable(value) else value for value in vars(spec).values())


def jit_twin(spec: Any, generator: str, args: dict[str, Any]) -> str:
    """The `flashinfer.jit` generator of the same function name that re-creates `spec` exactly
    from `args` (same name, sources, flags, include dirs)."""
    import flashinfer.jit

    function_name = generator.partition(":")[2]
    jit_dir = Path(flashinfer.jit.__file__).parent
    for path in sorted(jit_dir.rglob("*.py")):
        if f"def {function_name}(" not in path.read_text():
            continue
        module = ".".join(("flashinfer.jit", *path.relative_to(jit_dir).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        function = getattr(importlib.import_module(module), function_name)
        if _build_inputs(function(**args)) == _build_inputs(spec):
            return f"{module}:{function_name}"
    raise RuntimeError(f"{spec.name}: made by {generator}, outside flashinfer.jit, and no "
                       f"flashinfer.jit.*:{function_name} re-creates it (the manifest needs one)")


def _jit_spec_classes(base: type) -> list[type]:
    found = [base]
    for sub in base.__subclasses__():
        found += _jit_spec_classes(sub)
    return [cls for cls in found if "__init__" in vars(cls)]


@dataclass
class CuteDslRecorder:
    """Records each CuTe-DSL kernel a call path asks for: through `kernel_cache` its key (the
    kernel itself is not compiled: a stub stands in), and any other `cute.compile` by the API and
    the compiled object's name."""

    api: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    uncached: list[dict[str, str]] = field(default_factory=list)

    def install(self) -> None:
        import cutlass.cute as cute
        from flashinfer.cute_dsl import kernel_cache

        recorder = self

        def resolve(cache: Any, *args: Any, **kwargs: Any) -> Callable[..., None]:
            recorder.keys.append(cache.key(*args, **kwargs).as_json() | {"api": recorder.api})
            return lambda *args, **kwargs: None

        def compile_(function: Any, *args: Any, **kwargs: Any) -> Callable[..., None]:
            name = getattr(function, "__qualname__", type(function).__qualname__)
            recorder.uncached.append({"api": recorder.api, "compiled": name})
            return lambda *args, **kwargs: None

        kernel_cache.ExportedKernelCache._resolve = resolve  # type: ignore[method-assign]
        cute.compile = compile_


def run_workload(tree: Path, name: str, arch: str, cute_dsl: bool = False) -> dict[str, Any]:
    device = FakeDevice(DEVICES[arch])
    if not cute_dsl:
        # The nvcc pass traces the install without the optional CuTe DSL, so that every norm call
        # takes FlashInfer's CUDA path and its module (the DSL kernels' fallback) is in the AOT set.
        sys.modules["cutlass"] = None  # type: ignore[assignment]  # find_spec("cutlass") -> None
    import flashinfer
    from flashinfer.jit import core

    use_source_tree_data(tree)

    archs = core.current_compilation_context.TARGET_CUDA_ARCHS
    targets = sorted(f"{major}.{minor}" for major, minor in archs)
    recorder = SpecRecorder(Path(flashinfer.__file__).parent)
    recorder.install()
    dsl = CuteDslRecorder()
    if cute_dsl:
        dsl.install()
    workload = importlib.import_module(f"workloads.{name}")
    not_run: dict[str, str] = {}
    with device.active():
        for step in workload.steps():
            recorder.api = dsl.api = step.api
            try:
                step.run()
            except Exception as err:
                # the workloads are SM12x call paths; traced for another arch (an H200 run of the
                # CuTe-DSL norms) a step FlashInfer rejects there is listed with its error, not dropped
                if not cute_dsl or DEVICES[arch].capability[0] == 12:
                    raise
                not_run.setdefault(step.api, f"{type(err).__name__}: {str(err)[:200]}")
    sys.setprofile(None)
    if cute_dsl:
        return {"cute_dsl": list({json.dumps(k, sort_keys=True): k for k in dsl.keys}.values()),
                "cute_dsl_not_exported": dsl.uncached, "steps_not_supported": not_run}
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
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(HERE)]), CUTE_DSL_ARCH=dsl_arch(arch))
    with tempfile.TemporaryDirectory(prefix="flashinfer-trace-") as workspace:
        env["FLASHINFER_WORKSPACE_BASE"] = workspace  # generated sources and caches stay out of $HOME
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--tree", str(tree),
                               "--arch", arch, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-6000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def trace(tree: Path, arch: str, cute_dsl_only: bool = False) -> dict[str, Any]:
    from workloads import WORKLOADS

    traced: dict[str, Any] = {
        "description": "FlashInfer JitSpecs and CuTe-DSL kernel keys requested per workload, in "
                       "first-use order (aot_build/trace_jit_specs.py; see aot_build/README.md).",
        "compute_capability": list(DEVICES[arch].capability),
    }
    if not cute_dsl_only:
        results = {name: _in_fresh_process(tree, arch, "--worker", name) for name in WORKLOADS}
        first = next(iter(results.values()))
        traced |= {
            "targets": first["targets"],
            "flashinfer": first["flashinfer"],
            "cute_dsl_available": first["cute_dsl_available"],
            "workloads": {name: r["specs"] for name, r in results.items()},
            "not_aot": {name: r["not_aot"] for name, r in results.items() if r["not_aot"]},
        }
    dsl = {name: _in_fresh_process(tree, arch, "--cute-dsl-worker", name) for name in WORKLOADS}
    return traced | {
        "cute_dsl": {name: r["cute_dsl"] for name, r in dsl.items()},
        "cute_dsl_not_exported": {name: r["cute_dsl_not_exported"] for name, r in dsl.items()
                                  if r["cute_dsl_not_exported"]},
        "steps_not_supported": {name: r["steps_not_supported"] for name, r in dsl.items()
                                if r["steps_not_supported"]},
    }


def manifest_from_trace(traced: dict[str, Any], trace_path: str | None) -> dict[str, Any]:
    """The de-duplicated union of the workloads' specs, in first-use order; `trace` (relative to
    the project root) makes `make wheel` check the wheel against the trace."""
    modules: dict[str, dict[str, Any]] = {}
    for specs in traced.get("workloads", {}).values():
        for spec in specs:
            entry = {"name": spec["name"], "generator": spec["generator"], "args": spec["args"]}
            if modules.setdefault(spec["name"], entry) != entry:
                raise RuntimeError(f"{spec['name']}: two generator calls give this module name")
    manifest: dict[str, Any] = {"description": MANIFEST_DESCRIPTION}
    if trace_path:
        manifest["trace"] = trace_path
    kernels = {json.dumps(entry, sort_keys=True): entry for keys in traced["cute_dsl"].values()
               for entry in ({"getter": k["getter"], "args": k["args"]} for k in keys)}
    return manifest | {"modules": list(modules.values()), "cute_dsl": list(kernels.values())}


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
    parser.add_argument("--cute-dsl-only", type=Path, metavar="MODULES_FROM",
                        help="only the CuTe-DSL pass; the manifest's nvcc modules are those of MODULES_FROM")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cute-dsl-worker", help=argparse.SUPPRESS)
    parser.add_argument("--verify-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    tree = args.tree.resolve()
    sys.path[:0] = [str(tree), str(HERE)]
    if args.worker:
        print(json.dumps(run_workload(tree, args.worker, args.arch)))
    elif args.cute_dsl_worker:
        print(json.dumps(run_workload(tree, args.cute_dsl_worker, args.arch, cute_dsl=True)))
    elif args.verify_worker:
        print(json.dumps(verify_manifest(tree, args.verify_worker, args.arch)))
    elif args.verify:
        print(json.dumps(_in_fresh_process(tree, args.arch, "--verify-worker", str(args.verify.resolve()))))
    else:
        started = time.monotonic()
        traced = trace(tree, args.arch, args.cute_dsl_only is not None)
        if args.trace:
            write_json(args.trace, traced)
        if args.manifest:
            trace_path = os.path.relpath(args.trace.resolve(), PROJECT) if args.trace else None
            manifest = manifest_from_trace(traced, trace_path)
            if args.cute_dsl_only:
                manifest |= {
                    "description": f"The CuTe-DSL kernels the traced call paths reach on {DEVICES[args.arch].name} "
                                   f"({args.arch}; aot_build/trace_jit_specs.py --cute-dsl-only) and the nvcc "
                                   f"modules of {args.cute_dsl_only.name}.",
                    "modules": json.loads(args.cute_dsl_only.read_text())["modules"]}
            write_json(args.manifest, manifest)
        summary = {name: [s["name"] for s in specs] for name, specs in traced.get("workloads", {}).items()}
        summary |= {f"{name} (CuTe DSL)": [k["api"] for k in keys] for name, keys in traced["cute_dsl"].items()}
        print(json.dumps(summary, indent=2))
        print(f"traced in {time.monotonic() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
