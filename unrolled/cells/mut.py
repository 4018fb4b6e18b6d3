"""MUT1, MUT2 and MUT3: the three architectures that Jozefowicz, Zaremba & Sutskever (2015, "An
Empirical Exploration of Recurrent Network Architectures") found by mutating the GRU.

    MUT1:  z = sigmoid(W_xz x + b_z)
           r = sigmoid(W_xr x + W_hr h + b_r)
           h' = tanh(W_hh (r * h) + tanh(x) + b_h) * z + h * (1 - z)

    MUT2:  z = sigmoid(W_xz x + W_hz h + b_z)
           r = sigmoid(x + W_hr h + b_r)
           h' = tanh(W_hh (r * h) + W_xh x + b_h) * z + h * (1 - z)

    MUT3:  z = sigmoid(W_xz x + W_hz tanh(h) + b_z)
           r = sigmoid(W_xr x + W_hr h + b_r)
           h' = tanh(W_hh (r * h) + W_xh x + b_h) * z + h * (1 - z)

MUT1's ``tanh(x)`` and MUT2's ``x`` add the input itself, which needs I = H (the paper fed
embeddings of the hidden size). When I != H, for example in a second, bidirectional layer,
those terms use a learned projection ``W x`` instead: ``tanh(W_xh x)`` and ``W_xr x``.

Parameters: ``weight_ih`` (K*H, I), the input matrices in the order z, r, h of the terms that
have one; ``weight_hh`` (M*H, H), the recurrent matrices in the order z, r, h (MUT1 has none
for z); ``bias_ih`` (3H,), the biases b_z, b_r, b_h.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import TensorStateMixin, record_gates, tensor_state_step_input, uniform_init_


class MUTCell(TensorStateMixin, nn.Module):
    """One step of MUT1, MUT2 or MUT3 (see the module docstring for the equations).

    Args:
        input_size: I, features of ``x_t``.
        hidden_size: H, features of ``h_t``.
        arch: 1, 2 or 3.
        bias: whether to learn ``bias_ih`` (b_z, b_r, b_h).

    Shapes: ``x`` (B, I) or (I,); ``h`` (B, H) or (H,); returns ``(h_t, h_t)``.

    Example:
        >>> cell = MUTCell(8, 8, arch=1)
        >>> cell.weight_ih.shape  # z and r only: tanh(x) needs no matrix when I = H
        torch.Size([16, 8])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        arch: int = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if arch not in (1, 2, 3):
            raise ValueError(f"arch must be 1, 2 or 3 (MUT1-3), got {arch!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.arch = arch
        self.bias = bias
        identity = {1: "h", 2: "r", 3: None}[arch]  # the term that adds x itself when I = H
        self.x_terms: tuple[str, ...] = tuple(t for t in "zrh" if t != identity or input_size != hidden_size)
        self.h_terms: tuple[str, ...] = ("r", "h") if arch == 1 else ("z", "r", "h")
        kw = {"device": device, "dtype": dtype}
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(len(self.x_terms) * H, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(len(self.h_terms) * H, H, **kw))
        self.register_parameter("bias_ih", nn.Parameter(torch.empty(3 * H, **kw)) if bias else None)
        uniform_init_(self, hidden_size)

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, h, unbatched = tensor_state_step_input(self, x, state)
        xs = F.linear(x, self.weight_ih).chunk(len(self.x_terms), dim=1)
        xp = dict(zip(self.x_terms, xs, strict=True))  # (B, H) each
        W = dict(zip(self.h_terms, self.weight_hh.chunk(len(self.h_terms), dim=0), strict=True))
        zero = x.new_zeros(())
        b = (
            dict(zip("zrh", self.bias_ih.chunk(3), strict=True))
            if self.bias_ih is not None
            else dict.fromkeys("zrh", zero)
        )

        if self.arch == 1:
            z = torch.sigmoid(xp["z"] + b["z"])
            r = torch.sigmoid(xp["r"] + F.linear(h, W["r"]) + b["r"])
            x_h = torch.tanh(xp["h"] if "h" in xp else x)
        elif self.arch == 2:
            z = torch.sigmoid(xp["z"] + F.linear(h, W["z"]) + b["z"])
            r = torch.sigmoid((xp["r"] if "r" in xp else x) + F.linear(h, W["r"]) + b["r"])
            x_h = xp["h"]
        else:
            z = torch.sigmoid(xp["z"] + F.linear(torch.tanh(h), W["z"]) + b["z"])
            r = torch.sigmoid(xp["r"] + F.linear(h, W["r"]) + b["r"])
            x_h = xp["h"]
        candidate = torch.tanh(F.linear(r * h, W["h"]) + x_h + b["h"])
        record_gates(self, z=z, r=r, n=candidate)
        h = candidate * z + h * (1 - z)
        if unbatched:
            h = h.squeeze(0)
        return h, h

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, arch={self.arch}" + (
            "" if self.bias else ", bias=False"
        )
