"""The regularisers of AWD-LSTM (Merity, Keskar & Socher 2017) that act around a recurrent layer.

- Locked (variational) dropout, Gal & Ghahramani (2016): one mask per sequence, the same at
  every step, on a layer's input or output: ``y[b, t] = x[b, t] * m[b] / (1 - p)``,
  ``m[b] ~ Bernoulli(1 - p)`` over the features. :class:`LockedDropout`.
- Embedding (word) dropout: whole rows of the embedding matrix dropped for a batch, so every
  occurrence of a dropped word reads zeros: ``E' = E * m / (1 - p)``, ``m ~ Bernoulli(1 - p)``
  of shape (V, 1). :func:`embedding_dropout`.
- Weight drop (DropConnect on the recurrent weights, Wan et al. 2013): ``W_hh' = W_hh * M /
  (1 - p)`` with one mask ``M`` per batch, drawn before the time loop, so every step of every
  engine multiplies by the same dropped matrix. :func:`dropped_weights` (the mask) and
  ``Recurrent(weight_drop=p)`` (where it is applied).
- Activation regularisation (AR) and temporal activation regularisation (TAR) on the last
  layer's outputs ``h`` (B, T, H): ``AR = alpha * mean(drop(h)^2)`` and ``TAR = beta *
  mean((h_t - h_{t-1})^2)``, added to the loss. :func:`activation_penalty`.

Each is active only in training mode; each keeps the expectation (masks are scaled by 1 / (1 - p)).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def check_rate(name: str, p: float) -> float:
    """``p`` as a float, or ``ValueError`` unless it is a probability in [0, 1)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a dropout rate in [0, 1), got {p}")
    return float(p)


def _keep_mask(shape: Sequence[int], p: float, like: Tensor) -> Tensor:
    """A Bernoulli(1 - p) mask of ``shape``, scaled by 1 / (1 - p), on ``like``'s device and dtype."""
    return torch.empty(tuple(shape), device=like.device, dtype=like.dtype).bernoulli_(1 - p) / (1 - p)


def locked_dropout(x: Tensor, p: float, batch_first: bool = True) -> Tensor:
    """``x`` (B, T, F) with ``batch_first`` (else (T, B, F)) times one dropout mask per sequence,
    (B, 1, F) (or (1, B, F)), scaled by 1 / (1 - p); ``p = 1`` drops everything."""
    if p == 0:
        return x
    if p >= 1:
        return torch.zeros_like(x)
    shape = list(x.shape)
    shape[1 if batch_first else 0] = 1
    return x * _keep_mask(shape, p, x)


class LockedDropout(nn.Module):
    """:func:`locked_dropout` in training, the identity in evaluation: one mask per sequence
    (drawn at every call), the same at every step."""

    def __init__(self, p: float = 0.0, batch_first: bool = True) -> None:
        super().__init__()
        self.p = check_rate("locked dropout", p)
        self.batch_first = batch_first

    def forward(self, x: Tensor) -> Tensor:
        return locked_dropout(x, self.p, self.batch_first) if self.training else x

    def extra_repr(self) -> str:
        return f"p={self.p}, batch_first={self.batch_first}"


def embedding_dropout(weight: Tensor, p: float, training: bool) -> Tensor:
    """The embedding matrix ``weight`` (V, E) with whole rows (words) dropped with probability
    ``p`` and the rest scaled by 1 / (1 - p) in training; ``weight`` itself otherwise."""
    if not training or p == 0:
        return weight
    return weight * _keep_mask((weight.size(0), 1), p, weight)


def dropped_weights(cells: Sequence[nn.Module], p: float) -> dict[int, Tensor]:
    """Weight drop: for each cell with a recurrent matrix ``weight_hh``, that matrix with each entry
    dropped with probability ``p`` (one fresh mask per call) and scaled by 1 / (1 - p)."""
    dropped = {}
    for index, cell in enumerate(cells):
        weight = getattr(cell, "weight_hh", None)
        if isinstance(weight, Tensor):
            dropped[index] = weight * _keep_mask(weight.shape, p, weight)
    return dropped


@contextmanager
def replaced_weights(cells: Sequence[nn.Module], weights: dict[int, Tensor]) -> Iterator[None]:
    """Within the block, ``cells[i].weight_hh`` reads ``weights[i]`` (an engine reads the cells'
    weights as attributes, so every engine runs the replacement unchanged); the parameters are
    put back after, whatever happens."""
    saved: dict[int, Tensor | None] = {}
    try:
        for index, weight in weights.items():
            saved[index] = cells[index]._parameters["weight_hh"]
            cells[index]._parameters["weight_hh"] = weight
        yield
    finally:
        for index, parameter in saved.items():
            cells[index]._parameters["weight_hh"] = parameter


def activation_penalty(h: Tensor, dropped: Tensor, ar: float, tar: float) -> Tensor:
    """``ar * mean(dropped^2) + tar * mean((h[:, t] - h[:, t-1])^2)`` for batch-first outputs
    ``h`` (B, T, H) and their dropped version ``dropped`` (AR on the dropped outputs and TAR on
    the raw ones, as AWD-LSTM does)."""
    penalty = h.new_zeros(())
    if ar:
        penalty = penalty + ar * dropped.pow(2).mean()
    if tar and h.size(1) > 1:
        penalty = penalty + tar * (h[:, 1:] - h[:, :-1]).pow(2).mean()
    return penalty
