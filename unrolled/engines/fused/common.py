"""What every fused recurrence shares: step order, masks, and the GEMMs over all steps.

A fused recurrence splits a layer's work the way the lectures derive BPTT:

    forward   P = X W_ih^T + b_ih                     one GEMM over all T*B rows
              for each step: a_t = P_t + h_{t-1} W_hh^T (one GEMM) -> pointwise gate math
    backward  for each step, latest first: the pointwise derivatives give dA_t, and
              dh_{t-1} = dA_t W_hh (one GEMM) + the direct paths
              dX = dP W_ih, dW_ih = dP^T X, dW_hh = dA^T H_prev    one GEMM each, over all steps

Everything is stored by time index t, whichever direction the steps run in, so the final GEMMs
line the saved rows up with ``x``. A mask (variable lengths) keeps a row's state and zeroes its
output past the row's end; in backward such a row passes its state gradient straight through.
"""

from __future__ import annotations

import torch
from torch import Tensor


def step_order(steps: int, reverse: bool) -> range:
    """Time indices in the order a direction visits them."""
    return range(steps - 1, -1, -1) if reverse else range(steps)


def input_projection(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x W^T + b`` for all steps at once: (T, B, I) -> (T, B, rows)."""
    T, B, I = x.shape
    flat = x.reshape(T * B, I)
    out = flat @ weight.t() if bias is None else torch.addmm(bias, flat, weight.t())
    return out.view(T, B, -1)


def input_grads(
    d_pre: Tensor, x: Tensor, weight: Tensor, need_x: bool, need_w: bool, need_b: bool
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of :func:`input_projection` from ``d_pre`` (T, B, rows), one GEMM each."""
    T, B, I = x.shape
    flat = d_pre.reshape(T * B, -1)
    dx = (flat @ weight).view(T, B, I) if need_x else None
    dw = flat.t() @ x.reshape(T * B, I) if need_w else None
    db = flat.sum(0) if need_b else None
    return dx, dw, db


def outer_sum(d_rows: Tensor, inputs: Tensor) -> Tensor:
    """``sum_t d_rows[t]^T inputs[t]`` as one GEMM: (T, B, R), (T, B, C) -> (R, C)."""
    return d_rows.reshape(-1, d_rows.size(-1)).t() @ inputs.reshape(-1, inputs.size(-1))


def keep(mask: Tensor | None, new: Tensor, old: Tensor) -> Tensor:
    """``new`` on the rows where ``mask`` (B, 1) holds, ``old`` elsewhere; ``new`` if no mask."""
    return new if mask is None else torch.where(mask, new, old)


def dsigmoid(s: Tensor) -> Tensor:
    """The sigmoid's derivative from its value: σ' = σ (1 - σ)."""
    return s * (1 - s)
