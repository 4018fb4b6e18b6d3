"""``unrolled.load(RUN)``: any run directory as its task's predictor; and ``unrolled export RUN``.

    >>> import unrolled
    >>> lm = unrolled.load("runs/charlm-...")                  # doctest: +SKIP
    >>> lm.sample("ROMEO:", length=100, seed=1)                # doctest: +SKIP
    >>> lm.export("charlm.onnx")                               # doctest: +SKIP

The task comes from the run's config.json and the task registry (:mod:`unrolled.tasks`, tasks
registered from outside the package included); its predictor holds the verbs (see
:class:`unrolled.training.Predictor` and each task's ``Predictor``). The CLI commands that use a
run (``sample``, ``predict``, ``translate``, ``tag``, ``forecast``, ``eval``, ``export``) are
thin callers of the same objects.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from .training import Predictor, Task
from .training import checkpoint as ckpt
from .training.device import resolve_device


def task_of(path: str | Path) -> Task:
    """The registered task of the run in ``path``; ``ValueError`` if it is no run or of an unknown task."""
    from .tasks import registry

    raw = ckpt.read_json(ckpt.check_run_dir(path) / ckpt.CONFIG, "config.json")
    kind = raw.get("task") if isinstance(raw, dict) else None
    tasks = registry()
    if kind not in tasks:
        raise ValueError(
            f"config.json of {str(path)!r} names an unknown task {kind!r}: expected one of "
            f"{', '.join(tasks)} (a task from outside unrolled must be registered in unrolled.tasks.MODULES)"
        )
    return tasks[kind]


def load(path: str | Path, device: torch.device | str = "cpu", *, which: str = ckpt.BEST) -> Predictor:
    """Open the run directory ``path`` and return its task's predictor.

    Args:
        path: a run directory made by ``unrolled train`` (of any task).
        device: where the model runs: ``"cpu"`` (the default), ``"cuda"``, ``"cuda:1"`` or
            ``"auto"``; a run trained on one device opens on any other.
        which: ``"best"`` (the best validation's weights, the default) or ``"latest"`` (the last
            committed checkpoint).

    Raises:
        ValueError: ``path`` is not a run, the run is damaged (a missing or corrupted file), or its
            task is unknown; the message says which and what to do.
    """
    if which not in (ckpt.BEST, ckpt.LATEST):
        raise ValueError(f"which weights: expected {ckpt.BEST!r} or {ckpt.LATEST!r}, got {which!r}")
    return task_of(path).load(path, which=which, device=resolve_device(str(device)))


# ---- unrolled export RUN -----------------------------------------------------------------------
def add_commands(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    from .export import FORMATS, MAX_OPSET, MIN_OPSET

    p = commands.add_parser(
        "export",
        help="write a run's model as ONNX or TorchScript, with its vocabulary in a JSON sidecar",
        description=(
            "Write a run's model to a file that runs without unrolled: ONNX (checked in onnxruntime "
            "against PyTorch on a probe batch) or TorchScript, and FILE.json beside it with the "
            "vocabulary or labels and the graphs' inputs and outputs by name. Language models and the "
            "translator's decoder export as a step graph (tokens + state in, logits + state out); the "
            "other models as whole graphs over a batch of any size and length. See docs/python_api.md."
        ),
    )
    Task.add_run_argument(p)
    p.add_argument("--format", default="onnx", help=f"{' or '.join(FORMATS)} [onnx]")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (its folder must exist)")
    p.add_argument("--opset", type=int, default=None, help=f"ONNX opset, {MIN_OPSET}-{MAX_OPSET} [18]")
    p.add_argument("--json", action="store_true", help="print the sidecar as one JSON object")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import check_options

    check_options(args.format, args.opset, args.out)  # bad options fail before the run is opened
    predictor = task_of(args.run).load_args(args)
    sidecar = predictor.export(args.out, args.format, opset=args.opset)
    if args.json:
        print(json.dumps(sidecar, ensure_ascii=False))
        return 0
    for name, g in sidecar["graphs"].items():
        diff = g.get("max_abs_diff_vs_pytorch")
        checked = "" if diff is None else f"; onnxruntime matches PyTorch within {diff:.1e}"
        ins = ", ".join(i["name"] for i in g["inputs"])
        outs = ", ".join(o["name"] for o in g["outputs"])
        print(f"{name}: ({ins}) -> ({outs}){checked}", file=sys.stderr)
    print(f"wrote {args.out} and {args.out}.json", file=sys.stderr)
    return 0
