"""The fused engine against the reference loop: outputs, states and every gradient, for every
cell and option it supports, both directions, stacked, variable lengths and packed; and
gradcheck on each family's hand-derived backward."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import BPTT_ENGINES
from torch.nn.utils.rnn import pack_sequence

import unrolled
from unrolled.cells.lstm import VARIANTS
from unrolled.engines import ENGINES as REGISTERED
from unrolled.engines import fused_supports

I, H = 5, 6
DT = torch.float64
FUSED = {
    "rnn": functools.partial(unrolled.RNNCell, hidden_size=H),
    "rnn-relu-nobias": functools.partial(unrolled.RNNCell, hidden_size=H, nonlinearity="relu", bias=False),
    "lstm": functools.partial(unrolled.LSTMCell, hidden_size=H),
    "lstm-proj": functools.partial(unrolled.LSTMCell, hidden_size=H, proj_size=3),
    "lstm-nobias": functools.partial(unrolled.LSTMCell, hidden_size=H, bias=False),
    **{f"lstm-{v}": functools.partial(unrolled.LSTMCell, hidden_size=H, variant=v) for v in VARIANTS},
    "lstm-FGR-proj": functools.partial(unrolled.LSTMCell, hidden_size=H, variant="FGR", proj_size=4),
    "lstm-mixed": functools.partial(
        unrolled.LSTMCell, hidden_size=H, peephole=True, forget_gate=False, output_activation=False
    ),
    "gru": functools.partial(unrolled.GRUCell, hidden_size=H),
    "gru-nobias": functools.partial(unrolled.GRUCell, hidden_size=H, bias=False),
    "gru-reset-before": functools.partial(unrolled.GRUCell, hidden_size=H, reset_after=False),
    "gru-reset-before-nobias": functools.partial(
        unrolled.GRUCell, hidden_size=H, reset_after=False, bias=False
    ),
    # the step options: layer norm, recurrent dropout, zoneout (masks drawn from the same seed)
    "lstm-ln": functools.partial(unrolled.LSTMCell, hidden_size=H, layer_norm=True),
    "lstm-vanilla-ln-nobias": functools.partial(
        unrolled.LSTMCell, hidden_size=H, variant="vanilla", layer_norm=True, bias=False
    ),
    "lstm-FGR-proj-ln": functools.partial(
        unrolled.LSTMCell, hidden_size=H, variant="FGR", proj_size=4, layer_norm=True
    ),
    "lstm-NOAF-ln": functools.partial(unrolled.LSTMCell, hidden_size=H, variant="NOAF", layer_norm=True),
    "lstm-dropout": functools.partial(unrolled.LSTMCell, hidden_size=H, recurrent_dropout=0.4),
    "lstm-zoneout": functools.partial(unrolled.LSTMCell, hidden_size=H, zoneout=0.3),
    "lstm-proj-zoneout-dropout": functools.partial(
        unrolled.LSTMCell, hidden_size=H, proj_size=4, zoneout=0.3, recurrent_dropout=0.4
    ),
    "lstm-CIFG-all": functools.partial(
        unrolled.LSTMCell, hidden_size=H, variant="CIFG", layer_norm=True, zoneout=0.2, recurrent_dropout=0.3
    ),
    "gru-ln": functools.partial(unrolled.GRUCell, hidden_size=H, layer_norm=True),
    "gru-reset-before-ln": functools.partial(
        unrolled.GRUCell, hidden_size=H, reset_after=False, layer_norm=True
    ),
    "gru-dropout": functools.partial(unrolled.GRUCell, hidden_size=H, recurrent_dropout=0.4),
    "gru-zoneout": functools.partial(unrolled.GRUCell, hidden_size=H, zoneout=0.3),
    "gru-reset-before-all": functools.partial(
        unrolled.GRUCell,
        hidden_size=H,
        reset_after=False,
        layer_norm=True,
        zoneout=0.2,
        recurrent_dropout=0.3,
    ),
    "gru-ln-all-nobias": functools.partial(
        unrolled.GRUCell, hidden_size=H, layer_norm=True, zoneout=0.2, recurrent_dropout=0.3, bias=False
    ),
}
NOISY = [name for name in FUSED if "dropout" in name or "zoneout" in name or "all" in name]
ENGINES = BPTT_ENGINES  # fused; compiled where its C++ could be built; graphed (CPU: replayed by re-running)


def _flat(state):
    return [state] if isinstance(state, torch.Tensor) else list(state)


def _random_state(cell, batch, layers):
    parts = [torch.randn(layers, *p.shape, dtype=DT) for p in _flat(cell.init_state(batch, dtype=DT))]
    if len(parts) == 3:
        parts[2] = parts[2].sigmoid()  # FGR's previous gate activations lie in (0, 1)
    return parts


def _run(layer, x, hx, **kw):
    """Outputs, final states and the gradients of input, initial state and every parameter.
    The random state is reset first, so dropout and zoneout draw the same masks in both engines."""
    x = x.clone().requires_grad_()
    h0 = [h.clone().requires_grad_() for h in hx]
    torch.manual_seed(5)
    out, h_n = layer(x, h0[0] if len(h0) == 1 else tuple(h0), **kw)
    gen = torch.Generator().manual_seed(1)
    tensors = [out, *_flat(h_n)]
    sum(
        (torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.device, t.dtype) * t).sum()
        for t in tensors
    ).backward()
    return tensors + [x.grad] + [h.grad for h in h0] + [p.grad for p in layer.parameters()]


def _pair(make, dtype=DT, engine="fused"):
    ref = unrolled.Recurrent(make, I, num_layers=2, bidirectional=True, impl="reference").to(dtype)
    fused = unrolled.Recurrent(make, I, num_layers=2, bidirectional=True, impl=engine).to(dtype)
    fused.load_state_dict(ref.state_dict())
    assert fused.engine == engine
    return ref, fused


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("lengths", [None, [3, 5, 1, 5]], ids=["full", "lengths"])
def test_fused_equals_reference(name, lengths, engine) -> None:
    ref, fused = _pair(FUSED[name], engine=engine)
    x = torch.randn(5, 4, I, dtype=DT)
    hx = _random_state(ref.cells[0], 4, 4)
    kw = {} if lengths is None else {"lengths": torch.tensor(lengths)}
    for a, b in zip(_run(ref, x, hx, **kw), _run(fused, x, hx, **kw), strict=True):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("engine", ["fused", "graphed"])
@pytest.mark.parametrize("name", FUSED)
def test_fused_equals_reference_on_cuda(name, engine) -> None:
    """The same comparison on CUDA tensors (run where a GPU is present; CI has none), twice
    with other data: the graphed engine's second call replays the graphs of the first."""
    ref, fused = (layer.cuda() for layer in _pair(FUSED[name], engine=engine))
    hx = [h.cuda() for h in _random_state(ref.cells[0], 4, 4)]
    kw = {"lengths": torch.tensor([3, 5, 0, 5], device="cuda")}
    for _ in range(2):
        x = torch.randn(5, 4, I, dtype=DT, device="cuda")
        for layer in (ref, fused):
            layer.zero_grad(set_to_none=True)
        for a, b in zip(_run(ref, x, hx, **kw), _run(fused, x, hx, **kw), strict=True):
            assert b.is_cuda
            torch.testing.assert_close(b, a, atol=1e-12, rtol=0)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", NOISY)
