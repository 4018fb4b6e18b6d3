"""Fused Elman RNN with a hand-derived BPTT backward.

forward   h_t = φ(P_t + h_{t-1} W_hh^T),  P = X W_ih^T + b_ih + b_hh,  φ = tanh or relu
backward  dA_t = dh_t φ'(h_t)   (tanh: 1 - h_t²; relu: h_t > 0);   dh_{t-1} = dA_t W_hh
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from .common import emit, input_grads, input_projection, keep, outer_sum, step_order


class FusedElman(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        steps: Any,
        relu: bool,
        reverse: bool,
        mask: Tensor | None,
        x: Tensor,
        h0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        hs = input_projection(x, w_ih, None if b_ih is None else b_ih + b_hh)  # becomes h_t in place
        h_in = torch.empty_like(hs)
        out = torch.empty_like(hs)
        steps = steps or STEPS  # Python, or the compiled engine's C++ (unrolled.engines.compiled)
        h = steps.forward(relu, reverse, mask, hs, h0, w_hh, h_in, out)
        ctx.steps = steps
        ctx.relu, ctx.reverse = relu, reverse
        ctx.save_for_backward(mask, x, hs, h_in, w_ih, w_hh, b_ih)
        return out, h

    @staticmethod
    def backward(ctx: Any, d_out: Tensor, d_h: Tensor) -> tuple[Any, ...]:
        mask, x, hs, h_in, w_ih, w_hh, b_ih = ctx.saved_tensors
        d_pre = torch.empty_like(hs)
        dh_state = ctx.steps.backward(ctx.relu, ctx.reverse, mask, hs, d_out, d_h, w_hh, d_pre)
        need = ctx.needs_input_grad
        dx, dw_ih, db = input_grads(d_pre, x, w_ih, need[4], need[6], b_ih is not None)
        dw_hh = outer_sum(d_pre, h_in) if need[7] else None
        return None, None, None, None, dx, dh_state, dw_ih, dw_hh, db, db


def _forward_steps(
    relu: bool,
    reverse: bool,
    mask: Tensor | None,
    hs: Tensor,
    h0: Tensor,
    w_hh: Tensor,
    h_in: Tensor,
    out: Tensor,
) -> Tensor:
    """The forward time loop in Python: ``hs`` (the input side) becomes h_t in place."""
    T = hs.size(0)
    w_hh_t = w_hh.t()
    h = h0
    for t in step_order(T, reverse):
        h_in[t] = h
        h_new = hs[t].addmm_(h, w_hh_t)
        h_new = h_new.relu_() if relu else h_new.tanh_()
        step_mask = None if mask is None else mask[t]
        h = emit(out, t, step_mask, h_new, h)
    return h


def _backward_steps(
    relu: bool,
    reverse: bool,
    mask: Tensor | None,
    hs: Tensor,
    d_out: Tensor,
    d_h: Tensor,
    w_hh: Tensor,
    d_pre: Tensor,
) -> Tensor:
    """The backward time loop in Python: fills ``d_pre``; returns the initial h's gradient."""
    T = hs.size(0)
    dh_state = d_h
    for t in step_order(T, not reverse):
        step_mask = None if mask is None else mask[t]
        dh = dh_state + d_out[t]
        if step_mask is not None:
            dh = dh * step_mask
        h = hs[t]
        if relu:
            torch.mul(dh, h > 0, out=d_pre[t])
        else:
            torch.mul(dh, 1 - h * h, out=d_pre[t])
        dh_state = keep(step_mask, d_pre[t] @ w_hh, dh_state)
    return dh_state


STEPS = SimpleNamespace(forward=_forward_steps, backward=_backward_steps)  # the Python time loops


def run_elman(
    cell: Any, x: Tensor, state: Tensor, reverse: bool, mask: Tensor | None, steps: Any = None
) -> tuple[Tensor, Tensor]:
    relu = cell.nonlinearity == "relu"
    return FusedElman.apply(
        steps, relu, reverse, mask, x, state, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    )
