"""The compiled loops' per-step GEMM (csrc/gemm.cpp): each kernel (ATen's, oneDNN's matmul,
oneDNN on packed weights, the plain loops for a few rows) against a float64 product, in every
layout the loops use; the measured choice of ``auto``; and every cell family run with each
kernel forced, against the float64 reference loop."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest
import torch
from conftest import NEEDS_COMPILED

import unrolled
from unrolled.engines import compiled

pytestmark = NEEDS_COMPILED

KERNELS = ["aten", "onednn", "rows", "packed", "mkl-packed"]


@pytest.fixture
def kernel(request):
    """Force a kernel for the test, and put ``auto`` back after it."""
    previous = compiled.set_gemm_kernel(request.param)
    yield request.param
    compiled.set_gemm_kernel(previous)


def _skip_if_refused(kernel: str) -> None:
    if kernel in ("onednn", "packed") and compiled.onednn_error() is not None:
        pytest.skip(f"oneDNN refused on this machine: {compiled.onednn_error()}")


def _operands(m: int, k: int, n: int, a_t: bool, b_t: bool):
    a = torch.randn(k, m).t() if a_t else torch.randn(m, k)
    b = torch.randn(n, k).t() if b_t else torch.randn(k, n)
    return a, b


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("shape", [(1, 128, 512), (3, 37, 22), (8, 9, 130), (20, 64, 96)], ids=str)
@pytest.mark.parametrize("a_t", [False, True], ids=["a", "aT"])
@pytest.mark.parametrize("b_t", [False, True], ids=["b", "bT"])
@pytest.mark.parametrize("accumulate", [False, True], ids=["=", "+="])
def test_each_kernel_computes_the_product(kernel, shape, a_t, b_t, accumulate) -> None:
    """out = a b or out += a b, within float32's rounding of the float64 product, for batch-like
    row counts, sizes that are not multiples of the vector width, and transposed operands (the
    loops pass weights as W^T, a view)."""
    a, b = _operands(*shape, a_t, b_t)
    out = torch.randn(shape[0], shape[2])
    want = (out.double() if accumulate else 0) + a.double() @ b.double()
    compiled.load().gemm(out, a, b, accumulate)
    _skip_if_refused(kernel)
    assert _relative(out, want) < 1e-5


@pytest.fixture
def choice_file(tmp_path):
    """This test's own file of measured choices (the machine's is left alone)."""
    module, path = compiled.load(), tmp_path / "choices.txt"
    module.set_gemm_choice_file(str(path))
    yield path
    module.set_gemm_choice_file(str(compiled.gemm_choice_file()))


def _chosen(shape):
    return [c for c in compiled.gemm_choices() if (c["m"], c["k"], c["n"]) == shape]


def test_auto_measures_each_shape_once_and_keeps_the_kernel(choice_file) -> None:
    """The first call of a shape records the kernel chosen, in the process and in the machine's
    file; the product is right whichever it is, and a later call of the same shape measures
    nothing more. float64 always goes to ATen, unmeasured."""
    module = compiled.load()
    a, b = _operands(5, 96, 72, False, True)
    for _ in range(2):
        out = torch.empty(5, 72)
        module.gemm(out, a, b, False)
        assert _relative(out, a.double() @ b.double()) < 1e-5
    chosen = _chosen((5, 96, 72))
    assert len(chosen) == 1 and chosen[0]["kernel"] in KERNELS
    assert chosen[0]["b_transposed"] and not chosen[0]["a_transposed"]
    code = KERNELS.index(chosen[0]["kernel"]) + 1
    assert choice_file.read_text() == f"5 96 72 0 1 0 {torch.get_num_threads()} 0 {code}\n"
    out64 = torch.empty(3, 70, dtype=torch.float64)
    a64, b64 = torch.randn(3, 90, dtype=torch.float64), torch.randn(90, 70, dtype=torch.float64)
    module.gemm(out64, a64, b64, False)
    torch.testing.assert_close(out64, a64 @ b64, rtol=1e-12, atol=1e-12)
    assert not _chosen((3, 90, 70))


def test_a_choice_another_process_made_is_read_not_measured(choice_file) -> None:
    """Every process of the machine computes with the same kernels: a shape another process
    measured (a line of the file) is taken from the file. Here the file says "rows" for 64 rows,
    which measuring never picks (it tries that kernel up to 8 rows only)."""
    rows_code = KERNELS.index("rows") + 1
    choice_file.write_text(f"64 96 80 0 1 0 {torch.get_num_threads()} 0 {rows_code}\nnot a line\n")
    a, b = _operands(64, 96, 80, False, True)
    out = torch.empty(64, 80)
    compiled.load().gemm(out, a, b, False)
    assert _relative(out, a.double() @ b.double()) < 1e-5
    assert [c["kernel"] for c in _chosen((64, 96, 80))] == ["rows"]


def test_measuring_a_shape_leaves_the_random_state_alone(choice_file) -> None:
    """The first loop of a shape times the kernels on scratch operands: it must not draw from
    torch's generator, or a run would get other dropout masks than the same run resumed."""
    shape = (6, 133, 47)
    assert not _chosen(shape)
    torch.manual_seed(11)
    state = torch.get_rng_state()
    compiled.load().gemm(torch.empty(6, 47), torch.ones(6, 133), torch.ones(133, 47), True)
    assert _chosen(shape)  # it was measured
    assert torch.equal(torch.get_rng_state(), state)


