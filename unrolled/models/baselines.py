"""The forecasts every model must beat: naive, seasonal naive, and ARIMA (statsmodels).

    naive            yhat_{o+h} = y_o                            the last value, for every h
    seasonal naive   yhat_{o+h} = y_{o+h-S*k},  k = ceil(h / S)   the value one season back
    ARIMA(p, d, q)   statsmodels' SARIMAX state-space ARIMA, fitted once by maximum likelihood
                     on the series before the test part, then run forward over the known values
                     up to each origin (its parameters fixed, as the network's weights are)

Without an order, :func:`arima_order` picks the (p, d, q) of smallest AIC among p in 0..3,
d in 0..1, q in 0..2 (24 fits) on the series before the test part.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

Z = {"80": 1.2815515655446004, "95": 1.959963984540054}  # two-sided normal quantiles


def naive(history: Tensor, horizon: int) -> Tensor:
    """(H,): the last value of ``history`` repeated."""
    return history[-1].expand(horizon).clone()


def seasonal_naive(history: Tensor, horizon: int, season: int) -> Tensor:
    """(H,): for each step h the value of the same point of the last season seen."""
    if history.numel() < season:
        raise ValueError(f"seasonal naive needs a full season of history ({season}), got {history.numel()}")
    last = history[-season:]
    return torch.stack([last[h % season] for h in range(horizon)])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """statsmodels warns about convergence and starting values; the AIC and the scores say enough.

    Its fit sets its own warning filters inside, so ignoring is not enough: nothing is shown.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.showwarning = lambda *args, **kwargs: None
        yield


def _model(y: Tensor, order: tuple[int, int, int]) -> Any:
    from statsmodels.tsa.arima.model import ARIMA

    return ARIMA(y.double().numpy(), order=order)


def arima_order(y: Tensor) -> tuple[tuple[int, int, int], float]:
    """The (p, d, q) of smallest AIC on ``y`` among p <= 3, d <= 1, q <= 2, and its AIC."""
    best: tuple[float, tuple[int, int, int]] | None = None
    with _quiet():
        for order in itertools.product(range(4), range(2), range(3)):
            try:
                aic = float(_model(y, order).fit().aic)
            except (ValueError, FloatingPointError, np.linalg.LinAlgError):
                continue
            if math.isfinite(aic) and (best is None or aic < best[0]):
                best = (aic, order)
    if best is None:
        raise ValueError("no ARIMA order could be fitted to the series before the test part")
    return best[1], best[0]


class Arima:
    """ARIMA fitted once on ``y`` (the series before the test part) with ``order``."""

    def __init__(self, y: Tensor, order: tuple[int, int, int]) -> None:
        with _quiet():
            self.result = _model(y, order).fit()
        self.order = order
        self.aic = float(self.result.aic)

    def forecast(self, history: Tensor, horizon: int) -> tuple[Tensor, dict[str, tuple[Tensor, Tensor]]]:
        """Mean (H,) and the 80% and 95% intervals of the forecast after ``history`` (the known
        series up to the origin), with the fitted parameters."""
        with _quiet():
            f = self.result.apply(history.double().numpy()).get_forecast(horizon)
            mean = torch.as_tensor(f.predicted_mean, dtype=torch.float64)
            intervals = {}
            for name in Z:
                ci = torch.as_tensor(f.conf_int(alpha=1 - int(name) / 100), dtype=torch.float64)
                intervals[name] = (ci[:, 0], ci[:, 1])
        return mean, intervals
