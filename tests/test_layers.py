"""RNN/LSTM/GRU layers against torch.nn: outputs, final states and every gradient.

Tolerance: 1e-5 absolute in float32, as the foundation issue asks.
"""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

import unrolled

B, T, I, H = 3, 4, 5, 6
ATOL = 1e-5
KINDS = {
    "RNN": (unrolled.RNN, torch.nn.RNN),
    "LSTM": (unrolled.LSTM, torch.nn.LSTM),
    "GRU": (unrolled.GRU, torch.nn.GRU),
}
CONFIGS = list(itertools.product(KINDS, [1, 2, 3], [False, True], [False, True], [True, False]))


def _pair(kind: str, from_torch: bool, impl: str = "auto", **kw):
    ours_cls, ref_cls = KINDS[kind]
    ref, ours = ref_cls(I, H, **kw), ours_cls(I, H, impl=impl, **kw)
    assert ours.engine == impl or impl == "auto"
    if from_torch:
        ours.load_state_dict(ref.state_dict())
    else:
        ref.load_state_dict(ours.state_dict())
    return ours, ref


def _flat(state):
    return [state] if isinstance(state, torch.Tensor) else list(state)


def _compare(ours, ref, x, hx=None):
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    h1 = None if hx is None else _clone_state(hx)
    h2 = None if hx is None else _clone_state(hx)
    out1, s1 = ours(x1, h1)
    out2, s2 = ref(x2, h2)
    torch.testing.assert_close(out1, out2, atol=ATOL, rtol=0)
    for a, b in zip(_flat(s1), _flat(s2), strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    # one scalar that depends on the output and on every final state
    gen = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, generator=gen) for t in [out1, *_flat(s1)]]
    loss1 = sum((w * t).sum() for w, t in zip(weights, [out1, *_flat(s1)], strict=True))
    loss2 = sum((w * t).sum() for w, t in zip(weights, [out2, *_flat(s2)], strict=True))
    loss1.backward()
    loss2.backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=ATOL, rtol=0)
    if hx is not None:
        for a, b in zip(_flat(h1), _flat(h2), strict=True):
            torch.testing.assert_close(a.grad, b.grad, atol=ATOL, rtol=0)
    ref_params = dict(ref.named_parameters())
    ours_sd_names = list(ours.state_dict())
    assert ours_sd_names == list(ref.state_dict())
    for name in ours_sd_names:
        torch.testing.assert_close(
            getattr(ours, name).grad,
            ref_params[name].grad,
            atol=ATOL,
            rtol=0,
            msg=lambda m, name=name: f"{name}: {m}",
        )


def _clone_state(hx):
    if isinstance(hx, torch.Tensor):
        return hx.clone().requires_grad_()
    return tuple(h.clone().requires_grad_() for h in hx)


@pytest.mark.parametrize("kind, layers, bidirectional, batch_first, bias", CONFIGS)
def test_layer_matches_torch(kind, layers, bidirectional, batch_first, bias, impl) -> None:
    kw = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    D = 2 if bidirectional else 1
    x = torch.randn(B, T, I) if batch_first else torch.randn(T, B, I)
    for from_torch in (True, False):
        ours, ref = _pair(kind, from_torch, impl, **kw)
        _compare(ours, ref, x)
    h0 = torch.randn(D * layers, B, H)
    hx = (h0, torch.randn(D * layers, B, H)) if kind == "LSTM" else h0
    _compare(ours, ref, x, hx)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_unbatched_input_matches_torch(kind, bidirectional, impl) -> None:
    ours, ref = _pair(kind, True, impl, num_layers=2, bidirectional=bidirectional)
    D = 2 if bidirectional else 1
    x = torch.randn(T, I)
    _compare(ours, ref, x)
    h0 = torch.randn(D * 2, H)
    _compare(ours, ref, x, (h0, torch.randn(D * 2, H)) if kind == "LSTM" else h0)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_lstm_projection_matches_torch(impl) -> None:
    ours, ref = _pair("LSTM", True, impl, num_layers=2, bidirectional=True, proj_size=3)
    _compare(ours, ref, torch.randn(T, B, I))


def test_nonlinearity_relu_matches_torch(impl) -> None:
    ours, ref = _pair("RNN", True, impl, num_layers=2, nonlinearity="relu")
    _compare(ours, ref, torch.randn(T, B, I))