def test_the_environment_forces_a_kernel_for_the_process() -> None:
    """UNROLLED_GEMM=<kernel> forces it when the engine loads (for runs that must match bit for
    bit across processes); a wrong name is a one-line error naming the choices."""
    code = "from unrolled.engines import compiled; compiled.load(); print(compiled.set_gemm_kernel('auto'))"
    for value, expected in (("rows", "rows"), ("aten", "aten")):
        env = {**os.environ, "UNROLLED_GEMM": value}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0 and done.stdout.strip() == expected, done.stderr
    env = {**os.environ, "UNROLLED_GEMM": "fast"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "UNROLLED_GEMM='fast': expected one of auto, aten, onednn, rows, packed, mkl-packed" in done.stderr


def test_set_gemm_kernel_rejects_unknown_names() -> None:
    with pytest.raises(
        ValueError,
        match="unknown GEMM kernel 'mkl': expected one of auto, aten, onednn, rows, packed, mkl-packed",
    ):
        compiled.set_gemm_kernel("mkl")


H = 10  # a vector of eight and a tail, in every product the cells do
CELLS = {
    "lstm": functools.partial(unrolled.LSTMCell, hidden_size=H),
    "lstm-vanilla": functools.partial(unrolled.LSTMCell, hidden_size=H, variant="vanilla"),
    "lstm-FGR-proj": functools.partial(unrolled.LSTMCell, hidden_size=H, variant="FGR", proj_size=7),
    "lstm-ln": functools.partial(unrolled.LSTMCell, hidden_size=H, layer_norm=True),
    "gru": functools.partial(unrolled.GRUCell, hidden_size=H),
    "gru-reset-before-ln": functools.partial(
        unrolled.GRUCell, hidden_size=H, reset_after=False, layer_norm=True
    ),
    "rnn": functools.partial(unrolled.RNNCell, hidden_size=H),
}


def _grads(layer, x, lengths):
    x = x.clone().requires_grad_()
    out, h_n = layer(x, lengths=lengths)
    states = [h_n] if isinstance(h_n, torch.Tensor) else list(h_n)
    gen = torch.Generator().manual_seed(1)
    tensors = [out, *states]
    sum(
        (torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.dtype) * t).sum() for t in tensors
    ).backward()
    return tensors + [x.grad] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("name", CELLS)
def test_every_family_with_each_kernel_equals_the_reference_loop(name, kernel) -> None:
    """Each family's forward and BPTT loops with every per-step GEMM on one kernel, in float32,
    against the reference loop in float64 (the same weights and lengths): outputs, states and
    every gradient within 1e-5 of each tensor's largest value (2e-5 with layer norm, whose
    gradients through two layers stray by up to 1e-5 in float32 with any kernel: the fused
    engine's by 7e-6, the reference loop's by 6e-6), or within 4x the float32 reference loop's
    own error where that is larger."""
    I = 9
    truth = unrolled.Recurrent(CELLS[name], I, num_layers=2, bidirectional=True, impl="reference").double()
    ref32 = unrolled.Recurrent(CELLS[name], I, num_layers=2, bidirectional=True, impl="reference")
    ours = unrolled.Recurrent(CELLS[name], I, num_layers=2, bidirectional=True, impl="compiled")
    ref32.load_state_dict(truth.state_dict())
    ours.load_state_dict(truth.state_dict())
    x = torch.randn(7, 4, I, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 6, 7])
    want = _grads(truth, x, lengths)
    theirs = _grads(ref32, x.float(), lengths)
    got = _grads(ours, x.float(), lengths)
    _skip_if_refused(kernel)
    for g, r, w in zip(got, theirs, want, strict=True):
        assert _relative(g, w) <= max(2e-5 if "ln" in name else 1e-5, 4 * _relative(r, w))
