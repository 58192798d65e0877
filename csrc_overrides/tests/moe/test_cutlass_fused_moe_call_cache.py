"""cutlass_fused_moe's per-call setup: cached runners, tactics and workspaces.

After warm-up a call builds no MoERunner, asks the autotuner nothing and
allocates nothing on the device; its output is bit-identical to the uncached
path (explicit tactics and workspace), CUDA-graph replay matches eager, two
streams never share a workspace, and a graph captured before the workspace
grows still replays correctly (flashinfer-ai/flashinfer#4827).

bf16 weights: on SM90 this runs with the bf16-only build of the fused-MoE
module as well as with the full one. Exact comparisons use the unfused
finalize, which is deterministic.
"""

import contextlib

import pytest
import torch
import torch.nn.functional as F

import flashinfer.fused_moe as fused_moe
from flashinfer.autotuner import AutoTuner, autotune
from flashinfer.fused_moe import core

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="cutlass_fused_moe needs a CUDA GPU"
)

HIDDEN, INTER, EXPERTS, TOP_K = 256, 512, 8, 2


def _module():
    major, minor = torch.cuda.get_device_capability()
    return core.get_cutlass_fused_moe_module(f"{major * 10 + minor}")


class Problem:
    """Random bf16 MoE weights and a routing for any token count."""

    def __init__(self, seed: int = 0):
        g = torch.Generator(device="cuda").manual_seed(seed)
        self.g = g
        self.fc1 = torch.randn(
            EXPERTS, 2 * INTER, HIDDEN, device="cuda", generator=g
        ).div_(16)
        self.fc2 = torch.randn(EXPERTS, HIDDEN, INTER, device="cuda", generator=g).div_(
            16
        )
        self.fc1, self.fc2 = self.fc1.bfloat16(), self.fc2.bfloat16()

    def inputs(self, num_tokens: int):
        x = torch.randn(num_tokens, HIDDEN, device="cuda", generator=self.g).bfloat16()
        logits = torch.randn(num_tokens, EXPERTS, device="cuda", generator=self.g)
        weights, experts = torch.topk(torch.softmax(logits, dim=-1), TOP_K, dim=-1)
        return x, experts.int(), (weights / weights.sum(-1, keepdim=True)).float()

    def reference(self, x, experts, weights) -> torch.Tensor:
        """float32 SwiGLU MoE; fc1 rows are [up; gate]."""
        out = torch.zeros(x.shape[0], HIDDEN, device="cuda")
        xf = x.float()
        for e in range(EXPERTS):
            token, slot = torch.where(experts == e)
            if token.numel() == 0:
                continue
            up, gate = self.fc1[e].float().chunk(2, dim=0)
            h = F.silu(xf[token] @ gate.T) * (xf[token] @ up.T)
            out.index_add_(
                0, token, (h @ self.fc2[e].float().T) * weights[token, slot, None]
            )
        return out

    def run(self, x, experts, weights, out=None, **kwargs) -> torch.Tensor:
        out = (
            torch.full((x.shape[0], HIDDEN), float("nan"), device="cuda").bfloat16()
            if out is None
            else out
        )
        result = fused_moe.cutlass_fused_moe(
            x,
            experts,
            weights,
            self.fc1,
            self.fc2,
            torch.bfloat16,
            quant_scales=None,
            output=out,
            use_fused_finalize=kwargs.pop("fused", False),
            **kwargs,
        )
        assert len(result) == 1 and result[0] is out
        return out


def _check_close(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)


class Counts:
    """MoERunner constructions, autotuner look-ups and device allocations over a block."""

    def __init__(self, monkeypatch):
        self.runners = self.lookups = self.allocations = 0
        runner_class = _module().MoERunner
        init, choose_one = runner_class.__init__, AutoTuner.choose_one

        def counted_init(runner, *args, **kwargs):
            self.runners += 1
            init(runner, *args, **kwargs)

        def counted_choose_one(tuner, *args, **kwargs):
            self.lookups += 1
            return choose_one(tuner, *args, **kwargs)

        monkeypatch.setattr(runner_class, "__init__", counted_init)
        monkeypatch.setattr(AutoTuner, "choose_one", counted_choose_one)

    @contextlib.contextmanager
    def block(self):
        self.runners = self.lookups = 0
        before = torch.cuda.memory_stats()["allocation.all.allocated"]
        yield
        torch.cuda.synchronize()
        self.allocations = (
            torch.cuda.memory_stats()["allocation.all.allocated"] - before
        )


