"""Command line behind the Makefile: python -m fiseries <command>."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from .aot import DECODE_MANIFEST
from .check import check_series
from .errors import SeriesError
from .export import export_all, record_trees
from .lock import LOCK_NAME, load_lock
from .pins import rewrite_pins
from .pr import make_pr
from .rebase import continue_rebase, start_rebase
from .layout import Layout
from .tree import applied_trees, apply_exactly
from .upstream import materialise
from .coverage import require_coverage
from .engines import check_engines
from .carrier import build_carrier
from .gpu_test import gpu_test
from .upstream_tests import PINS as UPSTREAM_TEST_PINS, fill_from_git, load_pins
from .wheel import build_wheels, series_hash


def _layout(root: Path) -> Layout:
    return Layout.for_lock(load_lock(root / LOCK_NAME))


def cmd_upstream(layout: Layout, args: argparse.Namespace) -> list[str]:
    pristine = materialise(layout.lock, layout.build, layout.submodule, layout.cache, args.sdist)
    return [f"pristine {layout.lock.main.name} {pristine.version} ({pristine.revision}) "
            f"from {pristine.source}: {pristine.path}"]


def cmd_apply(layout: Layout, args: argparse.Namespace) -> list[str]:
    results = apply_exactly(layout, args.sdist)
    lines = [f"{r.target.name}: {len(r.commits)} patches on {layout.lock.base_tag} -> {layout.tree / r.target.path}"
             for r in results]
    trees = applied_trees(results)
    return lines + [f"{name}: tree {tree}" for name, tree in trees.items()]


def cmd_export(layout: Layout, args: argparse.Namespace) -> list[str]:
    if not layout.tree.is_dir():
        raise SeriesError(f"{layout.tree} does not exist: run `make apply` first")
    exported = export_all(layout)
    record_trees(layout)
    return [f"{name}: {len(names)} patches exported" for name, names in exported.items()]


def cmd_check(layout: Layout, args: argparse.Namespace) -> list[str]:
    return check_series(layout, layout.lock.root / "tracking.md")


def cmd_pins(layout: Layout, args: argparse.Namespace) -> list[str]:
    written = rewrite_pins(layout.lock)
    return [f"{doc.name}: pin block rewritten" for doc in written] or ["pin blocks already match the lock"]


def cmd_rebase(layout: Layout, args: argparse.Namespace) -> list[str]:
    return start_rebase(layout, args.version, args.sdist)


def cmd_rebase_continue(layout: Layout, args: argparse.Namespace) -> list[str]:
    return continue_rebase(layout)


def cmd_pr(layout: Layout, args: argparse.Namespace) -> list[str]:
    repo, branch = make_pr(layout, args.patch)
    return [f"branch {branch} in {repo}, one commit on {layout.lock.base_tag}",
            f"push it: git -C {repo} push <your-fork-url> {branch}"]


def cmd_wheel(layout: Layout, args: argparse.Namespace) -> list[str]:
    cmd_apply(layout, args)
    wheels = build_wheels(layout, args.archs.split(), args.manifest, args.dist, args.host_arch, args.dsl_python)
    kernels = json.loads(wheels.manifest.read_text())["cute_dsl"]
    exported = f"{len(kernels['kernels'])} exported" + (f"; {kernels['wanted']} {kernels['not_exported']}"
                                                          if "not_exported" in kernels else "")
    return [f"patched wheel: {wheels.patched}", f"AOT wheel:     {wheels.aot}",
            f"CuTe DSL:      {exported}", f"manifest:      {wheels.manifest}"]


def cmd_coverage(layout: Layout, args: argparse.Namespace) -> list[str]:
    return require_coverage(args.wheel, args.trace, args.archs.split())


def cmd_engines(layout: Layout, args: argparse.Namespace) -> list[str]:
    return check_engines(layout.lock, args.dist)


MOE90_HELP = ("the bf16 SM90 fused-MoE module's jit-cache wheel (aot_build/manifests/fused_moe_90_bf16.json), "
              "for the MoE steps on an H200")


def cmd_gpu_test(layout: Layout, args: argparse.Namespace) -> int:
    return gpu_test(layout, args.carrier, args.dist, args.budget_s, args.fresh, args.only, args.moe90_wheel)


def cmd_gpu_carrier(layout: Layout, args: argparse.Namespace) -> list[str]:
    return build_carrier(layout, args.out, args.aot_wheel, args.python_version, args.platform, series_hash(layout),
                         args.moe90_wheel)


def cmd_upstream_tests(layout: Layout, args: argparse.Namespace) -> list[str]:
    pins = load_pins(layout.lock.root / UPSTREAM_TEST_PINS)
    files = fill_from_git(pins, args.from_git, layout.lock.root / ".cache" / "upstream-tests")
    return [f"{len(files)} upstream test files at {pins.commit[:12]} cached"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fiseries", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (holds the lock file)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in [("upstream", cmd_upstream), ("apply", cmd_apply), ("wheel", cmd_wheel)]:
        p = sub.add_parser(name)
        p.add_argument("--sdist", type=Path, default=None, help="use this local sdist instead of PyPI")
        p.set_defaults(func=func)
    sub.choices["wheel"].add_argument("--archs", default="12.1a")
    sub.choices["wheel"].add_argument("--manifest", type=Path, default=DECODE_MANIFEST)
    sub.choices["wheel"].add_argument("--host-arch", default=platform.machine(),
                                      help="the machine the AOT modules run on (aarch64: cross build on x86_64)")
    sub.choices["wheel"].add_argument("--dsl-python", default=None,
                                      help="command of a Python of the host arch that exports the CuTe-DSL kernels "
                                           "(a cross build: aot_build/qemu_aarch64_python.sh)")
    sub.choices["wheel"].add_argument("--dist", type=Path, default=Path("dist"))
    for name, func in [("export", cmd_export), ("check", cmd_check), ("rebase-continue", cmd_rebase_continue),
                       ("pins", cmd_pins)]:
        sub.add_parser(name).set_defaults(func=func)
    rebase = sub.add_parser("rebase")
    rebase.add_argument("version")
    rebase.add_argument("--sdist", type=Path, default=None)
    rebase.set_defaults(func=cmd_rebase)
    coverage = sub.add_parser("coverage", help="does a jit-cache wheel cover a traced workload?")
    coverage.add_argument("wheel", type=Path)
    coverage.add_argument("--trace", type=Path, default=Path("aot_build/traces/sm121.json"))
    coverage.add_argument("--archs", default="12.1a")
    coverage.set_defaults(func=cmd_coverage)
    engines = sub.add_parser("engines", help="do the wheels in --dist satisfy engines.json?")
    engines.add_argument("--dist", type=Path, default=Path("dist"))
    engines.set_defaults(func=cmd_engines)
    gpu = sub.add_parser("gpu-test", help="the GPU suite on this machine's GPU (build/gpu-test/gpu-report.md)")
    gpu.add_argument("--carrier", type=Path, default=None, help="a carrier from gpu-carrier (no network)")
    gpu.add_argument("--dist", type=Path, default=Path("dist"))
    gpu.add_argument("--budget-s", type=float, default=None, help="stop starting steps after this; resume later")
    gpu.add_argument("--fresh", action="store_true", help="forget the results of an earlier run")
    gpu.add_argument("--only", nargs="+", default=None, metavar="STEP",
                     help="run these steps only; the others are reported as not run")
    gpu.add_argument("--moe90-wheel", type=Path, default=None, help=MOE90_HELP)
    gpu.set_defaults(func=cmd_gpu_test)
    carrier = sub.add_parser("gpu-carrier", help="what gpu-test downloads, for a GPU machine without network")
    carrier.add_argument("--aot-wheel", type=Path, required=True)
    carrier.add_argument("--moe90-wheel", type=Path, default=None, help=MOE90_HELP)
    carrier.add_argument("--python-version", default="3.12")
    carrier.add_argument("--platform", default="manylinux_2_28_x86_64")
    carrier.add_argument("--out", type=Path, default=Path(".devcarry"))
    carrier.set_defaults(func=cmd_gpu_carrier)
    tests = sub.add_parser("upstream-tests", help="cache the pinned upstream test files from a local clone")
    tests.add_argument("--from-git", type=Path, required=True, help="a git dir holding the pinned commit")
    tests.set_defaults(func=cmd_upstream_tests)
    pr = sub.add_parser("pr")
    pr.add_argument("patch")
    pr.set_defaults(func=cmd_pr)
    args = parser.parse_args(argv)
    try:
        out = args.func(_layout(args.root.resolve()), args)
        if isinstance(out, int):
            return out
        for line in out:
            print(line)
    except SeriesError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
