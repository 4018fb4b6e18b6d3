"""Fused MUT1, MUT2 and MUT3 with a hand-derived BPTT backward.

All three share the candidate and the update; they differ in what the gates z and r read.
With the input side of every step computed at once, A = [A_z, A_r, A_c] (T, B, 3H):

    A = X W_ih^T + b                      the x-terms of z, r, c; where a term adds x itself (I = H)
                                          it is x (MUT2's r) or tanh(x) (MUT1's c) instead; MUT1's
                                          c-term is tanh(X W_xh^T) when I != H
    MUT1  z = σ(A_z),                   r = σ(A_r + h W_hr^T)
    MUT2  z = σ(A_z + h W_hz^T),        r = σ(A_r + h W_hr^T)      (one GEMM: h [W_hz; W_hr]^T)
    MUT3  z = σ(A_z + tanh(h) W_hz^T),  r = σ(A_r + h W_hr^T)
    n = tanh(A_c + (r h) W_hh^T),       h_t = h + z (n - h)

Backward from dh_t (output and future), with dZ, dR, dN the gradients of the gates' arguments:

    dZ = dh (n - h) σ'(z);  dN = dh z (1 - n²);  d(rh) = dN W_hh;  dR = d(rh) h σ'(r)
    dh_{t-1} = dh (1 - z) + d(rh) r + dR W_hr
               + MUT2: dZ W_hz (with dR W_hr one GEMM: [dZ, dR] [W_hz; W_hr])
               + MUT3: (dZ W_hz) (1 - tanh²(h))

and after the loop, one GEMM each over all steps: dW_hr = dR^T H_prev, dW_hh = dN^T (R H_prev),
dW_hz = dZ^T H_prev (MUT2, stacked with dW_hr) or dZ^T tanh(H_prev) (MUT3); db = sum dA; and
dX = dP W_ih, dW_ih = dP^T X, where dP is dA on the x-terms' columns (MUT1's c-column times
1 - tanh² of its argument), plus dA_r (MUT2) or dA_c (1 - tanh²(x)) (MUT1) when I = H.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from .common import dsigmoid, input_grads, input_projection, keep, outer_sum, step_order


def _input_side(
    arch: int, identity: bool, x: Tensor, w_ih: Tensor, b_ih: Tensor | None, H: int
) -> tuple[Tensor, Tensor | None]:
    """A (T, B, 3H), the input side of z, r and c, and MUT1's tanh term (saved for backward)."""
    if arch != 1 and not identity:
        return input_projection(x, w_ih, b_ih), None  # the x-terms are z, r, c: one GEMM, no copies
    terms = list(input_projection(x, w_ih, None).split(H, dim=2))  # the x-terms, in the order z, r, c
    if identity:
        terms.insert(2 if arch == 1 else 1, x)  # MUT1's c, MUT2's r
    x_tanh = None
    if arch == 1:
        x_tanh = terms[2] = torch.tanh(terms[2])
    acts = x.new_empty(*x.shape[:2], 3 * H)
    biases = [None] * 3 if b_ih is None else b_ih.split(H)
    for k, (term, b) in enumerate(zip(terms, biases, strict=True)):
        cols = acts[..., k * H : (k + 1) * H]
        if b is None:
            cols.copy_(term)
        else:
            torch.add(term, b, out=cols)
    return acts, x_tanh


