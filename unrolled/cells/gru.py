"""The gated recurrent unit (Cho et al. 2014), in both of its published forms.

Gate order and parameter layout follow torch.nn.GRU (rows stacked r, z, n):

    r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
    z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))       reset_after=True  (torch, cuDNN)
    n = tanh(x W_in^T + b_in + (r * h) W_hn^T + b_hn)       reset_after=False (Cho et al., d2l)
    h_t = (1 - z) * n + z * h_{t-1}

The two forms differ only in where the reset gate acts: after the recurrent matmul (so all
three recurrent products come from one GEMM) or on ``h`` before it, as in the original paper
and the lecture notes. Parameters: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H),
``bias_ih`` and ``bias_hh`` (3H,).

With ``layer_norm=True`` (Ba et al. 2016) every product is layer-normalised before its bias:
LN(x W_ih^T; a_ih) for all three gates; LN(h W_hh^T; a_hh) over all three (reset_after) or,
reset before, LN over the r, z rows of h W_hh^T and separately LN((r * h) W_hn^T). The gains
``ln_ih_weight`` and ``ln_hh_weight`` (3H,) start at 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import (
    TensorStateMixin,
    add_gate_parameters,
    record_gates,
    tensor_state_step_input,
    uniform_init_,
)
from .regularizers import RecurrentRegularizersMixin


class GRUCell(RecurrentRegularizersMixin, TensorStateMixin, nn.Module):
    """One step of a GRU.

    Args:
        input_size: I, features of ``x_t``.
        hidden_size: H, features of ``h_t``.
        bias: whether to learn ``bias_ih`` and ``bias_hh``.
        reset_after: ``True`` for torch's form, ``False`` for the form of Cho et al. / d2l.
        layer_norm: layer-normalise the gate products (see the module docstring).
        recurrent_dropout, zoneout: probabilities, training only (:mod:`unrolled.cells.regularizers`).

    Shapes: ``x`` (B, I) or (I,); ``h`` (B, H) or (H,); returns ``(h_t, h_t)``.

    Example:
        >>> cell = GRUCell(5, 6, reset_after=False)
        >>> h, _ = cell(torch.randn(3, 5))
        >>> h.shape
        torch.Size([3, 6])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        reset_after: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.reset_after = reset_after
        self.layer_norm = layer_norm
        self._init_regularizers(recurrent_dropout, zoneout)
        add_gate_parameters(self, 3, input_size, hidden_size, bias, device=device, dtype=dtype)
        for name in ("ln_ih_weight", "ln_hh_weight"):  # gains of LN(x W_ih^T) and of the recurrent products
            gain = (
                nn.Parameter(torch.ones(3 * hidden_size, device=device, dtype=dtype)) if layer_norm else None
            )
            self.register_parameter(name, gain)
        uniform_init_(self, hidden_size, skip=("ln_ih_weight", "ln_hh_weight"))

    @staticmethod
    def _project(v: Tensor, weight: Tensor, bias: Tensor | None, gain: Tensor | None) -> Tensor:
        """``v weight^T + bias``, layer-normalised (before the bias) when a ``gain`` is given."""
        if gain is None:
            return F.linear(v, weight, bias)
        out = F.layer_norm(F.linear(v, weight), (weight.size(0),), gain)
        return out if bias is None else out + bias

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, h, unbatched = tensor_state_step_input(self, x, state)
        H = self.hidden_size
        hd = self._recurrent_input(h)  # enters the products; the carried h is not masked
        xr, xz, xn = self._project(x, self.weight_ih, self.bias_ih, self.ln_ih_weight).chunk(3, dim=1)
        if self.reset_after:
            hr, hz, hn = self._project(hd, self.weight_hh, self.bias_hh, self.ln_hh_weight).chunk(3, dim=1)
            r = torch.sigmoid(xr + hr)
            z = torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
        else:
            # r and z from the first 2H rows; the candidate sees r * h before its matmul.
            rz, cand = slice(0, 2 * H), slice(2 * H, 3 * H)
            b, g = self.bias_hh, self.ln_hh_weight
            hr, hz = self._project(
                hd, self.weight_hh[rz], None if b is None else b[rz], None if g is None else g[rz]
            ).chunk(2, dim=1)
            r = torch.sigmoid(xr + hr)
            z = torch.sigmoid(xz + hz)
            hn = self._project(
                r * hd, self.weight_hh[cand], None if b is None else b[cand], None if g is None else g[cand]
            )
            n = torch.tanh(xn + hn)
        record_gates(self, r=r, z=z, n=n)
        h = self._zone(h, n + z * (h - n), self.zoneout)  # n + z (h - n) == (1 - z) n + z h
        if unbatched:
            h = h.squeeze(0)
        return h, h

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if not self.reset_after:
            s += ", reset_after=False"
        if self.layer_norm:
            s += ", layer_norm=True"
        return s
