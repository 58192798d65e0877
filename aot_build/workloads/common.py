"""Tensors and FlashInfer calls shared by the workloads. While tracing, "cuda" tensors are
FakeTensors (shapes and dtypes, no data); host metadata for plan() (indptrs, last-page lengths)
are real CPU tensors, as vLLM passes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

CUDA = torch.device("cuda")
BF16 = torch.bfloat16
WORKSPACE_BYTES = 256 * 1024 * 1024  # vLLM's FLASHINFER_WORKSPACE_BUFFER_SIZE
PAGE_SIZE = 16  # vLLM's FlashInfer kernel block size (16/32/64); XQA module names carry it


@dataclass(frozen=True)
class Step:
    """One public FlashInfer call a model stack makes (`api`), and how to make it."""

    api: str
    run: Callable[[], Any]


def cuda(*shape: int, dtype: torch.dtype = BF16) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype, device=CUDA)


def workspace() -> torch.Tensor:
    return torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=CUDA)


@dataclass(frozen=True)
class Batch:
    """A paged batch: `q_lens` new tokens per request on top of `kv_lens` tokens in total."""

    q_lens: tuple[int, ...]
    kv_lens: tuple[int, ...]

    @property
    def num_tokens(self) -> int:
        return sum(self.q_lens)

    @property
    def pages(self) -> list[int]:
        return [-(-kv // PAGE_SIZE) for kv in self.kv_lens]

    def qo_indptr(self) -> torch.Tensor:
        return torch.tensor([0, *torch.tensor(self.q_lens).cumsum(0).tolist()], dtype=torch.int32)

    def kv_indptr(self) -> torch.Tensor:
        return torch.tensor([0, *torch.tensor(self.pages).cumsum(0).tolist()], dtype=torch.int32)

    def kv_indices(self) -> torch.Tensor:
        return torch.arange(sum(self.pages), dtype=torch.int32)

    def last_page_len(self) -> torch.Tensor:
        return torch.tensor([(kv - 1) % PAGE_SIZE + 1 for kv in self.kv_lens], dtype=torch.int32)


PREFILL = Batch(q_lens=(1000, 24), kv_lens=(1000, 536))  # a new prompt and a chunked-prefill tail
DECODE = Batch(q_lens=(1, 1, 1, 1), kv_lens=(1001, 537, 77, 4096))


def kv_cache(num_kv_heads: int, head_dim: int, num_pages: int = 1024) -> torch.Tensor:
    """vLLM's FlashInfer KV cache: (num_blocks, 2, block_size, num_kv_heads, head_size), NHD."""
    return cuda(num_pages, 2, PAGE_SIZE, num_kv_heads, head_dim)


def append_kv(batch: Batch, num_kv_heads: int, head_dim: int) -> None:
    """flashinfer.append_paged_kv_cache of the new tokens' K/V (see the workloads' notes)."""
    import flashinfer

    n, requests = batch.num_tokens, len(batch.q_lens)
    flashinfer.append_paged_kv_cache(
        cuda(n, num_kv_heads, head_dim), cuda(n, num_kv_heads, head_dim),
        cuda(n, dtype=torch.int32), cuda(n, dtype=torch.int32), kv_cache(num_kv_heads, head_dim),
        cuda(sum(batch.pages), dtype=torch.int32), cuda(requests + 1, dtype=torch.int32),
        cuda(requests, dtype=torch.int32))


def rope(num_tokens: int, num_heads: int, num_kv_heads: int, head_dim: int, rotary_dim: int) -> None:
    """vllm/model_executor/layers/rotary_embedding/common.py: _flashinfer_rotary_embedding."""
    import flashinfer

    flashinfer.apply_rope_with_cos_sin_cache_inplace(
        positions=cuda(num_tokens, dtype=torch.int64), query=cuda(num_tokens, num_heads * head_dim),
        key=cuda(num_tokens, num_kv_heads * head_dim), head_size=head_dim,
        cos_sin_cache=cuda(131072, rotary_dim, dtype=torch.float32), is_neox=True)


def xqa_decode(num_heads: int, num_kv_heads: int, head_dim: int, window_left: int,
               sinks: torch.Tensor | None) -> None:
    """SM12x decode in vLLM's FlashInfer backend: FlashInfer's dedicated XQA API (vLLM #49718,
    logged as decode_backend=xqa)."""
    from flashinfer.decode import xqa_batch_decode_with_kv_cache

    requests, max_pages = len(DECODE.kv_lens), max(DECODE.pages)
    xqa_batch_decode_with_kv_cache(
        query=cuda(requests, num_heads, head_dim), kv_cache=kv_cache(num_kv_heads, head_dim),
        workspace_buffer=workspace(), block_tables=cuda(requests, max_pages, dtype=torch.int32),
        seq_lens=cuda(requests, dtype=torch.int32), max_seq_len=max(DECODE.kv_lens),
        bmm1_scale=head_dim**-0.5, bmm2_scale=1.0, window_left=window_left, sinks=sinks,
        kv_layout="NHD")


def sampling(vocab_size: int) -> list[Step]:
    """vllm/v1/sample/ops/topk_topp_sampler.py: flashinfer_sample (top-k + top-p from logits;
    top-p only and top-k only from probs) and the start-up probe _flashinfer_sampling_build_failure
    (the same top-k + top-p call)."""
    import flashinfer.sampling

    requests = len(DECODE.q_lens)
    logits = cuda(requests, vocab_size, dtype=torch.float32)
    probs = cuda(requests, vocab_size, dtype=torch.float32)
    top_k, top_p = cuda(requests, dtype=torch.int32), cuda(requests, dtype=torch.float32)
    sampler = flashinfer.sampling
    return [
        Step("flashinfer.sampling.top_k_top_p_sampling_from_logits",
             lambda: sampler.top_k_top_p_sampling_from_logits(logits, top_k, top_p, deterministic=True)),
        Step("flashinfer.sampling.top_p_sampling_from_probs",
             lambda: sampler.top_p_sampling_from_probs(probs, top_p, deterministic=True)),
        Step("flashinfer.sampling.top_k_sampling_from_probs",
             lambda: sampler.top_k_sampling_from_probs(probs, top_k, deterministic=True)),
    ]