@pytest.fixture
def problem():
    core.release_cutlass_fused_moe_workspaces()
    AutoTuner.get().clear_cache()
    yield Problem()
    core.release_cutlass_fused_moe_workspaces()


@pytest.mark.parametrize("num_tokens", [1, 4, 16, 64])
def test_steady_state_calls_build_look_up_and_allocate_nothing(
    problem, monkeypatch, num_tokens
):
    counts = Counts(monkeypatch)
    x, experts, weights = problem.inputs(num_tokens)
    out = torch.empty(num_tokens, HIDDEN, device="cuda", dtype=torch.bfloat16)
    problem.run(x, experts, weights, out)  # warm-up: builds, looks up, allocates
    with counts.block():
        for _ in range(20):
            problem.run(x, experts, weights, out)
    assert (counts.runners, counts.lookups, counts.allocations) == (0, 0, 0)
    _check_close(out, problem.reference(x, experts, weights))

    # the uncached path upstream takes with explicit tactics and workspace
    ws_bytes = fused_moe.cutlass_fused_moe_workspace_size(
        num_tokens,
        HIDDEN,
        INTER,
        EXPERTS,
        TOP_K,
        x_dtype=torch.bfloat16,
        weight_dtype=torch.bfloat16,
        use_fused_finalize=False,
    )
    explicit = problem.run(
        x,
        experts,
        weights,
        profile_ids=[-1, -1],
        workspace_buffer=torch.empty(ws_bytes, dtype=torch.uint8, device="cuda"),
    )
    assert torch.equal(out, explicit)


def test_fused_finalize_default_is_cached_too(problem, monkeypatch):
    counts = Counts(monkeypatch)
    x, experts, weights = problem.inputs(8)
    out = problem.run(x, experts, weights, fused=None)
    with counts.block():
        problem.run(x, experts, weights, out, fused=None)
    assert (counts.runners, counts.lookups, counts.allocations) == (0, 0, 0)
    _check_close(out, problem.reference(x, experts, weights))


def test_graph_replay_with_new_inputs_matches_eager(problem):
    stream = torch.cuda.Stream()
    x, experts, weights = problem.inputs(8)
    out = torch.empty(8, HIDDEN, device="cuda", dtype=torch.bfloat16)
    with torch.cuda.stream(stream):
        problem.run(x, experts, weights, out)  # warm-up on the capture stream
    stream.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        problem.run(x, experts, weights, out)
    for _ in range(3):
        new = problem.inputs(8)
        for static, fresh in zip((x, experts, weights), new, strict=True):
            static.copy_(fresh)
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, problem.run(*new))


def test_capture_without_warm_up_on_its_stream_still_works(problem):
    """No cached workspace for the capture stream: the call allocates in the graph's pool."""
    x, experts, weights = problem.inputs(4)
    out = problem.run(x, experts, weights)
    expected = out.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # a side stream of its own
        problem.run(x, experts, weights, out)
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, expected)


def test_two_streams_never_share_a_workspace(problem):
    first, second = torch.cuda.Stream(), torch.cuda.Stream()
    a, b = problem.inputs(32), problem.inputs(32)
    expected_a, expected_b = problem.run(*a), problem.run(*b)
    out_a = torch.empty_like(expected_a)
    out_b = torch.empty_like(expected_b)
    torch.cuda.synchronize()
    for _ in range(5):
        with torch.cuda.stream(first):
            problem.run(*a, out_a)
        with torch.cuda.stream(second):
            problem.run(*b, out_b)
    torch.cuda.synchronize()
    assert torch.equal(out_a, expected_a) and torch.equal(out_b, expected_b)
    index = torch.cuda.current_device()
    workspaces = [
        core._cutlass_moe_workspaces.get((index, s.cuda_stream))
        for s in (first, second)
    ]
    assert all(w is not None for w in workspaces)
    assert workspaces[0].data_ptr() != workspaces[1].data_ptr()


def test_workspace_grows_monotonically_with_the_token_count(problem):
    index = torch.cuda.current_device()
    key = (index, torch.cuda.current_stream().cuda_stream)
    sizes = []
    for num_tokens in (1, 3, 64, 17, 1000, 5, 1000):
        x, experts, weights = problem.inputs(num_tokens)
        out = problem.run(x, experts, weights)
        _check_close(out, problem.reference(x, experts, weights))
        workspace = core._cutlass_moe_workspaces.get(key)
        need = fused_moe.cutlass_fused_moe_workspace_size(
            num_tokens,
            HIDDEN,
            INTER,
            EXPERTS,
            TOP_K,
            x_dtype=torch.bfloat16,
            weight_dtype=torch.bfloat16,
            use_fused_finalize=False,
        )
        assert workspace.numel() >= need
        sizes.append(workspace.numel())
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert (
        sizes[1] == sizes[0] and sizes[5] == sizes[4] == sizes[6]
    )  # no growth below the mark
    assert (
        core._cutlass_moe_workspaces.num_retained == 0
    )  # no graph: old ones were freed


