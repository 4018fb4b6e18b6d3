"""Variable-length batches: PackedSequence in and out, or a padded batch with ``lengths``.

Against torch.nn on the same packed input (outputs, states and every gradient within 1e-5 in
float32) for the cells torch has; for every other cell, against running each sequence alone.
"""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pack_sequence, pad_sequence

import unrolled

I, H = 5, 6
ATOL = 1e-5
LENGTHS = [3, 6, 1, 6, 4]  # unsorted, with a tie and a length of 1
TORCH = {
    "RNN": (unrolled.RNN, torch.nn.RNN, {}),
    "RNN-relu": (unrolled.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "LSTM": (unrolled.LSTM, torch.nn.LSTM, {}),
    "LSTM-proj": (unrolled.LSTM, torch.nn.LSTM, {"proj_size": 4}),
    "GRU": (unrolled.GRU, torch.nn.GRU, {}),
}


def _flat(state):
    return [state] if isinstance(state, torch.Tensor) else list(state)


def _sequences(lengths=LENGTHS, dtype=torch.float32):
    return [torch.randn(n, I, dtype=dtype) for n in lengths]


def _hx(layer, batch, dtype=torch.float32):
    proto = _flat(layer.cells[0].init_state(batch, dtype=dtype))
    n = layer.num_layers * layer.num_directions
    parts = [torch.randn(n, *p.shape, dtype=dtype) for p in proto]
    return parts[0] if len(parts) == 1 else tuple(parts)


def _row(state, b):
    """Batch row ``b`` of a stacked state, keeping the batch dimension."""
    if isinstance(state, torch.Tensor):
        return state[:, b : b + 1]
    return tuple(s[:, b : b + 1] for s in state)


def _leaf(state):
    if isinstance(state, torch.Tensor):
        return state.clone().requires_grad_()
    return tuple(s.clone().requires_grad_() for s in state)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize(
    "kind, layers, bidirectional, enforce_sorted",
    list(itertools.product(TORCH, [1, 2], [False, True], [False, True])),
)
def test_packed_input_matches_torch(kind, layers, bidirectional, enforce_sorted, impl) -> None:
    ours_cls, ref_cls, kw = TORCH[kind]
    ref = ref_cls(I, H, num_layers=layers, bidirectional=bidirectional, **kw)
    ours = ours_cls(I, H, num_layers=layers, bidirectional=bidirectional, impl=impl, **kw)
    ours.load_state_dict(ref.state_dict())
    lengths = sorted(LENGTHS, reverse=True) if enforce_sorted else LENGTHS
    data = pack_sequence(_sequences(lengths), enforce_sorted=enforce_sorted).data
    hx = _hx(ours, len(lengths))
    runs = []
    for layer in (ours, ref):
        x, h0 = data.clone().requires_grad_(), _leaf(hx)
        packed = pack_sequence([torch.zeros(n, I) for n in lengths], enforce_sorted=enforce_sorted)
        packed = PackedSequence(x, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        out, h_n = layer(packed, h0)
        runs.append((x, h0, out, _flat(h_n)))
    (x1, h01, out1, s1), (x2, h02, out2, s2) = runs
    assert isinstance(out1, PackedSequence)
    assert torch.equal(out1.batch_sizes, out2.batch_sizes)
    for a, b in [(out1.sorted_indices, out2.sorted_indices), (out1.unsorted_indices, out2.unsorted_indices)]:
        assert (a is None and b is None) or torch.equal(a, b)
    torch.testing.assert_close(out1.data, out2.data, atol=ATOL, rtol=0)
    for a, b in zip(s1, s2, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    gen = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, generator=gen) for t in [out1.data, *s1]]
    for out, s in ((out1, s1), (out2, s2)):
        sum((w * t).sum() for w, t in zip(weights, [out.data, *s], strict=True)).backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=ATOL, rtol=0)
    for a, b in zip(_flat(h01), _flat(h02), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=ATOL, rtol=0)
    ref_params = dict(ref.named_parameters())
    for name in ours.state_dict():
        torch.testing.assert_close(
            getattr(ours, name).grad,
            ref_params[name].grad,
            atol=ATOL,
            rtol=0,
            msg=lambda m, n=name: f"{n}: {m}",
        )


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_padded_input_with_lengths_matches_torch_packed(kind, batch_first, impl) -> None:
    ours_cls, ref_cls, kw = TORCH[kind]
    ref = ref_cls(I, H, num_layers=2, bidirectional=True, batch_first=batch_first, **kw)
    ours = ours_cls(I, H, num_layers=2, bidirectional=True, batch_first=batch_first, impl=impl, **kw)
    ours.load_state_dict(ref.state_dict())
    padded = pad_sequence(_sequences(), batch_first=batch_first, padding_value=7.0)  # junk in the padding
    lengths = torch.tensor(LENGTHS)
    out, h_n = ours(padded, lengths=lengths)
    ref_out, ref_h = ref(pack_padded_sequence(padded, lengths, batch_first=batch_first, enforce_sorted=False))
    expected, _ = torch.nn.utils.rnn.pad_packed_sequence(ref_out, batch_first=batch_first)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)  # zero past each end
    for a, b in zip(_flat(h_n), _flat(ref_h), strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    # the padding's values never matter
    out_again, _ = ours(padded.masked_fill(padded == 7.0, -3.0), lengths=LENGTHS)
    torch.testing.assert_close(out_again, out, atol=0, rtol=0)


ZOO = {
    "rnn": functools.partial(unrolled.RNNCell, hidden_size=H),
    "lstm-proj": functools.partial(unrolled.LSTMCell, hidden_size=H, proj_size=3),
    "lstm-layer-norm": functools.partial(unrolled.LSTMCell, hidden_size=H, layer_norm=True),
    **{
        f"lstm-{v}": functools.partial(unrolled.LSTMCell, hidden_size=H, variant=v)
        for v in unrolled.cells.lstm.VARIANTS
    },
    "gru": functools.partial(unrolled.GRUCell, hidden_size=H),
    "gru-reset-before": functools.partial(unrolled.GRUCell, hidden_size=H, reset_after=False),
    "gru-layer-norm": functools.partial(unrolled.GRUCell, hidden_size=H, layer_norm=True),
    **{f"mut{a}": functools.partial(unrolled.MUTCell, hidden_size=H, arch=a) for a in (1, 2, 3)},
}


@pytest.mark.parametrize("name", ZOO)
def test_every_cell_runs_a_padded_batch_as_if_each_sequence_ran_alone(name) -> None:
    """Zero past each end, final states at each last step, the reverse direction from each end."""
    layer = unrolled.Recurrent(ZOO[name], I, num_layers=2, bidirectional=True).double()
    seqs = _sequences(dtype=torch.float64)
    hx = _hx(layer, len(seqs), dtype=torch.float64)
    out, h_n = layer(pad_sequence(seqs), hx, lengths=torch.tensor(LENGTHS))
    T = max(LENGTHS)
    for b, seq in enumerate(seqs):
        n = len(seq)
        alone, h_alone = layer(seq[:, None], _row(hx, b))
        torch.testing.assert_close(out[:n, b], alone[:, 0], atol=1e-12, rtol=0)
        assert torch.equal(out[n:, b], torch.zeros(T - n, out.size(2), dtype=out.dtype))
        for a, e in zip(_flat(h_n), _flat(h_alone), strict=True):
            torch.testing.assert_close(a[:, b], e[:, 0], atol=1e-12, rtol=0)
    packed_out, packed_h = layer(pack_sequence(seqs, enforce_sorted=False), hx)
    expected = pack_padded_sequence(out, torch.tensor(LENGTHS), enforce_sorted=False).data
    torch.testing.assert_close(packed_out.data, expected, atol=0, rtol=0)
    for a, e in zip(_flat(packed_h), _flat(h_n), strict=True):
        torch.testing.assert_close(a, e, atol=0, rtol=0)


def test_zero_length_rows_keep_their_initial_state(impl) -> None:
    layer = unrolled.LSTM(I, H, num_layers=2, bidirectional=True, impl=impl)
    hx = _hx(layer, 3)
    out, (h_n, c_n) = layer(torch.randn(4, 3, I), hx, lengths=[4, 0, 2])
    assert torch.equal(out[:, 1], torch.zeros(4, 2 * H))
    assert torch.equal(h_n[:, 1], hx[0][:, 1]) and torch.equal(c_n[:, 1], hx[1][:, 1])
    assert not torch.equal(h_n[:, 0], hx[0][:, 0])


def test_masked_layer_gradcheck() -> None:
    layer = unrolled.LSTM(3, 2, bidirectional=True, variant="FGR").double()
    x = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([2, 4, 1])

    def f(x, *params):
        out, state = layer(x, lengths=lengths)
        return (out, *state)

    assert torch.autograd.gradcheck(f, (x, *layer.parameters()), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda m: m(torch.randn(4, 3, I), lengths=[4, 2]),
            ValueError,
            r"lengths must have shape \(batch,\) = \(3,\)",
        ),
        (
            lambda m: m(torch.randn(4, 3, I), lengths=[4, 5, 1]),
            ValueError,
            r"lengths must lie in \[0, 4\].*\[1, 5\]",
        ),
        (lambda m: m(torch.randn(4, 3, I), lengths=[-1, 2, 1]), ValueError, r"lengths must lie in \[0, 4\]"),
        (
            lambda m: m(torch.randn(4, 3, I), lengths=torch.tensor([1.0, 2, 3])),
            TypeError,
            "integers, got dtype",
        ),
        (lambda m: m(torch.randn(4, I), lengths=[4]), ValueError, "lengths needs a batch"),
        (
            lambda m: m(pack_sequence([torch.randn(2, I)]), lengths=[2]),
            ValueError,
            "a PackedSequence carries its own lengths",
        ),
        (lambda m: m(pack_sequence([torch.randn(2, I + 1)])), ValueError, f"Expected {I}, got {I + 1}"),
    ],
)
def test_length_errors(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call(unrolled.GRU(I, H))
