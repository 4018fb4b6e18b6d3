"""Cells against torch.nn's cells, gradcheck in float64, and their input checks."""

from __future__ import annotations

import pytest
import torch

import unrolled

B, I, H = 3, 5, 6


def _copy(ours: torch.nn.Module, ref: torch.nn.Module) -> None:
    ours.load_state_dict(ref.state_dict())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_matches_torch(bias: bool, nonlinearity: str) -> None:
    ref = torch.nn.RNNCell(I, H, bias=bias, nonlinearity=nonlinearity)
    ours = unrolled.RNNCell(I, H, bias=bias, nonlinearity=nonlinearity)
    _copy(ours, ref)
    x, h = torch.randn(B, I), torch.randn(B, H)
    out, state = ours(x, h)
    torch.testing.assert_close(out, ref(x, h), atol=1e-6, rtol=0)
    assert state is out


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_matches_torch(bias: bool) -> None:
    ref = torch.nn.LSTMCell(I, H, bias=bias)
    ours = unrolled.LSTMCell(I, H, bias=bias)
    _copy(ours, ref)
    x, h, c = torch.randn(B, I), torch.randn(B, H), torch.randn(B, H)
    out, (h1, c1) = ours(x, (h, c))
    h2, c2 = ref(x, (h, c))
    torch.testing.assert_close(h1, h2, atol=1e-6, rtol=0)
    torch.testing.assert_close(c1, c2, atol=1e-6, rtol=0)
    assert out is h1


@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_reset_after_matches_torch(bias: bool) -> None:
    ref = torch.nn.GRUCell(I, H, bias=bias)
    ours = unrolled.GRUCell(I, H, bias=bias)
    _copy(ours, ref)
    x, h = torch.randn(B, I), torch.randn(B, H)
    torch.testing.assert_close(ours(x, h)[0], ref(x, h), atol=1e-6, rtol=0)


def test_gru_reset_before_is_the_d2l_form() -> None:
    """reset_after=False: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn), written out by hand."""
    cell = unrolled.GRUCell(I, H, reset_after=False).double()
    x, h = torch.randn(B, I, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    W_ir, W_iz, W_in = cell.weight_ih.chunk(3)
    W_hr, W_hz, W_hn = cell.weight_hh.chunk(3)
    b_ir, b_iz, b_in = cell.bias_ih.chunk(3)
    b_hr, b_hz, b_hn = cell.bias_hh.chunk(3)
    r = torch.sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
    z = torch.sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
    n = torch.tanh(x @ W_in.T + b_in + (r * h) @ W_hn.T + b_hn)
    expected = (1 - z) * n + z * h
    torch.testing.assert_close(cell(x, h)[0], expected, atol=1e-12, rtol=0)
    # and it really differs from torch's form with the same weights
    after = unrolled.GRUCell(I, H).double()
    after.load_state_dict(cell.state_dict())
    assert (after(x, h)[0] - expected).abs().max() > 1e-3


def test_lstm_cell_projection() -> None:
    cell = unrolled.LSTMCell(I, H, proj_size=2)
    h, (h1, c1) = cell(torch.randn(B, I))
    assert h.shape == (B, 2) and c1.shape == (B, H)
    assert cell.weight_hh.shape == (4 * H, 2) and cell.weight_hr.shape == (2, H)


CELLS = [
    lambda: unrolled.RNNCell(I, H),
    lambda: unrolled.RNNCell(I, H, nonlinearity="relu", bias=False),
    lambda: unrolled.LSTMCell(I, H),
    lambda: unrolled.LSTMCell(I, H, proj_size=3),
    lambda: unrolled.GRUCell(I, H),
    lambda: unrolled.GRUCell(I, H, reset_after=False),
]


@pytest.mark.parametrize("make", CELLS, ids=["rnn", "rnn-relu-nobias", "lstm", "lstm-proj", "gru", "gru-d2l"])
def test_cells_gradcheck(make) -> None:
    cell = make().double()
    x = torch.randn(2, I, dtype=torch.float64, requires_grad=True)
    state = cell.init_state(2, dtype=torch.float64)
    parts = [state] if isinstance(state, torch.Tensor) else list(state)
    parts = [(torch.randn_like(p) * 0.5).requires_grad_() for p in parts]
    params = list(cell.parameters())

    def f(x, *args):
        st = args[: len(parts)]
        st = st[0] if len(st) == 1 else unrolled.LSTMState(*st)
        out, new = cell(x, st)
        return (out, *([new] if isinstance(new, torch.Tensor) else new))

    assert torch.autograd.gradcheck(f, (x, *parts, *params), eps=1e-6, atol=1e-5)


def test_unbatched_cell_step_matches_batched() -> None:
    cell = unrolled.LSTMCell(I, H)
    x = torch.randn(I)
    h, (h1, c1) = cell(x)
    hb, (_, cb) = cell(x.unsqueeze(0))
    torch.testing.assert_close(h, hb[0])
    torch.testing.assert_close(c1, cb[0])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c: c(torch.randn(B, I + 1)), "Expected 5, got 6"),
        (lambda c: c(torch.randn(B, 2, I)), "got 3-D"),
        (
            lambda c: c(torch.randn(B, I), (torch.randn(B, H + 1), torch.randn(B, H))),
            r"expected \(3, 6\), got \(3, 7\)",
        ),
        (
            lambda c: c(torch.randn(B, I), (torch.randn(B, H), torch.randn(B + 1, H))),
            r"cx has the wrong shape",
        ),
    ],
)
def test_cell_errors_name_expected_and_got(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call(unrolled.LSTMCell(I, H))


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="nonlinearity"):
        unrolled.RNNCell(I, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="proj_size"):
        unrolled.LSTMCell(I, H, proj_size=H)
