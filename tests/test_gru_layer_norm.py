"""The layer-normalised GRU: equations, scale invariance, gradcheck, both reset placements."""

from __future__ import annotations

import pytest
import torch

import unrolled

B, I, H = 3, 5, 6
DT = torch.float64


def _ln(v, gain):
    return (v - v.mean(-1, keepdim=True)) / torch.sqrt(v.var(-1, unbiased=False, keepdim=True) + 1e-5) * gain


def _cell(reset_after: bool):
    cell = unrolled.GRUCell(I, H, reset_after=reset_after, layer_norm=True).to(DT)
    with torch.no_grad():
        cell.ln_ih_weight.uniform_(0.5, 1.5)
        cell.ln_hh_weight.uniform_(0.5, 1.5)
    return cell


@pytest.mark.parametrize("reset_after", [True, False])
def test_layer_norm_gru_equations(reset_after) -> None:
    cell = _cell(reset_after)
    x, h = torch.randn(B, I, dtype=DT), torch.randn(B, H, dtype=DT)
    xr, xz, xn = (_ln(x @ cell.weight_ih.T, cell.ln_ih_weight) + cell.bias_ih).chunk(3, 1)
    W, b, g = cell.weight_hh, cell.bias_hh, cell.ln_hh_weight
    if reset_after:
        hr, hz, hn = (_ln(h @ W.T, g) + b).chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
    else:
        hr, hz = (_ln(h @ W[: 2 * H].T, g[: 2 * H]) + b[: 2 * H]).chunk(2, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + _ln((r * h) @ W[2 * H :].T, g[2 * H :]) + b[2 * H :])
    torch.testing.assert_close(cell(x, h)[0], (1 - z) * n + z * h, atol=1e-12, rtol=0)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_gru_gradcheck(reset_after, bias) -> None:
    cell = unrolled.GRUCell(I, H, bias=bias, reset_after=reset_after, layer_norm=True).to(DT)
    x = torch.randn(2, I, dtype=DT, requires_grad=True)
    h = torch.randn(2, H, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, h, *p: cell(x, h)[0], (x, h, *cell.parameters()), eps=1e-6, atol=1e-5
    )


def test_layer_norm_gru_is_invariant_to_scaling_the_weights() -> None:
    cell = _cell(True)
    with torch.no_grad():
        cell.weight_ih.mul_(100.0)
        cell.weight_hh.mul_(100.0)
    x, h = torch.randn(B, I, dtype=DT), torch.randn(B, H, dtype=DT)
    before = cell(x, h)[0]
    with torch.no_grad():
        cell.weight_ih.mul_(5.0)
        cell.weight_hh.mul_(0.3)
    torch.testing.assert_close(cell(x, h)[0], before, atol=1e-6, rtol=0)


def test_gru_without_layer_norm_has_no_gains() -> None:
    assert "ln_ih_weight" not in unrolled.GRUCell(I, H).state_dict()
    layer = unrolled.GRU(I, H, num_layers=2, layer_norm=True)
    assert {"ln_ih_weight_l0", "ln_hh_weight_l1"} <= set(layer.state_dict())