def test_growth_after_capture_keeps_the_graph_workspace(problem):
    """#4827: capture at decode size, grow with a prefill-sized call, replay."""
    stream = torch.cuda.Stream()
    x, experts, weights = problem.inputs(4)
    out = torch.empty(4, HIDDEN, device="cuda", dtype=torch.bfloat16)
    with torch.cuda.stream(stream):
        problem.run(x, experts, weights, out)
    stream.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        problem.run(x, experts, weights, out)
    key = (torch.cuda.current_device(), stream.cuda_stream)
    captured = core._cutlass_moe_workspaces.get(key).data_ptr()

    with torch.cuda.stream(stream):
        prefill = problem.inputs(4096)
        problem.run(*prefill)  # grows this stream's workspace
    stream.synchronize()
    assert core._cutlass_moe_workspaces.get(key).data_ptr() != captured
    assert core._cutlass_moe_workspaces.num_retained == 1
    # take whatever memory was freed, and fill it, before replaying
    junk = [
        torch.full((1 << 20,), 7, dtype=torch.uint8, device="cuda") for _ in range(64)
    ]

    new = problem.inputs(4)
    for static, fresh in zip((x, experts, weights), new, strict=True):
        static.copy_(fresh)
    with torch.cuda.stream(stream):
        graph.replay()
    stream.synchronize()
    assert torch.equal(out, problem.run(*new))
    assert all(bool((j == 7).all()) for j in junk)
    del graph
    core.release_cutlass_fused_moe_workspaces()
    assert core._cutlass_moe_workspaces.num_retained == 0


def test_explicit_workspace_buffer_wins(problem):
    x, experts, weights = problem.inputs(16)
    ws_bytes = fused_moe.cutlass_fused_moe_workspace_size(
        16,
        HIDDEN,
        INTER,
        EXPERTS,
        TOP_K,
        x_dtype=torch.bfloat16,
        weight_dtype=torch.bfloat16,
        use_fused_finalize=False,
    )
    out = problem.run(
        x,
        experts,
        weights,
        workspace_buffer=torch.empty(ws_bytes, dtype=torch.uint8, device="cuda"),
    )
    assert len(core._cutlass_moe_workspaces) == 0
    _check_close(out, problem.reference(x, experts, weights))
    with pytest.raises(Exception, match="workspace_buffer too small"):
        problem.run(
            x,
            experts,
            weights,
            workspace_buffer=torch.empty(128, dtype=torch.uint8, device="cuda"),
        )


def test_tuned_tactics_replace_the_memoized_default(problem, monkeypatch):
    counts = Counts(monkeypatch)
    x, experts, weights = problem.inputs(4)
    problem.run(x, experts, weights, tune_max_num_tokens=16)
    with counts.block():
        problem.run(x, experts, weights, tune_max_num_tokens=16)
    assert counts.lookups == 0
    with autotune(True):
        problem.run(x, experts, weights, tune_max_num_tokens=16)
    with counts.block():
        tuned = problem.run(x, experts, weights, tune_max_num_tokens=16)
    assert counts.lookups == 2  # the tuner changed: asked again, once
    with counts.block():
        again = problem.run(x, experts, weights, tune_max_num_tokens=16)
    assert counts.lookups == 0 and torch.equal(tuned, again)
    _check_close(tuned, problem.reference(x, experts, weights))

    # the memo holds exactly what the tuner now answers
    (cached,) = [
        c for c in _module().config_cache.values() if not c.gemm1.use_fused_finalize
    ]
    tuner = AutoTuner.get()
    config = core._cutlass_moe_tuning_config(16)
    tensors = [x, problem.fc1, None, problem.fc2, None]
    answer = (
        tuner.choose_one(
            "trtllm::fused_moe::gemm1", [cached.gemm1], config, tensors, gemm_idx=1
        )[1],
        tuner.choose_one(
            "trtllm::fused_moe::gemm2", [cached.gemm2], config, tensors, gemm_idx=2
        )[1],
    )
    assert (
        cached.tactics[(16, x.shape, problem.fc1.shape, None, problem.fc2.shape, None)]
        == answer
    )
