"""Fused GRU, both forms, with a hand-derived BPTT backward.

Forward (P = X W_ih^T + b_ih for all steps; gates r, z, n):

    reset_after  Q = h W_hh^T + b_hh;            n = tanh(P_n + r Q_n)
    reset before Q = h W_hr,z^T + b_hr,z;          n = tanh(P_n + (r h) W_hn^T + b_hn)
    r = σ(P_r + Q_r),  z = σ(P_z + Q_z),  h_t = n + z (h_{t-1} - n)

Backward from dh_t:

    dz = dh (h_{t-1} - n) σ'(z);  dn = dh (1 - z) (1 - n²);  dh_{t-1} = dh z + ...
    reset_after  dQ = [dr, dz, dn r] with dr = dn Q_n σ'(r);  dh_{t-1} += dQ W_hh
    reset before d(rh) = dn W_hn;  dr = d(rh) h_{t-1} σ'(r);  dh_{t-1} += d(rh) r + [dr, dz] W_hr,z
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .common import dsigmoid, input_grads, input_projection, keep, outer_sum, step_order


class FusedGRU(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        reset_after: bool,
        reverse: bool,
        mask: Tensor | None,
        x: Tensor,
        h0: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        T, B, _ = x.shape
        H = h0.size(1)
        acts = input_projection(x, w_ih, b_ih)  # (T, B, 3H): becomes r, z, n in place
        h_in = x.new_empty(T, B, H)
        aux = x.new_empty(T, B, H)  # reset_after: Q_n; reset before: r * h_{t-1}
        out = x.new_empty(T, B, H)
        w_t = w_hh.t()
        w_rz_t, w_n_t = w_t[:, : 2 * H], w_t[:, 2 * H :]
        b_rz = b_n = None
        if b_hh is not None:
            b_rz, b_n = b_hh[: 2 * H], b_hh[2 * H :]
        h = h0
        for t in step_order(T, reverse):
            h_in[t] = h
            v = acts[t].view(B, 3, H)
            if reset_after:
                q = h @ w_t if b_hh is None else torch.addmm(b_hh, h, w_t)  # (B, 3H)
                v[:, :2] += q[:, : 2 * H].view(B, 2, H)
                r_z = v[:, :2].sigmoid_()
                q_n = q[:, 2 * H :]
                aux[t] = q_n
                n = v[:, 2].addcmul_(r_z[:, 0], q_n).tanh_()
            else:
                q = h @ w_rz_t if b_rz is None else torch.addmm(b_rz, h, w_rz_t)  # (B, 2H)
                v[:, :2] += q.view(B, 2, H)
                r_z = v[:, :2].sigmoid_()
                rh = torch.mul(r_z[:, 0], h, out=aux[t])
                n = v[:, 2].addmm_(rh, w_n_t)
                if b_n is not None:
                    n += b_n
                n.tanh_()
            z = r_z[:, 1]
            h_new = torch.addcmul(n, z, h - n)
            step_mask = None if mask is None else mask[t]
            out[t] = h_new if step_mask is None else h_new.masked_fill(~step_mask, 0.0)
            h = keep(step_mask, h_new, h)
        ctx.reset_after, ctx.reverse = reset_after, reverse
        ctx.save_for_backward(mask, x, acts, h_in, aux, w_ih, w_hh, b_ih, b_hh)
        return out, h

    @staticmethod
    def backward(ctx: Any, d_out: Tensor, d_h: Tensor) -> tuple[Any, ...]:
        mask, x, acts, h_in, aux, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        T, B, _ = x.shape
        H = h_in.size(2)
        d_pre = torch.empty_like(acts)  # d(P): the input projection's gradient
        d_q = torch.empty_like(acts) if ctx.reset_after else x.new_empty(T, B, 2 * H)  # d(Q)
        w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
        dh_state = d_h
        for t in step_order(T, not ctx.reverse):
            step_mask = None if mask is None else mask[t]
            dh = dh_state + d_out[t]
            if step_mask is not None:
                dh = dh * step_mask
            r, z, n = acts[t].view(B, 3, H).unbind(1)
            h_prev = h_in[t]
            dv = d_pre[t].view(B, 3, H)
            torch.mul(dh * (h_prev - n), dsigmoid(z), out=dv[:, 1])
            dpn = torch.mul(dh * (1 - z), 1 - n * n, out=dv[:, 2])
            dh_prev = dh * z
            if ctx.reset_after:
                torch.mul(dpn * aux[t], dsigmoid(r), out=dv[:, 0])
                dq = d_q[t].view(B, 3, H)
                dq[:, :2] = dv[:, :2]
                torch.mul(dpn, r, out=dq[:, 2])
                dh_prev = dh_prev.addmm_(d_q[t], w_hh)
            else:
                d_rh = dpn @ w_n
                torch.mul(d_rh * h_prev, dsigmoid(r), out=dv[:, 0])
                d_q[t] = d_pre[t][:, : 2 * H]
                dh_prev = dh_prev.addcmul_(d_rh, r).addmm_(d_q[t], w_rz)
            dh_state = keep(step_mask, dh_prev, dh_state)
        need = ctx.needs_input_grad
        dx, dw_ih, db_ih = input_grads(d_pre, x, w_ih, need[3], need[5], b_ih is not None)
        dw_hh = db_hh = None
        if ctx.reset_after:
            if need[6]:
                dw_hh = outer_sum(d_q, h_in)
            if b_hh is not None:
                db_hh = d_q.sum((0, 1))
        else:
            d_n = d_pre[:, :, 2 * H :]
            if need[6]:
                dw_hh = torch.cat([outer_sum(d_q, h_in), outer_sum(d_n, aux)])
            if b_hh is not None:
                db_hh = torch.cat([d_q.sum((0, 1)), d_n.sum((0, 1))])
        return None, None, None, dx, dh_state, dw_ih, dw_hh, db_ih, db_hh
