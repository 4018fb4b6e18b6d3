"""Forecasting a time series: a CSV column or a built-in series -> run directory -> forecasts.

Wiring only: data (:mod:`unrolled.data.series`: reading, missing values, a chronological
train | validation | test split, differencing, scaling fitted on the training part, windows),
model (:class:`unrolled.models.forecaster.Forecaster`: any recurrent layer and a linear head,
direct or recursive, point or Gaussian), baselines (:mod:`unrolled.models.baselines`: naive,
seasonal naive, ARIMA from statsmodels) and metrics (:mod:`unrolled.metrics.forecast`).

Evaluation is rolling-origin backtesting: from every origin o of a part (the last input at o,
the H targets after it inside the part) the model forecasts H steps from the known values up
to o, with its weights fixed; the baselines forecast from the same origins. The validation part
picks the best weights (by RMSE on the original scale); the test part is scored once, at the
end, and written to results.json with every baseline's scores, and drawn in forecast.png.

A run as a Python object (``unrolled.load(RUN)``) is a :class:`ForecastPredictor`: its
``forecast(horizon, history)`` is what ``unrolled forecast DIR`` prints (a direct Gaussian
model's 80/95% bands in closed form, a recursive one's from sample paths), and its export is
one graph over a batch of input windows (:class:`ForecastGraph`), with the scaling, the
differencing and the band z-values in the sidecar.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

import numpy as np
import torch
from torch import Tensor, nn

from ..data.series import (
    BUILTIN,
    FILLS,
    SEASONS,
    Differencer,
    Scaler,
    Series,
    WindowBatches,
    builtin_series,
    fill_missing,
    read_csv_series,
    split_points,
    window,
    window_origins,
)
from ..export import Graph
from ..metrics.forecast import forecast_scores, mase_scale
from ..models.baselines import Arima, arima_order, naive, seasonal_naive
from ..models.forecaster import LOSSES, STRATEGIES, Forecaster, forecast_loss
from ..training import (
    Asset,
    Bound,
    Fit,
    LoopConfig,
    OptimConfig,
    Predictor,
    Prepared,
    Run,
    RunConfig,
    Task,
    TrainerState,
    flag,
)
from ..training import checkpoint as ckpt
from ..training.config import positive
from ..training.device import model_device
from .base import CELLS, RecurrentConfig

if TYPE_CHECKING:
    import pandas as pd

SCALER = "scaler.json"  # the scaling fitted on the training part
PLOT = "forecast.png"  # the test part's forecasts, written into the run directory
SAMPLES = 200  # sample paths behind a Gaussian forecast's intervals
LEVELS = ("80", "95")


@dataclass
class ModelConfig(RecurrentConfig):
    """The network: past values (and covariates) -> recurrent layers -> linear head."""

    cell: str = flag("lstm", choices=tuple(CELLS))  # recurrent cell of every layer
    hidden: int = 64  # units per layer
    layers: int = 1  # stacked recurrent layers
    dropout: float = 0.0  # between layers and before the head
    # direct: the head emits all H steps at once; recursive: one step, fed back H times
    strategy: str = flag("direct", choices=STRATEGIES)
    # gaussian: a mean and a scale per value, trained on the negative log-likelihood (intervals)
    loss: str = flag("mse", choices=LOSSES)

    def validate(self) -> None:
        super().validate()
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown --strategy {self.strategy!r}: expected {', '.join(STRATEGIES)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown --loss {self.loss!r}: expected {', '.join(LOSSES)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")


@dataclass
class DataConfig:
    """Which series, how it is cleaned, split, differenced and cut into windows."""

    csv: str | None = flag(None, metavar="FILE")  # a CSV file with a header row (or --series)
    column: str | None = flag(None, metavar="NAME")  # the target column of --csv
    covariates: str | None = flag(None, metavar="A,B")  # further --csv columns fed as inputs
    time_column: str | None = flag(None, metavar="NAME")  # a --csv column of time labels, for output
    series: str | None = flag(None, choices=tuple(BUILTIN))  # a built-in series instead of --csv
    noise: float = 0.0  # --series sine: standard deviation of added Gaussian noise
    fill: str = flag("none", choices=FILLS)  # missing values: an error (none), ffill or interpolate
    difference: int = 0  # d: model the d-th differences (a trend), integrate the forecast back
    seasonal_difference: int = 0  # D: seasonal differences at lag --season before that
    season: int | None = None  # S: seasonal naive, MASE, seasonal differences [the series', else 1]
    lookback: int = 24  # L: input values per window
    horizon: int = 1  # H: values forecast from each origin
    test_size: int | None = None  # the last N points are the test part [10% of the series]
    val_size: int | None = None  # the N points before it pick the best weights [as --test-size]
    batch_size: int = 32  # windows per step
    arima_order: str | None = flag(None, metavar="P,D,Q")  # the ARIMA baseline's order [AIC search]

    def validate(self) -> None:
        if (self.csv is None) == (self.series is None):
            raise ValueError("give the series with --csv FILE --column NAME, or --series NAME (not both)")
        if self.csv is not None and self.column is None:
            raise ValueError("--csv needs --column NAME: the column to forecast")
        if self.series is not None and (self.column or self.covariates or self.time_column):
            raise ValueError("--column, --covariates and --time-column apply to --csv, not to --series")
        if self.series is not None and self.series not in BUILTIN:
            raise ValueError(f"unknown --series {self.series!r}: expected one of {', '.join(BUILTIN)}")
        if self.fill not in FILLS:
            raise ValueError(f"unknown --fill {self.fill!r}: expected one of {', '.join(FILLS)}")
        positive(self, ("lookback", "horizon", "test_size", "val_size", "batch_size", "season"))
        if self.difference < 0 or self.seasonal_difference < 0:
            raise ValueError("--difference and --seasonal-difference must be >= 0")
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            raise ValueError(f"--noise must be >= 0, got {self.noise}")
        if self.arima_order is not None:
            parse_order(self.arima_order)

    def covariate_names(self) -> list[str]:
        return [c.strip() for c in (self.covariates or "").split(",") if c.strip()]


def parse_order(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--arima-order must be three integers p,d,q (e.g. 2,0,1), got {text!r}")
    p, d, q = (int(x) for x in parts)
    return p, d, q


@dataclass
class ForecastConfig(RunConfig):
    """Everything needed to rebuild and continue a forecasting run; saved as config.json."""

    TASK: ClassVar[str] = "forecast"

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-3))
    # small series overfit: validate often, stop 10 validations after the best one
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(eval_every=50, patience=10))


# ---- data ----------------------------------------------------------------------------------
@dataclass
class Data:
    """A series ready for training: levels y (T,), model inputs (T', F) and the parts' bounds.

    ``inputs`` row j is the differenced, scaled target (column 0) and covariates at time
    j + lost (the first ``lost`` points have no differences). Parts are in the same row indices:
    train [0, train_end), val [train_end, val_end), test [val_end, T').
    """

    series: Series
    season: int
    differencer: Differencer
    scaler: Scaler
    inputs: Tensor  # (T', F) float64
    train_end: int
    val_end: int

    @property
    def lost(self) -> int:
        return self.differencer.lost

    @property
    def y(self) -> Tensor:
        return self.series.values


def load_series(cfg: DataConfig, seed: int = 0) -> Series:
    """The series of a config, with its missing values filled as ``--fill`` says."""
    if cfg.series is not None:
        series = builtin_series(cfg.series, cfg.noise, seed)
    else:
        assert cfg.csv is not None and cfg.column is not None  # validate() says so to the user
        series = read_csv_series(cfg.csv, cfg.column, cfg.covariate_names(), cfg.time_column)
    return fill_missing(series, cfg.fill)


def run_season(cfg: DataConfig) -> int:
    """S of a run: --season, else the built-in series' natural season, else 1."""
    return cfg.season or SEASONS.get(cfg.series or "", 1)


def prepare_data(cfg: DataConfig, series: Series, scaler: Scaler | None = None) -> Data:
    """Check the sizes, difference, split, and fit the scaling on the training part (or reuse one)."""
    T = len(series)
    season = run_season(cfg)
    differencer = Differencer(cfg.difference, cfg.seasonal_difference, season)
    test = cfg.test_size or max(cfg.horizon, T // 10)
    val = cfg.val_size or test
    need = differencer.lost + cfg.lookback + cfg.horizon + val + test
    if T < need:
        raise ValueError(
            f"the series has {T} points; it must have at least {need}: the differencing's "
            f"{differencer.lost} + --lookback {cfg.lookback} + --horizon {cfg.horizon} for one training "
            f"window, + the validation part ({val}) + the test part ({test})"
        )
    if cfg.horizon > val or cfg.horizon > test:
        raise ValueError(
            f"--horizon {cfg.horizon} is longer than the validation ({val}) or test ({test}) part: "
            "no origin has its whole horizon inside them; give larger --val-size/--test-size"
        )
    z = differencer.apply(torch.cat([series.values[:, None], series.covariates], dim=1))
    train_end, val_end = split_points(z.size(0), val, test)
    if season >= train_end + differencer.lost:
        raise ValueError(
            f"--season {season} is not shorter than the training part ({train_end + differencer.lost} "
            "points): give a smaller --season or a longer series"
        )
    names = [f"target {series.name!r}"] + [f"covariate {c!r}" for c in series.covariate_names]
    scaler = scaler or Scaler.fit(z[:train_end], names)
    return Data(series, season, differencer, scaler, scaler.transform(z), train_end, val_end)


# ---- forecasting from origins (model and baselines) -------------------------------------------
@dataclass
class Backtest:
    """Forecasts from every origin of a part, on the original scale: (origins, H) each."""

    origins: list[int]  # as indices into the series y
    truth: Tensor
    forecasts: dict[str, Tensor]  # model name -> mean forecasts
    intervals: dict[str, dict[str, tuple[Tensor, Tensor]]]  # model name -> level -> (lo, hi)


def part_origins(data: Data, part: str, lookback: int, horizon: int) -> list[int]:
    """The origins (rows of ``data.inputs``) of a part's windows, in time order."""
    start, end = {"val": (data.train_end, data.val_end), "test": (data.val_end, data.inputs.size(0))}[part]
    return window_origins(start, end, lookback, horizon)


@torch.no_grad()
def model_forecast(
    model: Forecaster,
    data: Data,
    origins: list[int],
    lookback: int,
    horizon: int,
    samples: int = 0,
    seed: int = 0,
) -> tuple[Tensor, dict[str, tuple[Tensor, Tensor]]]:
    """The model's forecasts (len(origins), H) on the original scale, and intervals if it has any.

    ``origins`` are rows of ``data.inputs``; future covariates (recursive) come from the data,
    so an origin needs ``horizon - 1`` known rows after it when there are covariates.
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    x = torch.stack([data.inputs[o - lookback + 1 : o + 1] for o in origins]).float().to(device)
    future = None
    if model.recursive and data.inputs.size(1) > 1:
        future = torch.stack([data.inputs[o + 1 : o + horizon, 1:] for o in origins]).float().to(device)
    g = torch.Generator().manual_seed(seed)
    mean, paths = model.forecast(x, horizon, future, samples if model.gaussian else 0, g)
    model.train(was_training)
    levels = _to_levels(data, origins, mean.double().cpu())
    intervals = {}
    if paths is not None:
        path_levels = _to_levels(data, origins, paths.double().cpu())  # (B, S, H)
        for name in LEVELS:
            a = (1 - int(name) / 100) / 2
            q = torch.quantile(path_levels, torch.tensor([a, 1 - a], dtype=torch.float64), dim=1)
            intervals[name] = (q[0], q[1])
    return levels, intervals


def _to_levels(data: Data, origins: list[int], z: Tensor) -> Tensor:
    """Scaled differences forecast after each origin (rows of inputs) -> levels of y.

    ``z`` is (B, H), or (B, S, H) for S sample paths per origin: each origin is integrated once,
    from its own known history."""
    diffs = data.scaler.inverse(z)
    if not data.differencer.lags:
        return diffs
    out = [
        data.differencer.integrate(data.y[: o + data.lost + 1], d)
        for o, d in zip(origins, diffs, strict=True)
    ]
    return torch.stack(out)


def backtest(
    model: Forecaster, data: Data, part: str, cfg: DataConfig, arima: Arima | None, seed: int = 0
) -> Backtest:
    """Rolling-origin forecasts of the model and the baselines over a part."""
    H = cfg.horizon
    origins = part_origins(data, part, cfg.lookback, H)
    at = [o + data.lost for o in origins]  # the same origins as indices of y
    truth = torch.stack([data.y[t + 1 : t + H + 1] for t in at])
    mean, intervals = model_forecast(model, data, origins, cfg.lookback, H, SAMPLES, seed)
    forecasts = {"model": mean}
    bounds = {"model": intervals} if intervals else {}
    forecasts["naive"] = torch.stack([naive(data.y[: t + 1], H) for t in at])
    if data.season > 1:
        forecasts[f"seasonal naive ({data.season})"] = torch.stack(
            [seasonal_naive(data.y[: t + 1], H, data.season) for t in at]
        )
    if arima is not None:
        name = "ARIMA({},{},{})".format(*arima.order)
        runs = [arima.forecast(data.y[: t + 1], H) for t in at]
        forecasts[name] = torch.stack([m for m, _ in runs])
        bounds[name] = {
            lv: (torch.stack([b[lv][0] for _, b in runs]), torch.stack([b[lv][1] for _, b in runs]))
            for lv in LEVELS
        }
    return Backtest(at, truth, forecasts, bounds)


def score_backtest(bt: Backtest, scale: float) -> dict[str, Any]:
    return {
        name: forecast_scores(bt.truth, f, scale, bt.intervals.get(name)) for name, f in bt.forecasts.items()
    }


def fit_arima(data: Data, cfg: DataConfig) -> Arima:
    """ARIMA on the series before the test part, with --arima-order or the AIC search's order."""
    before = data.y[: data.val_end + data.lost]
    order = parse_order(cfg.arima_order) if cfg.arima_order else arima_order(before)[0]
    return Arima(before, order)


# ---- the predictor: unrolled.load(RUN).forecast() and the exported graph ----------------------
BANDS = {name: NormalDist().inv_cdf(0.5 + int(name) / 200) for name in LEVELS}  # "80" -> 1.2816, "95" -> 1.96


class ForecastGraph(nn.Module):
    """The exported graph: a batch of input windows -> the forecast of the run's horizon.

    ``x`` (B, T, F) float32, the scaled (differenced) target and covariates, oldest first (the
    model reads any T; it was trained on T = lookback) -> ``mean`` (B, H) and, with a Gaussian
    head, ``scale`` (B, H), both on the scale of ``x``'s column 0. A recursive model feeds each
    step back inside the graph: ``noise`` (B, H) (Gaussian head) makes the value fed back after
    step h ``mean + scale * noise[:, h]`` (zeros: the mean path), and ``future`` (B, H - 1, C)
    holds the (scaled, differenced) covariates of the steps fed back (runs with covariates).
    """

    def __init__(self, model: Forecaster, horizon: int, extra: list[str]) -> None:
        super().__init__()
        self.model, self.horizon, self.extra = model, horizon, extra

    def forward(self, x: Tensor, a: Tensor | None = None, b: Tensor | None = None) -> tuple[Tensor, ...]:
        extra = dict(zip(self.extra, (a, b), strict=False))  # the optional inputs, by name
        if self.model.recursive:
            mean, scale = self.model.roll(x, self.horizon, extra.get("future"), extra.get("noise"))
        else:
            mean, scale = Forecaster.split(self.model(x)[0])
        return (mean,) if scale is None else (mean, scale)


class ForecastPredictor(Predictor):
    """A forecasting run: :meth:`forecast` past the end of a series, :meth:`export` its network."""

    verbs = ("forecast",)

    @property
    def lookback(self) -> int:
        """L: the input values per window."""
        return int(self.config.data.lookback)

    @property
    def horizon(self) -> int:
        """H: the steps the run was trained to forecast."""
        return int(self.config.data.horizon)

    @property
    def covariates(self) -> list[str]:
        """The covariate columns the model reads besides the target (empty: none)."""
        return list(self.config.data.covariate_names())

    @property
    def scaler(self) -> Scaler:
        """The scaling fitted on the training part (per column: target, then covariates)."""
        return self.run.scaler

    @property
    def differencer(self) -> Differencer:
        d = self.config.data
        return Differencer(d.difference, d.seasonal_difference, run_season(d))

    def series(self) -> Series:
        """The run's own series, read again from its --csv file or built-in series, filled as
        its --fill says."""
        return load_series(self.config.data, self.config.loop.seed)

    @overload
    def forecast(
        self,
        horizon: int | None = None,
        history: Any = None,
        *,
        future: Any = None,
        frame: Literal[False] = False,
        samples: int = SAMPLES,
        seed: int | None = None,
    ) -> dict[str, np.ndarray]: ...

    @overload
    def forecast(
        self,
        horizon: int | None = None,
        history: Any = None,
        *,
        future: Any = None,
        frame: Literal[True],
        samples: int = SAMPLES,
        seed: int | None = None,
    ) -> pd.DataFrame: ...

    @torch.inference_mode()
    def forecast(
        self,
        horizon: int | None = None,
        history: Any = None,
        *,
        future: Any = None,
        frame: bool = False,
        samples: int = SAMPLES,
        seed: int | None = None,
    ) -> dict[str, np.ndarray] | pd.DataFrame:
        """Forecast ``horizon`` values after the end of ``history``.

        Args:
            horizon: the steps to forecast [the run's --horizon]; a direct model forecasts at
                most its horizon, a recursive one any number.
            history: the series' values, oldest first, on their original scale: (T,) array-like
                for a run without covariates, (T, 1 + C) with the target in column 0 and the
                run's covariates after it; at least lookback + the differencing's d + D*S
                values, no NaN. None: the run's own series (what ``unrolled forecast DIR`` does).
            future: (horizon - 1, C) the covariates of the steps after ``history``, which a
                recursive model with covariates feeds back (not needed for horizon 1).
            frame: return a pandas DataFrame (one row per step) instead of the dict.
            samples, seed: a recursive model with a Gaussian head takes its bands from the
                quantiles of ``samples`` sample paths drawn with ``seed`` [the run's --seed].

        Returns:
            ``{"time": labels (H,) (history None only), "mean": (H,), "lower_80", "upper_80",
            "lower_95", "upper_95": (H,)}`` as numpy arrays, float64, on the original scale; the
            bands with a Gaussian head only (``--loss gaussian``). A direct model's bands are
            mean -+ z * sd, its Gaussian's sd carried through the scaling and the differencing
            (z = 1.2816, 1.96: ``BANDS``).

        Raises:
            ValueError: a bad horizon, or a history that is too short, has NaNs or the wrong
                number of columns (the message says what was expected).
        """
        if horizon is not None and (
            isinstance(horizon, bool) or not isinstance(horizon, Integral) or horizon <= 0
        ):
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
        H = self.horizon if horizon is None else int(horizon)
        model: Forecaster = self.model  # type: ignore[assignment]
        if not model.recursive and H > self.horizon:
            raise ValueError(
                f"a direct model forecasts at most the {self.horizon} steps it was trained for, "
                f"not {H}: train with --horizon {H}, or use --strategy recursive"
            )
        times: list[str] | None = None
        if history is None:
            series = self.series()
            y, cov = series.values, series.covariates
            self._check_length(len(series), f"the run's series ({series.source})")
            times = future_times(series, H)
        else:
            y, cov = self._history(history)
        C = cov.size(1)
        fut = None
        if model.recursive and C and H > 1:
            if future is None:
                raise ValueError(
                    "a recursive model with covariates needs their future values, which the series does not "
                    "have past its end: forecast --horizon 1, or train with --strategy direct (in Python: "
                    "forecast(history=..., future=...) with the covariates of the steps after the history)"
                    if history is None
                    else f"a recursive model with covariates feeds back their values: give future= "
                    f"({H - 1}, {C}) covariates of the steps after the history, or forecast horizon=1"
                )
            fut = self._future(cov, future, H)
        z = self.scaler.transform(self.differencer.apply(torch.cat([y[:, None], cov], dim=1)))
        x = z[-self.lookback :][None].float().to(self.device)
        if fut is not None:
            fut = fut[None].float().to(self.device)
        out = forecast_levels(model, self.scaler, self.differencer, y, x, H, fut, samples, self._seed(seed))
        result: dict[str, Any] = {} if times is None else {"time": np.array(times)}
        result |= {k: v.numpy() for k, v in out.items()}
        if not frame:
            return result
        try:
            import pandas as pd
        except ImportError:
            raise ValueError("forecast(frame=True) needs pandas: pip install pandas") from None
        index = pd.Index(result.pop("time"), name="time") if "time" in result else None
        return pd.DataFrame(result, index=index)

    def _seed(self, seed: int | None) -> int:
        return int(self.config.loop.seed if seed is None else seed)

    def _check_length(self, T: int, what: str) -> None:
        need = self.differencer.lost + self.lookback
        if T < need:
            raise ValueError(
                f"{what} has {T} values; this run needs at least {need}: --lookback "
                f"{self.lookback} + {self.differencer.lost} lost to differencing"
            )

    def _history(self, history: Any) -> tuple[Tensor, Tensor]:
        """A history given by the caller -> y (T,), covariates (T, C), checked."""
        C = len(self.covariates)
        try:
            h = np.asarray(history, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("history must be numbers: a (T,) or (T, 1 + covariates) array-like") from None
        if h.ndim == 1 and C == 0:
            h = h[:, None]
        if h.ndim != 2 or h.shape[1] != 1 + C:
            want = (
                "(T,) or (T, 1): the run has no covariates"
                if C == 0
                else f"(T, {1 + C}): the target, then {', '.join(self.covariates)}"
            )
            raise ValueError(f"history must have shape {want}; got shape {h.shape}")
        self._check_length(h.shape[0], "history")
        _no_nans(h, "history")
        t = torch.from_numpy(h.copy())
        return t[:, 0], t[:, 1:]

    def _future(self, cov: Tensor, future: Any, H: int) -> Tensor:
        """Raw future covariates (H - 1, C) -> their scaled differences, as the model reads them."""
        C = cov.size(1)
        try:
            f = np.asarray(future, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"future must be numbers: ({H - 1}, {C}) covariate values") from None
        if f.ndim == 1 and C == 1:
            f = f[:, None]
        if f.shape != (H - 1, C):
            raise ValueError(
                f"future must hold the covariates ({', '.join(self.covariates)}) of the {H - 1} steps after "
                f"the history, shape ({H - 1}, {C}); got shape {f.shape}"
            )
        _no_nans(f, "future")
        full = torch.cat([cov, torch.from_numpy(f.copy())])
        diffs = self.differencer.apply(full)[-(H - 1) :]
        mean = torch.tensor(self.scaler.mean[1:], dtype=torch.float64)
        sd = torch.tensor(self.scaler.sd[1:], dtype=torch.float64)
        return (diffs - mean) / sd

    # ---- export ---------------------------------------------------------------------------
    def export_graphs(self) -> list[Graph]:
        model: Forecaster = self.model  # type: ignore[assignment]
        H, F, C = self.horizon, 1 + len(self.covariates), len(self.covariates)
        extra = []
        if model.recursive and model.gaussian:
            extra.append("noise")
        if model.recursive and C and H > 1:
            extra.append("future")

        def inputs(B: int, T: int) -> dict[str, Tensor]:
            g = torch.Generator().manual_seed(B * 100 + T)
            out = {"x": torch.randn(B, T, F, generator=g)}
            if "noise" in extra:
                out["noise"] = torch.randn(B, H, generator=g)
            if "future" in extra:
                out["future"] = torch.randn(B, H - 1, C, generator=g)
            return out

        doc = {
            "x": "(batch, time, features) float32: the last `lookback` values of the differenced series, "
            "scaled by the sidecar's scaler (column 0 the target, then the covariates), oldest first",
            "noise": "(batch, horizon) float32 standard normal draws: the value fed back after step h is "
            "mean[:, h] + scale[:, h] * noise[:, h]; zeros give the mean path",
            "future": "(batch, horizon - 1, covariates) float32: the covariates of the steps fed back, "
            "differenced and scaled like x's columns 1..",
            "mean": "(batch, horizon) float32: the forecast of the scaled differences (x's column 0)",
            "scale": "(batch, horizon) float32: the sd of each step's Gaussian, on the same scale as mean",
        }
        outputs = ["mean", "scale"] if model.gaussian else ["mean"]
        dynamic = {"x": {0: "batch", 1: "time"}, **{k: {0: "batch"} for k in extra}}
        doc = {k: v for k, v in doc.items() if k in ("x", *extra, *outputs)}
        graph = ForecastGraph(model, H, extra)
        return [Graph("forecaster", graph, inputs(2, 3), outputs, dynamic, inputs(3, 5), doc)]

    def export_meta(self) -> dict[str, Any]:
        d, model = self.config.data, self.model
        differencer = self.differencer
        meta: dict[str, Any] = {
            "target": d.column or d.series,
            "covariates": self.covariates,
            "lookback": self.lookback,
            "horizon": self.horizon,
            "strategy": self.config.model.strategy,
            "gaussian": bool(getattr(model, "gaussian", False)),
            "scaler": {"mean": list(self.scaler.mean), "sd": list(self.scaler.sd)},
            "difference": differencer.d,
            "seasonal_difference": differencer.seasonal,
            "season": differencer.season,
            "lags": list(differencer.lags),
            "bands": dict(BANDS),
        }
        if meta["gaussian"] and meta["strategy"] == "recursive":
            meta["samples"] = SAMPLES
            meta["seed"] = self._seed(None)
        meta["recipe"] = (
            "x = the raw values (target, then covariates) differenced at each lag of `lags` in turn "
            "(v[lag:] - v[:-lag]), minus scaler.mean, divided by scaler.sd (per column): its last "
            "`lookback` rows. Back: d = mean * scaler.sd[0] + scaler.mean[0] are the forecast differences; "
            "undo the lags in reverse order onto the raw history (v_t = d_t + v_{t-lag}): the levels. "
            "Bands of a direct gaussian run: level -+ bands[p] * sqrt((scale * scaler.sd[0])**2 @ A**2), A "
            "the (horizon, horizon) identity integrated onto a zero history. Recursive gaussian: the "
            "percentiles of `samples` sample paths (the noise input) after integration. "
            "See docs/python_api.md."
        )
        return meta


def _no_nans(a: np.ndarray, what: str) -> None:
    bad = np.isnan(a).any(axis=1) if a.ndim == 2 else np.isnan(a)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what} has missing values (NaN) in {int(bad.sum())} of its {len(a)} rows, the first at "
            f"index {first}: fill them first (as --fill ffill or interpolate would)"
        )


def sample_noise(samples: int, horizon: int, seed: int) -> Tensor:
    """The standard normal draws (samples, horizon) behind a recursive Gaussian forecast's bands:
    ``torch.randn(samples, horizon, generator=torch.Generator().manual_seed(seed))``."""
    return torch.randn(samples, horizon, generator=torch.Generator().manual_seed(seed))


def forecast_levels(
    model: Forecaster,
    scaler: Scaler,
    differencer: Differencer,
    y: Tensor,
    x: Tensor,
    horizon: int,
    future: Tensor | None = None,
    samples: int = SAMPLES,
    seed: int = 0,
) -> dict[str, Tensor]:
    """The forecast after one window on the original scale: ``{"mean": (H,)}`` and, with a Gaussian
    head, ``lower_80``, ``upper_80``, ``lower_95``, ``upper_95`` (H,), float64 on the CPU.

    ``y`` (T,) the known levels up to the origin, ``x`` (1, L, F) the model's input window (and
    ``future`` (1, H - 1, C) for a recursive model with covariates). A direct model's bands are
    Gaussian: its sd per step carried through the scaling and (linearly) the integration; a
    recursive model's are the quantiles of ``samples`` sample paths drawn with ``seed``.
    """
    sd0, mean0 = scaler.sd[0], scaler.mean[0]

    def levels(z: Tensor) -> Tensor:  # scaled differences (..., H) -> levels (..., H)
        diffs = z.double().cpu() * sd0 + mean0
        return differencer.integrate(y, diffs) if differencer.lags else diffs

    if model.recursive:
        out = {"mean": levels(model.roll(x, horizon, future)[0][0])}  # the mean path
        if model.gaussian:
            noise = sample_noise(samples, horizon, seed).to(x)
            rep = None if future is None else future.expand(samples, -1, -1)
            mean, sigma = model.roll(x.expand(samples, -1, -1), horizon, rep, noise)
            assert sigma is not None
            path_levels = levels(mean + sigma * noise)  # (S, H)
            for name in LEVELS:
                a = (1 - int(name) / 100) / 2
                q = torch.quantile(path_levels, torch.tensor([a, 1 - a], dtype=torch.float64), dim=0)
                out[f"lower_{name}"], out[f"upper_{name}"] = q[0], q[1]
        return out
    mean, sigma = Forecaster.split(model(x)[0][:, :horizon])
    out = {"mean": levels(mean[0])}
    if sigma is not None:
        # levels = integrate(y, diffs) is linear in diffs: levels = integrate(y, 0) + diffs @ A
        eye = torch.eye(horizon, dtype=torch.float64)
        A = differencer.integrate(torch.zeros_like(y), eye) if differencer.lags else eye
        sd = ((sigma[0].double().cpu() * sd0) ** 2 @ A**2).sqrt()
        for name in LEVELS:
            z = BANDS[name]
            out[f"lower_{name}"], out[f"upper_{name}"] = out["mean"] - z * sd, out["mean"] + z * sd
    return out


# ---- the task ------------------------------------------------------------------------------
def _scaler(obj: Any) -> Scaler:
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("mean"), list)
        or not isinstance(obj.get("sd"), list)
    ):
        raise ValueError("scaler.json is not a {mean: [...], sd: [...]} object")
    return Scaler(obj["mean"], obj["sd"])


