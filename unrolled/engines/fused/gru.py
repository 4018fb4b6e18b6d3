"""Fused GRU, both forms, with a hand-derived BPTT backward.

Forward (P = X W_ih^T + b_ih for all steps; gates r, z, n):

    reset_after  Q = h W_hh^T + b_hh;            n = tanh(P_n + r Q_n)
    reset before Q = h W_hr,z^T + b_hr,z;          n = tanh(P_n + (r h) W_hn^T + b_hn)
    r = σ(P_r + Q_r),  z = σ(P_z + Q_z),  h_t = n + z (h_{t-1} - n)

Backward from dh_t:

    dz = dh (h_{t-1} - n) σ'(z);  dn = dh (1 - z) (1 - n²);  dh_{t-1} = dh z + ...
    reset_after  dQ = [dr, dz, dn r] with dr = dn Q_n σ'(r);  dh_{t-1} += dQ W_hh
    reset before d(rh) = dn W_hn;  dr = d(rh) h_{t-1} σ'(r);  dh_{t-1} += d(rh) r + [dr, dz] W_hr,z

Step options (see :mod:`.common`): with layer norm, P = LN(X W_ih^T) + b_ih is computed before the loop,
and each recurrent product is layer-normalised before its bias (Q = LN(h W_hh^T) + b_hh; reset
before, LN over the r, z rows and LN((r h) W_hn^T) + b_hn), so its gradient passes the LN's
backward before reaching W_hh; recurrent dropout puts the sequence's mask m on the h of every
recurrent product (h -> h m, and the gradient through those products is multiplied by m), while
the carried h and the update ``n + z (h - n)`` see the unmasked h; zoneout carries
``h_t = h_new + k (h_{t-1} - h_new)``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .common import (
    StepNoise,
    draw_noise,
    dsigmoid,
    emit,
    input_grads,
    input_projection,
    keep,
    norm,
    norm_gain_grad,
    norm_grad,
    norm_grads,
    outer_sum,
    step_order,
)


def _product(
    v: Tensor, w_t: Tensor, b: Tensor | None, gain: Tensor | None, raw: Tensor, stats: Tensor
) -> Tensor:
    """``v w_t + b``, or ``LN(v w_t) gain + b`` keeping ``v w_t`` in ``raw`` and its mean and rstd
    in ``stats`` (2, B, 1) for backward."""
    if gain is None:
        return v @ w_t if b is None else torch.addmm(b, v, w_t)
    q, stats[0], stats[1] = norm(torch.mm(v, w_t, out=raw), gain, b)
    return q


class FusedGRU(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        steps: Any,
        reset_after: bool,
        reverse: bool,
        mask: Tensor | None,
        noise: StepNoise,
        x: Tensor,
        h0: Tensor,
        w_ih: Tensor | None,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
        ln_hh: Tensor | None,
        ln_ih: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        T, B, _ = x.shape
        H = h0.size(1)
        if ln_ih is None:
            acts = input_projection(x, w_ih, b_ih)  # (T, B, 3H): becomes r, z, n in place
            ih_stats = None
        else:  # x is x W_ih^T: LN(x) ln_ih + b_ih
            acts, *ih_stats = norm(x, ln_ih, b_ih)
        h_in = x.new_empty(T, B, H)
        aux = x.new_empty(T, B, H)  # reset_after: Q_n; reset before: r * h_{t-1} (masked h)
        out = x.new_empty(T, B, H)
        # layer norm: the raw recurrent products (r, z rows, then the candidate's) and their stats
        raw = x.new_empty(T, B, 3 * H) if ln_hh is not None else None
        stats = x.new_empty(2, 2, T, B, 1)  # [product r,z or all three | candidate][mean, rstd]
        steps = steps or STEPS  # Python, or the compiled engine's C++ (unrolled.engines.compiled)
        h = steps.forward(
            reset_after, reverse, mask, noise, acts, h0, w_hh, b_hh, ln_hh, h_in, aux, out, raw, stats
        )
        ctx.steps = steps
        ctx.reset_after, ctx.reverse, ctx.noise = reset_after, reverse, noise
        ctx.save_for_backward(mask, x, acts, h_in, aux, raw, stats, w_ih, w_hh, b_ih, b_hh, ln_hh, ln_ih)
        ctx.ih_stats = ih_stats
        return out, h

    @staticmethod
    def backward(ctx: Any, d_out: Tensor, d_h: Tensor) -> tuple[Any, ...]:
        mask, x, acts, h_in, aux, raw, stats, w_ih, w_hh, b_ih, b_hh, ln_hh, ln_ih = ctx.saved_tensors
        drop, zone = ctx.noise
        T, B, _ = x.shape
        H = h_in.size(2)
        d_pre = torch.empty_like(acts)  # d(P): the input projection's gradient
        d_q = torch.empty_like(acts) if ctx.reset_after else x.new_empty(T, B, 2 * H)  # d(Q)
        d_raw = torch.empty_like(raw) if raw is not None else None  # d of the products before LN
        dh_state, d_ln = ctx.steps.backward(
            ctx.reset_after, ctx.reverse, mask, ctx.noise, acts, d_out, d_h, h_in, aux, w_hh, ln_hh, raw,
            stats, d_pre, d_q, d_raw,
        )  # fmt: skip
        need = ctx.needs_input_grad
        if ln_ih is None:
            dx, dw_ih, db_ih = input_grads(d_pre, x, w_ih, need[5], need[7], b_ih is not None)
            d_ln_ih = None
        else:
            need_ih = [need[5], need[12], True]
            dx, d_ln_ih, db_ih = norm_grads(d_pre, x, *ctx.ih_stats, ln_ih, b_ih, need_ih)
            dw_ih = None
        h_rec = h_in if drop is None else h_in * drop  # the h that entered the products
        dw_hh = db_hh = None
        if ctx.reset_after:
            if need[8]:
                dw_hh = outer_sum(d_q if d_raw is None else d_raw, h_rec)
            if b_hh is not None:
                db_hh = d_q.sum((0, 1))
        else:
            d_n = d_pre[:, :, 2 * H :]
            if need[8]:
                d_rz_raw, d_n_raw = (
                    (d_q, d_n) if d_raw is None else (d_raw[..., : 2 * H], d_raw[..., 2 * H :])
                )
                dw_hh = torch.cat([outer_sum(d_rz_raw, h_rec), outer_sum(d_n_raw, aux)])
            if b_hh is not None:
                db_hh = torch.cat([d_q.sum((0, 1)), d_n.sum((0, 1))])
        return None, None, None, None, None, dx, dh_state, dw_ih, dw_hh, db_ih, db_hh, d_ln, d_ln_ih


def _forward_steps(
    reset_after: bool,
    reverse: bool,
    mask: Tensor | None,
    noise: StepNoise,
    acts: Tensor,
    h0: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    ln_hh: Tensor | None,
    h_in: Tensor,
    aux: Tensor,
    out: Tensor,
    raw: Tensor | None,
    stats: Tensor,
) -> Tensor:
    """The forward time loop in Python: overwrites ``acts`` with r, z, n, fills the saved
    buffers and returns the final h."""
    T, B, _ = acts.shape
    H = h0.size(1)
    drop, zone = noise
    w_t = w_hh.t()
    w_rz_t, w_n_t = w_t[:, : 2 * H], w_t[:, 2 * H :]
    b_rz = b_n = g_rz = g_n = None
    if b_hh is not None:
        b_rz, b_n = b_hh[: 2 * H], b_hh[2 * H :]
    if ln_hh is not None:
        g_rz, g_n = ln_hh[: 2 * H], ln_hh[2 * H :]
    h = h0
    for t in step_order(T, reverse):
        h_in[t] = h
        hd = h if drop is None else h * drop  # what enters the recurrent products
        v = acts[t].view(B, 3, H)
        if reset_after:
            q = _product(hd, w_t, b_hh, ln_hh, None if raw is None else raw[t], stats[0, :, t])
            v[:, :2] += q[:, : 2 * H].view(B, 2, H)
            r_z = v[:, :2].sigmoid_()
            q_n = q[:, 2 * H :]
            aux[t] = q_n
            n = v[:, 2].addcmul_(r_z[:, 0], q_n).tanh_()
        else:
            raw_rz = raw_n = None
            if raw is not None:
                raw_rz, raw_n = raw[t, :, : 2 * H], raw[t, :, 2 * H :]
            q = _product(hd, w_rz_t, b_rz, g_rz, raw_rz, stats[0, :, t])  # (B, 2H)
            v[:, :2] += q.view(B, 2, H)
            r_z = v[:, :2].sigmoid_()
            rh = torch.mul(r_z[:, 0], hd, out=aux[t])
            if ln_hh is None:
                n = v[:, 2].addmm_(rh, w_n_t)
                if b_n is not None:
                    n += b_n
            else:
                n = v[:, 2].add_(_product(rh, w_n_t, b_n, g_n, raw_n, stats[1, :, t]))
            n.tanh_()
        z = r_z[:, 1]
        h_new = torch.addcmul(n, z, h - n)
        if zone is not None:
            h_new = torch.addcmul(h_new, zone[0][t], h - h_new)
        step_mask = None if mask is None else mask[t]
        h = emit(out, t, step_mask, h_new, h)
    return h


def _backward_steps(
    reset_after: bool,
    reverse: bool,
    mask: Tensor | None,
    noise: StepNoise,
    acts: Tensor,
    d_out: Tensor,
    d_h: Tensor,
    h_in: Tensor,
    aux: Tensor,
    w_hh: Tensor,
    ln_hh: Tensor | None,
    raw: Tensor | None,
    stats: Tensor,
    d_pre: Tensor,
    d_q: Tensor,
    d_raw: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    """The backward time loop in Python: fills ``d_pre``, ``d_q`` (and ``d_raw`` with layer
    norm) and returns the gradients of the initial h and of the layer norm's gains (None if off)."""
    T, B, _ = acts.shape
    H = h_in.size(2)
    drop, zone = noise
    w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
    g_rz = g_n = None
    if ln_hh is not None:
        g_rz, g_n = ln_hh[: 2 * H], ln_hh[2 * H :]
    dh_state = d_h
    for t in step_order(T, not reverse):
        step_mask = None if mask is None else mask[t]
        dh = dh_state + d_out[t]
        if step_mask is not None:
            dh = dh * step_mask
        if zone is not None:
            dh_kept = dh * zone[0][t]
            dh = dh - dh_kept
        r, z, n = acts[t].view(B, 3, H).unbind(1)
        h_prev = h_in[t]
        hd = h_prev if drop is None else h_prev * drop
        dv = d_pre[t].view(B, 3, H)
        torch.mul(dh * (h_prev - n), dsigmoid(z), out=dv[:, 1])
        dpn = torch.mul(dh * (1 - z), 1 - n * n, out=dv[:, 2])
        dh_prev = dh * z
        if reset_after:
            torch.mul(dpn * aux[t], dsigmoid(r), out=dv[:, 0])
            dq = d_q[t].view(B, 3, H)
            dq[:, :2] = dv[:, :2]
            torch.mul(dpn, r, out=dq[:, 2])
            d_rec = d_q[t]
            if d_raw is not None:
                d_rec = d_raw[t] = norm_grad(d_rec, raw[t], stats[0, 0, t], stats[0, 1, t], ln_hh)
            d_hd = d_rec @ w_hh
        else:
            d_n = dpn
            if d_raw is not None:
                d_n = norm_grad(dpn, raw[t, :, 2 * H :], stats[1, 0, t], stats[1, 1, t], g_n)
                d_raw[t, :, 2 * H :] = d_n
            d_rh = d_n @ w_n
            torch.mul(d_rh * hd, dsigmoid(r), out=dv[:, 0])
            d_q[t] = d_pre[t][:, : 2 * H]
            d_rec = d_q[t]
            if d_raw is not None:
                d_rec = norm_grad(d_rec, raw[t, :, : 2 * H], stats[0, 0, t], stats[0, 1, t], g_rz)
                d_raw[t, :, : 2 * H] = d_rec
            d_hd = torch.addmm(d_rh * r, d_rec, w_rz)
        if drop is not None:
            d_hd *= drop
        dh_prev += d_hd
        if zone is not None:
            dh_prev += dh_kept
        dh_state = keep(step_mask, dh_prev, dh_state)
    d_ln = None
    if ln_hh is not None and reset_after:
        d_ln = norm_gain_grad(d_q, raw, stats[0, 0], stats[0, 1])
    elif ln_hh is not None:
        d_ln = torch.cat(
            [
                norm_gain_grad(d_q, raw[..., : 2 * H], stats[0, 0], stats[0, 1]),
                norm_gain_grad(d_pre[..., 2 * H :], raw[..., 2 * H :], stats[1, 0], stats[1, 1]),
            ]
        )
    return dh_state, d_ln


STEPS = SimpleNamespace(forward=_forward_steps, backward=_backward_steps)  # the Python time loops


def run_gru(
    cell: Any, x: Tensor, state: Tensor, reverse: bool, mask: Tensor | None, steps: Any = None
) -> tuple[Tensor, Tensor]:
    noise = draw_noise(cell, x, state, reverse, (state.size(1),))
    w_ih, b_ih = cell.weight_ih, cell.bias_ih
    if cell.layer_norm:  # x W_ih^T for all steps, differentiated by autograd; its LN and b_ih inside
        x, w_ih = F.linear(x, w_ih), None
    return FusedGRU.apply(
        steps,
        cell.reset_after,
        reverse,
        mask,
        noise,
        x,
        state,
        w_ih,
        cell.weight_hh,
        b_ih,
        cell.bias_hh,
        cell.ln_hh_weight,
        cell.ln_ih_weight,
    )
