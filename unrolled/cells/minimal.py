"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gates that read only x_t.

Both cells drop every recurrent weight: their gates and candidate depend on ``x_t`` alone, so
one step is a linear recurrence in ``h``,

    h_t = a_t * h_{t-1} + b_t,        a_t, b_t functions of x_t only,

which a parallel scan computes for all t at once (:mod:`unrolled.engines.scan`, the ``fused``
engine); the cell itself is the sequential mode, O(1) per step. With ``k = x W_ih^T + b_ih``
(B, G*H) split into gate blocks in the order of ``weight_ih``'s rows:

    minGRU  (rows z, h; G = 2):   z = sigmoid(k_z),  h~ = g(k_h)
                                  h_t = (1 - z) * h_{t-1} + z * h~            a = 1 - z,  b = z h~
    minLSTM (rows f, i, h; G = 3): f = sigmoid(k_f),  i = sigmoid(k_i),  h~ = g(k_h)
                                  f' = f / (f + i),  i' = i / (f + i)      (so f' + i' = 1)
                                  h_t = f' * h_{t-1} + i' * h~              a = f',  b = i' h~

    g(v) = v + 0.5 if v >= 0 else sigmoid(v)

``g`` is the paper's log-space version (its Appendix), used here by default and in both modes:
it keeps the candidate h~ > 0, so that the scan can take ``log b``; the plain version (h~ =
k_h, no g) is not offered. ``g`` is continuous at 0 (both sides give 0.5) and grows linearly,
not saturating like tanh. The scan works in log space with

    log a = -softplus(k_z) = log(1 - z)        log b = log a + k_z + log g(k_h)    (minGRU)
    d = log sigmoid(k_i) - log sigmoid(k_f)    (= log i - log f)
    log a = -softplus(d) = log f'              log b = log a + d + log g(k_h)      (minLSTM)
    log g(v) = log(v + 0.5) if v >= 0 else log sigmoid(v)

The state is ``h`` itself, (B, H), not ``log h`` and not ``g(h_0)``: a state carried from one
chunk of text to the next enters the next chunk unchanged, any real ``h_0`` is allowed (zero,
the default, and negative values included; with ``h_0 >= 0`` every ``h_t`` is > 0), and the
scan adds ``h_0``'s contribution ``exp(sum log a) * h_0`` outside the logarithm (see the scan).

Parameters: ``weight_ih`` (G*H, I) with ``bias_ih`` (G*H,) (None with ``bias=False``), both
~ U(-1/sqrt(H), 1/sqrt(H)) as torch's RNNs. There is no ``weight_hh``: a minGRU has 2H(I+1)
parameters against a GRU's 3H(I+H+2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import TensorStateMixin, record_gates, tensor_state_step_input, uniform_init_


