"""MUT1-3 (Jozefowicz et al. 2015): the paper's equations written out, gradcheck, layers."""

from __future__ import annotations

import functools

import pytest
import torch

import unrolled

B, H = 3, 6
DT = torch.float64


def _paper(cell, x, h):
    """The paper's equations, with the learned matrices cut out of the stacked ones."""
    H = cell.hidden_size
    Wx = dict(zip(cell.x_terms, cell.weight_ih.split(H), strict=True))
    Wh = dict(zip(cell.h_terms, cell.weight_hh.split(H), strict=True))
    bz, br, bh = cell.bias_ih.split(H)
    sig, tanh = torch.sigmoid, torch.tanh
    if cell.arch == 1:
        z = sig(x @ Wx["z"].T + bz)
        r = sig(x @ Wx["r"].T + h @ Wh["r"].T + br)
        xin = tanh(x) if "h" not in Wx else tanh(x @ Wx["h"].T)
    elif cell.arch == 2:
        z = sig(x @ Wx["z"].T + h @ Wh["z"].T + bz)
        r = sig((x if "r" not in Wx else x @ Wx["r"].T) + h @ Wh["r"].T + br)
        xin = x @ Wx["h"].T
    else:
        z = sig(x @ Wx["z"].T + tanh(h) @ Wh["z"].T + bz)
        r = sig(x @ Wx["r"].T + h @ Wh["r"].T + br)
        xin = x @ Wx["h"].T
    return tanh((r * h) @ Wh["h"].T + xin + bh) * z + h * (1 - z)


@pytest.mark.parametrize("arch", [1, 2, 3])
@pytest.mark.parametrize("I", [H, 4])
def test_mut_equations(arch, I) -> None:
    cell = unrolled.MUTCell(I, H, arch=arch).to(DT)
    x, h = torch.randn(B, I, dtype=DT), torch.randn(B, H, dtype=DT)
    torch.testing.assert_close(cell(x, h)[0], _paper(cell, x, h), atol=1e-12, rtol=0)


@pytest.mark.parametrize("arch", [1, 2, 3])
@pytest.mark.parametrize("I", [H, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_mut_gradcheck(arch, I, bias) -> None:
    cell = unrolled.MUTCell(I, H, arch=arch, bias=bias).to(DT)
    x = torch.randn(2, I, dtype=DT, requires_grad=True)
    h = torch.randn(2, H, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, h, *p: cell(x, h)[0], (x, h, *cell.parameters()), eps=1e-6, atol=1e-5
    )


@pytest.mark.parametrize(
    "arch, I, n_ih, n_hh",
    [(1, H, 2, 2), (1, 4, 3, 2), (2, H, 2, 3), (2, 4, 3, 3), (3, H, 3, 3), (3, 4, 3, 3)],
)
def test_mut_parameter_shapes(arch, I, n_ih, n_hh) -> None:
    cell = unrolled.MUTCell(I, H, arch=arch)
    assert cell.weight_ih.shape == (n_ih * H, I)
    assert cell.weight_hh.shape == (n_hh * H, H)
    assert cell.bias_ih.shape == (3 * H,)


def test_mut1_update_gate_ignores_the_state() -> None:
    """MUT1's z reads only x: with z = 0 (a very negative b_z) the state passes through unchanged."""
    cell = unrolled.MUTCell(H, H, arch=1).to(DT)
    with torch.no_grad():
        cell.bias_ih[:H] = -1e4
    h = torch.randn(B, H, dtype=DT)
    torch.testing.assert_close(cell(torch.randn(B, H, dtype=DT), h)[0], h, atol=0, rtol=0)


@pytest.mark.parametrize("arch", [1, 2, 3])
def test_mut_as_a_bidirectional_stacked_layer(arch) -> None:
    layer = unrolled.Recurrent(
        functools.partial(unrolled.MUTCell, hidden_size=H, arch=arch),
        H,
        num_layers=2,
        bidirectional=True,
        batch_first=True,
    )
    out, h_n = layer(torch.randn(B, 5, H))
    assert out.shape == (B, 5, 2 * H) and h_n.shape == (4, B, H)
    assert layer.cells[2].x_terms == ("z", "r", "h")  # layer 2 reads 2H features: learned projections


def test_mut_bad_arch() -> None:
    with pytest.raises(ValueError, match="arch must be 1, 2 or 3"):
        unrolled.MUTCell(4, H, arch=4)
