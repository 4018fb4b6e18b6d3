"""Engine selection: ``impl=`` on every layer, what ``auto`` picks, and clear errors."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from conftest import NEEDS_COMPILED, STEP_ENGINE, DoublerCell

import unrolled
from unrolled.engines import ENGINES, choose, compiled

I, H = 5, 6
LSTM_TRAIN = "compiled" if STEP_ENGINE == "compiled" else "native"  # torch's LSTM, training on a CPU


@pytest.mark.parametrize(
    "make, expected, native",
    [
        (lambda **kw: unrolled.RNN(I, H, nonlinearity="relu", **kw), STEP_ENGINE, True),
        (lambda **kw: unrolled.RNN(I, H, num_layers=2, **kw), STEP_ENGINE, True),
        (lambda **kw: unrolled.LSTM(I, H, proj_size=3, **kw), LSTM_TRAIN, True),
        (lambda **kw: unrolled.GRU(I, H, **kw), STEP_ENGINE, True),
        (lambda **kw: unrolled.LSTM(I, H, variant="CIFG", **kw), STEP_ENGINE, False),
        (lambda **kw: unrolled.LSTM(I, H, layer_norm=True, **kw), STEP_ENGINE, False),
        (lambda **kw: unrolled.LSTM(I, H, zoneout=0.1, **kw), STEP_ENGINE, False),
        (lambda **kw: unrolled.GRU(I, H, reset_after=False, **kw), STEP_ENGINE, False),
        (lambda **kw: unrolled.GRU(I, H, recurrent_dropout=0.1, **kw), STEP_ENGINE, False),
        (
            lambda **kw: unrolled.Recurrent(functools.partial(unrolled.MUTCell, hidden_size=H), I, **kw),
            STEP_ENGINE,
            False,
        ),
        (
            lambda **kw: unrolled.Recurrent(functools.partial(unrolled.MinGRUCell, hidden_size=H), I, **kw),
            STEP_ENGINE,  # the sequential C++ pass, else the parallel scan
            False,
        ),
        (lambda **kw: unrolled.Recurrent(DoublerCell, I, **kw), "reference", False),
    ],
)
def test_auto_picks_the_fastest_engine_that_runs_the_cells(make, expected, native) -> None:
    """auto, training on a CPU: compiled for every cell of the package (where it cannot be built,
    native for torch's LSTM and fused for the rest), else the reference."""
    assert make().engine == expected
    assert make(impl="reference").engine == "reference"
    if native:
        assert make(impl="native").engine == "native"
    else:
        with pytest.raises(ValueError, match="impl='native' runs only the cells torch fuses"):
            make(impl="native")
    if expected != "reference":
        assert make(impl="fused").engine == "fused"
    else:
        with pytest.raises(ValueError, match="impl='fused' does not support"):
            make(impl="fused")
    if expected in (STEP_ENGINE, "native") and compiled.available():
        assert make(impl="compiled").engine == "compiled"
    else:
        with pytest.raises(ValueError, match="impl='compiled' does not run"):
            make(impl="compiled")


def test_unknown_impl() -> None:
    with pytest.raises(ValueError, match="impl must be one of 'auto', 'reference'.*got 'cudnn'"):
        unrolled.LSTM(I, H, impl="cudnn")


def test_native_trains_the_cells_own_parameters() -> None:
    """No copies: the kernel's gradients land on the cells' parameters, and an update is seen."""
    lstm = unrolled.LSTM(I, H, num_layers=2, bidirectional=True, impl="native")
    x = torch.randn(4, 3, I)
    out, _ = lstm(x)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lstm.parameters())
    with torch.no_grad():
        lstm.cells[0].weight_ih.zero_()
    reference = unrolled.LSTM(I, H, num_layers=2, bidirectional=True, impl="reference")
    reference.load_state_dict(lstm.state_dict())
    torch.testing.assert_close(lstm(x)[0], reference(x)[0], atol=1e-6, rtol=0)


def _without_compiler(monkeypatch) -> None:
    """As on a machine where the compiled engine could not be built."""
    monkeypatch.setattr(compiled, "_module", None)
    monkeypatch.setattr(compiled, "_error", "RuntimeError: no C++ compiler (simulated)")
    monkeypatch.setattr(compiled, "_noted", False)


