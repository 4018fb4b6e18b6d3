"""Export: a model as a file that runs without unrolled, in ONNX (checked in onnxruntime) or TorchScript.

A task says *what* to export as one or more :class:`Graph`: a module whose ``forward`` takes
tensors and returns a tuple of tensors, an example of each input, the names of its inputs and
outputs, and which input axes are dynamic (``"batch"``, ``"time"``, ...). This module says *how*:

- ONNX through ``torch.onnx.export(..., dynamo=True)``. Every recurrent layer runs its reference
  loop while it is exported, written as one ``scan`` over time (:func:`unrolled.engines.reference.
  scan_reference`): the graph holds one ONNX ``Scan`` per cell and direction, so it takes any
  number of steps; the fused, compiled and native engines compute the same function, so a model
  trained with them exports through the reference loop without a change of weights.
- TorchScript through ``torch.jit.trace``; tracing unrolls Python loops at the example's length,
  so only step graphs (``Graph.steps_fixed``: the language model's and the translation decoder's)
  are exported this way, traced at one step: they then take exactly one token per call (and any
  batch). A whole graph over sequences of any length needs ONNX.

:func:`write` writes the file(s) complete or not at all (a temporary file, then a rename), then
checks an ONNX export in onnxruntime against PyTorch on a second probe batch of other sizes:
the largest difference must stay within ``tolerance`` (1e-4 in float32), else nothing is kept
and ``ValueError`` says by how much it missed. ``onnx`` and ``onnxruntime`` come with the
``[export]`` extra.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .cells.base import state_tensors
from .training.checkpoint import atomic_write_bytes, atomic_write_json

FORMATS = ("onnx", "torchscript")
MIN_OPSET, MAX_OPSET = 18, 23  # the dynamo exporter writes opset 18 and above (onnx 1.17+: up to 23)
DEFAULT_OPSET = 18
TOLERANCE = 1e-4


@dataclass
class Graph:
    """One graph to export: ``module(*inputs.values()) -> tuple of tensors`` named ``outputs``."""

    name: str  # e.g. "model", "encoder", "decoder_step": the file's stem inside an archive
    module: nn.Module
    inputs: dict[str, Tensor]  # name -> example tensor, in the order forward() takes them
    outputs: list[str]
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)  # input -> {axis: dim name}
    # the same graph's inputs at other sizes: the check's probe (None: made from ``inputs``)
    probe: dict[str, Tensor] | None = None
    doc: dict[str, str] = field(default_factory=dict)  # input/output name -> what it holds, shape
    steps_fixed: bool = False  # the graph reads one time step (or a fixed number): traceable

    def describe(self) -> dict[str, Any]:
        """The graph's inputs and outputs for the sidecar JSON: name, dtype, shape with axis names."""

        def shape(name: str, t: Tensor) -> list[Any]:
            axes = self.dynamic.get(name, {})
            return [axes.get(i, n) for i, n in enumerate(t.shape)]

        inputs = [
            {"name": k, "dtype": str(t.dtype).removeprefix("torch."), "shape": shape(k, t)}
            | {"doc": self.doc.get(k, "")}
            for k, t in self.inputs.items()
        ]
        outputs = [{"name": k, "doc": self.doc.get(k, "")} for k in self.outputs]
        return {"inputs": inputs, "outputs": outputs}


def state_names(proto: Any) -> tuple[list[str], list[str]]:
    """The graph names of a recurrent state's tensors, in and out: ``(["h0", "c0"], ["h_n", "c_n"])``
    for an ``LSTMState(h, c)``, ``(["h0"], ["h_n"])`` for a tensor state (Elman, GRU, ...)."""
    fields = getattr(proto, "_fields", None) or ["h"] * len(state_tensors(proto))
    if len(set(fields)) != len(fields):
        fields = [f"s{i}" for i in range(len(fields))]
    return [f"{f}0" for f in fields], [f"{f}_n" for f in fields]


def missing_extra() -> str | None:
    """The line to show when onnx/onnxruntime are not installed (None: they are)."""
    absent = [m for m in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(m) is None]
    if absent:
        return f"ONNX export needs {', '.join(absent)}: install the extra: pip install 'unrolled[export]'"
    return None


