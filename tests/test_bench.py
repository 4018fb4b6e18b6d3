"""``unrolled bench speed`` in its smoke size: everything runs, the JSON is complete (no timing asserted)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import unrolled
from unrolled.bench import speed
from unrolled.cli import main


def test_bench_speed_smoke_writes_every_cell_and_engine(tmp_path, capsys) -> None:
    path = tmp_path / "speed.json"
    assert main(["bench", "speed", "--smoke", "--repeats", "1", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    names = {r["name"] for r in report["results"]}
    assert {"torch.nn.LSTM", "torch.nn.GRU", "lstm/native", "lstm-FGR/fused", "mut3/reference"} <= names
    for cell in speed.CELLS:
        assert f"{cell}/reference" in names  # every cell at least under the oracle
    for row in report["results"]:
        for key in ("train_ms", "infer_ms", "generate_steps_per_s", "train_ratio", "infer_ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["name"], key)
        assert row["activation_bytes"] > 0
        assert len(row["train_rounds_ms"]) == len(row["infer_rounds_ms"]) == 1
        assert row["train_rounds_ms"][0] == row["train_ms"]  # one round: its time is the median
    assert report["meta"]["torch"] == torch.__version__
    assert "lstm-CIFG/fused" in capsys.readouterr().out


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_activation_memory_grows_linearly_in_time(impl) -> None:
    layer = unrolled.LSTM(4, 8, variant="vanilla", impl=impl)
    short = speed.activation_bytes(layer, torch.randn(50, 2, 4))
    long = speed.activation_bytes(layer, torch.randn(100, 2, 4))
    assert 1.8 < long / short < 2.05


def test_bench_errors(tmp_path, capsys) -> None:
    assert main(["bench", "speed", "--smoke", "--json", str(tmp_path / "missing" / "x.json")]) == 2
    assert "its folder does not exist" in capsys.readouterr().err