@pytest.mark.parametrize(
    "make", [lambda **kw: unrolled.GRU(I, H, **kw), lambda **kw: unrolled.RNN(I, H, num_layers=2, **kw)]
)
def test_without_the_compiled_engine_auto_trains_fused_and_infers_native(make, monkeypatch, capsys) -> None:
    """Where the C++ cannot be built, auto falls back to the Python fused engine in training
    (saying so once) and to torch's kernel under no_grad; an explicit impl is kept under no_grad."""
    _without_compiler(monkeypatch)
    layer = make()
    x = torch.randn(4, 3, I)
    calls = []
    native = ENGINES["native"]
    counted = dataclasses.replace(
        native, run_stack=lambda *a, **k: calls.append(1) or native.run_stack(*a, **k)
    )
    monkeypatch.setitem(ENGINES, "native", counted)
    trained, _ = layer(x)
    assert calls == [] and layer.engine == "fused"
    with torch.no_grad():
        inferred, _ = layer(x)
        assert calls == [1]
        make(impl="fused")(x)
        assert calls == [1]
    torch.testing.assert_close(inferred, trained.detach(), atol=1e-6, rtol=0)
    notes = capsys.readouterr().err
    assert notes.count("the compiled engine could not be built (RuntimeError: no C++ compiler") == 1
    with pytest.raises(ValueError, match="impl='compiled' does not run"):
        make(impl="compiled")


STEP_INFER = "compiled" if STEP_ENGINE == "compiled" else "native"  # GRU and Elman under no_grad


@pytest.mark.parametrize(
    "make, cpu_train, cpu_infer, cuda",
    [
        (lambda: unrolled.GRU(I, H), STEP_ENGINE, STEP_INFER, "native"),
        (lambda: unrolled.RNN(I, H, num_layers=2), STEP_ENGINE, STEP_INFER, "native"),
        (lambda: unrolled.LSTM(I, H, bidirectional=True), LSTM_TRAIN, "native", "native"),
        (lambda: unrolled.GRU(I, H, layer_norm=True), STEP_ENGINE, STEP_ENGINE, "fused"),
        (lambda: unrolled.LSTM(I, H, variant="CIFG"), STEP_ENGINE, STEP_ENGINE, "fused"),
        (lambda: unrolled.Recurrent(DoublerCell, I), "reference", "reference", "reference"),
    ],
)
def test_auto_decides_per_device(make, cpu_train, cpu_infer, cuda) -> None:
    """On CUDA, torch's cuDNN kernels wherever torch has the cells (the fused Python loop is
    6-69x slower there; the compiled engine runs on the CPU only); on CPU as measured there
    (the compiled GRU and Elman loops infer faster than torch's kernels). The choice is per
    device type and mode."""
    layer = make()
    assert layer.engine == layer.engine_for("cpu") == cpu_train
    assert layer.engine_for("cpu", training=False) == cpu_infer
    assert layer.engine_for("cuda") == layer.engine_for("cuda", training=False) == cuda
    assert choose(layer.cells, "mps", True) == cuda  # other accelerators: as CUDA


