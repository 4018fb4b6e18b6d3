"""The inference path's scratch buffers (unrolled.engines.fused.arena): reused across calls only
when nothing is differentiated, never for what a layer returns, and per thread."""

from __future__ import annotations

import functools
import threading

import pytest
import torch
from conftest import NEEDS_COMPILED

import unrolled
from unrolled.engines.fused import arena


def test_scratch_is_reused_inside_reusing_and_fresh_outside() -> None:
    like = torch.zeros(1)
    with arena.reusing(True):
        a = arena.scratch("t", (4, 3), like)
        b = arena.scratch("t", (2, 5), like)  # smaller: a view of the same block
        c = arena.scratch("u", (4, 3), like)  # another name: another block
    assert a.data_ptr() == b.data_ptr() != c.data_ptr()
    assert b.shape == (2, 5)
    with arena.reusing(False):
        assert arena.scratch("t", (4, 3), like).data_ptr() != a.data_ptr()
    assert arena.scratch("t", (4, 3), like).data_ptr() != a.data_ptr()  # off by default
    with arena.reusing(True):
        grown = arena.scratch("t", (10, 10), like)  # larger: a new block, kept from now on
        assert arena.scratch("t", (3,), like).data_ptr() == grown.data_ptr()
    arena.release()


def test_scratch_blocks_are_per_thread() -> None:
    like = torch.zeros(1)
    ptrs = []

    def take() -> None:
        with arena.reusing(True):
            ptrs.append(arena.scratch("t", (64,), like).data_ptr())

    with arena.reusing(True):
        mine = arena.scratch("t", (64,), like).data_ptr()
    thread = threading.Thread(target=take)
    thread.start()
    thread.join()
    assert ptrs and ptrs[0] != mine
    arena.release()


def test_inference_means_no_graph() -> None:
    w = torch.zeros(2, requires_grad=True)
    x = torch.zeros(2)
    assert arena.inference([x, None])  # nothing requires grad
    assert not arena.inference([x, w])
    with torch.no_grad():
        assert arena.inference([x, w])
    assert arena.inference([x, w.detach()])


CELLS = {
    "lstm": functools.partial(unrolled.LSTMCell, hidden_size=12),
    "lstm-proj": functools.partial(unrolled.LSTMCell, hidden_size=12, proj_size=5),
    "lstm-ln": functools.partial(unrolled.LSTMCell, hidden_size=12, layer_norm=True),
    "fgr": functools.partial(unrolled.LSTMCell, hidden_size=12, variant="FGR"),
}


@NEEDS_COMPILED
@pytest.mark.parametrize("name", CELLS)
def test_compiled_inference_equals_training_and_returns_nothing_it_reuses(name) -> None:
    """Two inference calls in a row (of different lengths) give what a call that builds a graph
    gives, and the second call leaves the first call's output and state untouched."""
    torch.manual_seed(0)
    layer = unrolled.Recurrent(CELLS[name], 7, num_layers=2, bidirectional=True, impl="compiled")
    x1, x2 = torch.randn(9, 3, 7), torch.randn(6, 3, 7)
    want1, state1 = layer(x1)  # builds a graph: fresh buffers
    want2, _ = layer(x2)
    with torch.no_grad():
        got1, got_state1 = layer(x1)
        kept = got1.clone(), [s.clone() for s in torch.utils._pytree.tree_leaves(got_state1)]
        got2, _ = layer(x2)
    torch.testing.assert_close(got1, want1.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(got2, want2.detach(), rtol=0, atol=1e-6)
    assert torch.equal(got1, kept[0])
    for s, k in zip(torch.utils._pytree.tree_leaves(got_state1), kept[1], strict=True):
        assert torch.equal(s, k)
    for a, b in zip(
        torch.utils._pytree.tree_leaves(got_state1), torch.utils._pytree.tree_leaves(state1), strict=True
    ):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-6)