def test_fused_equals_reference_in_evaluation_mode(name, engine) -> None:
    """Zoneout's expectation and no recurrent dropout, out of training."""
    ref, fused = _pair(FUSED[name], engine=engine)
    ref.eval()
    fused.eval()
    x = torch.randn(5, 4, I, dtype=DT)
    hx = _random_state(ref.cells[0], 4, 4)
    for a, b in zip(_run(ref, x, hx), _run(fused, x, hx), strict=True):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=0)


def test_the_noise_is_really_drawn() -> None:
    """Two seeds give two results in training: the masks of the tests above are not all ones."""
    _, fused = _pair(FUSED["lstm-proj-zoneout-dropout"])
    x = torch.randn(5, 4, I, dtype=DT)
    torch.manual_seed(1)
    first, _ = fused(x)
    torch.manual_seed(2)
    second, _ = fused(x)
    assert not torch.allclose(first, second)


def _normwise(a, b):
    """max |a - b| over the tensor, relative to its largest magnitude (at least 1)."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1)).item()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("scale", [1.0, 30.0], ids=["x", "saturating"])
def test_float32_is_as_accurate_as_the_reference_loop(name, engine, scale) -> None:
    """Every cell and option in float32 (where the compiled engine computes sigmoid and tanh with
    its own vectorised exp; scale 30 drives the gates into saturation, exp's clamp): outputs,
    states and gradients within 1e-5 (relative to each tensor's largest value) of the float64
    reference loop, or within 4x the float32 reference loop's own error where that is larger
    (layer norm over 6 units amplifies rounding: the reference itself strays by up to 5e-5).
    With dropout or zoneout, whose masks float32 and float64 draw differently, the float32
    reference loop is the yardstick: 1e-5, 1e-4 with layer norm."""
    torch.manual_seed(0)
    truth_layer, fused = _pair(FUSED[name], DT, engine)
    ref32 = unrolled.Recurrent(FUSED[name], I, num_layers=2, bidirectional=True, impl="reference")
    ref32.load_state_dict(truth_layer.state_dict())
    fused.float()
    x = torch.randn(6, 4, I, dtype=DT) * scale
    hx = _random_state(truth_layer.cells[0], 4, 4)
    kw = {"lengths": torch.tensor([6, 2, 5, 6])}
    ours = _run(fused, x.float(), [h.float() for h in hx], **kw)
    theirs = _run(ref32, x.float(), [h.float() for h in hx], **kw)
    if name in NOISY:
        tol = 1e-4 if "ln" in name or "all" in name else 1e-5
        for a, b in zip(ours, theirs, strict=True):
            assert _normwise(a, b) <= tol
        return
    truth = _run(truth_layer, x, hx, **kw)
    for a, b, t in zip(ours, theirs, truth, strict=True):
        assert _normwise(a, t) <= max(1e-5, 4 * _normwise(b, t))


FLOAT32 = ["lstm-vanilla", "lstm-FGR", "gru-reset-before", "rnn", "lstm-CIFG-all", "gru-reset-before-all"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", FLOAT32)
def test_fused_equals_reference_in_float32_on_packed_input(name, engine) -> None:
    ref, fused = _pair(FUSED[name], torch.float32, engine)
    seqs = [torch.randn(n, I) for n in (4, 7, 2)]
    outs = []
    for layer in (ref, fused):
        data = pack_sequence(seqs, enforce_sorted=False)
        data = data._replace(data=data.data.clone().requires_grad_())
        torch.manual_seed(5)
        out, h_n = layer(data)
        (out.data.pow(2).sum() + sum(h.sum() for h in _flat(h_n))).backward()
        outs.append([out.data, *_flat(h_n), data.data.grad, *[p.grad for p in layer.parameters()]])
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)  # float32 LN gradients reach ~3


@pytest.mark.parametrize(
    "name",
    [
        "rnn",
        "rnn-relu-nobias",
        "lstm-vanilla",
        "lstm-FGR-proj",
        "lstm-CIFG",
        "lstm-CIFG-all",
        "lstm-proj-zoneout-dropout",
        "gru",
        "gru-reset-before",
        "gru-reset-before-all",
        "gru-ln-all-nobias",
    ],
)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("engine", ENGINES)
def test_fused_function_gradcheck(name, reverse, engine) -> None:
    run = REGISTERED[engine].run_cell
    cell = FUSED[name](3).to(DT)
    x = torch.randn(4, 2, 3, dtype=DT, requires_grad=True)
    state = [s.requires_grad_() for s in _random_state(cell, 2, 1)]
    state = [s[0] for s in state]
    lengths = torch.tensor([4, 2])
    params = list(cell.parameters())

    def f(x, *args):
        torch.manual_seed(7)  # the same masks at every call: the function gradcheck sees is fixed
        st = args[: len(state)]
        out, new = run(
            cell, x, st[0] if len(st) == 1 else cell.init_state(2)._make(st), reverse=reverse, lengths=lengths
        )
        return (out, *_flat(new))

    assert torch.autograd.gradcheck(f, (x, *state, *params), eps=1e-6, atol=1e-6)


def test_unsupported_cells_say_so(custom_cell) -> None:
    assert not fused_supports(custom_cell(I))
    assert unrolled.Recurrent(custom_cell, I).engine == "reference"
    with pytest.raises(ValueError, match="impl='fused' does not support"):
        unrolled.Recurrent(custom_cell, I, impl="fused")
