"""``unrolled.bench.conv`` in its smoke sizes: every layer runs, the JSON is complete (no timing asserted)."""

from __future__ import annotations

import json
import math

from unrolled.bench import conv


def test_bench_conv_smoke_times_every_layer_and_writes_json() -> None:
    messages: list[str] = []
    results = conv.run_conv(conv.SMOKE_SIZES, repeats=1, progress=messages.append)
    assert len(messages) == len(conv.SMOKE_SIZES)
    names = [r.name for r in results]
    assert names == [
        "torch.nn.Conv1d",
        "unrolled.Conv1d",
        "unrolled.LocallyConnected1d",
        "torch.nn.Conv2d",
        "unrolled.Conv2d",
        "unrolled.LocallyConnected2d",
    ]
    report = json.loads(json.dumps(conv.to_json(results, {"repeats": 1})))
    assert report["meta"] == {"repeats": 1}
    for row in report["results"]:
        for key in ("forward_ms", "train_ms", "forward_ratio", "train_ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["name"], key)
        assert set(row["size"]) == set(conv.ConvSize._fields)
    assert report["results"][0]["forward_ratio"] == 1.0
    # the conv has torch's parameters, the locally-connected layer one set per output position
    assert results[0].parameters == results[1].parameters == 3 * 4 * 3 + 4
    assert results[2].parameters == 6 * (3 * 4 * 3 + 4)  # L_out = 8 - 2
    table = conv.format_conv(results)
    assert "unrolled.LocallyConnected2d" in table and "Conv2d B=2 3->4 6x6 k=3x3 same" in table


def test_bench_conv_command_writes_json(tmp_path, capsys) -> None:
    from unrolled.cli import main

    path = tmp_path / "conv.json"
    assert main(["bench", "conv", "--smoke", "--repeats", "1", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["meta"]["repeats"] == 1 and len(report["results"]) == 6
    assert "unrolled.Conv1d" in capsys.readouterr().out
    assert main(["bench", "conv", "--smoke", "--json", str(tmp_path / "missing" / "x.json")]) == 2
