"""Time series for forecasting: reading them, splitting them in time, differencing, scaling, windows.

A :class:`Series` is one target column (float64, in time order) with optional covariate columns
and time labels. It comes from a CSV file with a header row (:func:`read_csv_series`) or is
built in (:func:`builtin_series`): the lecture's sine wave, generated, or a real series that
the ``statsmodels`` package ships (loaded at run time; nothing is stored here).

The rest keeps the future out of the past:

- :func:`split_points`: train | validation | test, in time order; the test part is the last
  ``test_size`` points, the validation part the ``val_size`` before it;
- :class:`Differencer`: z_t = (1 - B)^d (1 - B^S)^D y_t, and its inverse from known past values;
- :class:`Scaler`: (z - mean) / sd with mean and sd of the training part only;
- :func:`window_origins`: the origins t of windows whose inputs are z[t-L+1 .. t] and whose
  targets z[t+1 .. t+H] all lie inside one part.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .batching import GroupedBatches

FILLS = ("none", "ffill", "interpolate")
BUILTIN = {
    "sine": "the lecture's sine wave, sin(2 pi t / 50) (+ --noise), 1,000 points",
    "sunspots": "yearly mean sunspot numbers, 1700-2008 (statsmodels)",
    "co2": "weekly Mauna Loa CO2 (ppm), 1958-2001 (statsmodels; 59 missing weeks: --fill)",
    "nile": "yearly flow of the Nile at Aswan, 1871-1970 (statsmodels)",
    "elnino": "monthly Pacific sea-surface temperature, 1950-2010 (statsmodels)",
}
SEASONS = {"sine": 50, "sunspots": 11, "co2": 52, "nile": 1, "elnino": 12}  # the natural --season


@dataclass
class Series:
    """A target series (T,) with covariates (T, C) and time labels, as read; NaN = missing."""

    name: str  # the target's name (column or built-in series)
    values: Tensor  # (T,) float64
    covariates: Tensor  # (T, C) float64, C >= 0
    covariate_names: list[str] = field(default_factory=list)
    times: list[str] = field(default_factory=list)  # one label per point, or empty
    source: str = ""
    sha256: str = ""

    def __len__(self) -> int:
        return self.values.numel()


def _number(text: str) -> float:
    value = float(text)  # ValueError for words; "nan", "inf" parse: refused below
    if math.isinf(value):
        raise ValueError(text)
    return value


def read_csv_series(
    path: str | Path, column: str, covariates: list[str] | None = None, time_column: str | None = None
) -> Series:
    """One numeric ``column`` (and ``covariates``) of a CSV file with a header row.

    Empty cells (and NA, NaN, null; a blank row inside the file) are missing values, kept as NaN
    for :func:`fill_missing`; anything else that is not a number is an error naming its row and
    value.
    """
    from .text import read_text

    text = read_text(path)
    rows = list(csv.reader(text.splitlines()))
    if len(rows) < 2:
        raise ValueError(f"{str(path)!r} needs a header row and at least one row of values")
    header = [h.strip() for h in rows[0]]
    wanted = [column, *(covariates or []), *([time_column] if time_column else [])]
    for name in wanted:
        if name not in header:
            raise ValueError(f"no column {name!r} in {str(path)!r}: its columns are {', '.join(header)}")
    index = {name: header.index(name) for name in wanted}
    numeric = [column, *(covariates or [])]
    data: dict[str, list[float]] = {name: [] for name in numeric}
    times: list[str] = []
    while len(rows) > 1 and not any(cell.strip() for cell in rows[-1]):
        rows.pop()  # blank lines at the end; a blank row inside is a time step with missing values
    for r, row in enumerate(rows[1:], start=2):  # row numbers as in a spreadsheet: the header is 1
        for name in numeric:
            cell = row[index[name]].strip() if index[name] < len(row) else ""
            if cell.lower() in ("", "na", "nan", "null"):
                data[name].append(math.nan)
                continue
            try:
                data[name].append(_number(cell))
            except ValueError:
                raise ValueError(
                    f"row {r} of {str(path)!r}: column {name!r} holds {cell!r}, which is not a number"
                ) from None
        if time_column:
            times.append(row[index[time_column]].strip() if index[time_column] < len(row) else "")
    values = torch.tensor(data[column], dtype=torch.float64)
    cov = torch.tensor([data[c] for c in covariates or []], dtype=torch.float64).reshape(-1, len(values)).T
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Series(column, values, cov, list(covariates or []), times, str(path), sha)


def builtin_series(name: str, noise: float = 0.0, seed: int = 0) -> Series:
    """A built-in series by name (see :data:`BUILTIN`)."""
    if name not in BUILTIN:
        raise ValueError(f"unknown --series {name!r}: expected one of {', '.join(BUILTIN)}")
    if name == "sine":
        t = torch.arange(1000, dtype=torch.float64)
        y = torch.sin(2 * math.pi * t / 50)
        if noise:
            g = torch.Generator().manual_seed(seed)
            y = y + noise * torch.randn(1000, generator=g, dtype=torch.float64)
        times = [str(i) for i in range(1000)]
        return _series(name, y, times, f"sine (noise {noise:g})")
    try:
        import statsmodels.api as sm
    except ImportError:  # a dependency; a broken install should still say what to do
        raise ValueError(
            f"--series {name} needs the 'statsmodels' package: pip install statsmodels"
        ) from None
    frame = getattr(sm.datasets, name).load_pandas().data
    if name == "sunspots":
        y, times = frame["SUNACTIVITY"].to_numpy(), [str(int(v)) for v in frame["YEAR"]]
    elif name == "nile":
        y, times = frame["volume"].to_numpy(), [str(int(v)) for v in frame["year"]]
    elif name == "co2":
        y = frame["co2"].to_numpy()
        times = [str(t.date()) for t in frame.index]
    else:  # elnino: one row per year, one column per month
        months = list(frame.columns[1:])
        y = frame[months].to_numpy().reshape(-1)
        times = [f"{int(year)}-{m + 1:02d}" for year in frame["YEAR"] for m in range(12)]
    return _series(name, torch.tensor(y, dtype=torch.float64), times, f"{name} (statsmodels)")


def _series(name: str, y: Tensor, times: list[str], source: str) -> Series:
    sha = hashlib.sha256(y.numpy().tobytes()).hexdigest()
    return Series(name, y, torch.zeros(len(y), 0, dtype=torch.float64), [], times, source, sha)


def fill_missing(series: Series, how: str) -> Series:
    """Fill NaNs: ``ffill`` (the last value seen) or ``interpolate`` (linear between neighbours);
    ``none`` refuses a series with missing values, naming the first. Leading NaNs are refused."""
    if how not in FILLS:
        raise ValueError(f"unknown --fill {how!r}: expected one of {', '.join(FILLS)}")
    columns = [("target " + repr(series.name), series.values)] + [
        (repr(n), series.covariates[:, k]) for k, n in enumerate(series.covariate_names)
    ]
    filled = []
    for label, col in columns:
        missing = torch.isnan(col)
        if not missing.any():
            filled.append(col)
            continue
        first = int(missing.nonzero()[0])
        where = series.times[first] if series.times else f"point {first + 1}"
        if how == "none":
            raise ValueError(
                f"the {label} has {int(missing.sum())} missing values (the first at {where}): "
                "give --fill ffill or --fill interpolate"
            )
        if bool(missing[0]):
            raise ValueError(f"the {label} starts with a missing value ({where}): nothing to fill it from")
        filled.append(_fill(col, how))
    cov = torch.stack(filled[1:], dim=1) if len(filled) > 1 else series.covariates
    return Series(
        series.name, filled[0], cov, series.covariate_names, series.times, series.source, series.sha256
    )


def _fill(col: Tensor, how: str) -> Tensor:
    out = col.clone()
    known = (~torch.isnan(col)).nonzero().squeeze(1)
    for t in torch.isnan(col).nonzero().squeeze(1).tolist():
        before = known[known < t][-1]
        after = known[known > t]
        if how == "ffill" or after.numel() == 0:
            out[t] = col[before]
        else:
            a, b = int(before), int(after[0])
            out[t] = col[a] + (col[b] - col[a]) * (t - a) / (b - a)
    return out


# ---- splitting, differencing, scaling, windows -----------------------------------------------
def split_points(n: int, val_size: int, test_size: int) -> tuple[int, int]:
    """(train_end, val_end): train = [0, train_end), val = [train_end, val_end), test = [val_end, n)."""
    return n - val_size - test_size, n - test_size


class Differencer:
    """z_t = (1 - B^S)^D (1 - B)^d y_t: ``d`` ordinary and ``D`` seasonal differences at lag ``S``.

    ``apply`` drops the first d + D S points (they have no differences). ``integrate`` undoes it
    for a forecast: given the known values y up to an origin and forecast differences
    z_{o+1..o+H}, it returns y_{o+1..o+H}, rebuilding level by level.
    """

    def __init__(self, d: int = 0, seasonal: int = 0, season: int = 1) -> None:
        self.d, self.seasonal, self.season = d, seasonal, season
        self.lags = [1] * d + [season] * seasonal

    @property
    def lost(self) -> int:
        return sum(self.lags)

    def apply(self, y: Tensor) -> Tensor:
        """(T,) -> (T - lost,); along the first dimension for (T, ...) too."""
        for lag in self.lags:
            y = y[lag:] - y[:-lag]
        return y

    def integrate(self, history: Tensor, z: Tensor) -> Tensor:
        """``history`` (n,) the known y up to the origin, ``z`` (..., H) forecast differences ->
        (..., H) forecast levels."""
        levels = [history]
        for lag in self.lags:  # the known series at every stage of differencing
            levels.append(levels[-1][lag:] - levels[-1][:-lag])
        out = z
        for lag, known in zip(reversed(self.lags), reversed(levels[:-1]), strict=True):
            # x_t = dx_t + x_{t-lag}, where x_{t-lag} is known or was just forecast
            H = out.size(-1)
            start = known[-lag:].to(out.dtype).expand(*out.shape[:-1], lag)
            full = torch.cat([start, torch.zeros_like(out)], dim=-1)
            for h in range(H):
                full[..., lag + h] = out[..., h] + full[..., h]
            out = full[..., lag:]
        return out


@dataclass
class Scaler:
    """Standardisation fitted on the training part: (x - mean) / sd, per column."""

    mean: list[float]
    sd: list[float]

    @classmethod
    def fit(cls, x: Tensor, names: list[str]) -> Scaler:
        """``x`` (T, C); ``ValueError`` naming a column that is constant over the training part."""
        sd = x.std(0, unbiased=False)
        for k, s in enumerate(sd.tolist()):
            if not s > 0:
                raise ValueError(
                    f"the {names[k]} is constant over the training part (value {float(x[0, k]):g}): "
                    "there is nothing to learn, and scaling would divide by zero"
                )
        return cls(x.mean(0).tolist(), sd.tolist())

    def transform(self, x: Tensor) -> Tensor:
        return (x - torch.tensor(self.mean, dtype=x.dtype)) / torch.tensor(self.sd, dtype=x.dtype)

    def inverse(self, x: Tensor, column: int = 0) -> Tensor:
        return x * self.sd[column] + self.mean[column]

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "sd": self.sd}


def window_origins(start: int, end: int, lookback: int, horizon: int) -> list[int]:
    """Origins t with inputs [t-L+1, t] inside [0, end) and targets [t+1, t+H] inside [start, end)."""
    first = max(lookback - 1, start - 1)
    return list(range(first, end - horizon))


def window(data: Tensor, origin: int, lookback: int, horizon: int, recursive: bool) -> tuple[Tensor, Tensor]:
    """One training window of ``data`` (T, F), column 0 the target.

    direct: inputs data[o-L+1 .. o] (L, F), targets data[o+1 .. o+H, 0] (H,).
    recursive: inputs data[o-L+1 .. o+H-1] (L+H-1, F), targets data[o-L+2 .. o+H, 0] (L+H-1,):
    at every step the next value (teacher forcing; the lecture's way).
    """
    lo = origin - lookback + 1
    if recursive:
        return data[lo : origin + horizon], data[lo + 1 : origin + horizon + 1, 0]
    return data[lo : origin + 1], data[origin + 1 : origin + horizon + 1, 0]


class WindowBatches(GroupedBatches):
    """The batches of one epoch over the windows at ``origins``: ``(x (B, *, F), y (B, *))``, in an
    order fixed by ``seed`` and the epoch (:class:`GroupedBatches`; the windows are of one length),
    so that a resumed run sees the same batches."""

    def __init__(
        self,
        data: Tensor,
        origins: list[int],
        lookback: int,
        horizon: int,
        recursive: bool,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.data, self.origins = data.float(), origins
        self.lookback, self.horizon, self.recursive = lookback, horizon, recursive
        super().__init__([0] * len(origins), batch_size, shuffle=shuffle, seed=seed)

    def make(self, rows: list[int]) -> tuple[Tensor, Tensor]:
        pairs = [
            window(self.data, self.origins[i], self.lookback, self.horizon, self.recursive) for i in rows
        ]
        return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])
