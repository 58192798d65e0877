"""Graph-safe MoE workspace caches (flashinfer-ai/flashinfer#4827).

The cache logic runs on CPU tensors with the capture state set by the test;
the stream workspace and the SM12x dispatch cache run on a CUDA GPU (any
arch: they allocate and capture, they do not launch SM12x kernels).
"""

import gc
import weakref

import pytest
import torch

from flashinfer.fused_moe import workspace_cache
from flashinfer.fused_moe.workspace_cache import GraphSafeCache, stream_workspace

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (allocation and capture)"
)


@pytest.fixture
def capturing(monkeypatch):
    """Set what GraphSafeCache sees as the capture state of the current stream."""
    state = {"on": False}
    monkeypatch.setattr(
        workspace_cache, "is_current_stream_capturing", lambda: state["on"]
    )
    return state


def _freed(ref: "weakref.ref[torch.Tensor]") -> bool:
    gc.collect()
    return ref() is None


def test_replaced_entry_is_freed_unless_a_graph_used_it(capturing):
    cache: GraphSafeCache[torch.Tensor] = GraphSafeCache()
    eager_only = torch.empty(8)
    cache.put("k", eager_only)
    assert cache.get("k") is eager_only
    ref = weakref.ref(eager_only)
    del eager_only
    cache.put("k", torch.empty(16))
    assert _freed(ref) and cache.num_retained == 0

    captured = cache.get("k")
    capturing["on"] = True
    assert cache.get("k") is captured  # handed out during capture: marked
    capturing["on"] = False
    ref = weakref.ref(captured)
    del captured
    cache.put("k", torch.empty(32))
    assert not _freed(ref) and cache.num_retained == 1
    assert cache.get("k").numel() == 32

    # the replacement itself was never used under capture
    newest = weakref.ref(cache.get("k"))
    cache.put("k", torch.empty(64))
    assert _freed(newest) and cache.num_retained == 1


def test_clear_keeps_graph_referenced_entries_until_released(capturing):
    cache: GraphSafeCache[torch.Tensor] = GraphSafeCache()
    cache.put("used", torch.empty(4))
    cache.put("unused", torch.empty(4))
    capturing["on"] = True
    cache.get("used")
    cache.get("missing")  # a miss marks nothing
    capturing["on"] = False
    used, unused = weakref.ref(cache.get("used")), weakref.ref(cache.get("unused"))
    cache.clear()
    assert len(cache) == 0 and cache.get("used") is None
    assert _freed(unused) and not _freed(used)
    assert cache.num_retained == 1
    assert cache.release_graph_referenced() == 1
    assert _freed(used) and cache.num_retained == 0


def test_release_forgets_marks(capturing):
    cache: GraphSafeCache[torch.Tensor] = GraphSafeCache()
    cache.put("k", torch.empty(4))
    capturing["on"] = True
    cache.get("k")
    capturing["on"] = False
    assert cache.release_graph_referenced() == 0
    ref = weakref.ref(cache.get("k"))
    cache.put("k", torch.empty(8))  # the graphs are gone: the old one goes too
    assert _freed(ref)


@requires_cuda
def test_stream_workspace_per_stream_and_monotonic():
    cache: GraphSafeCache[torch.Tensor] = GraphSafeCache()
    device = torch.device("cuda", torch.cuda.current_device())
    first = stream_workspace(cache, device, 1000)
    assert first.dtype == torch.uint8 and first.numel() == 1 << 20
    assert first.data_ptr() % 128 == 0
    assert stream_workspace(cache, device, 1 << 20) is first
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        other = stream_workspace(cache, device, 1000)
    assert other is not first and other.data_ptr() != first.data_ptr()
    grown = stream_workspace(cache, device, (1 << 20) + 1)
    assert grown.numel() == 2 << 20
    assert stream_workspace(cache, device, 10) is grown  # never shrinks
    assert len(cache) == 2


@requires_cuda
def test_stream_workspace_is_not_grown_during_capture():
    cache: GraphSafeCache[torch.Tensor] = GraphSafeCache()
    device = torch.device("cuda", torch.cuda.current_device())
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        warm = stream_workspace(cache, device, 4096)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        warm[:1].add_(1)
        fits = stream_workspace(cache, device, 4096)
        too_small = stream_workspace(cache, device, 4 << 20)
    assert fits is warm
    assert too_small is None
    assert cache.get((device.index, stream.cuda_stream)) is warm
    # used during capture: a larger eager call replaces it but keeps it alive
    with torch.cuda.stream(stream):
        stream_workspace(cache, device, 4 << 20)
    assert cache.num_retained == 1
    del graph
    assert cache.release_graph_referenced() == 1


@requires_cuda
def test_sm12x_dispatch_workspace_survives_growth_after_capture():
    """#4827 on the SM12x functional MoE path, with its real allocation and cache."""
    moe_dispatch = pytest.importorskip(
        "flashinfer.fused_moe.cute_dsl.blackwell_sm12x.moe_dispatch",
        reason="the SM12x MoE package needs CuTe DSL and Triton",
    )
    device = torch.device("cuda", torch.cuda.current_device())
    moe_dispatch.clear_sm120_moe_caches()
    moe_dispatch.release_graph_referenced_workspaces()
    shape = dict(
        backend="static",
        state_E=8,
        weight_E=8,
        k=256,
        n=256,
        num_topk=2,
        device=device,
        quant_mode="nvfp4",
    )
    decode = moe_dispatch._get_cached_workspace(routed_rows=8, **shape)
    assert moe_dispatch._get_cached_workspace(routed_rows=8, **shape) is decode
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        assert moe_dispatch._get_cached_workspace(routed_rows=8, **shape) is decode
        decode.row_counts.add_(1)
        with pytest.raises(RuntimeError, match="CUDA graph capture"):
            moe_dispatch._get_cached_workspace(routed_rows=4096, **shape)
    decode_ref = weakref.ref(decode)
    del decode
    prefill = moe_dispatch._get_cached_workspace(routed_rows=4096, **shape)
    assert prefill.max_rows >= 4096
    assert not _freed(decode_ref)  # the graph's workspace outlives the growth
    moe_dispatch.clear_sm120_moe_caches()
    assert not _freed(decode_ref)
    del graph
    assert moe_dispatch.release_graph_referenced_workspaces() == 1
    assert _freed(decode_ref)
