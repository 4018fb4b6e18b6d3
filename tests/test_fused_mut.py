"""The fused MUT1-3 against the reference loop: outputs, states and every gradient, with the input
term as x itself (I = H) or learned (I != H, and every second bidirectional layer), with and
without bias, both directions, variable lengths (a zero one included) and packed; and gradcheck
on the hand-derived backward."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import BPTT_ENGINES, STEP_ENGINE
from torch.nn.utils.rnn import pack_sequence

import unrolled
from unrolled.engines import ENGINES as REGISTERED
from unrolled.engines import fused_supports

H = 6
DT = torch.float64


def _make(arch, bias=True):
    return functools.partial(unrolled.MUTCell, hidden_size=H, arch=arch, bias=bias)


ENGINES = BPTT_ENGINES  # fused; compiled where its C++ could be built; graphed


def _pair(make, input_size, dtype=DT, engine="fused"):
    ref = unrolled.Recurrent(make, input_size, num_layers=2, bidirectional=True, impl="reference").to(dtype)
    fused = unrolled.Recurrent(make, input_size, num_layers=2, bidirectional=True, impl=engine).to(dtype)
    fused.load_state_dict(ref.state_dict())
    assert fused.engine == engine
    return ref, fused


def _run(layer, x, h0, **kw):
    """Output, final state and the gradients of input, initial state and every parameter."""
    x, h0 = x.clone().requires_grad_(), h0.clone().requires_grad_()
    out, h_n = layer(x, h0, **kw)
    gen = torch.Generator().manual_seed(1)
    sum((torch.randn(t.shape, generator=gen, dtype=t.dtype) * t).sum() for t in (out, h_n)).backward()
    return [out, h_n, x.grad, h0.grad] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("arch", [1, 2, 3])
def test_mut_runs_hand_derived_bptt_by_default(arch) -> None:
    assert fused_supports(unrolled.MUTCell(H, H, arch=arch))
    assert unrolled.Recurrent(_make(arch), H).engine == STEP_ENGINE


@pytest.mark.parametrize("arch", [1, 2, 3])
@pytest.mark.parametrize("input_size", [H, 4], ids=["I=H", "I!=H"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(
    "lengths", [None, [3, 5, 1, 5], [3, 0, 5, 2]], ids=["full", "lengths", "zero-length"]
)
@pytest.mark.parametrize("engine", ENGINES)
def test_fused_mut_equals_reference(arch, input_size, bias, lengths, engine) -> None:
    ref, fused = _pair(_make(arch, bias), input_size, engine=engine)
    x = torch.randn(5, 4, input_size, dtype=DT)
    h0 = torch.randn(4, 4, H, dtype=DT)
    kw = {} if lengths is None else {"lengths": torch.tensor(lengths)}
    for a, b in zip(_run(ref, x, h0, **kw), _run(fused, x, h0, **kw), strict=True):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=0)


@pytest.mark.parametrize("arch", [1, 2, 3])
@pytest.mark.parametrize("engine", ENGINES)
def test_fused_mut_equals_reference_in_float32_on_packed_input(arch, engine) -> None:
    ref, fused = _pair(_make(arch), H, torch.float32, engine)
    seqs = [torch.randn(n, H) for n in (4, 7, 2)]
    outs = []
    for layer in (ref, fused):
        data = pack_sequence(seqs, enforce_sorted=False)
        data = data._replace(data=data.data.clone().requires_grad_())
        out, h_n = layer(data)
        (out.data.pow(2).sum() + h_n.sum()).backward()
        outs.append([out.data, h_n, data.data.grad, *[p.grad for p in layer.parameters()]])
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", [1, 2, 3])
@pytest.mark.parametrize("input_size", [H, 4], ids=["I=H", "I!=H"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("engine", ENGINES)
def test_fused_mut_gradcheck(arch, input_size, reverse, engine) -> None:
    run = REGISTERED[engine].run_cell
    cell = unrolled.MUTCell(input_size, H, arch=arch).to(DT)
    x = torch.randn(4, 3, input_size, dtype=DT, requires_grad=True)
    h0 = torch.randn(3, H, dtype=DT, requires_grad=True)
    lengths = torch.tensor([4, 2, 0])

    def f(x, h0, *params):
        return run(cell, x, h0, reverse=reverse, lengths=lengths)

    assert torch.autograd.gradcheck(f, (x, h0, *cell.parameters()), eps=1e-6, atol=1e-6)
