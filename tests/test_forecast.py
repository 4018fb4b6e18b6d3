"""Forecasting: windows, differencing, baselines, metrics, no look-ahead, the Gaussian head's
intervals, the two strategies, the commands and every bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import doc_block

from unrolled.cli import main
from unrolled.data.series import (
    Differencer,
    Scaler,
    WindowBatches,
    builtin_series,
    fill_missing,
    read_csv_series,
    window,
    window_origins,
)
from unrolled.metrics.forecast import forecast_scores, mase_scale
from unrolled.models.baselines import Arima, naive, seasonal_naive
from unrolled.models.forecaster import Forecaster
from unrolled.tasks.base import RecurrentConfig

SMALL = ["--hidden", "8", "--lookback", "6", "--batch-size", "16", "--no-progress"]


def _csv(path, values, header="value", extra=None):
    lines = [header + ("" if extra is None else f",{extra[0]}")]
    for k, v in enumerate(values):
        lines.append(f"{v}" + ("" if extra is None else f",{extra[1][k]}"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _wave(n: int = 160, seed: int = 0) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64)
    y = 10 + 3 * torch.sin(2 * math.pi * t / 12) + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    return [round(v, 4) for v in y.tolist()]


# ---- windows, differencing, scaling ------------------------------------------------------------
def test_windows_line_up_with_the_series() -> None:
    data = torch.arange(20, dtype=torch.float64)[:, None] * torch.tensor([[1.0, 10.0]])  # target, covariate
    x, y = window(data, origin=5, lookback=3, horizon=2, recursive=False)
    assert x[:, 0].tolist() == [3, 4, 5] and x[:, 1].tolist() == [30, 40, 50] and y.tolist() == [6, 7]
    x, y = window(data, origin=5, lookback=3, horizon=2, recursive=True)
    assert x[:, 0].tolist() == [3, 4, 5, 6] and y.tolist() == [4, 5, 6, 7]  # the next value at each step
    assert window_origins(0, 10, 3, 2) == [2, 3, 4, 5, 6, 7]  # targets up to index 9
    assert window_origins(10, 15, 3, 2) == [9, 10, 11, 12]  # targets 10..14 only; inputs may precede
    batches = WindowBatches(data, window_origins(0, 10, 3, 2), 3, 2, False, 4, seed=1)
    assert len(batches) == 2 and batches[0][0].shape == (4, 3, 2) and batches[1][1].shape == (2, 2)
    seen = sorted(int(x[-1, 0]) for b in batches for x in b[0])
    assert seen == [2, 3, 4, 5, 6, 7]  # every origin once per epoch
    batches.set_epoch(1)
    assert sorted(int(x[-1, 0]) for b in batches for x in b[0]) == seen


@pytest.mark.parametrize("d, D, S", [(1, 0, 1), (2, 0, 1), (0, 1, 4), (1, 1, 4)])
def test_differencing_integrates_back_to_the_series(d: int, D: int, S: int) -> None:
    torch.manual_seed(0)
    y = torch.randn(40, dtype=torch.float64).cumsum(0) + torch.arange(40) * 0.5
    diff = Differencer(d, D, S)
    z = diff.apply(y)
    assert z.numel() == 40 - diff.lost
    for origin in (diff.lost + 3, 30):
        future = z[origin + 1 - diff.lost : origin + 6 - diff.lost]  # the true differences after it
        back = diff.integrate(y[: origin + 1], future[None])[0]
        torch.testing.assert_close(back, y[origin + 1 : origin + 6])


def test_scaler_refuses_a_constant_column() -> None:
    with pytest.raises(ValueError, match="constant over the training part"):
        Scaler.fit(torch.ones(10, 1, dtype=torch.float64), ["target 'x'"])


def test_missing_values_are_named_or_filled(tmp_path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("day,value\nmon,1\ntue,\nwed,4\nthu,NA\nfri,8\n", encoding="utf-8")
    series = read_csv_series(path, "value", time_column="day")
    with pytest.raises(ValueError, match=r"2 missing values \(the first at tue\): give --fill"):
        fill_missing(series, "none")
    assert fill_missing(series, "ffill").values.tolist() == [1, 1, 4, 4, 8]
    assert fill_missing(series, "interpolate").values.tolist() == [1, 2.5, 4, 6, 8]
    (tmp_path / "lead.csv").write_text("value\n\n,\n3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="starts with a missing value"):
        fill_missing(read_csv_series(tmp_path / "lead.csv", "value"), "ffill")


# ---- baselines and metrics by hand --------------------------------------------------------------
def test_baselines_equal_hand_computed_values() -> None:
    history = torch.tensor([5.0, 1.0, 2.0, 3.0, 7.0])
    assert naive(history, 3).tolist() == [7.0, 7.0, 7.0]
    assert seasonal_naive(history, 5, 3).tolist() == [2.0, 3.0, 7.0, 2.0, 3.0]  # the last season repeated
    with pytest.raises(ValueError, match="full season"):
        seasonal_naive(history, 2, 6)


def test_arima_is_statsmodels_run_forward_with_fixed_parameters() -> None:
    from statsmodels.tsa.arima.model import ARIMA

    g = torch.Generator().manual_seed(0)
    y = torch.zeros(120, dtype=torch.float64)
    e = torch.randn(120, generator=g, dtype=torch.float64)
    for t in range(1, 120):
        y[t] = 0.7 * y[t - 1] + e[t]
    model = Arima(y[:100], (1, 0, 0))
    mean, intervals = model.forecast(y[:110], 3)
    phi, c = float(model.result.params[1]), float(model.result.params[0])
    expected = [c + phi**h * (float(y[109]) - c) for h in (1, 2, 3)]  # an AR(1)'s forecast by hand
    torch.testing.assert_close(mean, torch.tensor(expected, dtype=torch.float64))
    assert bool(
        (intervals["95"][0] < intervals["80"][0]).all() and (intervals["80"][1] < intervals["95"][1]).all()
    )
    ref = ARIMA(y[:100].numpy(), order=(1, 0, 0)).fit()
    assert float(ref.params[1]) == pytest.approx(phi)


def test_forecast_scores_by_hand() -> None:
    y = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    f = torch.tensor([[2.0, 2.0], [3.0, 0.0]])
    s = forecast_scores(
        y, f, scale=2.0, intervals={"80": (y - 0.5, y + 0.5 * torch.tensor([[1.0, -1.0], [1, 1]]))}
    )
    assert s["rmse"] == pytest.approx(math.sqrt((1 + 0 + 0 + 16) / 4)) and s["mae"] == pytest.approx(5 / 4)
    assert s["mase"] == pytest.approx(5 / 8)
    assert s["smape"] == pytest.approx((200 * 1 / 3 + 0 + 0 + 200 * 4 / 4) / 4)
    assert s["per_step"]["mae"] == pytest.approx([0.5, 2.0]) and s["per_step"]["rmse"][1] == pytest.approx(
        8**0.5
    )
    assert s["coverage80"] == pytest.approx(3 / 4)
    assert mase_scale(torch.tensor([1.0, 3.0, 2.0, 6.0]), 1) == (pytest.approx(7 / 3), 1)
    assert mase_scale(torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]), 2) == (
        pytest.approx(1.0),
        1,
    )  # exact repeats


# ---- the model ------------------------------------------------------------------------------------
def _forecaster(strategy: str, horizon: int = 1, gaussian: bool = False) -> Forecaster:
    cfg = RecurrentConfig(cell="gru", hidden=6, layers=1)
    return Forecaster(cfg.build_recurrent(2), horizon, strategy, gaussian)


def test_recursive_with_horizon_1_predicts_what_direct_does() -> None:
    torch.manual_seed(0)
    direct, recursive = _forecaster("direct"), _forecaster("recursive")
    recursive.load_state_dict(direct.state_dict())  # the same shapes: one step, one value
    x = torch.randn(5, 9, 2)
    torch.testing.assert_close(direct.forecast(x, 1)[0], recursive.forecast(x, 1)[0])


def test_recursive_forecast_feeds_its_own_output_back() -> None:
    torch.manual_seed(0)
    model = _forecaster("recursive").eval()
    x = torch.randn(2, 7, 2)
    future = torch.randn(2, 2, 1)
    mean, _ = model.forecast(x, 3, future)
    seq = x
    for h in range(3):  # the same by hand: the whole sequence again, one value longer each time
        out, _ = model(seq)
        torch.testing.assert_close(mean[:, h], out[:, -1, 0])
        if h < 2:
            seq = torch.cat([seq, torch.cat([out[:, -1:, :1], future[:, h : h + 1]], dim=-1)], dim=1)


# ---- training and the commands ----------------------------------------------------------------------
def _train(args: list[str]) -> int:
    return main(["train", "forecast", *args])


def test_the_test_part_never_reaches_training(tmp_path) -> None:
    """Poisoning every value of the test part changes neither the scaling nor a single weight."""
    from safetensors.torch import load_file

    clean = _wave()
    poisoned = clean[:-20] + [1e6] * 20
    for name, values in (("clean", clean), ("poisoned", poisoned)):
        _csv(tmp_path / f"{name}.csv", values)
        args = ["--csv", str(tmp_path / f"{name}.csv"), "--column", "value", "--test-size", "20", *SMALL]
        assert _train([*args, "--max-steps", "30", "--eval-every", "10", "--out", str(tmp_path / name)]) == 0
    a = json.loads((tmp_path / "clean" / "scaler.json").read_text())
    b = json.loads((tmp_path / "poisoned" / "scaler.json").read_text())
    assert a == b

    def best(run: str) -> dict[str, torch.Tensor]:
        pointer = json.loads((tmp_path / run / "checkpoint.json").read_text())["best"]
        return load_file(tmp_path / run / pointer / "model.safetensors")

    wa, wb = best("clean"), best("poisoned")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ra = json.loads((tmp_path / "clean" / "results.json").read_text())
    rb = json.loads((tmp_path / "poisoned" / "results.json").read_text())
    assert ra["val"]["model"] == rb["val"]["model"]  # validation never saw the test part either
    assert rb["test"]["model"]["rmse"] > 1e5  # the test part is where the poison is


def test_training_writes_results_plot_and_resumes(tmp_path, capsys) -> None:
    _csv(tmp_path / "w.csv", _wave())
    out = tmp_path / "run"
    args = ["--csv", str(tmp_path / "w.csv"), "--column", "value", "--season", "12", "--horizon", "3", *SMALL]
    assert _train([*args, "--max-steps", "20", "--eval-every", "10", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seasonal naive (12)" in printed and "ARIMA(" in printed and "MASE" in printed
    assert (out / "forecast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert set(results["test"]) >= {"model", "naive", "seasonal naive (12)"}
    assert len(results["test"]["model"]["per_step"]["rmse"]) == 3
    assert main(["train", "forecast", "--resume", str(out), "--max-steps", "10", "--no-progress"]) == 0
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 30
    assert main(["eval", str(out), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["test"]["model"]["origins"] == 16 - 3 + 1
    png, table = tmp_path / "f.png", tmp_path / "f.csv"
    assert main(["forecast", str(out), "--horizon", "2", "--csv", str(table), "--plot", str(png)]) == 0
    assert table.read_text().splitlines()[0] == "time,forecast" and len(table.read_text().splitlines()) == 3
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["eval", str(out), "--data", str(table)]) == 2
    assert "evaluated on its own data, or give --csv FILE (not --data)" in capsys.readouterr().err
    assert main(["forecast", str(out), "--horizon", "4"]) == 2  # direct, trained for 3
    assert "forecasts at most the 3 steps" in capsys.readouterr().err


def test_gaussian_intervals_reach_their_coverage_on_gaussian_noise(tmp_path) -> None:
    g = torch.Generator().manual_seed(3)
    noise = 5 + 2 * torch.randn(2000, generator=g, dtype=torch.float64)
    _csv(tmp_path / "n.csv", [round(v, 5) for v in noise.tolist()])
    out = tmp_path / "g"
    args = ["--csv", str(tmp_path / "n.csv"), "--column", "value", "--loss", "gaussian"]
    parts = ["--test-size", "500", "--val-size", "300"]
    assert _train([*args, *parts, *SMALL, "--max-steps", "300", "--lr", "0.01", "--out", str(out)]) == 0
    model = json.loads((out / "results.json").read_text())["test"]["model"]
    test = noise[-500:]  # the true distribution's own intervals cover this much of these points
    oracle = {
        k: float(((test - 5).abs() <= z * 2).double().mean()) for k, z in (("80", 1.2816), ("95", 1.96))
    }
    # 500 independent points: the binomial sd of a coverage is ~0.018 (80%) and ~0.010 (95%)
    assert (
        abs(model["coverage80"] - oracle["80"]) < 0.05 and abs(model["coverage95"] - oracle["95"]) < 0.03
    ), model
    assert abs(model["coverage80"] - 0.80) < 0.08 and abs(model["coverage95"] - 0.95) < 0.05, model


def test_recursive_sine_stays_within_005_for_100_steps(tmp_path, capsys) -> None:
    out = tmp_path / "sine"
    args = ["--series", "sine", "--strategy", "recursive", "--lookback", "50", "--hidden", "32"]
    loop = ["--batch-size", "64", "--max-steps", "3000", "--patience", "1000", "--no-progress"]
    assert _train([*args, *loop, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["forecast", str(out), "--horizon", "100", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["forecast"]
    truth = [math.sin(2 * math.pi * (1000 + k) / 50) for k in range(100)]
    assert max(abs(r["forecast"] - t) for r, t in zip(rows, truth, strict=True)) < 0.05


# ---- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--column", "price"], "no column 'price' in"),
        (["--lookback", "0"], "--lookback must be positive"),
        (["--horizon", "-1"], "--horizon must be positive"),
        (["--lookback", "150"], "the series has 160 points; it must have at least"),
        (["--season", "200"], "--season 200 is not shorter than the training part"),
        (["--arima-order", "1,x,2"], "--arima-order must be three integers"),
        (["--horizon", "30", "--test-size", "20"], "--horizon 30 is longer than the validation"),
    ],
)
def test_bad_input(extra, message, tmp_path, capsys) -> None:
    _csv(tmp_path / "w.csv", _wave())
    args = ["--csv", str(tmp_path / "w.csv"), "--column", "value", *SMALL]
    if "--column" in extra:
        args = ["--csv", str(tmp_path / "w.csv"), *SMALL]
    assert _train([*args, *extra, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_bad_values_and_series(tmp_path, capsys) -> None:
    (tmp_path / "words.csv").write_text("value\n1\n2\nthree\n", encoding="utf-8")
    _csv(tmp_path / "flat.csv", [4.0] * 100)
    cases = [
        (
            ["--csv", str(tmp_path / "words.csv"), "--column", "value"],
            "row 4 of",
            "'three', which is not a number",
        ),
        (
            ["--csv", str(tmp_path / "flat.csv"), "--column", "value"],
            "is constant over the training part",
            "",
        ),
    ]
    for args, first, second in cases:
        assert _train([*args, *SMALL, "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert first in err and second in err, err
        assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as exit_:  # argparse's choices: one line, exit code 2
        _train(["--series", "tides", "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2 and "invalid choice: 'tides'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown --series 'tides': expected one of sine, sunspots"):
        builtin_series("tides")


def test_builtin_series_load_from_statsmodels() -> None:
    sun = builtin_series("sunspots")
    assert len(sun) == 309 and sun.times[0] == "1700" and sun.times[-1] == "2008"
    assert float(sun.values[0]) == 5.0
    co2 = builtin_series("co2")
    assert bool(torch.isnan(co2.values).any())  # its missing weeks stay missing until --fill
    assert len(builtin_series("elnino")) == 61 * 12


def test_covariates_feed_the_network_and_a_recursive_forecast_needs_their_future(tmp_path, capsys) -> None:
    values = _wave()
    _csv(tmp_path / "c.csv", values, extra=("temp", [round(v / 2, 3) for v in values]))
    out = tmp_path / "cov"
    args = ["--csv", str(tmp_path / "c.csv"), "--column", "value", "--covariates", "temp", "--horizon", "2"]
    assert _train([*args, "--strategy", "recursive", *SMALL, "--max-steps", "10", "--out", str(out)]) == 0
    assert len(json.loads((out / "scaler.json").read_text())["mean"]) == 2  # target and covariate
    capsys.readouterr()
    assert main(["forecast", str(out), "--horizon", "2"]) == 2
    assert "needs their future values" in capsys.readouterr().err
    assert main(["forecast", str(out), "--horizon", "1"]) == 0
    capsys.readouterr()
    bad = ["--csv", str(tmp_path / "c.csv"), "--column", "value", "--covariates", "rain"]
    assert _train([*bad, *SMALL, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no column 'rain' in" in err and "its columns are value, temp" in err


# ---- unrolled.load(RUN).forecast() and the export ----------------------------------------------------
def _series_csv(path):
    """The wave with a year column and a covariate: value, temp."""
    values = _wave()
    rows = [f"{2000 + k},{v},{round(v / 2 + 0.1 * math.cos(k), 3)}" for k, v in enumerate(values)]
    path.write_text("year,value,temp\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def direct_run(tmp_path_factory):
    """A tiny direct run with a Gaussian head, on first differences, with time labels."""
    tmp = tmp_path_factory.mktemp("direct")
    args = ["--csv", str(_series_csv(tmp / "s.csv")), "--column", "value", "--time-column", "year"]
    args += ["--difference", "1", "--horizon", "3", "--loss", "gaussian", "--arima-order", "1,0,0", *SMALL]
    assert _train([*args, "--max-steps", "10", "--eval-every", "10", "--out", str(tmp / "run")]) == 0
    return tmp / "run"


@pytest.fixture(scope="module")
def recursive_run(tmp_path_factory):
    """A tiny recursive run with a Gaussian head and a covariate, on seasonal differences."""
    tmp = tmp_path_factory.mktemp("recursive")
    args = ["--csv", str(_series_csv(tmp / "s.csv")), "--column", "value", "--covariates", "temp"]
    args += ["--strategy", "recursive", "--loss", "gaussian", "--horizon", "3", "--seasonal-difference", "1"]
    args += ["--season", "12", "--arima-order", "1,0,0", *SMALL]
    assert _train([*args, "--max-steps", "10", "--eval-every", "10", "--out", str(tmp / "run")]) == 0
    return tmp / "run"


def test_load_forecast_is_what_the_forecast_command_prints(direct_run, capsys) -> None:
    import unrolled

    predictor = unrolled.load(direct_run)
    result = predictor.forecast()
    capsys.readouterr()
    assert main(["forecast", str(direct_run), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["forecast"]
    assert [r["time"] for r in rows] == list(result["time"]) == ["2160", "2161", "2162"]
    for key, column in [("mean", "forecast"), ("lower_80", "lo80"), ("upper_80", "hi80")]:
        assert [r[column] for r in rows] == result[key].tolist()  # the same numbers, to the last bit
    assert [r["hi95"] for r in rows] == result["upper_95"].tolist()
    assert bool(
        (result["lower_95"] < result["lower_80"]).all() and (result["lower_80"] < result["mean"]).all()
    )
    pd = pytest.importorskip("pandas")
    frame = predictor.forecast(frame=True)
    assert isinstance(frame, pd.DataFrame) and list(frame.index) == ["2160", "2161", "2162"]
    assert frame["upper_95"].tolist() == result["upper_95"].tolist()
    with pytest.raises(
        AttributeError, match=r"a forecast run has no \.translate\(\): its verbs are \.forecast\(\)"
    ):
        predictor.translate(["x"])
    with pytest.raises(ValueError, match="forecasts at most the 3 steps it was trained for, not 4"):
        predictor.forecast(4)


def test_forecast_of_a_given_history(direct_run) -> None:
    import numpy as np

    import unrolled
    from unrolled.tasks.forecast import load_series, model_forecast, prepare_data

    predictor = unrolled.load(direct_run)
    y = predictor.series().values.numpy()
    own, given = predictor.forecast(), predictor.forecast(history=y)
    assert "time" not in given and all(np.array_equal(given[k], own[k]) for k in given)
    # the history up to an origin inside the series: the forecast that the backtest (eval) makes there
    d = predictor.config.data
    data = prepare_data(d, load_series(d), predictor.scaler)
    origin = 80  # a row of the model's inputs: y[origin + 1] (one value lost to differencing)
    mean, _ = model_forecast(predictor.model, data, [origin], d.lookback, 2)
    np.testing.assert_allclose(predictor.forecast(2, history=y[: origin + 2])["mean"], mean[0].numpy())
    with pytest.raises(ValueError, match="history has 6 values; this run needs at least 7: --lookback 6"):
        predictor.forecast(history=y[:6])
    with pytest.raises(ValueError, match="history has missing values .NaN. in 1 of its 50 rows"):
        predictor.forecast(history=np.r_[y[:20], np.nan, y[21:50]])
    with pytest.raises(ValueError, match=r"history must have shape \(T,\)"):
        predictor.forecast(history=np.ones((50, 2)))


def _onnx_forecast(file, history, monkeypatch):
    """The onnxruntime forecast of docs/python_api.md's snippet (a direct run with a Gaussian head),
    run as it stands there on the export ``file`` (named forecaster.onnx, as the snippet reads it)."""
    assert file.name == "forecaster.onnx"
    namespace = {"history": history}
    with monkeypatch.context() as m:
        m.chdir(file.parent)
        block = doc_block("python_api.md", 'InferenceSession("forecaster.onnx")')
        exec(compile(block, "docs/python_api.md", "exec"), namespace)
    return namespace["out"]


def test_export_in_onnxruntime_reproduces_forecast(direct_run, tmp_path, monkeypatch) -> None:
    import numpy as np

    import unrolled
    from unrolled.export import run_onnx

    predictor = unrolled.load(direct_run)
    sidecar = predictor.export(tmp_path / "forecaster.onnx")
    graph = sidecar["graphs"]["forecaster"]
    assert [i["name"] for i in graph["inputs"]] == ["x"] and graph["inputs"][0]["shape"] == [
        "batch",
        "time",
        1,
    ]
    assert [o["name"] for o in graph["outputs"]] == ["mean", "scale"]
    assert sidecar["lags"] == [1] and sidecar["lookback"] == 6 and sidecar["strategy"] == "direct"
    y = predictor.series().values.numpy()
    for history in (y[:7], y[:100], y):  # the docs' numpy around the graph == .forecast()
        got = _onnx_forecast(tmp_path / "forecaster.onnx", history, monkeypatch)
        want = predictor.forecast(history=history)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, err_msg=key)
    # another batch size and any length (the model is recurrent): the raw outputs against PyTorch
    x = torch.randn(3, 11, 1, generator=torch.Generator().manual_seed(0))
    mean, scale = run_onnx((tmp_path / "forecaster.onnx").read_bytes(), {"x": x})
    with torch.no_grad():
        out = predictor.model(x)[0]
    np.testing.assert_allclose(mean, out[..., 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(scale, (torch.nn.functional.softplus(out[..., 1]) + 1e-3).numpy(), atol=1e-5)


def test_export_command_of_a_recursive_run_with_covariates(recursive_run, tmp_path, capsys) -> None:
    """`unrolled export`: the recursive graph feeds its forecast back (noise: sample paths) and reads
    the future covariates; with the predictor's draws it gives .forecast()'s mean and bands."""
    import numpy as np
    import onnxruntime as ort

    import unrolled
    from unrolled.tasks.forecast import sample_noise

    out = tmp_path / "rec.onnx"
    assert main(["export", str(recursive_run), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err and out.is_file()
    meta = json.loads((tmp_path / "rec.onnx.json").read_text(encoding="utf-8"))
    graph = meta["graphs"]["forecaster"]
    assert [i["name"] for i in graph["inputs"]] == ["x", "noise", "future"]
    assert meta["lags"] == [12] and meta["covariates"] == ["temp"] and meta["strategy"] == "recursive"
    predictor = unrolled.load(recursive_run)
    series = predictor.series()
    rows = torch.cat([series.values[:, None], series.covariates], dim=1).numpy()
    history, future = rows[:-2], rows[-2:, 1:]
    want = predictor.forecast(history=history, future=future)
    mu, sd, L, S = np.array(meta["scaler"]["mean"]), np.array(meta["scaler"]["sd"]), 6, meta["samples"]
    x = ((history[12:] - history[:-12] - mu) / sd)[-L:][None].astype(np.float32)
    cov = np.concatenate([history[:, 1:], future])
    f = ((cov[12:] - cov[:-12])[-2:] - mu[1:]) / sd[1:]
    session = ort.InferenceSession(str(out))
    noise = sample_noise(S, 3, meta["seed"]).numpy()
    feeds = {"x": x.repeat(S, 0), "noise": noise, "future": f[None].repeat(S, 0).astype(np.float32)}
    mean, scale = session.run(None, feeds)
    paths = (mean + scale * noise) * sd[0] + mu[0]  # seasonal differences: add the value 12 steps before
    levels = paths + history[-12:-9, 0]
    zero = session.run(None, feeds | {"noise": np.zeros_like(noise)})[0][0] * sd[0] + mu[0]
    np.testing.assert_allclose(zero + history[-12:-9, 0], want["mean"], rtol=1e-4)
    for p in ("80", "95"):
        a = (1 - int(p) / 100) / 2
        lo, hi = np.quantile(levels, [a, 1 - a], axis=0)
        np.testing.assert_allclose(lo, want[f"lower_{p}"], rtol=1e-4)
        np.testing.assert_allclose(hi, want[f"upper_{p}"], rtol=1e-4)