class Forecast(Task):
    """Forecasting as a :class:`Task`: training, ``eval`` (backtest), and ``forecast``."""

    name = "forecast"
    help = "time-series forecaster (any recurrent cell) with naive, seasonal naive and ARIMA baselines"
    description = (
        "Train a recurrent forecaster on one column of a CSV file (--csv FILE --column NAME, a header "
        "row) or a built-in series (--series: " + ", ".join(BUILTIN) + "). The series is split in time: "
        "the last --test-size points are the test part, the --val-size before them the validation part "
        "(picks the best weights), the rest trains; scaling is fitted on the training part only. Each "
        "window has --lookback inputs and --horizon targets. At the end, the model and the baselines "
        "(naive, seasonal naive, ARIMA) are backtested from every origin of the test part: RMSE, MAE, "
        "MASE, sMAPE (and interval coverage with --loss gaussian) go to results.json, the plot to "
        "forecast.png."
    )
    Config = ForecastConfig
    Predictor = ForecastPredictor
    assets = {"scaler": Asset(SCALER, _scaler, Scaler.to_json)}
    unit = "windows"
    default_limits = {"max_minutes": 5.0, "max_epochs": 300.0}
    eval_inputs = {
        "csv": "forecasting runs: a CSV file with the run's columns to backtest [the run's series]"
    }
    eval_optional = True

    def prepare(self, config: ForecastConfig, assets: dict[str, Any] | None) -> Prepared:
        series = load_series(config.data, config.loop.seed)
        data = prepare_data(config.data, series, assets["scaler"] if assets else None)
        info = {
            "source": series.source,
            "points": len(series),
            "parts": {
                "train": data.train_end + data.lost,
                "val": data.val_end - data.train_end,
                "test": data.inputs.size(0) - data.val_end,
            },
            "season": data.season,
        }
        return Prepared({"scaler": data.scaler}, data, series.sha256, series.source, info)

    def build_model(self, config: ForecastConfig, assets: dict[str, Any]) -> nn.Module:
        m, d = config.model, config.data
        m.validate()
        features = 1 + len(d.covariate_names())
        rnn = m.build_recurrent(features, dropout=m.dropout)
        return Forecaster(rnn, d.horizon, m.strategy, gaussian=m.loss == "gaussian", dropout=m.dropout)

    def fit(self, config: ForecastConfig, model: nn.Module, prepared: Prepared) -> Fit:
        data, d, loss = prepared.data, config.data, config.model.loss
        recursive = config.model.strategy == "recursive"
        origins = window_origins(0, data.train_end, d.lookback, d.horizon)
        if not origins:
            raise ValueError("the training part has no whole window: use a smaller --lookback or --horizon")
        batches = WindowBatches(
            data.inputs, origins, d.lookback, d.horizon, recursive, d.batch_size, seed=config.loop.seed
        )
        scale, _ = mase_scale(data.y[: data.train_end + data.lost], data.season)

        def loss_fn(m: nn.Module, x: Tensor, y: Tensor, state: Any) -> tuple[Tensor, None, int]:
            out, _ = m(x)
            return forecast_loss(out, y, loss), None, x.size(0)  # windows

        val_origins = part_origins(data, "val", d.lookback, d.horizon)
        pairs = [window(data.inputs.float(), o, d.lookback, d.horizon, recursive) for o in val_origins]
        val_windows = torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])
        truth = torch.stack([data.y[o + data.lost + 1 : o + data.lost + d.horizon + 1] for o in val_origins])

        def validate(m: nn.Module) -> dict[str, float]:
            was_training = m.training
            m.eval()
            with torch.no_grad():
                x, y = (t.to(model_device(m)) for t in val_windows)
                val_loss = float(forecast_loss(m(x)[0], y, loss))
            m.train(was_training)
            mean, _ = model_forecast(m, data, val_origins, d.lookback, d.horizon)
            s = forecast_scores(truth, mean, scale)
            return {"val_loss": val_loss, "val_rmse": s["rmse"], "val_mase": s["mase"]}

        # the best weights forecast best: RMSE of the H-step forecasts on the original scale; with a
        # Gaussian head the likelihood, which judges the scale (the intervals) as well as the mean
        select = "val_loss" if loss == "gaussian" else "val_rmse"
        # MASE 1 is the (seasonal) naive forecast's error on the training part
        bound = Bound("val_mase", 1.0, "the naive forecast's MASE (1)", factor=10.0)
        return Fit(batches, loss_fn, validate, select=(select, "min"), bound=bound)

    def finish(self, run: Run, state: TrainerState, prepared: Prepared) -> dict[str, Any]:
        data = prepared.data
        results = evaluate_series(run, data, seed=run.config.loop.seed)
        results["best_step"] = state.best_step
        save_plot(run, data, results["_backtest"], run.path / PLOT)
        del results["_backtest"]
        return results

    def evaluate(self, run: Run, **inputs: Any) -> dict[str, Any]:
        d = run.config.data
        if inputs.get("csv"):
            if d.csv is None:
                raise ValueError("this run was trained on a built-in --series; --csv applies to --csv runs")
            series = fill_missing(
                read_csv_series(inputs["csv"], d.column, d.covariate_names(), d.time_column), d.fill
            )
        else:
            series = load_series(d, run.config.loop.seed)
        data = prepare_data(d, series, run.scaler)
        results = evaluate_series(run, data, seed=run.config.loop.seed)
        del results["_backtest"]
        return results

    def eval_line(self, result: dict[str, Any], **inputs: str) -> str:
        return table(result)

    def describe_val(self, record: dict[str, Any]) -> tuple[str, str]:
        return f"rmse {record['val_rmse']:.4g}", (
            f"val RMSE {record['val_rmse']:.4g}, MASE {record['val_mase']:.3f}"
        )

    def report(self, run: Run, state: TrainerState, results: Any, args: argparse.Namespace) -> None:
        self.print_summary(run, state)
        print(table(results))
        print(f"plot: {run.path / PLOT}")

    def add_commands(self, commands: Any) -> None:
        p = commands.add_parser(
            "forecast",
            help="forecast past the end of a forecasting run's series",
            description=(
                "Forecast the next --horizon values after the last point of the run's series (read "
                "again from its --csv file or built-in series), with 80% and 95% intervals when the "
                "run has a Gaussian head. Prints time, forecast (and bounds), or writes them to --csv."
            ),
        )
        self.add_run_argument(p, "run directory of `unrolled train forecast`")
        p.add_argument("--horizon", type=int, metavar="N", help="values to forecast [the run's --horizon]")
        p.add_argument("--csv", metavar="FILE", help="write the forecast as CSV to FILE")
        p.add_argument("--plot", metavar="PNG", help="draw the history and the forecast into PNG")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.set_defaults(func=self._cmd_forecast)

    def _cmd_forecast(self, args: argparse.Namespace) -> int:
        if args.horizon is not None and args.horizon <= 0:
            raise ValueError(f"--horizon must be positive, got {args.horizon}")
        if args.plot is not None and not args.plot.lower().endswith(".png"):
            raise ValueError(f"--plot writes a PNG file: give a name ending in .png, got {args.plot!r}")
        predictor = self.load_args(args)
        assert isinstance(predictor, ForecastPredictor)
        result = predictor.forecast(args.horizon)
        rows = forecast_rows(result)
        if args.csv:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
            ckpt.atomic_write_bytes(Path(args.csv), buf.getvalue().encode("utf-8"))
        if args.plot:
            save_future_plot(predictor.series(), rows, Path(args.plot))
        if args.json:
            print(json.dumps({"run": str(predictor.path), "horizon": len(rows), "forecast": rows}))
        elif not args.csv:
            for row in rows:
                print("\t".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()))
        if args.csv or args.plot:
            print(f"written: {', '.join(x for x in (args.csv, args.plot) if x)}", file=sys.stderr)
        return 0


