"""The LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000),
and the variants compared by Greff et al., "LSTM: A Search Space Odyssey" (2017).

Gate order and parameter layout follow torch.nn.LSTM: the gates are stacked in the rows of one
matrix in the order i, f, g, o (a variant that drops a gate drops its rows, keeping the order):

    [i; f; g; o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh        # (B, 4H)
    i = sigmoid(i + p_i * c_{t-1})          peephole terms p_* only with ``peephole=True``
    f = sigmoid(f + p_f * c_{t-1})          (Gers & Schmidhuber 2000)
    g = tanh(g)
    c_t = f * c_{t-1} + i * g
    o = sigmoid(o + p_o * c_t)
    h_t = o * tanh(c_t)                      (proj_size = 0)
    h_t = (o * tanh(c_t)) W_hr^T             (proj_size = P > 0, Sak et al. 2014)

Greff et al.'s variants, by abbreviation (``variant="CIFG"``) or by the flags they set:

    vanilla  peepholes on (the paper's baseline)          peephole=True
    NIG      no input gate: i = 1                         peephole=True, input_gate=False
    NFG      no forget gate: f = 1                        peephole=True, forget_gate=False
    NOG      no output gate: o = 1                        peephole=True, output_gate=False
    NIAF     no input activation: g = g (no tanh)         peephole=True, input_activation=False
    NOAF     no output activation: h = o * c              peephole=True, output_activation=False
    NP       no peepholes: torch.nn.LSTM's cell           (the defaults)
    CIFG     coupled input and forget gate: f = 1 - i     peephole=True, coupled=True
    FGR      full gate recurrence (see below)             peephole=True, full_gate_recurrence=True

Full gate recurrence (Greff et al.'s FGR, after the original LSTM of Hochreiter & Schmidhuber):
every sigmoid gate also reads the activations of all sigmoid gates at the previous step,
a_{t-1} = [i_{t-1}; f_{t-1}; o_{t-1}] (B, K*H), through one more recurrent matrix R (K*H, K*H):

    [i; f; o] += a_{t-1} R^T                 before the peepholes and the sigmoids

so the state becomes ``LSTMGateState(h, c, a)`` with ``a_0 = 0``. The paper's nine extra H x H
matrices R_ii, R_fi, ..., R_oo are the blocks of ``weight_gate_hh``.

Layer normalisation (Ba et al. 2016, "Layer Normalization", section 3.1; as in haste's and
pytorch fastrnns' LayerNormLSTM), with ``layer_norm=True``:

    gates = LN(x_t W_ih^T; a_ih) + LN(h_{t-1} W_hh^T; a_hh) + b_ih + b_hh
    h_t = o * tanh(LN(c_t; a_c, b_c))           c_t itself is carried un-normalised

Parameters: ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, P or H), ``bias_ih`` and ``bias_hh``
(G*H,) with G the number of gates kept (4 for torch's cell); ``weight_peephole`` (K, H), one
row per peephole gate kept among i, f, o; ``weight_gate_hh`` (K*H, K*H) for FGR; ``weight_hr``
(P, H) when ``proj_size > 0``; with layer norm the gains ``ln_ih_weight``, ``ln_hh_weight``
(G*H,) and ``ln_c_weight``, ``ln_c_bias`` (H,).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import (
    LSTMGateState,
    LSTMState,
    add_gate_parameters,
    check_state,
    check_step_input,
    record_gates,
    uniform_init_,
)
from .regularizers import RecurrentRegularizersMixin

_FLAGS = (
    "peephole",
    "input_gate",
    "forget_gate",
    "output_gate",
    "input_activation",
    "output_activation",
    "coupled",
    "full_gate_recurrence",
)
_DEFAULTS: dict[str, bool] = {
    "peephole": False,
    "input_gate": True,
    "forget_gate": True,
    "output_gate": True,
    "input_activation": True,
    "output_activation": True,
    "coupled": False,
    "full_gate_recurrence": False,
}
VARIANTS: dict[str, dict[str, bool]] = {
    "vanilla": {"peephole": True},
    "NIG": {"peephole": True, "input_gate": False},
    "NFG": {"peephole": True, "forget_gate": False},
    "NOG": {"peephole": True, "output_gate": False},
    "NIAF": {"peephole": True, "input_activation": False},
    "NOAF": {"peephole": True, "output_activation": False},
    "NP": {},
    "CIFG": {"peephole": True, "coupled": True},
    "FGR": {"peephole": True, "full_gate_recurrence": True},
}


def resolve_variant(variant: str | None, **flags: bool | None) -> dict[str, bool]:
    """The full set of flags for ``variant`` (a Greff et al. abbreviation) or explicit flags.

    A variant and explicit flags may be combined only where they agree.
    """
    resolved = dict(_DEFAULTS)
    if variant is not None:
        key = {k.lower(): k for k in VARIANTS}.get(variant.lower())
        if key is None:
            raise ValueError(f"unknown LSTM variant {variant!r}: expected one of {', '.join(VARIANTS)}")
        resolved.update(VARIANTS[key])
    for name, value in flags.items():
        if name not in _DEFAULTS:
            raise TypeError(f"unknown LSTM option {name!r}: expected one of {', '.join(_FLAGS)}")
        if value is None:
            continue
        if variant is not None and value != resolved[name]:
            raise ValueError(
                f"variant {variant!r} sets {name}={resolved[name]}, but {name}={value} was given"
            )
        resolved[name] = bool(value)
    if resolved["coupled"] and not (resolved["input_gate"] and resolved["forget_gate"]):
        raise ValueError("coupled=True (CIFG) needs both the input and the forget gate")
    return resolved


class LSTMCell(RecurrentRegularizersMixin, nn.Module):
    """One step of an LSTM, torch's cell by default, or any of Greff et al.'s variants.

    Args:
        input_size: I, features of ``x_t``.
        hidden_size: H, features of the memory cell ``c_t``.
        bias: whether to learn ``bias_ih`` and ``bias_hh``.
        proj_size: P; if > 0, ``h_t`` is projected to P features by ``weight_hr``.
        variant: a Greff et al. abbreviation (see the module docstring), or None.
        peephole, input_gate, forget_gate, output_gate, input_activation, output_activation,
        coupled, full_gate_recurrence: the variant's flags, to set one by one (None = the
            variant's or the default).
        forget_bias: if given, the forget gate's initial bias (see :meth:`init_forget_bias_`).
        layer_norm: normalise the input and recurrent gate pre-activations and, for the output,
            the cell (Ba et al. 2016; see the module docstring).
        recurrent_dropout, zoneout: probabilities, training only (:mod:`unrolled.cells.regularizers`).

    Shapes: ``x`` (B, I) or (I,); state ``LSTMState(h (B, P or H), c (B, H))``;
    returns ``(h_t, LSTMState(h_t, c_t))``. With ``full_gate_recurrence`` the state is
    ``LSTMGateState(h, c, a (B, K*H))``, ``a`` the K sigmoid gates' activations.

    Example:
        >>> cell = LSTMCell(5, 6, variant="CIFG")
        >>> h, (h_again, c) = cell(torch.randn(3, 5))
        >>> c.shape, cell.weight_ih.shape
        (torch.Size([3, 6]), torch.Size([18, 5]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        variant: str | None = None,
        peephole: bool | None = None,
        input_gate: bool | None = None,
        forget_gate: bool | None = None,
        output_gate: bool | None = None,
        input_activation: bool | None = None,
        output_activation: bool | None = None,
        coupled: bool | None = None,
        full_gate_recurrence: bool | None = None,
        forget_bias: float | None = None,
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
    ) -> None:
        super().__init__()
        if proj_size < 0 or (proj_size and proj_size >= hidden_size):
            raise ValueError(
                f"proj_size must be 0 or between 1 and hidden_size - 1 ({hidden_size - 1}); got {proj_size}"
            )
        flags = resolve_variant(
            variant,
            peephole=peephole,
            input_gate=input_gate,
            forget_gate=forget_gate,
            output_gate=output_gate,
            input_activation=input_activation,
            output_activation=output_activation,
            coupled=coupled,
            full_gate_recurrence=full_gate_recurrence,
        )
        self.variant = variant
        self.flags = flags
        for name, value in flags.items():
            setattr(self, name, value)
        # rows of the stacked matrices, in torch's order; CIFG computes f from i
        self.gate_names: tuple[str, ...] = tuple(
            g
            for g, kept in (
                ("i", self.input_gate),
                ("f", self.forget_gate and not self.coupled),
                ("g", True),
                ("o", self.output_gate),
            )
            if kept
        )
        # the sigmoid gates with rows of their own: what peepholes and FGR connect to
        self.sigmoid_names: tuple[str, ...] = tuple(g for g in self.gate_names if g != "g")
        self.peephole_names: tuple[str, ...] = self.sigmoid_names if self.peephole else ()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.proj_size = proj_size
        self.output_size = proj_size or hidden_size
        self.bias = bias
        R = self.output_size  # the recurrent input is h: P wide with a projection, else H
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        add_gate_parameters(self, len(self.gate_names), input_size, hidden_size, bias, recurrent_size=R, **kw)
        if self.peephole_names:
            self.weight_peephole = nn.Parameter(torch.empty(len(self.peephole_names), hidden_size, **kw))
        else:
            self.register_parameter("weight_peephole", None)
        if self.full_gate_recurrence:
            K = len(self.sigmoid_names) * hidden_size
            self.weight_gate_hh = nn.Parameter(torch.empty(K, K, **kw))
        else:
            self.register_parameter("weight_gate_hh", None)
        if proj_size:
            self.weight_hr = nn.Parameter(torch.empty(proj_size, hidden_size, **kw))
        else:
            self.register_parameter("weight_hr", None)
        self.layer_norm = layer_norm
        self._init_regularizers(recurrent_dropout, zoneout)
        if layer_norm:  # gains for LN(x W_ih^T) and LN(h W_hh^T); gain and shift for LN(c_t)
            G = len(self.gate_names) * hidden_size
            self.ln_ih_weight = nn.Parameter(torch.empty(G, **kw))
            self.ln_hh_weight = nn.Parameter(torch.empty(G, **kw))
            self.ln_c_weight = nn.Parameter(torch.empty(hidden_size, **kw))
            self.ln_c_bias = nn.Parameter(torch.empty(hidden_size, **kw))
        else:
            for name in ("ln_ih_weight", "ln_hh_weight", "ln_c_weight", "ln_c_bias"):
                self.register_parameter(name, None)
        uniform_init_(self, hidden_size)
        if layer_norm:
            with torch.no_grad():
                for p in (self.ln_ih_weight, self.ln_hh_weight, self.ln_c_weight):
                    p.fill_(1.0)
                self.ln_c_bias.zero_()
        if forget_bias is not None:
            self.init_forget_bias_(forget_bias)

    def init_forget_bias_(self, value: float) -> None:
        """Start the forget gate's bias at ``value`` (Jozefowicz et al. 2015 recommend 1.0).

        ``bias_ih``'s forget rows are set to ``value`` and ``bias_hh``'s to 0, so that the gate's
        total bias is ``value``: early in training the cell then keeps what it holds.
        """
        if "f" not in self.gate_names or self.bias_ih is None:
            raise ValueError(
                "forget_bias needs a forget gate of its own and bias=True "
                f"(this cell has gates {''.join(self.gate_names)}, bias={self.bias})"
            )
        k, H = self.gate_names.index("f"), self.hidden_size
        with torch.no_grad():
            self.bias_ih[k * H : (k + 1) * H].fill_(value)
            self.bias_hh[k * H : (k + 1) * H].zero_()

    def init_state(
        self, batch: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> LSTMState | LSTMGateState:
        """Zero state: h (batch, P or H), c (batch, H) and, with FGR, a (batch, K*H)."""
        h = self.weight_hh.new_zeros(batch, self.output_size, device=device, dtype=dtype)
        c = self.weight_hh.new_zeros(batch, self.hidden_size, device=device, dtype=dtype)
        if self.weight_gate_hh is None:
            return LSTMState(h, c)
        return LSTMGateState(h, c, c.new_zeros(batch, self.weight_gate_hh.size(0)))

    def forward(
        self, x: Tensor, state: tuple[Tensor, ...] | None = None
    ) -> tuple[Tensor, LSTMState | LSTMGateState]:
        check_step_input(x, self.input_size)
        unbatched = x.dim() == 1
        fgr = self.weight_gate_hh is not None
        if unbatched:
            x = x.unsqueeze(0)
            if state is not None:
                state = tuple(s.unsqueeze(0) for s in state)
        B = x.size(0)
        if state is None:
            state = self.init_state(B, dtype=x.dtype)
        n_parts = 3 if fgr else 2
        if len(state) != n_parts:
            raise ValueError(
                f"this LSTM cell's state is {'(h, c, a)' if fgr else '(h, c)'}: expected {n_parts} "
                f"tensors, got {len(state)}"
            )
        h, c = state[0], state[1]
        check_state(h, (B, self.output_size), "hx")
        check_state(c, (B, self.hidden_size), "cx")
        if fgr:
            check_state(state[2], (B, self.weight_gate_hh.size(0)), "gate state")

        h_prev, c_prev = h, c
        h = self._recurrent_input(h)  # variational recurrent dropout (training only)
        if self.layer_norm:  # biases after normalisation, so that they still set the gates' offsets
            G = self.ln_ih_weight.numel()
            gates = F.layer_norm(F.linear(x, self.weight_ih), (G,), self.ln_ih_weight) + F.layer_norm(
                F.linear(h, self.weight_hh), (G,), self.ln_hh_weight
            )
            if self.bias_ih is not None:
                gates = gates + self.bias_ih + self.bias_hh
        else:
            gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)
        pre = dict(zip(self.gate_names, gates.chunk(len(self.gate_names), dim=1), strict=True))  # (B, H) each
        if fgr:  # the gates read all gates' previous activations
            recurrent = F.linear(state[2], self.weight_gate_hh).chunk(len(self.sigmoid_names), dim=1)
            pre |= {g: pre[g] + r for g, r in zip(self.sigmoid_names, recurrent, strict=True)}
        peep = (
            {}
            if self.weight_peephole is None
            else dict(zip(self.peephole_names, self.weight_peephole.unbind(0), strict=True))
        )
        i = torch.sigmoid(pre["i"] + peep["i"] * c if "i" in peep else pre["i"]) if "i" in pre else None
        if self.coupled:
            f = 1 - i
        else:
            f = torch.sigmoid(pre["f"] + peep["f"] * c if "f" in peep else pre["f"]) if "f" in pre else None
        g = torch.tanh(pre["g"]) if self.input_activation else pre["g"]
        ig = g if i is None else i * g
        c = ig + (c if f is None else f * c)
        c_out = (
            F.layer_norm(c, (self.hidden_size,), self.ln_c_weight, self.ln_c_bias) if self.layer_norm else c
        )
        h = torch.tanh(c_out) if self.output_activation else c_out
        o = torch.sigmoid(pre["o"] + peep["o"] * c if "o" in peep else pre["o"]) if "o" in pre else None
        record_gates(self, i=i, f=f, o=o, g=g)
        if o is not None:
            h = o * h
        if self.weight_hr is not None:
            h = F.linear(h, self.weight_hr)  # (B, P)
        if self.zoneout:  # zoneout on both h and c (Krueger et al. 2017)
            h, c = self._zone(h_prev, h, self.zoneout), self._zone(c_prev, c, self.zoneout)
        new: LSTMState | LSTMGateState
        if fgr:
            act = {"i": i, "f": f, "o": o}
            new = LSTMGateState(h, c, torch.cat([act[g] for g in self.sigmoid_names], dim=1))
        else:
            new = LSTMState(h, c)
        if unbatched:
            new = new._make(s.squeeze(0) for s in new)
        return new.h, new

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.layer_norm:
            s += ", layer_norm=True"
        if self.variant is not None:
            s += f", variant={self.variant!r}"
        else:
            s += "".join(f", {k}={v}" for k, v in self.flags.items() if v != _DEFAULTS[k])
        return s
