"""The reference engine: a plain autograd loop over a cell, one step at a time.

This is the lectures' code path and the oracle every faster engine is tested against:

    for t in 0..T-1 (or T-1..0 for the reverse direction):
        h_t, state = cell(x_t, state)

Variable-length batches (``lengths``) are padded batches with a mask: at a step past the end
of sequence b, row b keeps its state and outputs zero, so that

- the final state of row b is its state after step ``lengths[b] - 1``;
- the reverse direction, which walks t = T-1 .. 0, leaves row b at its initial state until
  t = ``lengths[b] - 1``: it starts at each sequence's own end.

Under ``torch.export`` (ONNX export, :mod:`unrolled.export`) the same loop is written as one
``scan`` over time (:func:`scan_reference`), so that the exported graph holds one loop node for
any number of steps instead of T copies of the cell.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..cells.base import map_state, state_like, state_tensors


def step_mask(lengths: Tensor, steps: int) -> Tensor:
    """``mask[t, b, 0] = t < lengths[b]``: (T, B, 1) bool, on the device of ``lengths``."""
    return (torch.arange(steps, device=lengths.device)[:, None] < lengths[None, :]).unsqueeze(-1)


def _keep(mask: Tensor, new: Any, old: Any) -> Any:
    """``new`` where ``mask`` (B, 1) is true, else ``old``, for every tensor of a state."""
    return map_state(lambda n, o: torch.where(mask, n, o), new, old)


def run_reference(
    cell: nn.Module, x: Tensor, state: Any, *, reverse: bool = False, lengths: Tensor | None = None
) -> tuple[Tensor, Any]:
    """Run ``cell`` over a time-major sequence.

    Args:
        cell: any module following the cell protocol (:mod:`unrolled.cells.base`).
        x: (T, B, I) input.
        state: the cell's state before the first step processed.
        reverse: run from t = T-1 down to 0 (the backward direction of a bidirectional layer).
        lengths: (B,) valid steps of each row, on ``x``'s device, 0 <= lengths[b] <= T; None
            when every row has all T steps (see the module docstring).

    Returns:
        ``(out, state)``: ``out`` (T, B, O) with ``out[t]`` the cell output at time t (zero past
        a row's length), and the state after the last valid step of each row.
    """
    if torch.compiler.is_exporting():
        return scan_reference(cell, x, state, reverse=reverse, lengths=lengths)
    # unbind, not x[t]: the backward of one unbind is one stack, while the backward of T
    # separate x[t] selects writes T full-size (T, B, I) zero tensors (quadratic in T).
    xs = x.unbind(0)
    T = len(xs)
    masks = None if lengths is None else step_mask(lengths, T).unbind(0)
    outs: list[Tensor] = list(xs)  # placeholders, each overwritten below
    steps = range(T - 1, -1, -1) if reverse else range(T)
    start = getattr(cell, "start_sequence", None)  # optional: per-sequence state such as dropout masks
    if start is not None:
        start(x.size(1), device=x.device, dtype=x.dtype)
    for t in steps:
        h, new = cell(xs[t], state)
        if masks is None:
            state = new
        else:
            state = _keep(masks[t], new, state)
            h = h.masked_fill(~masks[t], 0.0)
        outs[t] = h
    return torch.stack(outs), state


def scan_reference(
    cell: nn.Module, x: Tensor, state: Any, *, reverse: bool = False, lengths: Tensor | None = None
) -> tuple[Tensor, Any]:
    """:func:`run_reference` as one ``scan`` over time: the same function, traceable by
    ``torch.export`` with a dynamic number of steps (an exported graph then holds one ONNX
    ``Scan`` per cell). Inference only (scan's carry must be pure: no dropout masks drawn)."""
    from torch._higher_order_ops.scan import scan

    T = x.size(0)
    mask = (
        torch.ones(T, x.size(1), 1, dtype=torch.bool, device=x.device)
        if lengths is None
        else step_mask(lengths, T)
    )  # (T, B, 1)

    def step(carry: tuple[Tensor, ...], inputs: tuple[Tensor, Tensor]) -> tuple[Any, Tensor]:
        x_t, m_t = inputs  # (B, I), (B, 1)
        old = state_like(state, list(carry))
        h, new = cell(x_t, old)
        return tuple(state_tensors(_keep(m_t, new, old))), h.masked_fill(~m_t, 0.0)

    # the carry as a plain tuple of tensors: scan's body may not return a NamedTuple state
    final, out = scan(step, tuple(state_tensors(state)), (x, mask), reverse=reverse)
    return out, state_like(state, list(final))
