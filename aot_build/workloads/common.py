"""Tensors and FlashInfer calls shared by the workloads: "cuda" tensors are FakeTensors while
tracing (no data), host metadata (indptrs, page tables for plan()) are real CPU tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

CUDA = torch.device("cuda")
BF16 = torch.bfloat16
WORKSPACE_BYTES = 256 * 1024 * 1024  # vLLM's FLASHINFER_WORKSPACE_BUFFER_SIZE
PAGE_SIZE = 16  # vLLM's kernel block size for FlashInfer (16/32/64); XQA module names carry it


def cuda(*shape: int, dtype: torch.dtype = BF16) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype, device=CUDA)


def workspace() -> torch.Tensor:
    return torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=CUDA)


@dataclass(frozen=True)
class Batch:
    """A paged batch: `q_lens` new tokens per request on top of `kv_lens` cached ones."""

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

    def block_tables(self) -> torch.Tensor:
        return cuda(len(self.kv_lens), max(self.pages), dtype=torch.int32)

    def seq_lens(self) -> torch.Tensor:
        return cuda(len(self.kv_lens), dtype=torch.int32)


PREFILL = Batch(q_lens=(1000, 24), kv_lens=(1000, 536))
DECODE = Batch(q_lens=(1, 1, 1, 1), kv_lens=(1001, 537, 77, 4096))


def kv_cache(num_kv_heads: int, head_dim: int, num_pages: int = 1024) -> torch.Tensor:
    """vLLM's FlashInfer KV cache: (num_blocks, 2, block_size, num_kv_heads, head_size), NHD."""
    return cuda(num_pages, 2, PAGE_SIZE, num_kv_heads, head_dim)


def append_kv(batch: Batch, num_kv_heads: int, head_dim: int) -> None:
    import flashinfer

    n = batch.num_tokens
    flashinfer.append_paged_kv_cache(
        cuda(n, num_kv_heads, head_dim), cuda(n, num_kv_heads, head_dim),
        cuda(n, dtype=torch.int32), cuda(n, dtype=torch.int32), kv_cache(num_kv_heads, head_dim),
        cuda(sum(batch.pages), dtype=torch.int32), cuda(len(batch.q_lens) + 1, dtype=torch.int32),
        cuda(len(batch.q_lens), dtype=torch.int32))


def rope(num_tokens: int, num_heads: int, num_kv_heads: int, head_dim: int, rotary_dim: int) -> None:
    """vllm/model_executor/layers/rotary_embedding/common.py:_flashinfer_rotary_embedding."""
    import flashinfer

    flashinfer.apply_rope_with_cos_sin_cache_inplace(
        positions=cuda(num_tokens, dtype=torch.int64), query=cuda(num_tokens, num_heads * head_dim),
        key=cuda(num_tokens, num_kv_heads * head_dim), head_size=head_dim,
        cos_sin_cache=cuda(131072, rotary_dim, dtype=torch.float32), is_neox=True)


def xqa_decode(num_heads: int, num_kv_heads: int, head_dim: int, window_left: int,
               sinks: torch.Tensor | None) -> None:
    """SM12x decode: FlashInfer's dedicated XQA API (vLLM #49718, 'decode_backend=xqa')."""
    from flashinfer.decode import xqa_batch_decode_with_kv_cache

    batch = DECODE
    xqa_batch_decode_with_kv_cache(
        query=cuda(len(batch.q_lens), num_heads, head_dim), kv_cache=kv_cache(num_kv_heads, head_dim),
        workspace_buffer=workspace(), block_tables=batch.block_tables(), seq_lens=batch.seq_lens(),
        max_seq_len=max(batch.kv_lens), bmm1_scale=head_dim**-0.5, bmm2_scale=1.0,
        window_left=window_left, sinks=sinks, kv_layout="NHD")


def sampling(vocab_size: int) -> list[Step]:
    """vllm/v1/sample/ops/topk_topp_sampler.py: flashinfer_sample (top-k+top-p from logits,
    top-p only / top-k only from probs) and the startup build probe
    _flashinfer_sampling_build_failure (the same top-k+top-p call)."""
    import flashinfer

    batch = len(DECODE.q_lens)
    logits, probs = cuda(batch, vocab_size, dtype=torch.float32), cuda(batch, vocab_size, dtype=torch.float32)
    top_k, top_p = cuda(batch, dtype=torch.int32), cuda(batch, dtype=torch.float32)
    return [
        Step("flashinfer.sampling.top_k_top_p_sampling_from_logits",
         lambda: flashinfer.sampling.top_k_top_p_sampling_from_logits(logits, top_k, top_p, deterministic=True)),
        Step("flashinfer.sampling.top_p_sampling_from_probs",
         lambda: flashinfer.sampling.top_p_sampling_from_probs(probs, top_p, deterministic=True)),
        Step("flashinfer.sampling.top_k_sampling_from_probs",
         lambda: flashinfer.sampling.top_k_sampling_from_probs(probs, top_k, deterministic=True)),
    ]


@dataclass(frozen=True)
class Step:
    """One public FlashInfer call a model stack makes. `getter_fallback`: why the real call path
    cannot run on a CPU-only box, so `run` calls the module getter that path calls instead."""

    api: str
    run: Callable[[], Any]
    getter_fallback: str | None = None
