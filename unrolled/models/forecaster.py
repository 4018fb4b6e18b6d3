"""A recurrent forecaster: a recurrent layer over past values and a linear head, two strategies.

    inputs  x_t = [z_t, covariates_t]          (B, T, F), z the scaled (differenced) target
    h_t, state = Recurrent(x_t, state)        (B, T, N)
    direct:     head(h_L) -> H values         all steps of the horizon at once
    recursive:  head(h_t) -> z_{t+1}          one step, fed back H times (the lecture's way)

With ``gaussian=True`` the head gives a mean and a scale per value, sigma = softplus(s) + 1e-3,
and the loss is the Gaussian negative log-likelihood (as DeepAR, Salinas et al. 2020), so a
forecast carries intervals: :meth:`Forecaster.forecast` draws sample paths from it (a
recursive path feeds each sampled value back), whose quantiles give them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import Recurrent

STRATEGIES = ("direct", "recursive")
LOSSES = ("mse", "mae", "gaussian")
MIN_SCALE = 1e-3


class Forecaster(nn.Module):
    """Forecasts the next ``horizon`` values of a series (see the module docstring).

    Args:
        rnn: a batch-first recurrent layer whose input size is F (the target and covariates).
        horizon: H, the steps a direct head emits at once (a recursive head emits one).
        strategy: ``"direct"`` or ``"recursive"``.
        gaussian: emit a mean and a scale per value instead of one value.
        dropout: on the recurrent layer's output, before the head.
    """

    def __init__(
        self, rnn: Recurrent, horizon: int, strategy: str, gaussian: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if not rnn.batch_first:
            raise ValueError("Forecaster needs a batch_first recurrent layer")
        self.rnn, self.horizon, self.strategy, self.gaussian = rnn, horizon, strategy, gaussian
        self.params = 2 if gaussian else 1
        steps = horizon if strategy == "direct" else 1
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(rnn.output_size, steps * self.params)

    @property
    def recursive(self) -> bool:
        return self.strategy == "recursive"

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """``x`` (B, T, F) -> direct: (B, H, P) from the last step; recursive: (B, T, P), the
        next value after every step; P = 2 (mean, raw scale) or 1. Also the final state."""
        out, state = self.rnn(x, state)
        if self.recursive:
            return self.head(self.drop(out)).view(x.size(0), x.size(1), self.params), state
        return self.head(self.drop(out[:, -1])).view(x.size(0), self.horizon, self.params), state

    @staticmethod
    def split(out: Tensor) -> tuple[Tensor, Tensor | None]:
        """(..., P) -> mean (...,) and sigma (...,) (None without a Gaussian head)."""
        if out.size(-1) == 1:
            return out[..., 0], None
        return out[..., 0], F.softplus(out[..., 1]) + MIN_SCALE

    @torch.no_grad()
    def forecast(
        self,
        x: Tensor,
        horizon: int,
        future: Tensor | None = None,
        samples: int = 0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Forecast ``horizon`` steps after the windows ``x`` (B, L, F).

        ``future`` (B, horizon - 1, F - 1) holds the covariates of the steps a recursive forecast
        feeds back (None without covariates). Returns the mean path (B, horizon) and, with
        ``samples`` > 0 and a Gaussian head, ``samples`` sample paths (B, samples, horizon).
        """
        if not self.recursive:
            if horizon > self.horizon:
                raise ValueError(
                    f"a direct model forecasts at most the {self.horizon} steps it was trained for, "
                    f"not {horizon}: train with --horizon {horizon}, or use --strategy recursive"
                )
            mean, sigma = self.split(self(x)[0][:, :horizon])
            paths = None
            if samples and sigma is not None:
                noise = torch.randn(x.size(0), samples, horizon, generator=generator).to(mean)
                paths = mean[:, None] + sigma[:, None] * noise
            return mean, paths
        mean = self._roll(x, horizon, future, None)
        paths = None
        if samples and self.gaussian:
            B = x.size(0)
            rep = x.repeat_interleave(samples, 0)
            fut = None if future is None else future.repeat_interleave(samples, 0)
            paths = self._roll(rep, horizon, fut, generator).view(B, samples, horizon)
        return mean, paths

    def roll(
        self, x: Tensor, horizon: int, future: Tensor | None = None, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Recursive forecast of ``horizon`` steps after the windows ``x`` (B, T, F).

        Returns the mean (B, horizon) and, with a Gaussian head, the scale (B, horizon) of each
        step's Gaussian given the values fed back before it. The value fed back after step h is
        ``mean + scale * noise[:, h]`` (``noise`` (B, horizon) standard normal draws: one sample
        path), or the mean (``noise`` None: the mean path). ``future`` as in :meth:`forecast`.
        No data-dependent Python: the exported recursive graph is this loop.
        """
        out, state = self(x)
        means, scales = [], []
        for h in range(horizon):
            mean, sigma = self.split(out[:, -1])
            means.append(mean)
            if sigma is not None:
                scales.append(sigma)
            if h + 1 < horizon:
                value = mean if noise is None or sigma is None else mean + sigma * noise[:, h]
                nxt = value[:, None, None]
                if future is not None and future.size(-1):
                    nxt = torch.cat([nxt, future[:, h : h + 1]], dim=-1)
                out, state = self(nxt, state)
        return torch.stack(means, dim=1), torch.stack(scales, dim=1) if scales else None

    def _roll(self, x: Tensor, horizon: int, future: Tensor | None, generator: Any) -> Tensor:
        """Recursive forecast: the mean path (``generator`` None), or one sample path per row with
        the noise of step h drawn as ``torch.randn(B, generator=generator)``, step after step."""
        if generator is None or not self.gaussian:
            return self.roll(x, horizon, future)[0]
        noise = torch.stack([torch.randn(x.size(0), generator=generator) for _ in range(horizon)], dim=1)
        noise = noise.to(x)
        mean, sigma = self.roll(x, horizon, future, noise)
        assert sigma is not None
        return mean + sigma * noise


def forecast_loss(out: Tensor, y: Tensor, loss: str) -> Tensor:
    """Mean loss of head outputs ``out`` (..., P) against targets ``y`` (...)."""
    mean, sigma = Forecaster.split(out)
    if loss == "mse":
        return F.mse_loss(mean, y)
    if loss == "mae":
        return F.l1_loss(mean, y)
    if loss == "gaussian":
        if sigma is None:
            raise ValueError("the Gaussian loss needs a Gaussian head")
        return (torch.log(sigma) + 0.5 * ((y - mean) / sigma) ** 2).mean() + 0.5 * math.log(2 * math.pi)
    raise ValueError(f"unknown loss {loss!r}: expected one of {', '.join(LOSSES)}")
