"""A trained run as a Python object: the base of every task's predictor (``unrolled.load(RUN)``).

A predictor holds one run's model with the weights it loaded, on one device, in eval mode, and
offers the task's *verbs* (``sample``, ``predict``, ``translate``, ``tag``, ``forecast``, ...):
the code paths that the task's commands call, so that the command line and a notebook give the
same answers. Every verb runs under ``torch.inference_mode()``.

A task sets ``Predictor`` to its subclass and lists its verbs in ``verbs``; a task without one
(such as a task registered from outside the package) gets this base, which still holds the
config, the step, the model and ``to(device)``. ``export_graphs`` says what
:meth:`Predictor.export` writes (:mod:`unrolled.export`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from .device import resolve_device

if TYPE_CHECKING:
    from ..export import Graph
    from .task import Run, Task


class Predictor:
    """A loaded run and its task's verbs (see the module docstring).

    Attributes:
        task: the task's name (``"lm"``, ``"classify"``, ...), as config.json has it.
        config: the run's resolved config (the task's :class:`~unrolled.training.RunConfig`).
        step: the training step of the weights loaded (``best`` or ``latest``).
        model: the torch module, in eval mode.
        path: the run directory.
    """

    verbs: ClassVar[tuple[str, ...]] = ()  # the task's verbs, named when another one is asked for

    def __init__(self, task: Task, run: Run) -> None:
        self._task = task
        self.run = run

    # ---- what every predictor has ---------------------------------------------------------------
    @property
    def task(self) -> str:
        return self._task.name

    @property
    def config(self) -> Any:
        return self.run.config

    @property
    def step(self) -> int | None:
        return self.run.step

    @property
    def model(self) -> nn.Module:
        return self.run.model

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def device(self) -> torch.device:
        first = next(self.model.parameters(), None)
        return torch.device("cpu") if first is None else first.device

    def to(self, device: torch.device | str) -> Predictor:
        """Move the model to ``device`` (``"cpu"``, ``"cuda"``, ``"auto"``, ...); returns ``self``."""
        self.model.to(resolve_device(str(device)))
        return self

    def __repr__(self) -> str:
        verbs = ", ".join(self.verbs) or "none"
        return f"<{type(self).__name__} {self.task} run {str(self.path)!r} step {self.step} (verbs: {verbs})>"

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: name the verbs this task has instead
        if name.startswith("_") or "run" not in self.__dict__:
            raise AttributeError(name)
        if not type(self).verbs:
            raise AttributeError(
                f"a {self.task} run has no .{name}(): its task defines no verbs (it has .config, .step, "
                ".model and .to(); a task adds verbs with a Predictor subclass, see docs/new_task.md)"
            )
        verbs = ", ".join(f".{v}()" for v in (*type(self).verbs, "export"))
        raise AttributeError(f"a {self.task} run has no .{name}(): its verbs are {verbs}")

    # ---- export -------------------------------------------------------------------------------
    def export_graphs(self) -> list[Graph]:
        """The graphs :meth:`export` writes (the task's own; see :mod:`unrolled.export`)."""
        raise ValueError(f"{self.task} runs cannot be exported: the task defines no export graphs")

    def export_meta(self) -> dict[str, Any]:
        """What the sidecar JSON carries besides the graphs: the task's vocabularies, labels, ..."""
        return {}

    def export(
        self, out: str | Path, format: str = "onnx", *, opset: int | None = None, check: bool = True
    ) -> dict[str, Any]:
        """Write the run's model to ``out`` (ONNX or TorchScript) with a ``out.json`` sidecar
        (vocabularies, labels, inputs and outputs by name); an ONNX file is checked in
        onnxruntime against PyTorch (``check``). Returns the sidecar. See :mod:`unrolled.export`."""
        from .. import export

        out = export.check_options(format, opset, out)  # before anything is traced
        device = self.device
        self.model.cpu()  # exported from the CPU: the graph does not depend on the device
        try:
            meta = {
                "task": self.task,
                "run": str(self.path),
                "step": self.step,
                "config": self.config.to_json(),
                **self.export_meta(),
            }
            return export.write(self.export_graphs(), out, format, opset=opset, meta=meta, check=check)
        finally:
            self.model.to(device)