def forecast_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """:meth:`ForecastPredictor.forecast`'s dict -> the rows ``unrolled forecast`` prints: time,
    forecast, and lo80, hi80, lo95, hi95 with a Gaussian head."""
    rows: list[dict[str, Any]] = []
    for h, value in enumerate(result["mean"].tolist()):
        row: dict[str, Any] = {"time": str(result["time"][h]) if "time" in result else str(h + 1)}
        row["forecast"] = value
        for name in LEVELS:
            if f"lower_{name}" in result:
                row[f"lo{name}"] = float(result[f"lower_{name}"][h])
                row[f"hi{name}"] = float(result[f"upper_{name}"][h])
        rows.append(row)
    return rows


TASK = Forecast()
open_run = TASK.open_run
train = TASK.train


def evaluate_series(run: Run, data: Data, seed: int = 0) -> dict[str, Any]:
    """Backtest scores of the model and every baseline on the test part (and on validation)."""
    d = run.config.data
    arima = fit_arima(data, d)
    scale, lag = mase_scale(data.y[: data.train_end + data.lost], data.season)
    test = backtest(run.model, data, "test", d, arima, seed)
    val = backtest(run.model, data, "val", d, None, seed)
    return {
        "horizon": d.horizon,
        "season": data.season,
        "mase_scale": scale,
        "mase_lag": lag,
        "arima": {"order": list(arima.order), "aic": arima.aic, "searched": d.arima_order is None},
        "test": score_backtest(test, scale),
        "val": score_backtest(val, scale),
        "_backtest": test,
    }


