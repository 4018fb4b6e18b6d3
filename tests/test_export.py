"""ONNX and TorchScript export (unrolled.export): every cell family's layer in onnxruntime, and the
options and errors of `unrolled export`.

The round trips of every family (a 2-layer bidirectional layer with ragged lengths, and a language
model's step graph) are slow: tracing one ``scan`` per cell and direction takes about a second on 2
cores, so they run with ``-m slow`` (CI runs them). The fast suite keeps one round trip of each
kind and the checks of options and errors.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from torch import nn

import unrolled
from unrolled import export
from unrolled.cells.base import state_like, state_tensors
from unrolled.export import Graph
from unrolled.layers import Recurrent
from unrolled.models import LanguageModel

pytest.importorskip("onnxruntime")

B, T, I, H = 3, 7, 5, 6
FAMILIES = {
    "elman-tanh": unrolled.RNNCell,
    "elman-relu": functools.partial(unrolled.RNNCell, nonlinearity="relu"),
    **{
        f"lstm-{v}": functools.partial(unrolled.LSTMCell, variant=v)
        for v in ("vanilla", "NIG", "NFG", "NOG", "NIAF", "NOAF", "NP", "CIFG", "FGR")
    },
    "lstm-layer-norm": functools.partial(unrolled.LSTMCell, layer_norm=True),
    "gru": unrolled.GRUCell,
    "gru-reset-before": functools.partial(unrolled.GRUCell, reset_after=False),
    "gru-layer-norm": functools.partial(unrolled.GRUCell, layer_norm=True),
    "mut1": functools.partial(unrolled.MUTCell, arch=1),
    "mut2": functools.partial(unrolled.MUTCell, arch=2),
    "mut3": functools.partial(unrolled.MUTCell, arch=3),
    "mingru": unrolled.MinGRUCell,
    "minlstm": unrolled.MinLSTMCell,
    "mogrifier": functools.partial(unrolled.MogrifierLSTMCell, rounds=5, rank=2),
}


def _params(fast: str):
    """Every family, with ``fast`` alone in the fast suite."""
    return [pytest.param(n, marks=() if n == fast else pytest.mark.slow) for n in FAMILIES]


class LayerGraph(nn.Module):
    """A Recurrent with its state as separate tensors, in and out (what a graph takes)."""

    def __init__(self, rnn: Recurrent) -> None:
        super().__init__()
        self.rnn = rnn
        self.proto = rnn.cells[0].init_state(1)

    def forward(self, x, lengths, h0, c0=None, a0=None):
        state = state_like(self.proto, [t for t in (h0, c0, a0) if t is not None])
        out, h_n = self.rnn(x, state, lengths=lengths)
        return (out, *state_tensors(h_n))


def _layer_inputs(proto, batch: int, steps: int, lengths: list[int], cells: int) -> dict[str, torch.Tensor]:
    ins, _ = export.state_names(proto)
    shapes = [t.shape[1:] for t in state_tensors(proto)]
    state = {n: torch.randn(cells, batch, *shape) for n, shape in zip(ins, shapes, strict=True)}
    return {"x": torch.randn(batch, steps, I), "lengths": torch.tensor(lengths), **state}


@pytest.mark.parametrize("family", _params("lstm-FGR"))  # fast: the three-part state, peepholes
def test_every_family_exports_as_a_bidirectional_layer_with_ragged_lengths(family) -> None:
    """2 layers, both directions, rows of other lengths: onnxruntime gives PyTorch's outputs and final
    states within 1e-5, at a batch size and length other than the example's (one Scan per cell)."""
    torch.manual_seed(0)
    cell = functools.partial(FAMILIES[family], hidden_size=H)
    rnn = Recurrent(cell, I, 2, bidirectional=True, batch_first=True)
    module = LayerGraph(rnn).eval()
    proto = rnn.cells[0].init_state(1)
    ins, outs = export.state_names(proto)
    dynamic = {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, **{n: {1: "batch"} for n in ins}}
    graph = Graph("layer", module, _layer_inputs(proto, B, T, [7, 4, 2], 4), ["out", *outs], dynamic)
    model = export.onnx_bytes(graph)
    probe = _layer_inputs(proto, 5, 11, [11, 1, 6, 9, 3], 4)
    with torch.no_grad():
        want = module(*probe.values())
    got = export.run_onnx(model, probe)
    assert len(got) == len(want) == 1 + len(ins)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=1e-5)
    assert np.all(got[0][1, 1:] == 0)  # past a row's length the outputs are zero, as in PyTorch
    import onnx

    ops = [n.op_type for n in onnx.load_from_string(model).graph.node]
    assert ops.count("Scan") == 4  # one loop per cell and direction, for any number of steps


