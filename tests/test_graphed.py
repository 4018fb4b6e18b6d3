"""The graphed engine's capture logic: signatures, aliases, write-back, copies of the outputs,
eviction and its refusals. On the CPU a loop is "captured" by conftest.Rerun, which keeps a
graph's contract (a replay recomputes into the same output memory); its comparisons with the
reference loop for every cell and option are in test_fused.py and test_fused_mut.py (engine
"graphed"), on CUDA too where a GPU is present."""

from __future__ import annotations

import functools
import warnings
from types import SimpleNamespace

import pytest
import torch
from conftest import Rerun
from test_fused import FUSED
from torch.utils._python_dispatch import TorchDispatchMode

import unrolled
from unrolled.bench.speed import candidates
from unrolled.engines import choose, graphed
from unrolled.engines.graphed import GraphedLoop

I, H = 5, 6


@pytest.fixture
def on_cpu(monkeypatch) -> None:
    monkeypatch.setitem(graphed.CAPTURES, "cpu", Rerun)


def _fill(acts: torch.Tensor, w: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """A toy loop in the STEPS style: writes into ``out`` and ``acts``, returns a new tensor."""
    out.copy_(acts @ w)
    acts.mul_(2)
    return out.sum(0)


def test_a_loop_is_captured_once_per_signature_and_replayed(on_cpu) -> None:
    loop = GraphedLoop(_fill)
    w = torch.randn(3, 3)
    results = []
    for _ in range(3):
        acts, out = torch.randn(4, 3), torch.empty(4, 3)
        expected_out, expected_acts = acts @ w, acts * 2
        total = loop(acts, w, out)
        torch.testing.assert_close(out, expected_out)  # written back into the caller's buffers
        torch.testing.assert_close(acts, expected_acts)
        torch.testing.assert_close(total, expected_out.sum(0))
        results.append((total, expected_out.sum(0)))
    assert loop.captures == 1
    for total, expected in results:  # each call's output is its own copy, not the replayed memory
        torch.testing.assert_close(total, expected)
    loop(torch.randn(5, 3), w, torch.empty(5, 3))  # another shape: another graph
    assert loop.captures == 2


def test_only_what_the_loop_writes_is_copied_back(on_cpu) -> None:
    """Inputs the loop only reads (weights, the initial state) are left alone: autograd's
    version counters of tensors saved elsewhere must not move."""
    loop = GraphedLoop(_fill)
    acts, w, out = torch.randn(4, 3), torch.randn(3, 3), torch.empty(4, 3)
    for _ in range(2):
        version = w._version
        loop(acts, w, out)
        assert w._version == version


def test_a_tensor_passed_twice_stays_one_buffer(on_cpu) -> None:
    """As the LSTM's ``d_q``, which is ``d_pre`` without layer norm: written through one name,
    read through the other."""

    def write_then_read(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a.fill_(3.0)
        return b * 2

    loop = GraphedLoop(write_then_read)
    for _ in range(2):
        buf = torch.zeros(2)
        torch.testing.assert_close(loop(buf, buf), torch.full((2,), 6.0))
        torch.testing.assert_close(buf, torch.full((2,), 3.0))


def test_views_of_one_another_run_without_a_graph(on_cpu) -> None:
    loop = GraphedLoop(_fill)
    acts = torch.randn(8, 3)
    out = acts[4:]  # shares memory with acts: copies would not see each other's writes
    expected = acts[:4] @ torch.eye(3)
    loop(acts[:4], torch.eye(3), out)
    torch.testing.assert_close(out, expected)
    assert loop.captures == 0


def test_the_least_recently_used_graph_is_dropped(on_cpu) -> None:
    loop = GraphedLoop(_fill, max_graphs=2)
    w = torch.randn(3, 3)
    for rows in (1, 2, 1, 3):  # 1 is used again before 3 arrives: 2 is dropped
        loop(torch.randn(rows, 3), w, torch.empty(rows, 3))
    assert loop.captures == 3 and len(loop.graphs) == 2
    loop(torch.randn(1, 3), w, torch.empty(1, 3))
    assert loop.captures == 3
    loop(torch.randn(2, 3), w, torch.empty(2, 3))
    assert loop.captures == 4


@pytest.mark.parametrize(
    "make",
    [
        lambda i: unrolled.LSTMCell(i, H, variant="FGR", layer_norm=True, zoneout=0.2),
        lambda i: unrolled.GRUCell(i, H, reset_after=False, recurrent_dropout=0.3),
        lambda i: unrolled.RNNCell(i, H),
        lambda i: unrolled.MUTCell(i, H, arch=3),
    ],
    ids=["lstm", "gru", "rnn", "mut"],
)
def test_every_family_trains_from_captured_graphs(make, on_cpu, monkeypatch) -> None:
    """Each family's forward and backward loop is captured (none falls back to eager), once per
    direction, and a second step with the same shapes replays them."""
    layer = unrolled.Recurrent(make, I, bidirectional=True, impl="graphed")
    cls = type(layer.cells[0])
    runner, shared = graphed.RUNNERS[cls]
    steps = SimpleNamespace(forward=GraphedLoop(shared.forward.fn), backward=GraphedLoop(shared.backward.fn))
    monkeypatch.setitem(graphed.RUNNERS, cls, (runner, steps))  # no graphs from earlier tests
    x = torch.randn(7, 3, I)
    for _ in range(2):
        out, _ = layer(x, lengths=torch.tensor([7, 2, 5]))
        out.sum().backward()
        assert (steps.forward.captures, steps.backward.captures) == (2, 2)


# ops a CUDA graph cannot capture: a host sync or a host-to-device copy (indexing with a Python
# list makes an index tensor on the host; torch.tensor(...) lifts one), data-dependent shapes
UNCAPTURABLE = {
    "index.Tensor",
    "index_put_.default",
    "index_put.default",
    "_local_scalar_dense.default",
    "nonzero.default",
    "masked_select.default",
    "lift_fresh.default",
    "_to_copy.default",
}


class _Recording(Rerun):
    """Rerun, recording every op the loop dispatches."""

    ops: set[str] = set()

    def __init__(self, run, device) -> None:
        class Record(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                _Recording.ops.add(func.__name__ if hasattr(func, "__name__") else str(func))
                return func(*args, **(kwargs or {}))

        def recorded():
            with Record():
                return run()

        super().__init__(recorded, device)


LOOPS = {
    **FUSED,
    **{f"mut{a}": functools.partial(unrolled.MUTCell, hidden_size=H, arch=a) for a in (1, 2, 3)},
    **{f"mut{a}-I=H": functools.partial(unrolled.MUTCell, hidden_size=H, arch=a) for a in (1, 2, 3)},
}


@pytest.mark.parametrize("name", LOOPS)
def test_the_loops_use_only_capturable_ops(name, monkeypatch) -> None:
    """Every op of every family's forward and backward loop, for every cell and option (variable
    lengths, noise, layer norm, FGR's gate blocks, MUT1-3), is one a CUDA graph can capture."""
    monkeypatch.setitem(graphed.CAPTURES, "cpu", _Recording)
    monkeypatch.setattr(_Recording, "ops", set())
    size = H if name.endswith("I=H") else I
    layer = unrolled.Recurrent(LOOPS[name], size, bidirectional=True, impl="graphed")
    out, _ = layer(torch.randn(5, 3, size), lengths=torch.tensor([5, 2, 4]))
    out.sum().backward()
    assert _Recording.ops, "nothing was captured"
    assert not _Recording.ops & UNCAPTURABLE


def test_inference_mode(on_cpu) -> None:
    layer = unrolled.Recurrent(lambda i: unrolled.GRUCell(i, H, layer_norm=True), I, impl="graphed")
    x = torch.randn(4, 2, I)
    with torch.no_grad():
        expected, _ = layer(x)
    with torch.inference_mode():
        out, _ = layer(x)
    torch.testing.assert_close(out, expected)


def test_a_call_that_autograd_records_is_not_captured(on_cpu) -> None:
    """As a double backward would: the loop runs plainly, its result differentiable."""
    loop = GraphedLoop(lambda a, out: out.copy_(a * a).sum())
    a = torch.randn(3, requires_grad=True)
    total = loop(a, torch.empty(3))
    total.backward()
    torch.testing.assert_close(a.grad, 2 * a.detach())
    assert loop.captures == 0


def test_a_loop_that_cannot_be_captured_runs_uncaptured_with_one_warning(monkeypatch) -> None:
    def refuse(run, device):
        raise RuntimeError("operation not permitted when stream is capturing (simulated)")

    monkeypatch.setitem(graphed.CAPTURES, "cpu", refuse)
    loop = GraphedLoop(_fill)
    w = torch.randn(3, 3)
    with pytest.warns(RuntimeWarning, match="could not capture _fill .*simulated"):
        acts = torch.randn(4, 3)
        out = torch.empty(4, 3)
        total = loop(acts.clone(), w, out)
    torch.testing.assert_close(total, (acts @ w).sum(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same signature again: no second warning
        loop(torch.randn(4, 3), w, torch.empty(4, 3))
    assert loop.captures == 0


def test_the_graphed_engine_refuses_a_cpu_tensor() -> None:
    layer = unrolled.GRU(I, H, impl="graphed")
    with pytest.raises(ValueError, match="the graphed engine captures CUDA graphs, got a tensor on cpu"):
        layer(torch.randn(4, 3, I))


def test_auto_and_the_benchmark_keep_each_engine_to_its_device() -> None:
    """Neither auto nor ``bench speed`` takes the graphed engine on a CPU, or the compiled one
    on a GPU (auto does not take the graphed engine anywhere until it is measured)."""
    cells = [unrolled.GRUCell(I, H, layer_norm=True)]
    assert choose(cells, "cpu", True) != "graphed"
    assert choose(cells, "cuda", True) == "fused"
    names = [name for name, _ in candidates(I, H)]
    assert "gru/fused" in names and not any(n.endswith("/graphed") for n in names)
