"""Recurrent (variational) dropout and zoneout: training-only, fixed-mask gradcheck, semantics."""

from __future__ import annotations

import pytest
import torch

import unrolled

B, I, H = 3, 5, 6
DT = torch.float64
CELLS = {
    "lstm": lambda **kw: unrolled.LSTMCell(I, H, **kw),
    "lstm-vanilla-ln": lambda **kw: unrolled.LSTMCell(I, H, variant="vanilla", layer_norm=True, **kw),
    "gru": lambda **kw: unrolled.GRUCell(I, H, **kw),
    "gru-d2l": lambda **kw: unrolled.GRUCell(I, H, reset_after=False, **kw),
}


def _state(cell):
    s = cell.init_state(B, dtype=DT)
    return tuple(torch.randn_like(t) for t in s) if isinstance(s, tuple) else torch.randn_like(s)


def _step(cell, x, state):
    out, new = cell(x, state if isinstance(state, torch.Tensor) else unrolled.LSTMState(*state))
    return out, new


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("option", ["recurrent_dropout", "zoneout"])
def test_gradcheck_with_a_fixed_mask(name, option) -> None:
    cell = CELLS[name](**{option: 0.3}).to(DT).train()
    x = torch.randn(B, I, dtype=DT, requires_grad=True)
    state = _state(cell)
    parts = [state] if isinstance(state, torch.Tensor) else list(state)
    parts = [p.requires_grad_() for p in parts]

    def f(x, *args):
        torch.manual_seed(7)  # the same masks at every call: the function gradcheck sees is fixed
        cell.start_sequence(B)
        st = args[: len(parts)]
        out, new = _step(cell, x, st[0] if len(st) == 1 else st)
        return (out, *([new] if isinstance(new, torch.Tensor) else new))

    assert torch.autograd.gradcheck(f, (x, *parts, *cell.parameters()), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", CELLS)
def test_recurrent_dropout_is_off_in_eval_and_on_in_training(name) -> None:
    torch.manual_seed(0)
    plain = CELLS[name]().to(DT)
    dropped = CELLS[name](recurrent_dropout=0.5).to(DT)
    dropped.load_state_dict(plain.state_dict())
    x, state = torch.randn(B, I, dtype=DT), _state(plain)
    plain.eval()
    dropped.eval()
    torch.testing.assert_close(_step(dropped, x, state)[0], _step(plain, x, state)[0], atol=0, rtol=0)
    dropped.train()
    assert not torch.allclose(_step(dropped, x, state)[0], _step(plain, x, state)[0])


def test_recurrent_dropout_mask_is_the_same_at_every_step_of_a_sequence() -> None:
    cell = unrolled.LSTMCell(I, H, recurrent_dropout=0.5).train()
    cell.start_sequence(B)
    state = cell.init_state(B)
    _, state = cell(torch.randn(B, I), state)
    first = cell._recurrent_mask
    _, state = cell(torch.randn(B, I), state)
    assert cell._recurrent_mask is first
    assert set(first.unique().tolist()) <= {0.0, 2.0}  # inverted dropout: kept units scaled by 1/(1-p)
    cell.start_sequence(B)
    cell(torch.randn(B, I), state)
    assert not torch.equal(cell._recurrent_mask, first)


def test_the_layer_draws_a_new_mask_per_sequence() -> None:
    layer = unrolled.GRU(I, H, recurrent_dropout=0.5).train()
    x = torch.randn(4, B, I)
    torch.manual_seed(1)
    a = layer(x)[0]
    torch.manual_seed(1)
    assert torch.equal(layer(x)[0], a)  # the same seed: the same masks
    assert not torch.equal(layer(x)[0], a)  # a new sequence: new masks


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_zoneout_keeps_or_updates_each_unit(name) -> None:
    torch.manual_seed(0)
    plain = CELLS[name]().to(DT)
    zoned = CELLS[name](zoneout=0.5).to(DT)
    zoned.load_state_dict(plain.state_dict())
    x, state = torch.randn(B, I, dtype=DT), _state(plain)
    h_prev = state if isinstance(state, torch.Tensor) else state[0]
    new = _step(plain, x, state)[0]
    zoned.train()
    out = _step(zoned, x, state)[0]
    kept, updated = out == h_prev, out == new
    assert bool((kept | updated).all()) and kept.any() and updated.any()
    zoned.eval()  # the expectation in evaluation
    torch.testing.assert_close(_step(zoned, x, state)[0], 0.5 * h_prev + 0.5 * new, atol=1e-12, rtol=0)


def test_bad_probabilities() -> None:
    with pytest.raises(ValueError, match="recurrent_dropout must be a probability in \\[0, 1\\), got 1.0"):
        unrolled.LSTMCell(I, H, recurrent_dropout=1.0)
    with pytest.raises(ValueError, match="zoneout must be a probability"):
        unrolled.GRUCell(I, H, zoneout=-0.1)