def table(results: dict[str, Any]) -> str:
    """The test scores of the model and the baselines, one row each."""
    rows = results["test"]
    cov = any("coverage80" in r for r in rows.values())
    part = f"test part ({next(iter(rows.values()))['origins']} origins)"
    head = f"{part:<26} {'RMSE':>10} {'MAE':>10} {'MASE':>7} {'sMAPE':>7}"
    lines = [head + ("  cover80  cover95" if cov else "")]
    for name, r in rows.items():
        line = f"{name:<26} {r['rmse']:>10.4g} {r['mae']:>10.4g} {r['mase']:>7.3f} {r['smape']:>7.2f}"
        if cov and "coverage80" in r:
            line += f" {r['coverage80']:>8.2f} {r['coverage95']:>8.2f}"
        lines.append(line)
    return "\n".join(lines)


def future_times(series: Series, horizon: int) -> list[str]:
    """Labels of the steps after the end: the next integers when the labels are integers."""
    last = series.times[-1] if series.times else str(len(series) - 1)
    try:
        step = int(series.times[-1]) - int(series.times[-2]) if len(series.times) > 1 else 1
        return [str(int(last) + step * (h + 1)) for h in range(horizon)]
    except ValueError:
        return [f"{last}+{h + 1}" for h in range(horizon)]