class FusedMUT(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        steps: Any,
        arch: int,
        identity: bool,
        reverse: bool,
        mask: Tensor | None,
        x: Tensor,
        h0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        T, B, _ = x.shape
        H = h0.size(1)
        acts, x_tanh = _input_side(arch, identity, x, w_ih, b_ih, H)  # becomes z, r, n in place
        h_in = x.new_empty(T, B, H)
        rh_in = x.new_empty(T, B, H)  # r * h_{t-1}, the input of W_hh
        th_in = x.new_empty(T, B, H) if arch == 3 else None  # tanh(h_{t-1}), the input of W_hz
        out = x.new_empty(T, B, H)
        if arch == 1:
            acts[..., :H].sigmoid_()  # z reads no state: every step's at once
        steps = steps or STEPS  # Python, or the compiled engine's C++ (unrolled.engines.compiled)
        h = steps.forward(arch, reverse, mask, acts, h0, w_hh, h_in, rh_in, th_in, out)
        ctx.steps = steps
        ctx.arch, ctx.identity, ctx.reverse = arch, identity, reverse
        ctx.save_for_backward(mask, x, acts, h_in, rh_in, th_in, x_tanh, w_ih, w_hh, b_ih)
        return out, h

    @staticmethod
    def backward(ctx: Any, d_out: Tensor, d_h: Tensor) -> tuple[Any, ...]:
        mask, x, acts, h_in, rh_in, th_in, x_tanh, w_ih, w_hh, b_ih = ctx.saved_tensors
        arch = ctx.arch
        H = h_in.size(2)
        d_acts = torch.empty_like(acts)  # dZ, dR, dN: the gradients of the gates' arguments
        dh_state = ctx.steps.backward(arch, ctx.reverse, mask, acts, d_out, d_h, h_in, th_in, w_hh, d_acts)
        need = ctx.needs_input_grad
        db = d_acts.sum((0, 1)) if b_ih is not None and need[9] else None
        dw_hh = None
        if need[8]:
            if arch == 1:
                blocks = [outer_sum(d_acts[..., H : 2 * H], h_in)]
            elif arch == 2:
                blocks = [outer_sum(d_acts[..., : 2 * H], h_in)]
            else:
                blocks = [outer_sum(d_acts[..., :H], th_in), outer_sum(d_acts[..., H : 2 * H], h_in)]
            dw_hh = torch.cat([*blocks, outer_sum(d_acts[..., 2 * H :], rh_in)])
        # the input side: dP on the x-terms' columns, d_self on the term that is x itself
        d_self = None
        d_proj = d_acts
        if arch == 1:
            d_acts[..., 2 * H :].mul_(1 - x_tanh * x_tanh)  # now the gradient of tanh's argument
            if ctx.identity:
                d_proj, d_self = d_acts[..., : 2 * H], d_acts[..., 2 * H :]
        elif ctx.identity:
            d_proj = torch.cat([d_acts[..., :H], d_acts[..., 2 * H :]], dim=2)
            d_self = d_acts[..., H : 2 * H]
        dx, dw_ih, _ = input_grads(d_proj, x, w_ih, need[5], need[7], False)
        if dx is not None and d_self is not None:
            dx += d_self
        return None, None, None, None, None, dx, dh_state, dw_ih, dw_hh, db


def _forward_steps(
    arch: int,
    reverse: bool,
    mask: Tensor | None,
    acts: Tensor,
    h0: Tensor,
    w_hh: Tensor,
    h_in: Tensor,
    rh_in: Tensor,
    th_in: Tensor | None,
    out: Tensor,
) -> Tensor:
    """The forward time loop in Python: ``acts`` becomes z, r, n in place (MUT1's z already is)."""
    T, _, _ = acts.shape
    H = h0.size(1)
    w_t = w_hh.t()
    w_gates_t, w_n_t = w_t[:, :-H], w_t[:, -H:]  # MUT1: W_hr; MUT2, MUT3: [W_hz; W_hr]
    h = h0
    for t in step_order(T, reverse):
        h_in[t] = h
        a = acts[t]
        if arch == 1:
            a[:, H : 2 * H].addmm_(h, w_gates_t).sigmoid_()
        elif arch == 2:
            a[:, : 2 * H].addmm_(h, w_gates_t).sigmoid_()
        else:
            a[:, :H].addmm_(torch.tanh(h, out=th_in[t]), w_gates_t[:, :H])
            a[:, H : 2 * H].addmm_(h, w_gates_t[:, H:])
            a[:, : 2 * H].sigmoid_()
        z, r = a[:, :H], a[:, H : 2 * H]
        n = a[:, 2 * H :].addmm_(torch.mul(r, h, out=rh_in[t]), w_n_t).tanh_()
        h_new = torch.addcmul(h, z, n - h, out=out[t])
        if mask is not None:
            h = keep(mask[t], h_new, h)
            out[t].masked_fill_(~mask[t], 0.0)
        else:
            h = h_new
    return h.clone() if mask is None else h  # without a mask, h is a view of out


def _backward_steps(
    arch: int,
    reverse: bool,
    mask: Tensor | None,
    acts: Tensor,
    d_out: Tensor,
    d_h: Tensor,
    h_in: Tensor,
    th_in: Tensor | None,
    w_hh: Tensor,
    d_acts: Tensor,
) -> Tensor:
    """The backward time loop in Python: fills ``d_acts``; returns the initial h's gradient."""
    T = acts.size(0)
    H = h_in.size(2)
    w_gates, w_n = w_hh[:-H], w_hh[-H:]
    dh_state = d_h
    for t in step_order(T, not reverse):
        step_mask = None if mask is None else mask[t]
        dh = dh_state + d_out[t]
        if step_mask is not None:
            dh.mul_(step_mask)
        a, da = acts[t], d_acts[t]
        z, r, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        dz, dr, dn = da[:, :H], da[:, H : 2 * H], da[:, 2 * H :]
        h_prev = h_in[t]
        torch.mul(dh * (n - h_prev), dsigmoid(z), out=dz)
        dh_z = dh * z
        torch.mul(dh_z, 1 - n * n, out=dn)
        dh_prev = dh.sub_(dh_z)  # dh (1 - z)
        d_rh = dn @ w_n
        torch.mul(d_rh * h_prev, dsigmoid(r), out=dr)
        dh_prev.addcmul_(d_rh, r)
        if arch == 2:
            dh_prev.addmm_(da[:, : 2 * H], w_gates)
        else:
            dh_prev.addmm_(dr, w_gates[-H:])
            if arch == 3:
                th = th_in[t]
                dh_prev.addcmul_(dz @ w_gates[:H], 1 - th * th)
        dh_state = keep(step_mask, dh_prev, dh_state)
    return dh_state


STEPS = SimpleNamespace(forward=_forward_steps, backward=_backward_steps)  # the Python time loops


def run_mut(
    cell: Any, x: Tensor, state: Tensor, reverse: bool, mask: Tensor | None, steps: Any = None
) -> tuple[Tensor, Tensor]:
    """The fused MUTCell over ``x`` (T, B, I) from ``state`` (B, H): ``(out, h_T)``."""
    identity = len(cell.x_terms) == 2  # a term adds x itself (I = H): MUT1's c, MUT2's r
    return FusedMUT.apply(
        steps, cell.arch, identity, reverse, mask, x, state, cell.weight_ih, cell.weight_hh, cell.bias_ih
    )
