"""The Mogrifier LSTM (Melis, Kočiský & Blunsom 2020): the paper's equations written out here in
plain torch, torch's LSTM cell at zero rounds, gradcheck, and the fused engine against the loop."""

from __future__ import annotations

import functools

import pytest
import torch

import unrolled
from unrolled.engines.registry import choose
from unrolled.tasks.base import RecurrentConfig

B, I, H = 3, 5, 6


def paper_step(cell: unrolled.MogrifierLSTMCell, x, h, c):
    """One step as the paper writes it: x^{-1} = x, h^0 = h; for i = 1..r, odd i:
    x^i = 2 σ(Q^i h^{i-1}) ⊙ x^{i-2}, even i: h^i = 2 σ(R^i x^{i-1}) ⊙ h^{i-2}; then an LSTM
    step on the highest-indexed x^i and h^i. Q^i and R^i numbered 1..r as in the paper."""
    if cell.rank is None:
        q, r = cell.weight_q, cell.weight_r
    else:
        q = torch.stack([a @ b for a, b in zip(cell.weight_q_left, cell.weight_q_right, strict=True)])
        r = torch.stack([a @ b for a, b in zip(cell.weight_r_left, cell.weight_r_right, strict=True)])
    Q = {2 * j + 1: q[j] for j in range(q.size(0))}  # the odd rounds
    R = {2 * j + 2: r[j] for j in range(r.size(0))}  # the even rounds
    xs, hs = {-1: x}, {0: h}
    for i in range(1, cell.rounds + 1):
        if i % 2 == 1:
            xs[i] = 2 * torch.sigmoid(hs[i - 1] @ Q[i].T) * xs[i - 2]
            hs[i] = hs[i - 1]
        else:
            hs[i] = 2 * torch.sigmoid(xs[i - 1] @ R[i].T) * hs[i - 2]
            xs[i] = xs[i - 1]
    x_up, h_up = xs[max(xs)], hs[max(hs)]
    gates = x_up @ cell.weight_ih.T + cell.bias_ih + h_up @ cell.weight_hh.T + cell.bias_hh
    i_, f, g, o = gates.chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i_) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


@pytest.mark.parametrize(("rounds", "rank"), [(5, None), (4, None), (1, None), (5, 2), (6, 3)])
def test_the_cell_is_the_papers_equations(rounds, rank) -> None:
    cell = unrolled.MogrifierLSTMCell(I, H, rounds=rounds, rank=rank)
    with torch.no_grad():  # away from the near-identity start, so that every round matters
        for p in cell.parameters():
            p.mul_(3)
    x, h, c = torch.randn(B, I), torch.randn(B, H), torch.randn(B, H)
    out, (h1, c1) = cell(x, unrolled.LSTMState(h, c))
    h_paper, c_paper = paper_step(cell, x, h, c)
    torch.testing.assert_close(out, h_paper, atol=1e-6, rtol=0)
    torch.testing.assert_close(c1, c_paper, atol=1e-6, rtol=0)
    assert torch.equal(out, h1)
    assert cell.weight_hh.shape == (4 * H, H)
    n_q, n_r = (rounds + 1) // 2, rounds // 2
    q_shape = (n_q, I, H) if rank is None else (n_q, I, rank)
    shape = cell.weight_q.shape if rank is None else cell.weight_q_left.shape
    assert tuple(shape) == q_shape
    assert (cell.weight_r if rank is None else cell.weight_r_left).size(0) == n_r


def test_zero_rounds_is_torchs_lstm_cell() -> None:
    ours = unrolled.MogrifierLSTMCell(I, H, rounds=0)
    theirs = torch.nn.LSTMCell(I, H)
    ours.load_state_dict(theirs.state_dict() | {"weight_q": ours.weight_q, "weight_r": ours.weight_r})
    x, h, c = torch.randn(B, I), torch.randn(B, H), torch.randn(B, H)
    out, (_, c1) = ours(x, (h, c))
    h_t, c_t = theirs(x, (h, c))
    torch.testing.assert_close(out, h_t, atol=1e-6, rtol=0)
    torch.testing.assert_close(c1, c_t, atol=1e-6, rtol=0)


def test_an_unbatched_step_and_a_missing_state() -> None:
    cell = unrolled.MogrifierLSTMCell(I, H)
    x = torch.randn(I)
    out, (h, c) = cell(x)
    batched, _ = cell(x.unsqueeze(0), cell.init_state(1))
    assert out.shape == (H,) and c.shape == (H,)
    torch.testing.assert_close(out, batched[0])


