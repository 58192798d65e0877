"""mm_fp4's SM120 CUTLASS workspace grows to what the kernels need (#4549).

The workspace logic runs on any CUDA GPU against a stand-in module (it needs
the per-stream buffers and graph capture, not the SM120 kernels); the
end-to-end check runs on SM120/SM121 only.
"""

import pytest
import torch

from flashinfer.gemm import gemm_base
from flashinfer.utils import _get_stream_cache_buf

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (per-stream buffers)"
)


class StandInModule:
    """The SM120 module's interface: records what the runner passes."""

    def __init__(self, needed: int):
        self.needed = needed
        self.size_queries = []
        self.workspaces = []

    def fp4_gemm_workspace_size(self, m, n, k, batch, bf16_out):
        self.size_queries.append((m, n, k, batch, bf16_out))
        return self.needed

    def fp4_gemm(self, a, b, a_descale, b_descale, alpha, out, workspace, tactic):
        self.workspaces.append(workspace)

    def fp4_gemm_tactic_num(self):
        return 1


def _inputs(out_shape, out_dtype=torch.bfloat16, k=256, workspace=None):
    device = torch.device("cuda", torch.cuda.current_device())
    lead = out_shape[:-1]
    a = torch.empty(*lead, k // 2, dtype=torch.uint8, device=device)
    b = torch.empty(k // 2, out_shape[-1], dtype=torch.uint8, device=device)
    scale = torch.empty(1, dtype=torch.uint8, device=device)
    out = torch.empty(out_shape, dtype=out_dtype, device=device)
    if workspace is None:
        workspace = _get_stream_cache_buf(
            "mm_fp4_workspace", gemm_base.DEFAULT_WORKSPACE_SIZE, device
        )
    return [a, b, scale, scale, scale, out_dtype, out, 16, True, workspace]


def _forward(module, inputs):
    """The SM120 runner's forward on `inputs`; the workspace it handed the module."""
    runner = gemm_base._create_cutlass_fp4_gemm_module(
        module, "test::fp4", "test_fp4", module.fp4_gemm_workspace_size
    ).cutlass_fp4_gemm_runner()
    runner.forward(inputs, tactic=0)
    return module.workspaces[-1]


def _run(module, out_shape, out_dtype=torch.bfloat16, k=256, workspace=None):
    return _forward(module, _inputs(out_shape, out_dtype, k, workspace))


@requires_cuda
def test_enough_workspace_is_passed_through():
    module = StandInModule(needed=1 << 20)
    given = _get_stream_cache_buf(
        "mm_fp4_workspace",
        gemm_base.DEFAULT_WORKSPACE_SIZE,
        torch.device("cuda", torch.cuda.current_device()),
    )
    assert _run(module, (64, 512), workspace=given) is given
    assert module.size_queries == [(64, 512, 256, 1, True)]
    _run(module, (3, 64, 512), out_dtype=torch.float16, k=1024)
    assert module.size_queries[-1] == (64, 512, 1024, 3, False)


@requires_cuda
def test_a_larger_need_grows_the_stream_workspace_once():
    device = torch.device("cuda", torch.cuda.current_device())
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        before = _get_stream_cache_buf(
            "mm_fp4_workspace", gemm_base.DEFAULT_WORKSPACE_SIZE, device
        )
        needed = before.numel() + (3 << 20)
        module = StandInModule(needed=needed)
        used = _run(module, (128, 8192))
        assert used.numel() >= needed and used.data_ptr() != before.data_ptr()
        # mm_fp4's next call gets the grown buffer: nothing left to allocate
        again = _get_stream_cache_buf(
            "mm_fp4_workspace", gemm_base.DEFAULT_WORKSPACE_SIZE, device
        )
        assert again is used
        inputs = _inputs((128, 8192), workspace=again)
        allocated = torch.cuda.memory_stats()["allocation.all.allocated"]
        assert _forward(module, inputs) is used
        assert torch.cuda.memory_stats()["allocation.all.allocated"] == allocated
    # another stream has its own buffer, untouched
    other = _get_stream_cache_buf(
        "mm_fp4_workspace", gemm_base.DEFAULT_WORKSPACE_SIZE, device
    )
    assert other.data_ptr() != used.data_ptr()


@requires_cuda
def test_capture_does_not_grow_the_workspace():
    device = torch.device("cuda", torch.cuda.current_device())
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        small = _get_stream_cache_buf("mm_fp4_workspace", 1 << 20, device)
    stream.synchronize()
    module = StandInModule(needed=small.numel() + (64 << 20))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        small.add_(0)
        used = _run(module, (16, 4096), workspace=small)
    # the binding allocates the call's workspace in the graph's pool
    assert used is small


def test_sm120_mm_fp4_steady_state_allocates_nothing():
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 12:
        pytest.skip("needs an SM120/SM121 GPU (the SM120 CUTLASS FP4 GEMM module)")
    from flashinfer import SfLayout, mm_fp4, nvfp4_quantize

    m, n, k = 128, 8192, 4096
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    g_a = (448 * 6) / a.float().abs().max()
    g_b = (448 * 6) / b.float().abs().max()
    a_fp4, a_sf = nvfp4_quantize(
        a, g_a, sfLayout=SfLayout.layout_128x4, do_shuffle=False
    )
    b_fp4, b_sf = nvfp4_quantize(
        b, g_b, sfLayout=SfLayout.layout_128x4, do_shuffle=False
    )
    alpha = (1.0 / (g_a * g_b)).reshape(1).float()
    out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)

    def call():
        mm_fp4(
            a_fp4, b_fp4.T, a_sf, b_sf.T, alpha, torch.bfloat16, out, backend="cutlass"
        )

    call()
    first = out.clone()
    assert torch.isfinite(first).all()
    torch.cuda.synchronize()
    allocated = torch.cuda.memory_stats()["allocation.all.allocated"]
    for _ in range(5):
        out.fill_(float("nan"))
        call()
        assert torch.equal(out, first)  # numerics are upstream's test_mm_fp4.py's
    torch.cuda.synchronize()
    assert torch.cuda.memory_stats()["allocation.all.allocated"] == allocated
