"""Forecasting yearly sunspots (1700-2008): the recurrent forecaster against naive, seasonal naive
and ARIMA, on the last 30 years, at horizon 1 and 10, over 3 seeds.

    python benchmarks/forecasting.py [--seeds 3] [--out benchmarks/results/forecasting-DATE-cpu2.json]

Protocol, the same for every horizon:

1. The series is split in time: test = the last 30 years (1979-2008), validation = the 30
   before (1949-1978), training = the rest. The model never sees the test part before step 3;
   ARIMA is fitted on training + validation, as the model's weights are chosen on both.
2. Selection, on the validation part only: every setting of a small grid (cell, lookback,
   dropout, strategy) is trained with every seed; the setting with the lowest mean validation
   RMSE wins.
3. The winner's runs (the same seeds) are backtested on the test part from every origin, with
   the baselines from the same origins. Each seed is reported, and the mean.

Everything runs through ``unrolled train forecast`` (the Task API), one run directory per
(horizon, setting, seed) in a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from unrolled.tasks.forecast import TASK, ForecastConfig

GRID = {
    "cell": ["lstm", "gru"],
    "lookback": [12, 40],
    "dropout": [0.0, 0.2],
    "strategy": ["direct", "recursive"],
}


def train(setting: dict, horizon: int, seed: int, out: Path) -> dict:
    cfg = ForecastConfig()
    cfg.data.series, cfg.data.test_size, cfg.data.val_size = "sunspots", 30, 30
    cfg.data.horizon, cfg.data.lookback = horizon, setting["lookback"]
    cfg.model.cell, cfg.model.hidden, cfg.model.dropout = setting["cell"], 64, setting["dropout"]
    cfg.model.strategy = setting["strategy"]
    cfg.model.layers = 1
    cfg.loop.seed = seed
    with contextlib.redirect_stderr(io.StringIO()):
        _, state, results = TASK.train(cfg, out, loop_overrides={"max_minutes": 5.0, "max_epochs": 300.0})
    results["steps"] = state.step
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--horizons", default="1,10", help="comma-separated [1,10]")
    p.add_argument("--out", default=f"benchmarks/results/forecasting-{time.strftime('%Y-%m-%d')}-cpu2.json")
    args = p.parse_args()
    settings = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    report: dict = {
        "series": "sunspots (statsmodels), yearly 1700-2008",
        "test": "last 30 years; validation: the 30 before",
        "grid": GRID,
        "fixed": {
            "hidden": 64,
            "layers": 1,
            "strategy": "direct",
            "loss": "mse",
            "limits": "5 min / 300 epochs",
        },
        "seeds": list(range(args.seeds)),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "horizons": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for H in [int(h) for h in args.horizons.split(",")]:
            runs = {}
            for k, setting in enumerate(settings):
                for seed in range(args.seeds):
                    out = Path(tmp) / f"h{H}-s{k}-seed{seed}"
                    runs[(k, seed)] = train(setting, H, seed, out)
                    v = runs[(k, seed)]["val"]["model"]["rmse"]
                    print(f"H={H} {setting} seed {seed}: val RMSE {v:.2f}", flush=True)
            val = {
                k: statistics.fmean(runs[(k, s)]["val"]["model"]["rmse"] for s in range(args.seeds))
                for k in range(len(settings))
            }
            best = min(val, key=val.get)
            chosen = [runs[(best, s)] for s in range(args.seeds)]
            names = list(chosen[0]["test"])
            table = {
                name: {
                    metric: [r["test"][name][metric] for r in chosen]
                    for metric in ("rmse", "mae", "mase", "smape")
                }
                for name in names
            }
            report["horizons"][str(H)] = {
                "validation_rmse_by_setting": [
                    {**settings[k], "val_rmse": val[k]} for k in range(len(settings))
                ],
                "chosen": settings[best],
                "arima": chosen[0]["arima"],
                "test": table,
                "mean": {n: {m: statistics.fmean(v) for m, v in t.items()} for n, t in table.items()},
                "steps": [r["steps"] for r in chosen],
            }
            print(f"\nH={H}: chosen on validation {settings[best]}; test (30 years), mean over seeds:")
            for name, t in table.items():
                per = ", ".join(f"{x:.2f}" for x in t["rmse"])
                rmse, mase = statistics.fmean(t["rmse"]), statistics.fmean(t["mase"])
                print(f"  {name:<22} RMSE {rmse:7.2f} (seeds {per})  MASE {mase:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
