"""The Mogrifier LSTM (Melis, Kočiský & Blunsom 2020, "Mogrifier LSTM"): before an ordinary LSTM
step, the input and the previous output gate each other for ``r`` rounds.

    x^{-1} = x_t,  h^0 = h_{t-1}
    x^i = 2 σ(Q^i h^{i-1}) ⊙ x^{i-2}        for odd i in 1..r     Q^i (I, H)
    h^i = 2 σ(R^i x^{i-1}) ⊙ h^{i-2}        for even i in 1..r    R^i (H, I)

and with x↑, h↑ the last x^i and h^i (x_t and h_{t-1} themselves where a side has no round),

    [i; f; g; o] = x↑ W_ih^T + b_ih + h↑ W_hh^T + b_hh
    c_t = σ(f) c_{t-1} + σ(i) tanh(g),   h_t = σ(o) tanh(c_t)

so ``rounds=0`` is torch.nn.LSTMCell. The factor 2 keeps a gate near 1 (the identity) while
Q and R are small. With ``rank=k`` each matrix is a product of two thin ones, ``Q^i = Q^i_left
Q^i_right`` ((I, k) times (k, H)), as the paper does to save parameters; the product is formed
once per call, so it saves parameters, not time.

Parameters: torch's LSTM ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh``
(4H,); ``weight_q`` (ceil(r/2), I, H) and ``weight_r`` (floor(r/2), H, I), or with a rank
``weight_q_left`` (ceil(r/2), I, k), ``weight_q_right`` (ceil(r/2), k, H), ``weight_r_left``
(floor(r/2), H, k), ``weight_r_right`` (floor(r/2), k, I). All start as torch's LSTM does,
uniform in ±1/sqrt(H).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import LSTMState, add_gate_parameters, check_state, check_step_input, record_gates, uniform_init_


def mogrify(x: Tensor, h: Tensor, q: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """The rounds: ``x`` (B, I) and ``h`` (B, H) gated alternately by the stacks ``q`` (n_q, I, H)
    and ``r`` (n_r, H, I), starting with ``x``; returns ``(x↑, h↑)``."""
    for j in range(q.size(0)):
        x = 2 * torch.sigmoid(F.linear(h, q[j])) * x
        if j < r.size(0):
            h = 2 * torch.sigmoid(F.linear(x, r[j])) * h
    return x, h


class MogrifierLSTMCell(nn.Module):
    """One step of the Mogrifier LSTM (see the module docstring for the equations).

    Args:
        input_size: I, features of ``x_t``.
        hidden_size: H, features of ``h_t`` and ``c_t``.
        rounds: r >= 0, the number of gating rounds (5 in the paper; 0 is torch's LSTM cell).
        rank: k > 0 factorises each round's matrix into two of rank k; None keeps them full.
        bias: whether to learn ``bias_ih`` and ``bias_hh``.

    Shapes: ``x`` (B, I) or (I,); state ``LSTMState(h, c)`` of (B, H) each (or (H,)); returns
    ``(h_t, LSTMState(h_t, c_t))``.

    Example:
        >>> cell = MogrifierLSTMCell(8, 16, rounds=5, rank=4)
        >>> tuple(cell.weight_q_left.shape), tuple(cell.weight_r_right.shape)
        ((3, 8, 4), (2, 4, 8))
    """

    gate_names = ("i", "f", "g", "o")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        rounds: int = 5,
        rank: int | None = None,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 0:
            raise ValueError(f"rounds must be an integer >= 0 (0 is a plain LSTM), got {rounds!r}")
        if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0):
            raise ValueError(f"rank must be a positive integer (or None for full matrices), got {rank!r}")
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.rounds, self.rank, self.bias = rounds, rank, bias
        kw = {"device": device, "dtype": dtype}
        add_gate_parameters(self, 4, input_size, hidden_size, bias, **kw)
        n_q, n_r = (rounds + 1) // 2, rounds // 2
        I, H = input_size, hidden_size
        if rank is None:
            self.weight_q = nn.Parameter(torch.empty(n_q, I, H, **kw))
            self.weight_r = nn.Parameter(torch.empty(n_r, H, I, **kw))
        else:
            self.weight_q_left = nn.Parameter(torch.empty(n_q, I, rank, **kw))
            self.weight_q_right = nn.Parameter(torch.empty(n_q, rank, H, **kw))
            self.weight_r_left = nn.Parameter(torch.empty(n_r, H, rank, **kw))
            self.weight_r_right = nn.Parameter(torch.empty(n_r, rank, I, **kw))
        uniform_init_(self, hidden_size)

    def round_matrices(self) -> tuple[Tensor, Tensor]:
        """The stacks ``(Q, R)`` of (n_q, I, H) and (n_r, H, I), formed from the factors with a rank."""
        if self.rank is None:
            return self.weight_q, self.weight_r
        return self.weight_q_left @ self.weight_q_right, self.weight_r_left @ self.weight_r_right

    def init_state(
        self, batch: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> LSTMState:
        """Zero state: h and c of (batch, H)."""
        zeros = self.weight_hh.new_zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return LSTMState(zeros, zeros.clone())

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, LSTMState]:
        check_step_input(x, self.input_size)
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
            state = None if state is None else tuple(s.unsqueeze(0) for s in state)
        B = x.size(0)
        if state is None:
            state = self.init_state(B, dtype=x.dtype)
        if len(state) != 2:
            raise ValueError(
                f"the Mogrifier LSTM cell's state is (h, c): expected 2 tensors, got {len(state)}"
            )
        h, c = state
        check_state(h, (B, self.hidden_size), "hx")
        check_state(c, (B, self.hidden_size), "cx")
        x, h = mogrify(x, h, *self.round_matrices())
        gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)
        i, f, g, o = gates.chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        record_gates(self, i=i, f=f, o=o, g=g)
        new = LSTMState(h, c)
        if unbatched:
            new = LSTMState(h.squeeze(0), c.squeeze(0))
        return new.h, new

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, rounds={self.rounds}"
        if self.rank is not None:
            s += f", rank={self.rank}"
        return s + ("" if self.bias else ", bias=False")
