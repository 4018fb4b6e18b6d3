"""The LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

Gate order and parameter layout follow torch.nn.LSTM (the four gates stacked in the rows of
one matrix, in the order i, f, g, o):

    [i; f; g; o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh        # (B, 4H)
    i = sigmoid(i),  f = sigmoid(f),  g = tanh(g),  o = sigmoid(o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)                      (proj_size = 0)
    h_t = (o * tanh(c_t)) W_hr^T             (proj_size = P > 0, Sak et al. 2014)

Parameters: ``weight_ih`` (4H, I), ``weight_hh`` (4H, P or H), ``bias_ih`` and ``bias_hh``
(4H,), and ``weight_hr`` (P, H) when ``proj_size > 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import LSTMState, add_gate_parameters, check_state, check_step_input, uniform_init_


class LSTMCell(nn.Module):
    """One step of an LSTM.

    Args:
        input_size: I, features of ``x_t``.
        hidden_size: H, features of the memory cell ``c_t``.
        bias: whether to learn ``bias_ih`` and ``bias_hh``.
        proj_size: P; if > 0, ``h_t`` is projected to P features by ``weight_hr``.

    Shapes: ``x`` (B, I) or (I,); state ``LSTMState(h (B, P or H), c (B, H))``;
    returns ``(h_t, LSTMState(h_t, c_t))``.

    Example:
        >>> cell = LSTMCell(5, 6)
        >>> h, (h_again, c) = cell(torch.randn(3, 5))
        >>> c.shape
        torch.Size([3, 6])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if proj_size < 0 or (proj_size and proj_size >= hidden_size):
            raise ValueError(
                f"proj_size must be 0 or between 1 and hidden_size - 1 ({hidden_size - 1}); got {proj_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.proj_size = proj_size
        self.output_size = proj_size or hidden_size
        self.bias = bias
        R = self.output_size  # the recurrent input is h: P wide with a projection, else H
        kw = {"device": device, "dtype": dtype}
        add_gate_parameters(self, 4, input_size, hidden_size, bias, recurrent_size=R, **kw)
        if proj_size:
            self.weight_hr = nn.Parameter(torch.empty(proj_size, hidden_size, **kw))
        else:
            self.register_parameter("weight_hr", None)
        uniform_init_(self, hidden_size)

    def init_state(
        self, batch: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> LSTMState:
        """Zero state: h (batch, P or H), c (batch, H)."""
        h = self.weight_hh.new_zeros(batch, self.output_size, device=device, dtype=dtype)
        c = self.weight_hh.new_zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return LSTMState(h, c)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, LSTMState]:
        check_step_input(x, self.input_size)
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
            if state is not None:
                state = LSTMState(state[0].unsqueeze(0), state[1].unsqueeze(0))
        B = x.size(0)
        if state is None:
            state = self.init_state(B, dtype=x.dtype)
        h, c = state
        check_state(h, (B, self.output_size), "hx")
        check_state(c, (B, self.hidden_size), "cx")

        gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)
        i, f, g, o = gates.chunk(4, dim=1)  # each (B, H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if self.weight_hr is not None:
            h = F.linear(h, self.weight_hr)  # (B, P)
        if unbatched:
            h, c = h.squeeze(0), c.squeeze(0)
        return h, LSTMState(h, c)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s
