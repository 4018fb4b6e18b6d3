"""Mixed precision: every engine under bf16 autocast against fp32, and --precision on the command line.

Tolerance for bf16 (8 bits of mantissa, relative rounding 2^-8 ~ 0.4%), over T = 12 steps of a
32-unit layer: outputs within 0.02 of fp32's (they lie in [-1, 1]), and every parameter's gradient
within 10% of that gradient's largest fp32 entry (errors accumulate through BPTT; minGRU, whose
gates multiply along the whole sequence, comes to ~8.5%). A layer-normalised cell, whose
normalisation divides the rounding of its pre-activations by their spread, gets 0.06 and 20%
(measured 0.048 and 11.7% on the reference loop). The fused engine computes in fp32 under
autocast, so its results are fp32's.
"""

from __future__ import annotations

import functools
import json

import pytest
import torch

import unrolled
from unrolled.cli import main
from unrolled.training import checkpoint as ckpt

I, H, B, T = 16, 32, 4, 12
LAYERS = {
    "rnn": lambda impl: unrolled.RNN(I, H, impl=impl),
    "lstm": lambda impl: unrolled.LSTM(I, H, impl=impl),
    "gru": lambda impl: unrolled.GRU(I, H, impl=impl),
    "lstm-cifg": lambda impl: unrolled.LSTM(I, H, variant="CIFG", impl=impl),
    "lstm-peephole-ln": lambda impl: unrolled.LSTM(I, H, variant="vanilla", layer_norm=True, impl=impl),
    "gru-reset-before": lambda impl: unrolled.GRU(I, H, reset_after=False, impl=impl),
    "mut2": lambda impl: unrolled.Recurrent(
        functools.partial(unrolled.MUTCell, hidden_size=H, arch=2), I, impl=impl
    ),
    "mingru": lambda impl: unrolled.Recurrent(
        functools.partial(unrolled.MinGRUCell, hidden_size=H), I, impl=impl
    ),
}


def _cases():
    for name, make in LAYERS.items():
        for impl in ("reference", "fused", "compiled", "native", "auto"):
            try:
                make(impl)
            except ValueError:
                continue
            yield pytest.param(make, impl, id=f"{name}/{impl}")


@pytest.mark.parametrize("make, impl", list(_cases()))
def test_every_engine_under_bf16_autocast_matches_fp32(make, impl) -> None:
    layer = make(impl)
    x = torch.randn(T, B, I)
    out32, _ = layer(x)
    grads32 = torch.autograd.grad(out32.sum(), list(layer.parameters()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16, _ = layer(x)
    grads16 = torch.autograd.grad(out16.float().sum(), list(layer.parameters()))
    normalised = getattr(layer.cells[0], "layer_norm", False)
    out_tol, grad_tol = (0.06, 0.2) if normalised else (0.02, 0.1)
    assert (out16.float() - out32).abs().max() < out_tol
    for g16, g32 in zip(grads16, grads32, strict=True):
        assert g16.dtype == torch.float32  # the weights stay fp32
        assert (g16 - g32).abs().max() <= grad_tol * g32.abs().max() + 1e-6


SMALL = ["--hidden", "16", "--batch-size", "4", "--seq-len", "16", "--no-progress", "--sample-length", "0"]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bf16_training_on_the_cpu_is_recorded_and_resumes(tiny_text_file, tmp_path, capsys, cell) -> None:
    out = tmp_path / "run"
    args = ["--text", str(tiny_text_file), "--out", str(out), "--max-steps", "6", "--eval-every", "3"]
    assert (
        main(["train", "charlm", *args, "--cell", cell, "--precision", "bf16", "--device", "cpu", *SMALL])
        == 0
    )
    assert json.loads((out / ckpt.CONFIG).read_text())["optim"]["precision"] == "bf16"
    vals = [json.loads(r) for r in (out / ckpt.METRICS).read_text().splitlines()]
    assert all(r["val_loss"] < 4.0 for r in vals if r["kind"] == "val")  # ~ln(V) at the start, finite
    resume = ["train", "charlm", "--resume", str(out), "--no-progress", "--sample-length", "0"]
    assert main([*resume, "--max-steps", "2", "--device", "cpu"]) == 0
    assert main([*resume, "--precision", "fp32"]) == 2
    assert "--precision cannot be changed on --resume" in capsys.readouterr().err


def test_fp16_on_the_cpu_is_one_line(tiny_text_file, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["train", "charlm", "--text", str(tiny_text_file), "--out", str(out), "--precision", "fp16"]
    assert main([*argv, "--device", "cpu", *SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "unrolled: error: --precision fp16 needs a CUDA device (here: cpu); "
        "on the CPU use --precision bf16 or fp32"
    ]
    assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda_trains_and_resumes(tiny_text_file, tmp_path, precision) -> None:
    out = tmp_path / "run"
    args = ["--text", str(tiny_text_file), "--out", str(out), "--max-steps", "30", "--eval-every", "10"]
    assert (
        main(["train", "charlm", *args, "--precision", precision, "--device", "cuda", "--lr", "1e-2", *SMALL])
        == 0
    )
    vals = [json.loads(r) for r in (out / ckpt.METRICS).read_text().splitlines()]
    losses = [r["val_loss"] for r in vals if r["kind"] == "val"]
    assert losses[-1] < losses[0]  # it learns
    resume = ["train", "charlm", "--resume", str(out), "--max-steps", "5", "--device", "cuda"]
    assert main([*resume, "--no-progress", "--sample-length", "0"]) == 0
