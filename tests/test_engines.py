"""Engine selection: ``impl=`` on every layer, what ``auto`` picks, and clear errors."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from conftest import DoublerCell

import unrolled
from unrolled.engines import ENGINES, choose

I, H = 5, 6


@pytest.mark.parametrize(
    "make, expected, native",
    [
        (lambda **kw: unrolled.RNN(I, H, nonlinearity="relu", **kw), "fused", True),
        (lambda **kw: unrolled.RNN(I, H, num_layers=2, **kw), "fused", True),
        (lambda **kw: unrolled.LSTM(I, H, proj_size=3, **kw), "native", True),
        (lambda **kw: unrolled.GRU(I, H, **kw), "fused", True),
        (lambda **kw: unrolled.LSTM(I, H, variant="CIFG", **kw), "fused", False),
        (lambda **kw: unrolled.LSTM(I, H, layer_norm=True, **kw), "fused", False),
        (lambda **kw: unrolled.LSTM(I, H, zoneout=0.1, **kw), "fused", False),
        (lambda **kw: unrolled.GRU(I, H, reset_after=False, **kw), "fused", False),
        (lambda **kw: unrolled.GRU(I, H, recurrent_dropout=0.1, **kw), "fused", False),
        (
            lambda **kw: unrolled.Recurrent(functools.partial(unrolled.MUTCell, hidden_size=H), I, **kw),
            "fused",
            False,
        ),
        (lambda **kw: unrolled.Recurrent(DoublerCell, I, **kw), "reference", False),
    ],
)
def test_auto_picks_the_fastest_engine_that_runs_the_cells(make, expected, native) -> None:
    """auto: native for torch's LSTM, fused for the other cells it supports, else the reference."""
    assert make().engine == expected
    assert make(impl="reference").engine == "reference"
    if native:
        assert make(impl="native").engine == "native"
    else:
        with pytest.raises(ValueError, match="impl='native' runs only the cells torch fuses"):
            make(impl="native")
    if expected in ("native", "fused"):
        assert make(impl="fused").engine == "fused"
    else:
        with pytest.raises(ValueError, match="impl='fused' does not support"):
            make(impl="fused")


def test_unknown_impl() -> None:
    with pytest.raises(ValueError, match="impl must be one of 'auto', 'reference'.*got 'cudnn'"):
        unrolled.LSTM(I, H, impl="cudnn")


def test_native_trains_the_cells_own_parameters() -> None:
    """No copies: the kernel's gradients land on the cells' parameters, and an update is seen."""
    lstm = unrolled.LSTM(I, H, num_layers=2, bidirectional=True, impl="native")
    x = torch.randn(4, 3, I)
    out, _ = lstm(x)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lstm.parameters())
    with torch.no_grad():
        lstm.cells[0].weight_ih.zero_()
    reference = unrolled.LSTM(I, H, num_layers=2, bidirectional=True, impl="reference")
    reference.load_state_dict(lstm.state_dict())
    torch.testing.assert_close(lstm(x)[0], reference(x)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "make", [lambda **kw: unrolled.GRU(I, H, **kw), lambda **kw: unrolled.RNN(I, H, num_layers=2, **kw)]
)
def test_auto_runs_torchs_kernel_out_of_autograd(make, monkeypatch) -> None:
    """Under no_grad, auto runs the native engine where torch has the cells; in training, fused;
    an explicit impl is kept under no_grad too."""
    layer = make()
    x = torch.randn(4, 3, I)
    calls = []
    native = ENGINES["native"]
    counted = dataclasses.replace(
        native, run_stack=lambda *a, **k: calls.append(1) or native.run_stack(*a, **k)
    )
    monkeypatch.setitem(ENGINES, "native", counted)
    trained, _ = layer(x)
    assert calls == [] and layer.engine == "fused"
    with torch.no_grad():
        inferred, _ = layer(x)
        assert calls == [1]
        make(impl="fused")(x)
        assert calls == [1]
    torch.testing.assert_close(inferred, trained.detach(), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "make, cpu_train, cpu_infer, cuda",
    [
        (lambda: unrolled.GRU(I, H), "fused", "native", "native"),
        (lambda: unrolled.RNN(I, H, num_layers=2), "fused", "native", "native"),
        (lambda: unrolled.LSTM(I, H, bidirectional=True), "native", "native", "native"),
        (lambda: unrolled.GRU(I, H, layer_norm=True), "fused", "fused", "fused"),
        (lambda: unrolled.LSTM(I, H, variant="CIFG"), "fused", "fused", "fused"),
        (lambda: unrolled.Recurrent(DoublerCell, I), "reference", "reference", "reference"),
    ],
)
def test_auto_decides_per_device(make, cpu_train, cpu_infer, cuda) -> None:
    """On CUDA, torch's cuDNN kernels wherever torch has the cells (the fused Python loop is
    6-69x slower there); on CPU as measured there. The choice is per device type and mode."""
    layer = make()
    assert layer.engine == layer.engine_for("cpu") == cpu_train
    assert layer.engine_for("cpu", training=False) == cpu_infer
    assert layer.engine_for("cuda") == layer.engine_for("cuda", training=False) == cuda
    assert choose(layer.cells, "mps", True) == cuda  # other accelerators: as CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_moving_a_layer_to_cuda_decides_again() -> None:
    gru = unrolled.GRU(I, H)
    assert gru.engine == "fused"
    assert gru.to("cuda").engine == "native"
    x = torch.randn(4, 3, I, device="cuda")
    reference = unrolled.GRU(I, H, impl="reference").to("cuda")
    reference.load_state_dict(gru.state_dict())
    torch.testing.assert_close(gru(x)[0], reference(x)[0], atol=1e-5, rtol=0)
    assert gru.to("cpu").engine == "fused"


def test_an_explicit_impl_is_kept_on_every_device() -> None:
    gru = unrolled.GRU(I, H, impl="fused")
    assert gru.engine_for("cuda") == gru.engine_for("cpu", training=False) == "fused"
