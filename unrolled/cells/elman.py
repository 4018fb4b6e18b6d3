"""The Elman RNN cell (Elman 1990), the recurrence every other cell refines.

    h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),   act = tanh or relu

Parameters use torch.nn.RNNCell's names and shapes: ``weight_ih`` (H, I), ``weight_hh`` (H, H),
``bias_ih`` (H,), ``bias_hh`` (H,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import TensorStateMixin, add_gate_parameters, tensor_state_step_input, uniform_init_

_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


class RNNCell(TensorStateMixin, nn.Module):
    """One step of an Elman RNN.

    Args:
        input_size: I, features of ``x_t``.
        hidden_size: H, features of ``h_t``.
        bias: whether to learn ``bias_ih`` and ``bias_hh``.
        nonlinearity: ``"tanh"`` or ``"relu"``.

    Shapes: ``x`` (B, I) or (I,); ``h`` (B, H) or (H,); returns ``(h_t, h_t)``.

    Example:
        >>> cell = RNNCell(5, 6)
        >>> h, state = cell(torch.randn(3, 5))
        >>> h.shape
        torch.Size([3, 6])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if nonlinearity not in _ACTIVATIONS:
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}: expected one of {sorted(_ACTIVATIONS)}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.nonlinearity = nonlinearity
        add_gate_parameters(self, 1, input_size, hidden_size, bias, device=device, dtype=dtype)
        uniform_init_(self, hidden_size)

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, state, unbatched = tensor_state_step_input(self, x, state)
        act = _ACTIVATIONS[self.nonlinearity]
        h = act(F.linear(x, self.weight_ih, self.bias_ih) + F.linear(state, self.weight_hh, self.bias_hh))
        if unbatched:
            h = h.squeeze(0)
        return h, h

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s