def check_options(fmt: str, opset: int | None, out: str | Path) -> Path:
    """Check the format, opset and output path before anything is traced; returns ``out``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: expected {' or '.join(FORMATS)}")
    if opset is not None:
        if fmt != "onnx":
            raise ValueError(f"--opset applies to --format onnx, not {fmt}")
        if not MIN_OPSET <= opset <= MAX_OPSET:
            raise ValueError(
                f"--opset must be from {MIN_OPSET} to {MAX_OPSET} (what the exporter targets), got {opset}"
            )
    out = Path(out)
    if not out.parent.is_dir():
        raise ValueError(f"the folder of --out does not exist: {str(out.parent)!r}; create it first")
    if out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a folder; give a file name")
    if fmt == "onnx" and (why := missing_extra()):
        raise ValueError(why)
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's own warnings and log lines (deprecations inside torch, skipped torchvision ops)
    are not the user's business; errors still raise."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _dims(graph: Graph) -> tuple[Any, ...]:
    """``dynamic_shapes`` for torch.export, by position: one :class:`torch.export.Dim` per axis
    name, shared by the inputs that name it."""
    names = {n for axes in graph.dynamic.values() for n in axes.values()}
    dims = {n: torch.export.Dim(n) for n in sorted(names)}
    return tuple({i: dims[n] for i, n in graph.dynamic.get(k, {}).items()} or None for k in graph.inputs)


def onnx_bytes(graph: Graph, opset: int = DEFAULT_OPSET) -> bytes:
    """The graph as an ONNX model (dynamic axes as declared), serialised."""
    module = graph.module.eval()
    with _quiet(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # the optimizer prints
        program = torch.onnx.export(
            module,
            tuple(graph.inputs.values()),
            dynamo=True,
            dynamic_shapes=_dims(graph),
            input_names=list(graph.inputs),
            output_names=graph.outputs,
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
        proto = program.model_proto
    names = [o.name for o in proto.graph.output]
    if names != graph.outputs:  # a consumer finds the outputs by these names
        raise ValueError(f"the exported {graph.name} graph's outputs are {names}, not {graph.outputs}")
    return proto.SerializeToString()


def one_step(graph: Graph, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """``inputs`` cut to one step along every axis the graph calls ``"time"``."""
    return {
        k: next((t.narrow(i, 0, 1) for i, n in graph.dynamic.get(k, {}).items() if n == "time"), t)
        for k, t in inputs.items()
    }


def torchscript_bytes(graph: Graph, tolerance: float = TOLERANCE) -> bytes:
    """The graph traced to TorchScript at one time step (see the module docstring), checked
    against PyTorch on the probe (cut to one step) within ``tolerance``."""
    if not graph.steps_fixed:
        raise ValueError(
            f"the {graph.name} graph runs over a sequence of any length, which TorchScript's tracing "
            "would fix at the example's length: export it with --format onnx"
        )
    module = graph.module.eval()
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(module, tuple(one_step(graph, graph.inputs).values()), check_trace=False)
        probe = tuple(one_step(graph, _probe(graph)).values())
        for name, want, have in zip(graph.outputs, module(*probe), traced(*probe), strict=True):
            if want.shape != have.shape or not torch.allclose(want, have, rtol=0, atol=tolerance):
                raise ValueError(
                    f"the traced {graph.name} graph's output {name!r} differs from PyTorch on a probe "
                    "of another batch size; nothing was written"
                )
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
    return buf.getvalue()


def run_onnx(model: bytes, inputs: dict[str, Tensor]) -> list[np.ndarray]:
    """Run a serialised ONNX model in onnxruntime (CPU) on ``inputs``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.detach().cpu().numpy() for k, v in inputs.items()})


def _probe(graph: Graph) -> dict[str, Tensor]:
    return graph.probe if graph.probe is not None else graph.inputs


def check_onnx(graph: Graph, model: bytes, tolerance: float = TOLERANCE) -> float:
    """The largest difference between onnxruntime and PyTorch on the graph's probe; ``ValueError``
    beyond ``tolerance``."""
    probe = _probe(graph)
    with torch.no_grad():
        expected = graph.module.eval()(*probe.values())
    got = run_onnx(model, probe)
    worst = 0.0
    for name, want, have in zip(graph.outputs, expected, got, strict=True):
        want_np = want.detach().float().cpu().numpy() if want.is_floating_point() else want.cpu().numpy()
        if want_np.shape != have.shape:
            raise ValueError(
                f"the exported {graph.name} graph's output {name!r} has shape {have.shape} in onnxruntime, "
                f"PyTorch's {want_np.shape}: the export is wrong; nothing was written"
            )
        diff = float(np.abs(want_np.astype(np.float64) - have.astype(np.float64)).max()) if have.size else 0.0
        worst = max(worst, diff)
    if not worst <= tolerance:
        raise ValueError(
            f"the exported {graph.name} graph differs from PyTorch by {worst:.3g} in onnxruntime "
            f"(tolerance {tolerance:g}); nothing was written"
        )
    return worst


def write(
    graphs: list[Graph],
    out: str | Path,
    fmt: str = "onnx",
    *,
    opset: int | None = None,
    meta: dict[str, Any] | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """Export ``graphs`` to ``out`` and write the sidecar ``out + ".json"`` (``meta``: the task's
    vocabulary, labels, ... and how to use the graphs). One graph: ``out`` is its file. Several
    (the translator's encoder and decoder step): ``out`` is a zip archive of ``NAME.onnx`` (or
    ``.pt``) files and ``export.json``. Returns the sidecar's content, with each ONNX graph's
    largest difference from PyTorch under ``check``."""
    out = check_options(fmt, opset, out)
    ext = ".onnx" if fmt == "onnx" else ".pt"
    files: dict[str, bytes] = {}
    described: dict[str, Any] = {}
    for g in graphs:
        data = onnx_bytes(g, opset or DEFAULT_OPSET) if fmt == "onnx" else torchscript_bytes(g)
        entry = {"file": out.name if len(graphs) == 1 else g.name + ext, **g.describe()}
        if fmt == "onnx" and check:
            entry["max_abs_diff_vs_pytorch"] = check_onnx(g, data)
        files[g.name] = data
        described[g.name] = entry
    sidecar = {
        "format": fmt,
        "opset": (opset or DEFAULT_OPSET) if fmt == "onnx" else None,
        "torch": torch.__version__,
        "graphs": described,
        **(meta or {}),
    }
    side = out.with_name(out.name + ".json")
    if len(graphs) == 1:
        atomic_write_bytes(out, next(iter(files.values())))
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in files.items():
                z.writestr(name + ext, data)
            z.writestr("export.json", json.dumps(sidecar, indent=2, ensure_ascii=False))
        atomic_write_bytes(out, buf.getvalue())
    try:
        atomic_write_json(side, sidecar)
    except BaseException:
        os.unlink(out)  # both files or neither
        raise
    return sidecar


Inputs = Callable[[int, int], dict[str, Tensor]]  # (batch, time) -> a graph's inputs at those sizes
