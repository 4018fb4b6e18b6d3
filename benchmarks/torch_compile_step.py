"""The alternative to the compiled engine that issue 18 asked to measure first: torch.compile of
one LSTM step's pointwise math (inductor generates C++ on a CPU), against the same step in eager
mode and against the compiled engine's whole time loop.

Run: python benchmarks/torch_compile_step.py [--out FILE]. Writes a JSON with the per-call times
(median of rounds, interleaved) at batch 1 and 32, the first-compile time, and for scale the
compiled engine's forward over T = 200 steps at (B, I, H) = (1, 128, 128).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import unrolled
from unrolled.engines import compiled


def peephole_step(pre: torch.Tensor, c: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The vanilla (peephole) LSTM's pointwise step from the pre-activations (B, 4H)."""
    i, f, g, o = pre.chunk(4, dim=1)
    i = torch.sigmoid(i + p[0] * c)
    f = torch.sigmoid(f + p[1] * c)
    c_new = f * c + i * torch.tanh(g)
    o = torch.sigmoid(o + p[2] * c_new)
    return o * torch.tanh(c_new), c_new


def _median_us(fn, *args, rounds: int = 7, calls: int = 200) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/torch-compile-step-cpu2.json")
    args = parser.parse_args()
    H = 128
    report: dict = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    start = time.perf_counter()
    step = torch.compile(peephole_step)
    step(torch.randn(1, 4 * H), torch.randn(1, H), torch.randn(3, H))
    report["first_compile_s"] = time.perf_counter() - start
    for B in (1, 32):
        pre, c, p = torch.randn(B, 4 * H), torch.randn(B, H), torch.randn(3, H)
        step(pre, c, p)  # a new shape: compiled again (dynamic shapes from the second one)
        with torch.no_grad():
            report[f"eager_us_B{B}"] = _median_us(peephole_step, pre, c, p)
            report[f"torch_compile_us_B{B}"] = _median_us(step, pre, c, p)
    lstm = torch.nn.LSTM(H, H)
    layer = unrolled.LSTM(H, H, variant="vanilla", impl="compiled" if compiled.available() else "fused")
    x = torch.randn(200, 1, H)
    with torch.no_grad():
        report["engine"] = layer.impl
        report["engine_forward_T200_B1_ms"] = _median_us(layer, x, calls=20) / 1e3
        report["torch_lstm_forward_T200_B1_ms"] = _median_us(lstm, x, calls=20) / 1e3
    report["torch_compile_pointwise_only_T200_B1_ms"] = report["torch_compile_us_B1"] * 200 / 1e3
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
