# Copyright (c) 2026 by FlashInfer team.
# SPDX-License-Identifier: Apache-2.0
"""Cached MoE workspaces that CUDA graphs may capture.

A graph captured while a call used a cached workspace keeps the workspace's raw
pointer, and every replay writes through it. A cache that replaces an entry
with a larger one, or is cleared, must therefore not free a workspace a
captured graph may still use: the allocator would hand its memory to other
tensors and the next replay would corrupt them (flashinfer-ai/flashinfer#4827).

``GraphSafeCache`` marks each entry handed out during capture. When
a marked entry is replaced or cleared it is retained, not freed, until
``release_graph_referenced()`` is called by a caller that has destroyed every
graph that used it. Entries never used under capture keep their usual
lifetime.
"""

import threading
from typing import Dict, Generic, Hashable, List, Optional, Set, TypeVar

import torch

V = TypeVar("V")

_WORKSPACE_ALIGNMENT = 1 << 20


def is_current_stream_capturing() -> bool:
    """``torch.cuda.is_current_stream_capturing()``, False where CUDA is absent."""
    try:
        return bool(torch.cuda.is_current_stream_capturing())
    except (RuntimeError, AssertionError):
        return False


class GraphSafeCache(Generic[V]):
    """A keyed cache that never frees an entry a captured CUDA graph may use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: Dict[Hashable, V] = {}
        self._graph_referenced: Set[Hashable] = set()
        self._retained: List[V] = []

    def get(self, key: Hashable) -> Optional[V]:
        """The entry for ``key``; marked graph-referenced when taken during capture."""
        capturing = is_current_stream_capturing()
        with self._lock:
            value = self._entries.get(key)
            if value is not None and capturing:
                self._graph_referenced.add(key)
            return value

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value`` for ``key``; a graph-referenced predecessor is retained."""
        with self._lock:
            old = self._entries.get(key)
            if old is not None and key in self._graph_referenced:
                self._retained.append(old)
            self._graph_referenced.discard(key)
            self._entries[key] = value

    def clear(self) -> None:
        """Drop every entry; graph-referenced ones are retained."""
        with self._lock:
            self._retained.extend(self._entries[k] for k in self._graph_referenced)
            self._graph_referenced.clear()
            self._entries.clear()

    def release_graph_referenced(self) -> int:
        """Free the retained entries and forget every mark; returns how many were freed.

        Call only after destroying every CUDA graph captured while using this
        cache: a graph replayed afterwards may write into freed memory.
        """
        with self._lock:
            released = len(self._retained)
            self._retained.clear()
            self._graph_referenced.clear()
            return released

    @property
    def num_retained(self) -> int:
        with self._lock:
            return len(self._retained)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def stream_workspace(
    cache: "GraphSafeCache[torch.Tensor]", device: torch.device, num_bytes: int
) -> Optional[torch.Tensor]:
    """A uint8 workspace of at least ``num_bytes`` for ``device``'s current stream.

    One workspace per (device, stream): launches on one stream are ordered, so
    consecutive calls (every layer of a model) may share it; launches on two
    streams are not, so they never do. It grows monotonically, in 1 MiB steps.
    During capture a workspace that is too small is not grown, since that
    would allocate inside the graph's private pool: the function returns
    ``None`` and the caller keeps its uncached behaviour for that call.
    """
    index = device.index if device.index is not None else torch.cuda.current_device()
    key = (index, torch._C._cuda_getCurrentRawStream(index))
    workspace = cache.get(key)
    if workspace is not None and workspace.numel() >= num_bytes:
        return workspace
    if is_current_stream_capturing():
        return None
    size = -(-num_bytes // _WORKSPACE_ALIGNMENT) * _WORKSPACE_ALIGNMENT
    workspace = torch.empty(size, dtype=torch.uint8, device=torch.device("cuda", index))
    cache.put(key, workspace)
    return workspace
