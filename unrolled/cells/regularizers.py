"""Regularisers that live inside a recurrence: variational recurrent dropout and zoneout.

- Recurrent (variational) dropout, Gal & Ghahramani (2016): one dropout mask per sequence on
  the ``h_{t-1}`` that enters the recurrent matrix product, the same mask at every step
  (``h W_hh^T`` becomes ``(h * m / (1 - p)) W_hh^T``); the state that is carried is not masked.
- Zoneout, Krueger et al. (2017): each unit keeps its previous value with probability p,
  ``h_t = m * h_{t-1} + (1 - m) * h_new`` with ``m ~ Bernoulli(p)`` drawn at every step; in
  evaluation the expectation, ``p * h_{t-1} + (1 - p) * h_new``.

Both act only in training mode. A loop that runs a cell calls ``cell.start_sequence(batch)``
before the first step (the layers of this package do), which draws the sequence's mask.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_probability(name: str, p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {p}")
    return float(p)


class RecurrentRegularizersMixin:
    """Adds ``recurrent_dropout`` and ``zoneout`` to a cell (an ``nn.Module``)."""

    training: bool
    recurrent_dropout: float
    _recurrent_mask: Tensor | None

    def _init_regularizers(self, recurrent_dropout: float, zoneout: float) -> None:
        self.recurrent_dropout = _check_probability("recurrent_dropout", recurrent_dropout)
        self.zoneout = _check_probability("zoneout", zoneout)
        self._recurrent_mask = None

    def start_sequence(
        self, batch: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> None:
        """Forget the previous sequence's recurrent-dropout mask (a new one is drawn on use)."""
        self._recurrent_mask = None

    def recurrent_mask(self, h: Tensor) -> Tensor | None:
        """The sequence's recurrent-dropout mask for ``h`` (scaled by 1 / (1 - p)), drawn on first
        use; None outside training or with p = 0. The fused engine draws it here as the cell does."""
        p = self.recurrent_dropout
        if not (self.training and p > 0):
            return None
        if self._recurrent_mask is None or self._recurrent_mask.shape != h.shape:
            keep = torch.full_like(h, 1 - p)
            self._recurrent_mask = torch.bernoulli(keep) / (1 - p)
        return self._recurrent_mask

    def _recurrent_input(self, h: Tensor) -> Tensor:
        """``h`` as it enters the recurrent product: masked with the sequence's mask in training."""
        mask = self.recurrent_mask(h)
        return h if mask is None else h * mask

    def zoneout_keep(self, new: Tensor, p: float) -> Tensor | float:
        """Which units of ``new`` keep their previous value: a Bernoulli(p) mask drawn now in
        training, the expectation ``p`` in evaluation."""
        return torch.bernoulli(torch.full_like(new, p)) if self.training else p

    def _zone(self, previous: Tensor, new: Tensor, p: float) -> Tensor:
        """Zoneout: keep each unit's previous value with probability ``p``."""
        if p == 0:
            return new
        keep = self.zoneout_keep(new, p)
        return keep * previous + (1 - keep) * new