@pytest.mark.parametrize("rank", [None, 2])
def test_the_cell_passes_gradcheck(rank) -> None:
    cell = unrolled.MogrifierLSTMCell(I, H, rounds=5, rank=rank).double()
    x = torch.randn(2, I, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, H, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, H, dtype=torch.float64, requires_grad=True)
    params = list(cell.parameters())

    def f(x, h, c, *weights):
        values = dict(zip([n for n, _ in cell.named_parameters()], weights, strict=True))
        out, (_, c1) = torch.func.functional_call(cell, values, (x, (h, c)))
        return out, c1

    assert torch.autograd.gradcheck(f, (x, h, c, *[p.detach().requires_grad_() for p in params]))


def _layer(impl: str, rank=None, rounds=5, **options) -> unrolled.Recurrent:
    cell = functools.partial(unrolled.MogrifierLSTMCell, hidden_size=H, rounds=rounds, rank=rank)
    return unrolled.Recurrent(cell, I, num_layers=2, bidirectional=True, impl=impl, **options)


@pytest.mark.parametrize(("rounds", "rank"), [(5, None), (4, 2), (0, None)])
def test_the_fused_engine_gives_the_loops_outputs_states_and_gradients(rounds, rank) -> None:
    """float64, two layers, both directions, rows of other lengths: within 1e-12."""
    torch.manual_seed(0)
    reference = _layer("reference", rank, rounds).double()
    fused = _layer("fused", rank, rounds).double()
    fused.load_state_dict(reference.state_dict())
    x = torch.randn(7, B, I, dtype=torch.float64)
    h0, c0 = torch.randn(4, B, H, dtype=torch.float64), torch.randn(4, B, H, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5])
    results = []
    for layer in (reference, fused):
        xs = [t.clone().requires_grad_() for t in (x, h0, c0)]
        out, (h, c) = layer(xs[0], (xs[1], xs[2]), lengths=lengths)
        (out.pow(2).sum() + h.sum() + c.pow(2).sum()).backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in layer.parameters()]
        results.append([out, h, c, *(t.grad for t in xs), *grads])
    for got, expected in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def test_the_fused_engine_passes_gradcheck() -> None:
    layer = _layer("fused", rank=2).double()
    x = torch.randn(4, 2, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 2, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(4, 2, H, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in layer.named_parameters()]

    def f(x, h0, c0, *weights):
        values = dict(zip(names, weights, strict=True))
        out, (h, c) = torch.func.functional_call(
            layer, values, (x, (h0, c0)), {"lengths": torch.tensor([4, 2])}
        )
        return out, h, c

    weights = [p.detach().requires_grad_() for p in layer.parameters()]
    assert torch.autograd.gradcheck(f, (x, h0, c0, *weights))


def test_auto_trains_it_on_the_fused_engine_and_weight_drop_applies() -> None:
    """The fused engine trains it faster than the loop; the loop infers it faster (it writes none of
    the buffers the fused backward reads)."""
    layer = _layer("auto", weight_drop=0.3)
    assert layer.engine == "fused"
    assert layer.engine_for("cpu", training=False) == "reference"
    assert choose(layer.cells, "cpu", training=False, step=True) == "reference"
    fused_out = []
    for impl in ("reference", "fused"):
        other = _layer(impl, weight_drop=0.3)
        other.load_state_dict(layer.state_dict())
        torch.manual_seed(5)
        fused_out.append(other(torch.ones(6, B, I))[0])
    torch.testing.assert_close(fused_out[1], fused_out[0], atol=1e-5, rtol=0)


def test_bad_rounds_ranks_and_states_are_one_line() -> None:
    cell = unrolled.MogrifierLSTMCell(I, H)
    with pytest.raises(
        ValueError, match=r"the Mogrifier LSTM cell's state is \(h, c\): expected 2 tensors, got 3"
    ):
        cell(torch.randn(B, I), (torch.zeros(B, H),) * 3)
    with pytest.raises(ValueError, match=r"rounds must be an integer >= 0 \(0 is a plain LSTM\), got -1"):
        unrolled.MogrifierLSTMCell(I, H, rounds=-1)
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        unrolled.MogrifierLSTMCell(I, H, rank=0)
    config = RecurrentConfig(cell="mogrifier", mogrify_rounds=-2)
    with pytest.raises(ValueError, match="--mogrify-rounds must be >= 0, got -2"):
        config.validate()
    config = RecurrentConfig(cell="gru", mogrify_rank=4)
    with pytest.raises(ValueError, match="--mogrify-rank applies to --cell mogrifier only, got --cell gru"):
        config.validate()
