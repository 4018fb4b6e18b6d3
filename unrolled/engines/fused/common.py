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

The cells' step options enter the same scheme:

- layer norm on the input products is applied to P before the recurrence (one op over all
  steps, with the biases as its shift; its backward one op after the loop); on the recurrent
  products it is computed per step, with its backward (:func:`norm_grad`) per step and the
  gains' gradients one reduction at the end;
- recurrent dropout multiplies the ``h_{t-1}`` that enters the recurrent GEMM by the sequence's
  mask (and ``dh_{t-1}`` through that GEMM by the same mask);
- zoneout's keep masks are drawn before the loop, in the order the cell draws them, so that a
  fused layer and the reference loop see the same masks from the same random state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

LN_EPS = 1e-5  # torch.nn.functional.layer_norm's default, which the cells use


class StepNoise(NamedTuple):
    """A sequence's regularisation masks: recurrent dropout's (B, R) mask (already scaled by
    1 / (1 - p)) and zoneout's keep masks (T, B, width), one per zoned state part; None if off."""

    dropout: Tensor | None
    zoneout: tuple[Tensor, ...] | None


def draw_noise(cell: Any, x: Tensor, h0: Tensor, reverse: bool, widths: tuple[int, ...]) -> StepNoise:
    """Draw what the cell would draw running over ``x`` from ``h0``: first the recurrent-dropout
    mask (at the first step), then at each step, in the order the steps run, one zoneout mask
    per state part of the given widths. In evaluation zoneout is its expectation p."""
    start = getattr(cell, "start_sequence", None)
    if start is not None:
        start(x.size(1), device=x.device, dtype=x.dtype)
    dropout = cell.recurrent_mask(h0) if getattr(cell, "recurrent_dropout", 0) else None
    p = getattr(cell, "zoneout", 0)
    if not p:
        return StepNoise(dropout, None)
    T, B = x.shape[:2]
    if not cell.training:
        return StepNoise(dropout, tuple(x.new_full((1, 1, 1), p).expand(T, B, w) for w in widths))
    keeps = tuple(x.new_empty(T, B, w) for w in widths)
    for t in step_order(T, reverse):
        for k in keeps:
            k[t] = cell.zoneout_keep(k[t], p)
    return StepNoise(dropout, keeps)


def norm(v: Tensor, gain: Tensor, bias: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Layer norm over the last dimension: ``(v̂ gain + bias, mean, rstd)``, mean and rstd (B, 1)."""
    return torch.native_layer_norm(v, (v.size(-1),), gain, bias, LN_EPS)


def norm_grad(d_out: Tensor, v: Tensor, mean: Tensor, rstd: Tensor, gain: Tensor) -> Tensor:
    """The gradient of :func:`norm`'s output with respect to its input ``v``."""
    return norm_grads(d_out, v, mean, rstd, gain, None, [True, False, False])[0]  # type: ignore[return-value]


def norm_grads(
    d_out: Tensor, v: Tensor, mean: Tensor, rstd: Tensor, gain: Tensor, bias: Tensor | None, need: list[bool]
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The gradients of :func:`norm`'s output with respect to ``v``, the gain and the bias (where
    ``need`` says so, in that order), in one pass over any leading shape."""
    need = [need[0], need[1], need[2] and bias is not None]
    return tuple(  # type: ignore[return-value]
        torch.ops.aten.native_layer_norm_backward(d_out, v, (v.size(-1),), mean, rstd, gain, bias, need)
    )


def norm_gain_grad(d_out: Tensor, v: Tensor, mean: Tensor, rstd: Tensor) -> Tensor:
    """``sum over steps and rows of d_out * v̂``: a gain's gradient, (T, B, N) -> (N,)."""
    return (d_out * (v - mean) * rstd).sum((0, 1))


def step_order(steps: int, reverse: bool) -> range:
    """Time indices in the order a direction visits them."""
    return range(steps - 1, -1, -1) if reverse else range(steps)


def input_projection(x: Tensor, weight: Tensor, bias: Tensor | None, out: Tensor | None = None) -> Tensor:
    """``x W^T + b`` for all steps at once: (T, B, I) -> (T, B, rows), which the loop overwrites
    with the gates; into ``out`` (T, B, rows) if given, else a new tensor."""
    T, B, I = x.shape
    flat = x.reshape(T * B, I)
    if out is None:
        out = flat @ weight.t() if bias is None else torch.addmm(bias, flat, weight.t())
        return out.view(T, B, -1)
    rows = out.view(T * B, -1)
    if bias is None:
        torch.mm(flat, weight.t(), out=rows)
    else:
        torch.addmm(bias, flat, weight.t(), out=rows)
    return out


def input_grads(
    d_pre: Tensor, x: Tensor, weight: Tensor, need_x: bool, need_w: bool, need_b: bool
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of :func:`input_projection` from ``d_pre`` (T, B, rows), one GEMM each."""
    db = d_pre.sum((0, 1)) if need_b else None
    T, B, I = x.shape
    flat = d_pre.reshape(T * B, -1)
    dx = (flat @ weight).view(T, B, I) if need_x else None
    dw = flat.t() @ x.reshape(T * B, I) if need_w else None
    return dx, dw, db


def outer_sum(d_rows: Tensor, inputs: Tensor) -> Tensor:
    """``sum_t d_rows[t]^T inputs[t]`` as one GEMM: (T, B, R), (T, B, C) -> (R, C)."""
    return d_rows.reshape(-1, d_rows.size(-1)).t() @ inputs.reshape(-1, inputs.size(-1))


def emit(out: Tensor, t: int, mask: Tensor | None, new: Tensor, old: Tensor) -> Tensor:
    """Write step ``t``'s output ``new`` into ``out`` (zero on the rows past their end, where
    ``mask`` (B, 1) is False) and return the state carried on: :func:`keep`."""
    out[t] = new if mask is None else new.masked_fill(~mask, 0.0)
    return keep(mask, new, old)


def keep(mask: Tensor | None, new: Tensor, old: Tensor) -> Tensor:
    """``new`` on the rows where ``mask`` (B, 1) holds, ``old`` elsewhere; ``new`` if no mask."""
    return new if mask is None else torch.where(mask, new, old)


def dsigmoid(s: Tensor) -> Tensor:
    """The sigmoid's derivative from its value: σ' = σ (1 - σ)."""
    return s * (1 - s)