def test_dropout_between_layers_only_in_training(impl) -> None:
    ours, ref = _pair("LSTM", True, impl, num_layers=2, dropout=0.5)
    x = torch.randn(T, B, I)
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=ATOL, rtol=0)
    ours.train()
    a, b = ours(x)[0], ours(x)[0]
    assert not torch.equal(a, b)  # dropout masks differ between calls


def test_layer_equals_python_loop_over_its_cell() -> None:
    """A 1-layer Recurrent is exactly the loop `for x_t in x: h, s = cell(x_t, s)`."""
    cell = functools.partial(unrolled.GRUCell, hidden_size=H, reset_after=False)
    layer = unrolled.Recurrent(cell, I, impl="reference")
    cell = layer.cells[0]
    x = torch.randn(T, B, I)
    state = cell.init_state(B)
    outs = []
    for t in range(T):
        h, state = cell(x[t], state)
        outs.append(h)
    out, h_n = layer(x)
    torch.testing.assert_close(out, torch.stack(outs), atol=0, rtol=0)
    torch.testing.assert_close(h_n[0], state, atol=0, rtol=0)


def test_reverse_direction_reads_backwards() -> None:
    layer = unrolled.RNN(I, H, bidirectional=True)
    x = torch.randn(T, B, I)
    out, _ = layer(x)
    bwd = layer.cells[1]
    h = bwd.init_state(B)
    for t in reversed(range(T)):
        h, _ = bwd(x[t], h)
    torch.testing.assert_close(out[0, :, H:], h)  # the reverse half at t=0 has read the whole sequence


def test_torch_attribute_names_are_the_cells_parameters() -> None:
    lstm = unrolled.LSTM(I, H, num_layers=2, bidirectional=True)
    assert lstm.weight_hh_l1_reverse is lstm.cells[3].weight_hh
    with pytest.raises(AttributeError):
        _ = lstm.weight_hh_l2
    with pytest.raises(AttributeError):
        _ = unrolled.LSTM(I, H).weight_ih_l0_reverse


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda m: m(torch.randn(T, B, I + 2)),
            "input.size\\(-1\\) must be equal to input_size. Expected 5, got 7",
        ),
        (lambda m: m(torch.randn(T, B, 1, I)), "got 4-D"),
        (
            lambda m: m(torch.randn(T, B, I), (torch.randn(2, B, H), torch.randn(4, B, H))),
            r"hx\[0\] for input must have shape \(4, 3, 6\).*got \(2, 3, 6\)",
        ),
        (lambda m: m(torch.randn(T, B, I), torch.randn(4, B, H)), "a tuple of 2 tensors"),
        (
            lambda m: m(torch.randn(T, I), (torch.randn(4, B, H), torch.randn(4, B, H))),
            r"hx\[0\] for unbatched input must have shape \(4, 6\)",
        ),
    ],
)
def test_layer_errors_name_expected_and_got(call, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        call(unrolled.LSTM(I, H, num_layers=2, bidirectional=True))


def test_bad_layer_arguments() -> None:
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        unrolled.LSTM(I, 0)
    with pytest.raises(ValueError, match="num_layers must be a positive integer"):
        unrolled.GRU(I, H, num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        unrolled.RNN(I, H, dropout=1.5)


def test_custom_cell_through_recurrent() -> None:
    """Any module with the cell protocol becomes a layer; here a minimal gated cell."""

    class MinimalGated(torch.nn.Module):
        def __init__(self, input_size: int, hidden_size: int) -> None:
            super().__init__()
            self.input_size, self.hidden_size = input_size, hidden_size
            self.lin = torch.nn.Linear(input_size + hidden_size, 2 * hidden_size)

        def init_state(self, batch, *, device=None, dtype=None):
            return torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)

        def forward(self, x, h):
            f, c = self.lin(torch.cat([x, h], 1)).chunk(2, 1)
            f = torch.sigmoid(f)
            h = f * h + (1 - f) * torch.tanh(c)
            return h, h

    layer = unrolled.Recurrent(
        functools.partial(MinimalGated, hidden_size=H), I, num_layers=2, bidirectional=True, batch_first=True
    )
    out, h_n = layer(torch.randn(B, T, I))
    assert out.shape == (B, T, 2 * H) and h_n.shape == (4, B, H)
    assert "weight_l1_reverse" not in layer.state_dict()
    assert "lin.weight_l1_reverse" in layer.state_dict()