def _axis(series: Series) -> Any:
    """x positions of the points: the time labels when they are numbers (years), else indices."""
    try:
        return [float(t) for t in series.times] if len(series.times) == len(series) else None
    except ValueError:
        return None


def _x(axis: Any, index: int) -> float:
    """x of point ``index``, extrapolating the labels' last step past the end."""
    if axis is None:
        return float(index)
    if index < len(axis):
        return axis[index]
    step = axis[-1] - axis[-2] if len(axis) > 1 else 1.0
    return axis[-1] + step * (index - len(axis) + 1)


def save_plot(run: Run, data: Data, bt: Backtest, path: Path) -> None:
    """History, test truth, and the model's and ARIMA's forecasts from non-overlapping origins
    (every H-th), with their 95% intervals where they have them."""
    from ..plotting import pyplot, save_png

    plt = pyplot()
    H = run.config.data.horizon
    axis = _axis(data.series)
    fig, ax = plt.subplots(figsize=(10, 4))
    start = max(0, bt.origins[0] - 4 * max(len(bt.origins), 30))
    ax.plot(
        [_x(axis, i) for i in range(start, len(data.y))], data.y[start:], color="black", lw=1, label="series"
    )
    ax.axvline((_x(axis, bt.origins[0]) + _x(axis, bt.origins[0] + 1)) / 2, color="grey", ls=":", lw=0.8)
    picks = list(range(0, len(bt.origins), H))
    for name, f in bt.forecasts.items():
        if name != "model" and not name.startswith("ARIMA"):
            continue
        colour = "C0" if name == "model" else "C1"
        for j, i in enumerate(picks):
            steps = [_x(axis, bt.origins[i] + h) for h in range(1, H + 1)]
            label = name if j == 0 else None
            if name in bt.intervals:
                lo, hi = bt.intervals[name]["95"]
                if H == 1:
                    below, above = f[i] - lo[i], hi[i] - f[i]
                    ax.errorbar(steps, f[i], yerr=[below, above], color=colour, fmt=".", lw=0.8, label=label)
                    continue
                ax.fill_between(steps, lo[i], hi[i], color=colour, alpha=0.15, lw=0)
            ax.plot(steps, f[i], color=colour, lw=1.3, marker="." if H == 1 else None, label=label)
    every = "from each origin" if H == 1 else f"from every {H}th origin"
    bands = " (bands, bars: 95% intervals)" if bt.intervals else ""
    ax.set_title(f"{data.series.name}: the test part, {H}-step forecasts {every}{bands}", fontsize=9)
    ax.set_xlabel("time" if axis is not None else "time index")
    ax.legend(fontsize=8, loc="upper left")  # "best" warns when placing it takes >1 s (a busy CPU)
    fig.tight_layout()
    save_png(fig, path)


def save_future_plot(series: Series, rows: list[dict[str, Any]], path: Path) -> None:
    """The end of the series and the forecast past it, with the 80% and 95% intervals if any."""
    from ..plotting import pyplot, save_png

    plt = pyplot()
    axis = _axis(series)
    fig, ax = plt.subplots(figsize=(10, 4))
    n = len(series)
    start = max(0, n - 5 * len(rows) - 50)
    ax.plot(
        [_x(axis, i) for i in range(start, n)], series.values[start:], color="black", lw=1, label="series"
    )
    steps = [_x(axis, n + h) for h in range(len(rows))]
    ax.plot(steps, [r["forecast"] for r in rows], color="C0", label="forecast")
    if "lo95" in rows[0]:
        ax.fill_between(
            steps, [r["lo95"] for r in rows], [r["hi95"] for r in rows], color="C0", alpha=0.15, label="95%"
        )
        ax.fill_between(
            steps, [r["lo80"] for r in rows], [r["hi80"] for r in rows], color="C0", alpha=0.25, label="80%"
        )
    ax.set_title(f"{series.name}: forecast of the next {len(rows)} values", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_png(fig, path)
