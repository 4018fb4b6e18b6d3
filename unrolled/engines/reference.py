"""The reference engine: a plain autograd loop over a cell, one step at a time.

This is the lectures' code path and the oracle every faster engine is tested against:

    for t in 0..T-1 (or T-1..0 for the reverse direction):
        h_t, state = cell(x_t, state)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def run_reference(cell: nn.Module, x: Tensor, state: Any, *, reverse: bool = False) -> tuple[Tensor, Any]:
    """Run ``cell`` over a time-major sequence.

    Args:
        cell: any module following the cell protocol (:mod:`unrolled.cells.base`).
        x: (T, B, I) input.
        state: the cell's state before the first step processed.
        reverse: run from t = T-1 down to 0 (the backward direction of a bidirectional layer).

    Returns:
        ``(out, state)``: ``out`` (T, B, O) with ``out[t]`` the cell output at time t, and the
        state after the last step processed.
    """
    # unbind, not x[t]: the backward of one unbind is one stack, while the backward of T
    # separate x[t] selects writes T full-size (T, B, I) zero tensors (quadratic in T).
    xs = x.unbind(0)
    T = len(xs)
    outs: list[Tensor] = list(xs)  # placeholders, each overwritten below
    steps = range(T - 1, -1, -1) if reverse else range(T)
    start = getattr(cell, "start_sequence", None)  # optional: per-sequence state such as dropout masks
    if start is not None:
        start(x.size(1), device=x.device, dtype=x.dtype)
    for t in steps:
        h, state = cell(xs[t], state)
        outs[t] = h
    return torch.stack(outs), state
