"""minGRU and minLSTM: the cell step against the equations written out, the parallel scan
(``impl="fused"``) and the compiled engine's sequential C++ pass (``impl="compiled"``) against the
step-by-step loop (``impl="reference"``) for outputs, states and every gradient, gradcheck of
each, long sequences, and the char-LM and benchmark entry points."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from conftest import BPTT_ENGINES, STEP_ENGINE
from torch.nn.utils.rnn import pack_sequence

import unrolled
from unrolled.bench import speed
from unrolled.cells.minimal import g, log_g
from unrolled.cli import main
from unrolled.engines import compiled, run_fused
from unrolled.engines.scan import linear_scan, run_scan

B, T, I, H = 4, 70, 5, 6  # T > 64: the default scan runs two chunks
CELLS = {"mingru": unrolled.MinGRUCell, "minlstm": unrolled.MinLSTMCell}
ATOL = {torch.float32: 1e-4, torch.float64: 1e-10}


# fused; compiled where its C++ could be built (graphed runs the fused engine's scan: no loop to capture)
ENGINES = [e for e in BPTT_ENGINES if e != "graphed"]


def _pair(cls, dtype, num_layers=2, bidirectional=True, engine="fused"):
    make = functools.partial(cls, hidden_size=H)
    loop = unrolled.Recurrent(make, I, num_layers, bidirectional, impl="reference").to(dtype)
    scan = unrolled.Recurrent(make, I, num_layers, bidirectional, impl=engine).to(dtype)
    scan.load_state_dict(loop.state_dict())
    assert scan.engine == engine and unrolled.Recurrent(make, I).engine == STEP_ENGINE  # what auto picks
    return loop, scan


def _run(layer, x, h0, **kw):
    """Outputs, final state and the gradients of input, initial state and every parameter."""
    x = x.clone().requires_grad_()
    h0 = h0.clone().requires_grad_()
    out, h_n = layer(x, h0, **kw)
    gen = torch.Generator().manual_seed(1)
    (torch.randn(out.shape, generator=gen, dtype=out.dtype) * out).sum().backward(retain_graph=True)
    (torch.randn(h_n.shape, generator=gen, dtype=h_n.dtype) * h_n).sum().backward()
    return [out, h_n, x.grad, h0.grad, *[p.grad for p in layer.parameters()]]


def _initial(kind, shape, dtype):
    return {
        "positive": lambda: torch.rand(shape, dtype=dtype) + 0.1,
        "zero": lambda: torch.zeros(shape, dtype=dtype),
        "signed": lambda: torch.randn(shape, dtype=dtype),  # allowed: h_0 enters the scan linearly
    }[kind]()


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("h0", ["positive", "zero", "signed"])
@pytest.mark.parametrize("lengths", [None, [3, T, 0, 66]], ids=["full", "lengths"])
@pytest.mark.parametrize("engine", ENGINES)
def test_scan_equals_loop(name, dtype, h0, lengths, engine) -> None:
    loop, scan = _pair(CELLS[name], dtype, engine=engine)
    x = torch.randn(T, B, I, dtype=dtype)
    hx = _initial(h0, (4, B, H), dtype)
    kw = {} if lengths is None else {"lengths": torch.tensor(lengths)}
    expected, got = _run(loop, x, hx, **kw), _run(scan, x, hx, **kw)
    for a, b in zip(expected, got, strict=True):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(b, a, atol=ATOL[dtype], rtol=0)
    if lengths is not None:  # a zero-length row keeps its initial state exactly and outputs zeros
        assert torch.equal(got[1][:, 2], hx[:, 2]) and torch.equal(
            got[0][:, 2], torch.zeros(T, 2 * H, dtype=dtype)
        )


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("engine", ENGINES)
def test_scan_equals_loop_on_packed_input(name, engine) -> None:
    loop, scan = _pair(CELLS[name], torch.float32, engine=engine)
    seqs = [torch.randn(n, I) for n in (40, 70, 2, 1)]
    results = []
    for layer in (loop, scan):
        data = pack_sequence(seqs, enforce_sorted=False)
        data = data._replace(data=data.data.clone().requires_grad_())
        out, h_n = layer(data)
        gen = torch.Generator().manual_seed(1)
        (torch.randn(out.data.shape, generator=gen) * out.data).sum().add(h_n.sum()).backward()
        results.append([out.data, h_n, data.data.grad, *[p.grad for p in layer.parameters()]])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("engine", ENGINES)
def test_long_sequence_scan_equals_loop_in_float32(name, engine) -> None:
    loop, scan = _pair(CELLS[name], torch.float32, num_layers=1, bidirectional=False, engine=engine)
    x = torch.randn(2000, 3, I)
    hx = _initial("positive", (1, 3, H), torch.float32)
    expected, got = _run(loop, x, hx), _run(scan, x, hx)
    for a, b in zip(expected[:4], got[:4], strict=True):  # outputs, final state, input and h_0 gradients
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)
    for a, b in zip(expected[4:], got[4:], strict=True):  # sums over 6000 steps, of size ~100: relative
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 7, 64])
def test_linear_scan_is_the_recurrence(chunk) -> None:
    steps = 10
    log_a = -torch.rand(steps, 2, 3, dtype=torch.float64) * 3
    log_b = torch.randn(steps, 2, 3, dtype=torch.float64)
    log_b[4:6, 0] = float("-inf")  # b = 0
    h0 = torch.randn(2, 3, dtype=torch.float64)
    h, expected = h0, []
    for t in range(steps):
        h = log_a[t].exp() * h + log_b[t].exp()
        expected.append(h)
    torch.testing.assert_close(
        linear_scan(log_a, log_b, h0, chunk), torch.stack(expected), atol=1e-12, rtol=0
    )


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 7, 64])
def test_linear_scan_backward_by_hand_equals_autograd_of_the_recurrence(chunk) -> None:
    """The reverse scan of the adjoint against autograd through the step-by-step loop (b = 0 too)."""
    steps = 11
    log_a = (-torch.rand(steps, 2, 3, dtype=torch.float64) * 3).requires_grad_()
    log_b = torch.randn(steps, 2, 3, dtype=torch.float64)
    log_b[4:6, 0] = float("-inf")
    log_b.requires_grad_()
    h0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(steps, 2, 3, dtype=torch.float64)  # a loss that reads every h_t

    def loop(log_a, log_b, h0):
        h, out = h0, []
        for t in range(steps):
            h = log_a[t].exp() * h + log_b[t].exp()
            out.append(h)
        return torch.stack(out)

    expected = torch.autograd.grad((loop(log_a, log_b, h0) * weights).sum(), (log_a, log_b, h0))
    got = torch.autograd.grad((linear_scan(log_a, log_b, h0, chunk) * weights).sum(), (log_a, log_b, h0))
    for want, have in zip(expected, got, strict=True):
        torch.testing.assert_close(have, want, atol=1e-12, rtol=1e-10)
    assert torch.autograd.gradcheck(lambda a, h: linear_scan(a, log_b.detach(), h, chunk), (log_a, h0))


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("bias", [True, False])
def test_cell_step_gradcheck(name, bias) -> None:
    cell = CELLS[name](3, 4, bias=bias).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h, *p: cell(x, h)[0], (x, h, *cell.parameters()), eps=1e-6)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("engine", ENGINES)
def test_scan_gradcheck(name, reverse, bias, engine) -> None:
    """The parallel scan (chunks of 4, 4 and 2 + 2 padded steps) and the compiled pass's
    hand-written backward (csrc/scan.cpp), with a row cut short and one of length 0."""
    cell = CELLS[name](3, 4, bias=bias).double()
    x = torch.randn(10, 3, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([10, 5, 0])
    mask = (torch.arange(10)[:, None] < lengths).unsqueeze(-1)  # (T, B, 1)

    def f(x, h0, *params):
        if engine == "fused":
            return run_scan(cell, x, h0, reverse, mask, chunk=4)
        return compiled.run_compiled(cell, x, h0, reverse=reverse, lengths=lengths)

    assert torch.autograd.gradcheck(f, (x, h0, *cell.parameters()), eps=1e-6, atol=1e-6)


def test_equations_of_one_step_by_hand() -> None:
    x, h = torch.randn(2, I), torch.randn(2, H)
    gru = unrolled.MinGRUCell(I, H)
    (wz, wh), (bz, bh) = gru.weight_ih.chunk(2), gru.bias_ih.chunk(2)  # rows z, h
    z, cand = torch.sigmoid(x @ wz.T + bz), x @ wh.T + bh
    cand = torch.where(cand >= 0, cand + 0.5, torch.sigmoid(cand))
    out, state = gru(x, h)
    torch.testing.assert_close(out, (1 - z) * h + z * cand)
    assert state is out
    lstm = unrolled.MinLSTMCell(I, H)
    (wf, wi, wh), (bf, bi, bh) = lstm.weight_ih.chunk(3), lstm.bias_ih.chunk(3)  # rows f, i, h
    f, i = torch.sigmoid(x @ wf.T + bf), torch.sigmoid(x @ wi.T + bi)
    cand = x @ wh.T + bh
    cand = torch.where(cand >= 0, cand + 0.5, torch.sigmoid(cand))
    torch.testing.assert_close(lstm(x, h)[0], f / (f + i) * h + i / (f + i) * cand)
    v = torch.linspace(-30, 30, 601, dtype=torch.float64)  # g > 0, continuous at 0, log_g = log g
    assert (g(v) > 0).all() and g(torch.tensor(0.0)) == 0.5
    torch.testing.assert_close(log_g(v), g(v).log(), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", CELLS)
def test_log_coefficients_are_those_of_the_step(name) -> None:
    cell = CELLS[name](I, H).double()
    k = torch.randn(3, cell.gates * H, dtype=torch.float64) * 4
    h = torch.randn(3, H, dtype=torch.float64)
    log_a, log_b = cell.log_coefficients(k)
    torch.testing.assert_close(cell.step(k, h), log_a.exp() * h + log_b.exp(), atol=1e-12, rtol=0)
    mix = log_a.exp() + (log_b - log_g(k[:, -H:])).exp()  # (1 - z) + z, or f' + i'
    torch.testing.assert_close(mix, torch.ones_like(mix), atol=1e-12, rtol=0)


@pytest.mark.parametrize("impl", ["reference", *ENGINES])
def test_min_lstm_normalised_gates_keep_a_state_equal_to_its_candidate(impl) -> None:
    # f' + i' = 1: h_t = f' h_{t-1} + i' h~ stays at h~ when it starts there, whatever the
    # (unnormalised) gates are. Without the normalisation it would drift by (f + i - 1) h~.
    layer = unrolled.Recurrent(functools.partial(unrolled.MinLSTMCell, hidden_size=H), I, impl=impl).double()
    cell = layer.cells[0]
    with torch.no_grad():
        cell.bias_ih[: 2 * H] += torch.tensor([3.0] * H + [2.0] * H, dtype=torch.float64)  # f + i far from 1
    x = torch.randn(I, dtype=torch.float64).expand(50, 2, I)  # the same input at every step
    with torch.no_grad():
        cand = g(torch.nn.functional.linear(x[0], cell.weight_ih, cell.bias_ih)[:, 2 * H :])  # (2, H)
        out, h_n = layer(x, cand.unsqueeze(0))
    torch.testing.assert_close(out, cand.expand(50, 2, H), atol=1e-12, rtol=0)
    torch.testing.assert_close(h_n[0], cand, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", CELLS)
def test_cell_protocol(name) -> None:
    cell = CELLS[name](I, H, dtype=torch.float64)
    assert not hasattr(cell, "weight_hh") and sorted(n for n, _ in cell.named_parameters()) == [
        "bias_ih",
        "weight_ih",
    ]
    assert cell.weight_ih.shape == (cell.gates * H, I)
    state = cell.init_state(3)
    assert state.shape == (3, H) and state.dtype == torch.float64 and not state.any()
    x = torch.randn(I, dtype=torch.float64)
    h, _ = cell(x)  # unbatched input, missing state = zeros
    torch.testing.assert_close(h, cell(x.unsqueeze(0), torch.zeros(1, H, dtype=torch.float64))[0][0])
    assert CELLS[name](I, H, bias=False).bias_ih is None
    with pytest.raises(ValueError, match="Expected 5, got 4"):
        cell(torch.randn(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected \(3, 6\), got \(3, 7\)"):
        cell(torch.randn(3, I, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        CELLS[name](I, 0)


@pytest.mark.parametrize("name", CELLS)
def test_single_steps_through_the_fused_engine_are_the_cell(name) -> None:
    cell = CELLS[name](I, H)
    x, h = torch.randn(1, B, I), torch.rand(B, H)
    out, h_n = run_fused(cell, x, h, lengths=torch.tensor([1, 0, 1, 1]))
    step, _ = cell(x[0], h)
    torch.testing.assert_close(out[0, [0, 2, 3]], step[[0, 2, 3]])
    assert not out[0, 1].any() and torch.equal(h_n[1], h[1])


@pytest.mark.parametrize("option", [["--layer-norm"], ["--zoneout", "0.1"], ["--init", "xavier"]])
def test_charlm_refuses_options_the_minimal_cells_lack(tiny_text_file, tmp_path, capsys, option) -> None:
    args = [
        "train",
        "charlm",
        "--text",
        str(tiny_text_file),
        "--out",
        str(tmp_path / "r"),
        "--cell",
        "mingru",
    ]
    assert main([*args, *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unrolled: error: ") and err.count("\n") == 1 and "mingru" in err


def test_scan_vs_loop_bench(tmp_path, capsys) -> None:
    result = speed.scan_vs_loop(**speed.SCAN_SMOKE, repeats=1)
    for key in ("scan_train_ms", "loop_train_ms", "scan_infer_ms", "loop_infer_ms", "train_speedup"):
        assert result[key] > 0
    assert ("compiled_train_speedup" in result) == compiled.available()  # the sequential C++ pass too
    assert "speedup" in speed.format_scan(result)
    path = tmp_path / "speed.json"
    assert (
        main(["bench", "speed", "--smoke", "--repeats", "1", "--only", "mingru/", "--json", str(path)]) == 0
    )
    report = json.loads(path.read_text())
    assert report["scan_vs_loop"]["size"] == [2, 16, 8, 8]
    assert {"mingru/reference", "mingru/fused", f"mingru/{STEP_ENGINE}"} <= {
        r["name"] for r in report["results"]
    }
    assert "minGRU parallel scan vs step-by-step loop" in capsys.readouterr().out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_linear_scan_with_vanishing_gates_stays_finite_and_exact(dtype) -> None:
    """Gates far below the floor (a = e^-300 or e^-60) would overflow exp(-A) unfloored."""
    steps = 40
    log_a = -torch.rand(steps, 2, 3, dtype=torch.float64) * 2
    log_a[5:9] = -300.0 if dtype == torch.float64 else -60.0
    log_b = torch.randn(steps, 2, 3, dtype=torch.float64)
    h0 = torch.randn(2, 3, dtype=torch.float64)
    h, expected = h0, []
    for t in range(steps):
        h = log_a[t].exp() * h + log_b[t].exp()
        expected.append(h)
    got = linear_scan(log_a.to(dtype), log_b.to(dtype), h0.to(dtype))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), torch.stack(expected), atol=1e-5, rtol=1e-5)