def g(v: Tensor) -> Tensor:
    """The paper's positive candidate activation: ``v + 0.5`` for v >= 0, ``sigmoid(v)`` below."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def log_g(v: Tensor) -> Tensor:
    """``log(g(v))``, computed without forming ``g`` (finite for every finite ``v``)."""
    # relu keeps the unselected branch finite, so that its (zero) gradient stays zero, not nan
    return torch.where(v >= 0, torch.log(F.relu(v) + 0.5), F.logsigmoid(v))


class _MinimalCell(TensorStateMixin, nn.Module):
    """What minGRU and minLSTM share: ``weight_ih`` (G*H, I), ``bias_ih``, no recurrent weight."""

    gates: int  # G, blocks of H rows in weight_ih

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        rows = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size, device=device, dtype=dtype))
        self.bias_ih = nn.Parameter(torch.empty(rows, device=device, dtype=dtype)) if bias else None
        uniform_init_(self, hidden_size)

    def init_state(
        self, batch: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """Zero hidden state of shape (batch, H) (on ``weight_ih``'s device and dtype by default)."""
        return self.weight_ih.new_zeros(batch, self.hidden_size, device=device, dtype=dtype)

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, h, unbatched = tensor_state_step_input(self, x, state)
        k = F.linear(x, self.weight_ih, self.bias_ih)  # (B, G*H)
        h = self.step(k, h)
        if unbatched:
            h = h.squeeze(0)
        return h, h

    def step(self, k: Tensor, h: Tensor) -> Tensor:
        """``h_t`` (B, H) from the pre-activations ``k`` (B, G*H) and ``h_{t-1}`` (B, H)."""
        raise NotImplementedError

    def log_coefficients(self, k: Tensor) -> tuple[Tensor, Tensor]:
        """``(log a, log b)``, each (..., H), of ``h_t = a h_{t-1} + b`` from ``k`` (..., G*H)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class MinGRUCell(_MinimalCell):
    """One step of a minGRU: ``h_t = (1 - z) h_{t-1} + z g(k_h)``, ``z = sigmoid(k_z)``.

    Args:
        input_size: I, features of ``x_t``.
        hidden_size: H, features of ``h_t``.
        bias: whether to learn ``bias_ih``.

    Parameters: ``weight_ih`` (2H, I) with rows ``[W_z; W_h]``, ``bias_ih`` (2H,).
    Shapes: ``x`` (B, I) or (I,); ``h`` (B, H) or (H,); returns ``(h_t, h_t)``.
    See the module docstring for the equations and the log-space form the scan uses.

    Example:
        >>> cell = MinGRUCell(5, 6)
        >>> h, _ = cell(torch.randn(3, 5))
        >>> h.shape
        torch.Size([3, 6])
    """

    gates = 2

    def step(self, k: Tensor, h: Tensor) -> Tensor:
        kz, kh = k.chunk(2, dim=-1)  # (B, H) each
        z = torch.sigmoid(kz)
        record_gates(self, z=z)
        return (1 - z) * h + z * g(kh)

    def log_coefficients(self, k: Tensor) -> tuple[Tensor, Tensor]:
        kz, kh = k.chunk(2, dim=-1)
        log_a = -F.softplus(kz)  # log(1 - z)
        return log_a, (log_a + kz) + log_g(kh)  # log z = log(1 - z) + k_z; b = z g(k_h)


class MinLSTMCell(_MinimalCell):
    """One step of a minLSTM: ``h_t = f' h_{t-1} + i' g(k_h)`` with normalised gates
    ``f' = f / (f + i)``, ``i' = i / (f + i)``, ``f = sigmoid(k_f)``, ``i = sigmoid(k_i)``.

    Args:
        input_size: I, features of ``x_t``.
        hidden_size: H, features of ``h_t``.
        bias: whether to learn ``bias_ih``.

    Parameters: ``weight_ih`` (3H, I) with rows ``[W_f; W_i; W_h]``, ``bias_ih`` (3H,).
    Shapes: ``x`` (B, I) or (I,); ``h`` (B, H) or (H,); returns ``(h_t, h_t)`` (no memory cell:
    the normalised gates make ``h`` a convex mix of ``h_{t-1}`` and the candidate).
    See the module docstring for the equations and the log-space form the scan uses.

    Example:
        >>> cell = MinLSTMCell(5, 6)
        >>> h, _ = cell(torch.randn(3, 5))
        >>> h.shape
        torch.Size([3, 6])
    """

    gates = 3

    def step(self, k: Tensor, h: Tensor) -> Tensor:
        kf, ki, kh = k.chunk(3, dim=-1)  # (B, H) each
        f, i = torch.sigmoid(kf), torch.sigmoid(ki)
        record_gates(self, f=f, i=i)  # before normalisation
        return (f * h + i * g(kh)) / (f + i)

    def log_coefficients(self, k: Tensor) -> tuple[Tensor, Tensor]:
        kf, ki, kh = k.chunk(3, dim=-1)
        d = F.logsigmoid(ki) - F.logsigmoid(kf)  # log i - log f
        log_a = -F.softplus(d)  # log f' = -log(1 + i / f)
        return log_a, (log_a + d) + log_g(kh)  # log i' = log f' + log(i / f); b = i' g(k_h)
