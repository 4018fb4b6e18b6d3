"""Initialisation schemes act per gate block of the stacked matrices."""

from __future__ import annotations

import functools

import pytest
import torch

import unrolled
from unrolled.cells.init import init_cell_, init_recurrent_

I, H = 7, 8


@pytest.mark.parametrize(
    "make",
    [
        lambda: unrolled.LSTMCell(I, H),
        lambda: unrolled.GRUCell(I, H),
        lambda: unrolled.MUTCell(I, H, arch=3),
        lambda: unrolled.RNNCell(I, H),
    ],
)
def test_orthogonal_recurrent_blocks(make) -> None:
    cell = init_cell_(make(), "orthogonal")
    for block in cell.weight_hh.split(H):
        torch.testing.assert_close(block @ block.T, torch.eye(H), atol=1e-5, rtol=0)
    assert torch.equal(cell.bias_ih, torch.zeros_like(cell.bias_ih))


def test_xavier_bound_is_per_gate_block() -> None:
    cell = init_cell_(unrolled.LSTMCell(I, H), "xavier")
    bound_block = (6 / (I + H)) ** 0.5  # fan_in I, fan_out H of one gate
    bound_stacked = (6 / (I + 4 * H)) ** 0.5  # what treating the (4H, I) matrix as one would give
    assert cell.weight_ih.abs().max() <= bound_block
    assert cell.weight_ih.abs().max() > bound_stacked  # it really used the per-block bound


def test_uniform_is_torch_default_and_keeps_layer_norm_gains() -> None:
    cell = init_cell_(unrolled.LSTMCell(I, H, layer_norm=True), "uniform")
    assert cell.weight_hh.abs().max() <= 1 / H**0.5
    assert torch.equal(cell.ln_ih_weight, torch.ones_like(cell.ln_ih_weight))


def test_init_recurrent_walks_a_model_and_sets_forget_bias() -> None:
    layer = unrolled.Recurrent(
        functools.partial(unrolled.LSTMCell, hidden_size=H), I, num_layers=2, bidirectional=True
    )
    init_recurrent_(layer, "orthogonal", forget_bias=1.0)
    for cell in layer.cells:
        torch.testing.assert_close(cell.weight_hh[:H] @ cell.weight_hh[:H].T, torch.eye(H), atol=1e-5, rtol=0)
        assert torch.equal(cell.bias_ih[H : 2 * H] + cell.bias_hh[H : 2 * H], torch.ones(H))


def test_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unknown init scheme 'he'"):
        init_cell_(unrolled.GRUCell(I, H), "he")
