"""Forecast accuracy: RMSE, MAE, MASE, sMAPE and interval coverage, overall and per horizon step.

For forecasts yhat of values y (one row per forecast origin, one column per step ahead):

    RMSE  = sqrt(mean (y - yhat)^2)         MAE = mean |y - yhat|
    MASE  = MAE / s,  s = mean_t |y_t - y_{t-S}| over the training part (the in-sample error of
            the seasonal naive forecast, S = 1 without a season; Hyndman & Koehler 2006; S = 1
            too when the seasonal error is ~0, a series that repeats itself exactly)
    sMAPE = mean 200 |y - yhat| / (|y| + |yhat|)   in percent, 0 where y = yhat = 0
    coverage(lo, hi) = the share of y inside [lo, hi]

MASE < 1 means better than the in-sample (seasonal) naive forecast one step ahead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def mase_scale(train: Tensor, season: int = 1) -> tuple[float, int]:
    """(s, lag): the mean absolute difference of the training part at lag ``season``.

    A series that repeats itself exactly (the noiseless sine) has no seasonal naive error
    (s ~ 0 would make every MASE astronomic): then the one-step naive error is the scale, and the
    lag says which was used.
    """
    if train.numel() <= season:
        raise ValueError(
            f"the training part ({train.numel()} points) is not longer than the season ({season}): "
            "no seasonal naive error to scale by; give a smaller --season"
        )
    one = float((train[1:] - train[:-1]).abs().mean())
    s = float((train[season:] - train[:-season]).abs().mean())
    if season > 1 and s <= 1e-6 * one:
        return one, 1
    if not s > 0:
        raise ValueError("the training part never changes: MASE has no scale")
    return s, season


def _smape(y: Tensor, yhat: Tensor) -> Tensor:
    denom = y.abs() + yhat.abs()
    return torch.where(denom > 0, 200 * (y - yhat).abs() / denom.clamp_min(1e-300), 0.0)


def forecast_scores(
    y: Tensor, yhat: Tensor, scale: float, intervals: dict[str, tuple[Tensor, Tensor]] | None = None
) -> dict[str, Any]:
    """Scores of ``yhat`` against ``y`` (origins, H): overall and per step ahead (lists of H).

    ``intervals`` maps a name ("80", "95") to (lower, upper) bounds of the same shape.
    """
    err = (y - yhat).double()

    def per(values: Tensor) -> list[float]:
        return values.mean(0).tolist()

    out: dict[str, Any] = {
        "rmse": float(err.pow(2).mean().sqrt()),
        "mae": float(err.abs().mean()),
        "mase": float(err.abs().mean()) / scale,
        "smape": float(_smape(y.double(), yhat.double()).mean()),
        "origins": y.size(0),
        "per_step": {
            "rmse": [v**0.5 for v in per(err.pow(2))],
            "mae": per(err.abs()),
            "mase": [v / scale for v in per(err.abs())],
            "smape": per(_smape(y.double(), yhat.double())),
        },
    }
    for name, (lo, hi) in (intervals or {}).items():
        inside = ((y >= lo) & (y <= hi)).double()
        out[f"coverage{name}"] = float(inside.mean())
        out["per_step"][f"coverage{name}"] = per(inside)
    return out