@pytest.mark.parametrize(
    "make, cpu_step",
    [
        (lambda: unrolled.LSTM(I, H, num_layers=2), "compiled" if STEP_ENGINE == "compiled" else "native"),
        (lambda: unrolled.GRU(I, H), "native"),
        (lambda: unrolled.RNN(I, H), "native"),
        (lambda: unrolled.GRU(I, H, layer_norm=True), STEP_ENGINE),
        (lambda: unrolled.LSTM(I, H, variant="CIFG"), STEP_ENGINE),
    ],
)
def test_one_step_per_call_in_inference_has_its_own_choice(make, cpu_step) -> None:
    """Generation calls a layer one step at a time: on the CPU the compiled LSTM (torch's kernel
    sets itself up at every call), torch's own GRU and Elman kernels; the steps give what the
    whole sequence gives."""
    layer = make()
    assert layer.engine_for("cpu", training=False, step=True) == cpu_step
    assert layer.engine_for("cpu", training=True, step=True) == layer.engine_for("cpu")  # training: as ever
    assert layer.engine_for("cuda", training=False, step=True) == layer.engine_for("cuda", training=False)
    x = torch.randn(5, 3, I)
    with torch.no_grad():
        whole, _ = layer(x)
        state, steps = None, []
        for t in range(x.size(0)):
            out, state = layer(x[t : t + 1], state)
            steps.append(out)
    torch.testing.assert_close(torch.cat(steps), whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "make, cpu_autocast",
    [
        (lambda: unrolled.LSTM(I, H, num_layers=2), "native"),
        (lambda: unrolled.GRU(I, H), STEP_ENGINE),
        (lambda: unrolled.LSTM(I, H, variant="CIFG"), STEP_ENGINE),
    ],
)
def test_autocast_on_the_cpu_has_its_own_choice(make, cpu_autocast, monkeypatch) -> None:
    """Inside ``torch.autocast`` on the CPU, torch's LSTM runs on its own kernel (bf16 on the
    CPU's matrix units; the compiled engine computes in fp32 there), in training and inference;
    the other cells keep their training choice. The layer decides per call, from the autocast
    state it is called in."""
    layer = make()
    assert layer.engine_for("cpu", training=True, autocast=True) == cpu_autocast
    assert layer.engine_for("cpu", training=False, autocast=True) == cpu_autocast
    assert layer.engine_for("cuda", autocast=True) == layer.engine_for("cuda")
    ran = []
    for name, engine in list(ENGINES.items()):
        run = engine.run_stack or engine.run_cell

        def record(*args, _name=name, _run=run, **kwargs):
            ran.append(_name)
            return _run(*args, **kwargs)

        field = "run_stack" if engine.run_stack is not None else "run_cell"
        monkeypatch.setitem(ENGINES, name, dataclasses.replace(engine, **{field: record}))
    x = torch.randn(5, 3, I)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(x)
    assert ran and set(ran) == {cpu_autocast}
    ran.clear()
    layer(x)
    assert set(ran) == {layer.engine_for("cpu")}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_moving_a_layer_to_cuda_decides_again() -> None:
    gru = unrolled.GRU(I, H)
    assert gru.engine == STEP_ENGINE
    assert gru.to("cuda").engine == "native"
    x = torch.randn(4, 3, I, device="cuda")
    reference = unrolled.GRU(I, H, impl="reference").to("cuda")
    reference.load_state_dict(gru.state_dict())
    torch.testing.assert_close(gru(x)[0], reference(x)[0], atol=1e-5, rtol=0)
    assert gru.to("cpu").engine == STEP_ENGINE


def test_an_explicit_impl_is_kept_on_every_device() -> None:
    gru = unrolled.GRU(I, H, impl="fused")
    assert gru.engine_for("cuda") == gru.engine_for("cpu", training=False) == "fused"


@NEEDS_COMPILED
def test_the_compiled_engine_refuses_a_cuda_tensor() -> None:
    gru = unrolled.GRU(I, H, impl="compiled")
    with pytest.raises(ValueError, match="the compiled engine runs on the CPU"):
        compiled.run_compiled(
            gru.cells[0], torch.randn(4, 3, I, device="meta"), torch.zeros(3, H, device="meta")
        )


def test_a_failed_build_leaves_the_fused_engine_and_says_why(tmp_path, monkeypatch, capsys) -> None:
    """A real build that fails (a C++ error): no module, the compiler's complaint kept as the
    reason, auto on the fused engine with one note, and nothing in the real extension cache."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "broken.cpp").write_text("this is not C++;\n", encoding="utf-8")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "build"))
    monkeypatch.setattr(compiled, "CSRC", tmp_path / "src")
    monkeypatch.setattr(compiled, "SOURCES", ("broken.cpp",))
    for name, value in (("_module", None), ("_error", None), ("_noted", False)):
        monkeypatch.setattr(compiled, name, value)
    assert compiled.load() is None and not compiled.available()
    reason = compiled.unavailable_reason()
    assert "broken.cpp" in reason and "error:" in reason  # the compiler's own line
    assert unrolled.GRU(I, H).engine == "fused"
    err = capsys.readouterr().err
    assert "building the compiled engine" in err and err.count("could not be built") == 1


@NEEDS_COMPILED
def test_a_build_lock_left_by_a_killed_process_does_not_hang_the_next_one() -> None:
    """torch's lock file of the compiled engine's build directory, left behind by a process killed
    while it built: the next process removes it (under an flock of its own) instead of waiting forever."""
    import subprocess
    import sys

    stale = compiled._choice_file.parent / "lock" if compiled._choice_file else None
    assert stale is not None and stale.parent.is_dir()
    stale.touch()
    code = "from unrolled.engines import compiled; print(compiled.load() is not None)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "True", done.stderr
    assert not stale.exists()
