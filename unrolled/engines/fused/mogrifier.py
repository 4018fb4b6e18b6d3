"""The fused Mogrifier LSTM with a hand-derived BPTT backward.

The rounds gate the input of every step by the state, so the input projection cannot be done for
all steps at once as for the other cells: each step makes its rounds' products, then the gates from
x↑ and h↑ (two GEMMs), then the LSTM's pointwise math. Per step, with x^j the input after j odd
rounds (x^0 = x_t) and h^j the state after j even rounds (h^0 = h_{t-1}), round by round:

    s_q^j = σ(h^j Q_j^T),   x^{j+1} = 2 s_q^j x^j          (odd rounds, j = 0 .. n_q - 1)
    s_r^j = σ(x^{j+1} R_j^T), h^{j+1} = 2 s_r^j h^j         (even rounds, j = 0 .. n_r - 1)
    A = x↑ W_ih^T + h↑ W_hh^T + b,  then the LSTM: c_t = f c_{t-1} + i g, h_t = o tanh(c_t)

Backward from dh_t (output and future) and dc_t, first the LSTM's step (dA, dc_{t-1}), then
dx↑ = dA W_ih and dh↑ = dA W_hh, then the rounds in reverse, each passing the gradient of what it
gated back and adding what its gate read:

    even round j:  dZ_r^j = dh^{j+1} h^j 2σ'(s_r^j),  dh^j = dh^{j+1} 2 s_r^j,  dx^{j+1} += dZ_r^j R_j
    odd round j:   dZ_q^j = dx^{j+1} x^j 2σ'(s_q^j),  dx^j = dx^{j+1} 2 s_q^j,  dh^j += dZ_q^j Q_j

so dx_t = dx^0 and dh_{t-1} = dh^0. After the loop, one GEMM each over all steps: dQ_j =
dZ_q^j^T H^j, dR_j = dZ_r^j^T X^{j+1}, dW_ih = dA^T X↑, dW_hh = dA^T H↑, db = sum dA.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...cells.base import LSTMState
from .common import dsigmoid, keep, outer_sum, step_order


class FusedMogrifier(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        reverse: bool,
        mask: Tensor | None,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        q: Tensor,
        r: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        T, B, I = x.shape
        H = h0.size(1)
        n_q, n_r = q.size(0), r.size(0)
        xs = x.new_empty(n_q + 1, T, B, I)  # x^j of every step; xs[0] is x itself
        hs = x.new_empty(n_r + 1, T, B, H)  # h^j of every step; hs[0] is h_{t-1}
        xs[0] = x
        s_q, s_r = x.new_empty(n_q, T, B, I), x.new_empty(n_r, T, B, H)
        acts = x.new_empty(T, B, 4 * H)  # the gates i, f, g, o after their nonlinearities
        c_in, c_out, out = x.new_empty(T, B, H), x.new_empty(T, B, H), x.new_empty(T, B, H)
        bias = None if b_ih is None else b_ih + b_hh
        w_ih_t, w_hh_t = w_ih.t(), w_hh.t()
        h, c = h0, c0
        for t in step_order(T, reverse):
            hs[0, t], c_in[t] = h, c
            for j in range(n_q):
                s = torch.mm(hs[j, t], q[j].t(), out=s_q[j, t]).sigmoid_()
                torch.mul(s, xs[j, t], out=xs[j + 1, t]).mul_(2)
                if j < n_r:
                    s = torch.mm(xs[j + 1, t], r[j].t(), out=s_r[j, t]).sigmoid_()
                    torch.mul(s, hs[j, t], out=hs[j + 1, t]).mul_(2)
            a = acts[t]
            if bias is None:
                torch.mm(xs[n_q, t], w_ih_t, out=a)
            else:
                torch.addmm(bias, xs[n_q, t], w_ih_t, out=a)
            a.addmm_(hs[n_r, t], w_hh_t)
            a[:, : 2 * H].sigmoid_()
            a[:, 2 * H : 3 * H].tanh_()
            a[:, 3 * H :].sigmoid_()
            i, f, g, o = a.split(H, dim=1)
            c_new = torch.addcmul(f * c, i, g, out=c_out[t])
            h_new = torch.mul(o, torch.tanh(c_new), out=out[t])
            if mask is not None:
                h, c = keep(mask[t], h_new, h), keep(mask[t], c_new, c)
                out[t].masked_fill_(~mask[t], 0.0)
            else:
                h, c = h_new, c_new
        ctx.reverse = reverse
        ctx.has_bias = b_ih is not None
        ctx.save_for_backward(mask, xs, hs, s_q, s_r, acts, c_in, c_out, q, r, w_ih, w_hh)
        return out, h.clone(), c.clone()

    @staticmethod
    def backward(ctx: Any, d_out: Tensor, d_h: Tensor, d_c: Tensor) -> tuple[Any, ...]:
        mask, xs, hs, s_q, s_r, acts, c_in, c_out, q, r, w_ih, w_hh = ctx.saved_tensors
        n_q, n_r = q.size(0), r.size(0)
        T = acts.size(0)
        H = c_in.size(2)
        d_acts = torch.empty_like(acts)
        dz_q, dz_r = torch.empty_like(s_q), torch.empty_like(s_r)  # the gradients of the rounds' arguments
        dx = torch.empty_like(xs[0])
        dh_state, dc_state = d_h, d_c
        for t in step_order(T, not ctx.reverse):
            step_mask = None if mask is None else mask[t]
            dh = dh_state + d_out[t]
            dc = dc_state
            if step_mask is not None:
                dh, dc = dh * step_mask, dc * step_mask
            i, f, g, o = acts[t].split(H, dim=1)
            di, df, dg, do = d_acts[t].split(H, dim=1)
            tc = torch.tanh(c_out[t])
            torch.mul(dh * tc, dsigmoid(o), out=do)
            dc = dc + dh * o * (1 - tc * tc)
            torch.mul(dc * g, dsigmoid(i), out=di)
            torch.mul(dc * c_in[t], dsigmoid(f), out=df)
            torch.mul(dc * i, 1 - g * g, out=dg)
            dc_prev = dc * f
            d_x = d_acts[t] @ w_ih  # dx↑
            d_hh = d_acts[t] @ w_hh  # dh↑
            for j in reversed(range(n_q)):
                if j < n_r:
                    s = s_r[j, t]
                    torch.mul(d_hh * hs[j, t], dsigmoid(s), out=dz_r[j, t]).mul_(2)
                    d_hh = d_hh * s * 2
                    d_x = d_x.addmm_(dz_r[j, t], r[j])
                s = s_q[j, t]
                torch.mul(d_x * xs[j, t], dsigmoid(s), out=dz_q[j, t]).mul_(2)
                d_x = d_x * s * 2
                d_hh = d_hh.addmm_(dz_q[j, t], q[j])
            dx[t] = d_x
            dh_state = keep(step_mask, d_hh, dh_state)
            dc_state = keep(step_mask, dc_prev, dc_state)
        need = ctx.needs_input_grad
        dq = _stacked([outer_sum(dz_q[j], hs[j]) for j in range(n_q)], q) if need[5] else None
        dr = _stacked([outer_sum(dz_r[j], xs[j + 1]) for j in range(n_r)], r) if need[6] else None
        dw_ih = outer_sum(d_acts, xs[n_q]) if need[7] else None
        dw_hh = outer_sum(d_acts, hs[n_r]) if need[8] else None
        db = d_acts.sum((0, 1)) if ctx.has_bias and (need[9] or need[10]) else None
        return None, None, dx, dh_state, dc_state, dq, dr, dw_ih, dw_hh, db, db


def _stacked(grads: list[Tensor], like: Tensor) -> Tensor:
    """The rounds' gradients as one stack shaped like ``like`` (empty when there is no round)."""
    return torch.stack(grads) if grads else torch.zeros_like(like)


def run_mogrifier(
    cell: Any, x: Tensor, state: Any, reverse: bool, mask: Tensor | None
) -> tuple[Tensor, LSTMState]:
    """The fused Mogrifier LSTM cell over ``x`` (T, B, I) from ``state`` (h, c): ``(out, (h_T, c_T))``.

    With no round (``rounds=0``), the rounds' stacks are empty and the loop is a plain LSTM's."""
    q, r = cell.round_matrices()
    out, h, c = FusedMogrifier.apply(
        reverse, mask, x, state[0], state[1], q, r, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    )
    return out, LSTMState(h, c)
