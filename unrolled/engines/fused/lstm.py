"""Fused LSTM family: torch's cell and Greff et al.'s variants (peepholes, missing gates, no
activations, CIFG, FGR) and projections, with a hand-derived BPTT backward.

Per step, with the gates stacked in the cell's order (a subset of i, f, g, o) and the sigmoid
gates s in {i, f, o} reading peepholes p_s and, for FGR, the previous activations a through R:

    A_t = P_t + h_{t-1} W_hh^T (+ a_{t-1} R^T on the sigmoid rows)
    i = σ(A_i + p_i c_{t-1}),  f = σ(A_f + p_f c_{t-1}) (or 1 - i, or 1),  g = tanh(A_g) (or A_g)
    c_t = f c_{t-1} + i g,     o = σ(A_o + p_o c_t),    y = tanh(c_t) (or c_t)
    m_t = o y,                 h_t = m_t (or m_t W_hr^T)

and backward, from dh_t (output and future) and dc_t (future):

    dm = dh W_hr (or dh);  dA_o = dm y σ'(o) (+ da_o σ');  dc = dc_t + dm o y' + dA_o p_o
    dA_g = dc i g';  dA_i = dc (g - c_{t-1} if coupled else g) σ';  dA_f = dc c_{t-1} σ'
    dc_{t-1} = dc f + dA_i p_i + dA_f p_f;  dh_{t-1} = dA W_hh;  da_{t-1} = dA_sig R

The cell's step options (see :mod:`.common`): with layer norm, ``A_t = LN(P_t) +
LN(h_{t-1} W_hh^T) + b`` (the first term and b added before the loop, over all steps) and
``y = tanh(LN(c_t))``, so that ``dA`` passes through the recurrent LN's backward before
``W_hh`` and ``dy y'`` through the cell LN's before it reaches dc; recurrent dropout masks the
``h_{t-1}`` of the GEMM; zoneout carries ``h_t = h_new + k_h (h_{t-1} - h_new)`` (and c
likewise), so ``dh_new = dh (1 - k_h)`` and ``dh_{t-1}`` gains ``dh k_h``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .arena import inference, reusing, scratch
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


class LSTMSpec(NamedTuple):
    """The static shape of one LSTM variant."""

    gates: tuple[str, ...]  # rows of the stacked matrices, e.g. ("i", "f", "g", "o")
    sigmoid: tuple[str, ...]  # the sigmoid gates with rows of their own, in order
    peephole: bool
    coupled: bool
    input_activation: bool
    output_activation: bool


def lstm_spec(cell: Any) -> LSTMSpec:
    return LSTMSpec(
        cell.gate_names,
        cell.sigmoid_names,
        cell.peephole,
        cell.coupled,
        cell.input_activation,
        cell.output_activation,
    )


class FusedLSTM(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        steps: Any,
        spec: LSTMSpec,
        reverse: bool,
        mask: Tensor | None,
        noise: StepNoise,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        a0: Tensor,
        w_ih: Tensor | None,
        w_hh: Tensor,
        b_ih: Tensor | None,
        b_hh: Tensor | None,
        w_peep: Tensor | None,
        w_hr: Tensor | None,
        w_gate: Tensor | None,
        ln_hh: Tensor | None,
        ln_c_w: Tensor | None,
        ln_c_b: Tensor | None,
        ln_ih: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        T, B, _ = x.shape
        G, H = len(spec.gates), c0.size(1)
        R = h0.size(1)
        bias = None if b_ih is None else b_ih + b_hh
        steps = steps or STEPS  # Python, or the compiled engine's C++ (unrolled.engines.compiled)
        # the C++ loop adds the bias to each step's row, sparing the projection a pass over P
        loop_bias = (
            (bias,) if bias is not None and ln_ih is None and getattr(steps, "adds_bias", False) else ()
        )
        # every buffer but the output is scratch: reused across calls in inference (see .arena)
        if ln_ih is None:  # (T, B, G*H), overwritten in place with the gates
            acts = input_projection(
                x, w_ih, None if loop_bias else bias, out=scratch("acts", (T, B, G * H), x)
            )
            ih_stats = None
        else:  # x is x W_ih^T: LN(x) ln_ih + b
            acts, *ih_stats = norm(x, ln_ih, bias)
        h_in, c_in = scratch("h_in", (T, B, R), x), scratch("c_in", (T, B, H), x)
        c_out = scratch("c_out", (T, B, H), x)
        m_all = scratch("m_all", (T, B, H), x) if w_hr is not None else None
        a_in = scratch("a_in", (T, B, a0.size(1)), x) if w_gate is not None else None
        out = x.new_empty(T, B, R)
        q_raw = scratch("q_raw", (T, B, G * H), x) if ln_hh is not None else None  # h W_hh^T before its LN
        c_norm = scratch("c_norm", (T, B, H), x) if ln_c_w is not None else None  # LN(c_t)
        stats = scratch("stats", (4, T, B, 1), x)  # mean and rstd of the recurrent LN, then of the cell LN
        h, c, a = steps.forward(
            spec, reverse, mask, noise, acts, h0, c0, a0, w_hh, w_peep, w_hr, w_gate, ln_hh, ln_c_w, ln_c_b,
            h_in, c_in, c_out, m_all, a_in, out, q_raw, c_norm, stats, *loop_bias,
        )  # fmt: skip
        ctx.steps = steps
        ctx.spec, ctx.reverse, ctx.noise = spec, reverse, noise
        ctx.save_for_backward(
            mask, x, h_in, c_in, c_out, acts, m_all, a_in, w_ih, w_hh, b_ih, w_peep, w_hr, w_gate
        )
        ctx.layer_norm = (q_raw, c_norm, stats, ln_hh, ln_c_w, ln_ih, ih_stats, bias)
        return out, h, c, a

    @staticmethod
    def backward(ctx: Any, d_out: Tensor, d_h: Tensor, d_c: Tensor, d_a: Tensor) -> tuple[Any, ...]:
        spec: LSTMSpec = ctx.spec
        mask, x, h_in, c_in, c_out, acts, m_all, a_in, w_ih, w_hh, b_ih, w_peep, w_hr, w_gate = (
            ctx.saved_tensors
        )
        T, B, _ = x.shape
        G, H = len(spec.gates), c_in.size(2)
        col = {name: j for j, name in enumerate(spec.gates)}
        sig_cols = [col[s] for s in spec.sigmoid]
        q_raw, c_norm, stats, ln_hh, ln_c_w, ln_ih, ih_stats, bias = ctx.layer_norm
        d_pre = torch.empty_like(acts)
        d_q = torch.empty_like(acts) if q_raw is not None else d_pre  # d(h W_hh^T) before its LN
        dh_all = torch.empty_like(d_out) if w_hr is not None else None
        dh_state, dc_state, da_state, d_ln_hh, d_ln_c_w, d_ln_c_b = ctx.steps.backward(
            spec, ctx.reverse, mask, ctx.noise, acts, d_out, d_h, d_c, d_a, c_in, c_out, w_hh, w_peep, w_hr,
            w_gate, ln_hh, ln_c_w, q_raw, c_norm, stats, d_pre, d_q, dh_all,
        )  # fmt: skip
        need = ctx.needs_input_grad
        if ln_ih is None:
            dx, dw_ih, db = input_grads(d_pre, x, w_ih, need[5], need[9], b_ih is not None)
            d_ln_ih = None
        else:
            dx, d_ln_ih, db = norm_grads(d_pre, x, *ih_stats, ln_ih, bias, [need[5], need[19], True])
            dw_ih = None
        dw_hh = outer_sum(d_q, h_in) if need[10] else None
        d_peep = None
        if w_peep is not None:
            dv_all = d_pre.view(T, B, G, H)
            d_peep = torch.stack(
                [(dv_all[:, :, col[s]] * (c_out if s == "o" else c_in)).sum((0, 1)) for s in spec.sigmoid]
            )
        dw_hr = outer_sum(dh_all, m_all) if dh_all is not None else None
        dw_gate = None
        if w_gate is not None:
            dw_gate = outer_sum(d_pre.view(T, B, G, H)[:, :, sig_cols].reshape(T, B, -1), a_in)
        return (
            None,
            None,
            None,
            None,
            None,
            dx,
            dh_state,
            dc_state,
            da_state,
            dw_ih,
            dw_hh,
            db,
            db,
            d_peep,
            dw_hr,
            dw_gate,
            d_ln_hh,
            d_ln_c_w,
            d_ln_c_b,
            d_ln_ih,
        )


def _forward_steps(
    spec: LSTMSpec,
    reverse: bool,
    mask: Tensor | None,
    noise: StepNoise,
    acts: Tensor,
    h0: Tensor,
    c0: Tensor,
    a0: Tensor,
    w_hh: Tensor,
    w_peep: Tensor | None,
    w_hr: Tensor | None,
    w_gate: Tensor | None,
    ln_hh: Tensor | None,
    ln_c_w: Tensor | None,
    ln_c_b: Tensor | None,
    h_in: Tensor,
    c_in: Tensor,
    c_out: Tensor,
    m_all: Tensor | None,
    a_in: Tensor | None,
    out: Tensor,
    q_raw: Tensor | None,
    c_norm: Tensor | None,
    stats: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """The forward time loop in Python: overwrites ``acts`` with the gates, fills the saved
    buffers and returns the final ``(h, c, a)``."""
    T, B, _ = acts.shape
    G, H = len(spec.gates), c0.size(1)
    col = {name: j for j, name in enumerate(spec.gates)}
    sig_cols = [col[s] for s in spec.sigmoid]
    peep = dict(zip(spec.sigmoid, w_peep, strict=True)) if spec.peephole else {}
    drop, zone = noise
    w_hh_t = w_hh.t()
    h, c, a = h0, c0, a0
    for t in step_order(T, reverse):
        c_in[t] = c
        h_in[t] = h if drop is None else h * drop
        if q_raw is None:
            pre = acts[t].addmm_(h_in[t], w_hh_t)  # (B, G*H): the step's one recurrent GEMM
        else:
            q, stats[0, t], stats[1, t] = norm(torch.mm(h_in[t], w_hh_t, out=q_raw[t]), ln_hh)
            pre = acts[t].add_(q)
        v = pre.view(B, G, H)
        if a_in is not None:
            a_in[t] = a
            ga = (a @ w_gate.t()).view(B, len(sig_cols), H)
            for k, j in enumerate(sig_cols):  # one gate at a time: no index tensor (CUDA graphs)
                v[:, j] += ga[:, k]
        gi = _gate(v, col, "i", peep, c)
        gf = _gate(v, col, "f", peep, c)
        gg = v[:, col["g"]]
        if spec.input_activation:
            gg.tanh_()
        ig = gg if gi is None else gi * gg
        if spec.coupled:
            c_new = torch.addcmul(ig, 1 - gi, c)
        elif gf is not None:
            c_new = torch.addcmul(ig, gf, c)
        else:
            c_new = c + ig
        go = _gate(v, col, "o", peep, c_new)
        if c_norm is None:
            y = c_new
        else:
            y, stats[2, t], stats[3, t] = norm(c_new, ln_c_w, ln_c_b)
            c_norm[t] = y
        if spec.output_activation:
            y = torch.tanh(y)
        m = y if go is None else go * y
        h_new = m if w_hr is None else m @ w_hr.t()
        if m_all is not None:
            m_all[t] = m
        c_out[t] = c_new
        if zone is not None:  # zoneout: each unit keeps its previous value where its mask is 1
            h_new = torch.addcmul(h_new, zone[0][t], h - h_new)
            c_new = torch.addcmul(c_new, zone[1][t], c - c_new)
        step_mask = None if mask is None else mask[t]
        h, c = emit(out, t, step_mask, h_new, h), keep(step_mask, c_new, c)
        if a_in is not None:
            a = keep(step_mask, _rows(v, sig_cols), a)
    return h, c, a


def _backward_steps(
    spec: LSTMSpec,
    reverse: bool,
    mask: Tensor | None,
    noise: StepNoise,
    acts: Tensor,
    d_out: Tensor,
    d_h: Tensor,
    d_c: Tensor,
    d_a: Tensor,
    c_in: Tensor,
    c_out: Tensor,
    w_hh: Tensor,
    w_peep: Tensor | None,
    w_hr: Tensor | None,
    w_gate: Tensor | None,
    ln_hh: Tensor | None,
    ln_c_w: Tensor | None,
    q_raw: Tensor | None,
    c_norm: Tensor | None,
    stats: Tensor,
    d_pre: Tensor,
    d_q: Tensor,
    dh_all: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """The backward time loop in Python: fills ``d_pre`` (and ``d_q``, ``dh_all`` where used)
    and returns the gradients of the initial ``(h, c, a)`` and of the layer norms' gains and
    cell-LN bias (None where off)."""
    T, B, _ = acts.shape
    G, H = len(spec.gates), c_in.size(2)
    col = {name: j for j, name in enumerate(spec.gates)}
    sig_cols = [col[s] for s in spec.sigmoid]
    peep = dict(zip(spec.sigmoid, w_peep, strict=True)) if spec.peephole else {}
    drop, zone = noise
    d_cn = torch.empty_like(c_out) if c_norm is not None else None  # d LN(c_t)
    dh_state, dc_state, da_state = d_h, d_c, d_a
    for t in step_order(T, not reverse):
        step_mask = None if mask is None else mask[t]
        dh, dc = dh_state + d_out[t], dc_state
        da = da_state if w_gate is not None else None
        if step_mask is not None:  # rows past their end: no gradient through this step
            dh, dc = dh * step_mask, dc * step_mask
            da = None if da is None else da * step_mask
        if zone is not None:  # the part of dh, dc that reaches the kept previous units
            dh_kept, dc_kept = dh * zone[0][t], dc * zone[1][t]
            dh, dc = dh - dh_kept, dc - dc_kept
        if dh_all is not None:
            dh_all[t] = dh
        dm = dh if w_hr is None else dh @ w_hr
        v, dv = acts[t].view(B, G, H), d_pre[t].view(B, G, H)
        da_gate = {} if da is None else dict(zip(spec.sigmoid, da.view(B, -1, H).unbind(1), strict=True))
        c_new, c_prev = c_out[t], c_in[t]
        y = c_new if c_norm is None else c_norm[t]
        if spec.output_activation:
            y = torch.tanh(y)
        if "o" in col:
            go = v[:, col["o"]]
            do = dm * y
            if "o" in da_gate:
                do = do + da_gate["o"]
            dpo = torch.mul(do, dsigmoid(go), out=dv[:, col["o"]])
            dy = dm * go
        else:
            dy = dm
        dy = dy * (1 - y * y) if spec.output_activation else dy
        if d_cn is not None:
            d_cn[t] = dy
            dy = norm_grad(dy, c_new, stats[2, t], stats[3, t], ln_c_w)
        dc = dc + dy
        if "o" in peep:
            dc = dc + dpo * peep["o"]
        gg = v[:, col["g"]]
        gi = v[:, col["i"]] if "i" in col else None
        dg = dc if gi is None else dc * gi
        if spec.input_activation:
            torch.mul(dg, 1 - gg * gg, out=dv[:, col["g"]])
        else:
            dv[:, col["g"]] = dg
        dc_prev = dc
        if gi is not None:
            di = dc * (gg - c_prev) if spec.coupled else dc * gg
            if "i" in da_gate:
                di = di + da_gate["i"]
            dpi = torch.mul(di, dsigmoid(gi), out=dv[:, col["i"]])
            if spec.coupled:
                dc_prev = dc * (1 - gi)
        if "f" in col:
            gf = v[:, col["f"]]
            df = dc * c_prev
            if "f" in da_gate:
                df = df + da_gate["f"]
            dpf = torch.mul(df, dsigmoid(gf), out=dv[:, col["f"]])
            dc_prev = dc * gf
        if "i" in peep:
            dc_prev = dc_prev + dpi * peep["i"]
        if "f" in peep:
            dc_prev = dc_prev + dpf * peep["f"]
        if q_raw is not None:
            d_q[t] = norm_grad(d_pre[t], q_raw[t], stats[0, t], stats[1, t], ln_hh)
        dh_prev = d_q[t] @ w_hh
        if drop is not None:
            dh_prev *= drop
        if zone is not None:
            dh_prev += dh_kept
            dc_prev = dc_prev + dc_kept
        dh_state, dc_state = keep(step_mask, dh_prev, dh_state), keep(step_mask, dc_prev, dc_state)
        if w_gate is not None:
            da_prev = _rows(dv, sig_cols) @ w_gate
            da_state = keep(step_mask, da_prev, da_state)
    d_ln_hh = d_ln_c_w = d_ln_c_b = None
    if q_raw is not None:
        d_ln_hh = norm_gain_grad(d_pre, q_raw, stats[0], stats[1])
    if d_cn is not None:
        d_ln_c_w = norm_gain_grad(d_cn, c_out, stats[2], stats[3])
        d_ln_c_b = d_cn.sum((0, 1))
    return dh_state, dc_state, da_state, d_ln_hh, d_ln_c_w, d_ln_c_b


def _gate(v: Tensor, col: dict[str, int], name: str, peep: dict[str, Tensor], c: Tensor) -> Tensor | None:
    """Sigmoid gate ``name`` in place in ``v`` (B, G, H), with its peephole on ``c``; None if absent."""
    if name not in col:
        return None
    gate = v[:, col[name]]
    if name in peep:
        gate.addcmul_(peep[name], c)
    return gate.sigmoid_()


def _rows(v: Tensor, cols: list[int]) -> Tensor:
    """The gate blocks ``cols`` of ``v`` (B, G, H) side by side, (B, len(cols) * H): by integer
    indices, not a list (whose index tensor a CUDA graph cannot copy to the device)."""
    return torch.cat([v[:, j] for j in cols], 1)


STEPS = SimpleNamespace(forward=_forward_steps, backward=_backward_steps)  # the Python time loops


def run_lstm(
    cell: Any, x: Tensor, state: Any, reverse: bool, mask: Tensor | None, steps: Any = None
) -> tuple[Tensor, Any]:
    fgr = cell.weight_gate_hh is not None
    a0 = state[2] if fgr else x.new_zeros(x.size(1), 0)
    noise = draw_noise(cell, x, state[0], reverse, (state[0].size(1), state[1].size(1)))
    w_ih, b_ih, b_hh = cell.weight_ih, cell.bias_ih, cell.bias_hh
    if cell.layer_norm:  # x W_ih^T for all steps, differentiated by autograd; its LN and biases inside
        x, w_ih = F.linear(x, w_ih), None
    weights = (w_ih, cell.weight_hh, b_ih, b_hh, cell.weight_peephole, cell.weight_hr, cell.weight_gate_hh)
    norms = (cell.ln_hh_weight, cell.ln_c_weight, cell.ln_c_bias, cell.ln_ih_weight)
    # the C++ loops return fresh states, so with them nothing returned is scratch
    with reusing(steps is not None and inference((x, *state, a0, *weights, *norms))):
        out, h, c, a = FusedLSTM.apply(
            steps,
            lstm_spec(cell),
            reverse,
            mask,
            noise,
            x,
            state[0],
            state[1],
            a0,
            w_ih,
            cell.weight_hh,
            b_ih,
            b_hh,
            cell.weight_peephole,
            cell.weight_hr,
            cell.weight_gate_hh,
            cell.ln_hh_weight,
            cell.ln_c_weight,
            cell.ln_c_bias,
            cell.ln_ih_weight,
        )
    return out, (state._make((h, c, a)) if fgr else state._make((h, c)))