@pytest.mark.parametrize("family", _params("gru"))
def test_every_family_exports_as_a_language_model_step_graph(family) -> None:
    """A language model's step graph (unidirectional): tokens + state in, logits + state out; fed
    one token at a time in onnxruntime it gives the logits of the whole sequence in PyTorch."""
    from unrolled.tasks.lm import LMStep

    torch.manual_seed(0)
    V = 11
    rnn = Recurrent(functools.partial(FAMILIES[family], hidden_size=H), 4, 2, batch_first=True)
    step = LMStep(LanguageModel(V, rnn, embedding_dim=4)).eval()
    ins, outs = export.state_names(step.proto)
    zeros = {n: torch.zeros(2, 2, *t.shape[1:]) for n, t in zip(ins, state_tensors(step.proto), strict=True)}
    dynamic = {"tokens": {0: "batch", 1: "time"}, **{n: {1: "batch"} for n in ins}}
    graph = Graph("step", step, {"tokens": torch.randint(0, V, (2, 3)), **zeros}, ["logits", *outs], dynamic)
    model = export.onnx_bytes(graph)
    tokens = torch.randint(0, V, (4, 9))
    with torch.no_grad():
        want, *_ = step.model(tokens)
    state = [np.zeros((2, 4, *t.shape[1:]), np.float32) for t in state_tensors(step.proto)]
    logits = []
    for t in range(tokens.size(1)):
        feed = {n: torch.from_numpy(s) for n, s in zip(ins, state, strict=True)}
        got = export.run_onnx(model, {"tokens": tokens[:, t : t + 1], **feed})
        logits.append(got[0])
        state = got[1:]
    np.testing.assert_allclose(np.concatenate(logits, axis=1), want.numpy(), rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_step_graph_takes_one_token_and_any_batch() -> None:
    from unrolled.tasks.lm import LMStep

    rnn = Recurrent(functools.partial(unrolled.LSTMCell, hidden_size=H), 4, 2, batch_first=True)
    step = LMStep(LanguageModel(9, rnn, embedding_dim=4)).eval()
    state = {"h0": torch.zeros(2, 2, H), "c0": torch.zeros(2, 2, H)}
    dynamic = {"tokens": {0: "batch", 1: "time"}, "h0": {1: "batch"}, "c0": {1: "batch"}}
    tokens = torch.tensor([[1, 2, 3], [4, 5, 6]])
    outputs = ["logits", "h_n", "c_n"]
    graph = Graph("step", step, {"tokens": tokens, **state}, outputs, dynamic, steps_fixed=True)
    import io

    traced = torch.jit.load(io.BytesIO(export.torchscript_bytes(graph)))
    tokens = torch.randint(0, 9, (5, 6))
    h = c = torch.zeros(2, 5, H)
    logits = []
    for t in range(6):
        out, h, c = traced(tokens[:, t : t + 1], h, c)
        logits.append(out)
    with torch.no_grad():
        want, _ = step.model(tokens)
    torch.testing.assert_close(torch.cat(logits, 1), want, rtol=0, atol=1e-5)
    whole = Graph("layer", step, graph.inputs, graph.outputs, dynamic, steps_fixed=False)
    with pytest.raises(ValueError, match="export it with --format onnx"):
        export.torchscript_bytes(whole)


# ---- options and errors of unrolled export (no export runs: they fail before tracing) --------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--format", "tflite"], "unknown export format 'tflite': expected onnx or torchscript"),
        (["--opset", "9"], "--opset must be from 18 to 23"),
        (["--format", "torchscript", "--opset", "18"], "--opset applies to --format onnx"),
    ],
)
def test_bad_export_options_are_one_line(tmp_path, capsys, argv, message) -> None:
    from unrolled.cli import main

    assert main(["export", str(tmp_path), "--out", str(tmp_path / "m.onnx"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_export_of_a_folder_that_is_not_a_run_or_into_a_missing_folder(tmp_path, capsys) -> None:
    from unrolled.cli import main

    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "not a run directory (no such directory)" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "missing" / "m.onnx")]) == 2
    assert "the folder of --out does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_names_the_extra(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n))
    assert export.missing_extra() == (
        "ONNX export needs onnxruntime: install the extra: pip install 'unrolled[export]'"
    )


def test_a_failed_check_writes_nothing(tmp_path, monkeypatch) -> None:
    """The file and its sidecar are written complete after the check, or not at all."""
    rnn = Recurrent(functools.partial(unrolled.GRUCell, hidden_size=H), I, batch_first=True)
    inputs = _layer_inputs(rnn.cells[0].init_state(1), B, T, [7, 4, 2], 1)
    dynamic = {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "h0": {1: "batch"}}
    graph = Graph("layer", LayerGraph(rnn), inputs, ["out", "h_n"], dynamic)
    monkeypatch.setattr(export, "onnx_bytes", lambda g, opset: b"an onnx model")  # what is written, not how
    monkeypatch.setattr(export, "check_onnx", lambda g, m: (_ for _ in ()).throw(ValueError("differs by 1")))
    with pytest.raises(ValueError, match="differs by 1"):
        export.write([graph], tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
    sidecar = export.write([graph], tmp_path / "m.onnx", check=False)
    assert json.loads((tmp_path / "m.onnx.json").read_text()) == sidecar
    assert (tmp_path / "m.onnx").read_bytes() == b"an onnx model"
    x = {"name": "x", "dtype": "float32", "shape": ["batch", "time", I], "doc": ""}
    assert sidecar["graphs"]["layer"]["inputs"][0] == x
