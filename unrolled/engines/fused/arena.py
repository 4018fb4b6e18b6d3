"""Scratch buffers reused across inference calls: the compiled engine's inference path.

A fused layer's forward allocates, besides its output, buffers of the size of all its steps:
the gate pre-activations ``P`` (T, B, G*H), and the states each step read and wrote, which
training keeps for the backward pass. Memory that large comes from the operating system fresh
on every call (glibc serves blocks past its mmap threshold with ``mmap`` and returns them on
free), so each call pays page faults on first touch: at (B, T, I, H) = (64, 100, 512, 512) the
LSTM's buffers are 91 MB, and an inference call of the compiled LSTM took 1,935 minor faults
(``getrusage``; transparent huge pages make them fewer than one per 4 KiB), 204 with the buffers
reused; at (32, 100, 256, 256) 230 and 49.

When nothing will be differentiated (:func:`inference`: grad mode off, or no input that
requires grad), nothing outlives the call but the output and the final state, so the buffers
can be the same memory every time: :func:`scratch` hands out views of one growing block per
buffer name and thread, kept for the next call. Only CPU tensors use it (CUDA's caching
allocator already reuses memory), only inside :func:`reusing`, and never for what a layer
returns. Per thread: the blocks are as large as the largest call seen, one per buffer name
(a few per cell family), shared by every layer and shape, since a stack runs its layers one
after the other.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

_local = threading.local()


def inference(tensors: Sequence[Tensor | None]) -> bool:
    """Whether a call on ``tensors`` (inputs, states, weights) builds no autograd graph."""
    return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors))


@contextlib.contextmanager
def reusing(on: bool) -> Iterator[None]:
    """Within the block, :func:`scratch` reuses this thread's blocks if ``on``."""
    before = getattr(_local, "on", False)
    _local.on = on
    try:
        yield
    finally:
        _local.on = before


def scratch(name: str, shape: Sequence[int], like: Tensor) -> Tensor:
    """An uninitialised tensor of ``shape`` with ``like``'s dtype and device: a view of this
    thread's block ``name`` inside :func:`reusing` (True) for a CPU tensor, else a new one."""
    if not getattr(_local, "on", False) or like.device.type != "cpu":
        return like.new_empty(shape)
    blocks: dict[tuple[str, torch.dtype], Tensor] = _local.__dict__.setdefault("blocks", {})
    n = math.prod(shape)
    block = blocks.get((name, like.dtype))
    if block is None or block.numel() < n:
        block = like.new_empty(n)
        blocks[(name, like.dtype)] = block
    return block[:n].view(shape)


def release() -> None:
    """Free this thread's blocks (they are otherwise kept for the thread's life)."""
    _local.__dict__.pop("blocks", None)
