"""Per-call setup of `cutlass_fused_moe`: host time, GPU time, allocations, runner builds, tuner look-ups.

Run once in each FlashInfer install (`make gpu-test` runs it for upstream's release and for the series),
then `bench/summarize_moe_call_overhead.py` puts the two side by side. bf16 weights, untuned (tactic -1,
what a caller gets without an autotune pass), `output` passed, no `workspace_buffer`, at the decode token
counts 1, 4, 16, 64 and two model shapes:
  gpt-oss-like: hidden 2880, intermediate 2880, 128 experts, top-4;
  Qwen3-Next-like: hidden 2048, intermediate 512, 512 experts, top-10.
Per shape and token count:
  host_us      enqueue time per call while the GPU is kept busy (`torch.cuda._sleep` queued first), so
               it is host time only: median over REPS blocks of CALLS calls;
  eager_us     GPU time per eager call (CUDA events around CALLS back-to-back calls), median over REPS;
  graph_us     the same for replays of a CUDA graph that captured one whole call (null if capture fails);
  allocations / runners / lookups per call after warm-up: torch allocator requests, MoERunner
               constructions, AutoTuner.choose_one calls;
  output_sha256 of the unfused-finalize output (deterministic) for fixed seeded inputs, which must agree
               between the two installs.
Writes moe_call_overhead.json into --out.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

import flashinfer
import flashinfer.fused_moe as fused_moe
from flashinfer.autotuner import AutoTuner
from flashinfer.fused_moe import core

SHAPES = {  # hidden, intermediate, experts, top-k
    "gpt-oss-like": (2880, 2880, 128, 4),
    "Qwen3-Next-like": (2048, 512, 512, 10),
}
TOKENS = (1, 4, 16, 64)
CALLS = 50  # per block: ~10 kernels each stays well inside the launch queue
REPS = 21


class Counter:
    """Counts MoERunner constructions and tuner look-ups while active (not while timing)."""

    def __init__(self, runner_class: type) -> None:
        self.runner_class = runner_class
        self.runners = self.lookups = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        init, choose_one = self.runner_class.__init__, AutoTuner.choose_one

        def counted_init(runner: Any, *args: Any, **kwargs: Any) -> None:
            self.runners += 1
            init(runner, *args, **kwargs)

        def counted_choose_one(tuner: Any, *args: Any, **kwargs: Any) -> Any:
            self.lookups += 1
            return choose_one(tuner, *args, **kwargs)

        self.runners = self.lookups = 0
        self.runner_class.__init__ = counted_init  # type: ignore[misc]
        AutoTuner.choose_one = counted_choose_one  # type: ignore[method-assign]
        try:
            yield
        finally:
            self.runner_class.__init__ = init  # type: ignore[misc]
            AutoTuner.choose_one = choose_one  # type: ignore[method-assign]


def sleep_cycles_per_ms() -> float:
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(10_000_000)
    end.record()
    end.synchronize()
    return 10_000_000 / start.elapsed_time(end)


def host_us(call: Callable[[], None], cycles_per_ms: float) -> float:
    samples = []
    for _ in range(REPS):
        torch.cuda.synchronize()
        torch.cuda._sleep(int(cycles_per_ms * 200))  # 200 ms of queued GPU work
        t0 = time.perf_counter()
        for _ in range(CALLS):
            call()
        samples.append((time.perf_counter() - t0) / CALLS * 1e6)
        torch.cuda.synchronize()
    return statistics.median(samples)


def gpu_us(calls: dict[str, Callable[[], None]]) -> dict[str, float]:
    """GPU time per call of each, in alternating blocks (clock drift hits all alike): medians."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(REPS):
        for name, call in calls.items():
            start.record()
            for _ in range(CALLS):
                call()
            end.record()
            end.synchronize()
            samples[name].append(start.elapsed_time(end) / CALLS * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def measure(shape: str, num_tokens: int, weights: tuple[torch.Tensor, torch.Tensor],
            counter: Counter, cycles_per_ms: float) -> dict[str, Any]:
    hidden, _, experts, top_k = SHAPES[shape]
    fc1, fc2 = weights
    g = torch.Generator(device="cuda").manual_seed(1000 * num_tokens + experts)
    x = torch.randn(num_tokens, hidden, device="cuda", generator=g).bfloat16()
    logits = torch.randn(num_tokens, experts, device="cuda", generator=g)
    scales, ids = torch.topk(torch.softmax(logits, -1), top_k, dim=-1)
    ids, scales = ids.int(), (scales / scales.sum(-1, keepdim=True)).float()
    out = torch.empty(num_tokens, hidden, device="cuda", dtype=torch.bfloat16)

    def call(fused: bool = True) -> None:
        fused_moe.cutlass_fused_moe(x, ids, scales, fc1, fc2, torch.bfloat16, quant_scales=None,
                                    output=out, use_fused_finalize=fused)

    call(False)
    torch.cuda.synchronize()
    digest = hashlib.sha256(out.view(torch.uint8).cpu().numpy().tobytes()).hexdigest()
    for _ in range(3):
        call()
    torch.cuda.synchronize()
    with counter.counting():
        allocated = torch.cuda.memory_stats()["allocation.all.allocated"]
        for _ in range(CALLS):
            call()
        torch.cuda.synchronize()
    row: dict[str, Any] = {
        "shape": shape, "tokens": num_tokens,
        "allocations_per_call": (torch.cuda.memory_stats()["allocation.all.allocated"] - allocated) / CALLS,
        "runners_per_call": counter.runners / CALLS,
        "lookups_per_call": counter.lookups / CALLS,
        "host_us": host_us(call, cycles_per_ms),
        "output_sha256": digest,
    }
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        call()  # warm-up on the capture stream
    stream.synchronize()
    graph = torch.cuda.CUDAGraph()
    timed: dict[str, Callable[[], None]] = {"eager_us": call}
    try:
        with torch.cuda.graph(graph, stream=stream):
            call()
        timed["graph_us"] = graph.replay
        row["graph_error"] = None
    except Exception as err:  # noqa: BLE001 - recorded: whether the whole call can be captured
        row["graph_error"] = f"{type(err).__name__}: {err}"[:300]
    torch.cuda.synchronize()
    row.update({"graph_us": None, **gpu_us(timed)})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", required=True, help="which install this is (pristine / patched)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    major, minor = torch.cuda.get_device_capability()
    module = core.get_cutlass_fused_moe_module(f"{major * 10 + minor}")
    counter = Counter(module.MoERunner)
    cycles_per_ms = sleep_cycles_per_ms()
    rows = []
    for shape, (hidden, inter, experts, _) in SHAPES.items():
        g = torch.Generator(device="cuda").manual_seed(experts)
        fc1 = (torch.randn(experts, 2 * inter, hidden, device="cuda", generator=g, dtype=torch.bfloat16) / 32)
        fc2 = (torch.randn(experts, hidden, inter, device="cuda", generator=g, dtype=torch.bfloat16) / 32)
        for num_tokens in TOKENS:
            rows.append(measure(shape, num_tokens, (fc1, fc2), counter, cycles_per_ms))
            print(json.dumps(rows[-1]), flush=True)
        del fc1, fc2
        torch.cuda.empty_cache()
    env = {
        "site": args.site, "flashinfer": flashinfer.__version__,
        "flashinfer_path": str(Path(flashinfer.__file__).parent),
        "torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(),
        "python": platform.python_version(), "calls": CALLS, "reps": REPS,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "moe_call_overhead.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
