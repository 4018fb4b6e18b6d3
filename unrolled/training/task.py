"""The skeleton every task plugs into: new run or resume, run directories, and the task's commands.

A task (char-LM, classifier, translator, ...) is one module under ``unrolled/tasks/`` holding a
subclass of :class:`Task` and listed once in ``unrolled/tasks/__init__.py``. The subclass says
what only it knows:

- ``Config``: its :class:`RunConfig` (sections model, data, optim, loop); the command-line flags
  of ``unrolled train NAME`` are made from it (:mod:`unrolled.training.flags`);
- ``assets``: its JSON files besides config.json (vocabularies, class names);
- :meth:`Task.prepare` (read and check the data), :meth:`Task.build_model`,
  :meth:`Task.fit` (batches, loss, validation), and optionally :meth:`Task.finish` (scores of
  the best weights, written to results.json);
- for the command line: :meth:`Task.evaluate` for ``unrolled eval``, its own commands
  (:meth:`Task.add_commands`: ``sample``, ``predict``, ...), and how a validation reads in the
  progress bar (:meth:`Task.describe_val`).

:meth:`Task.train` and :meth:`Task.open_run` are the same for every task: every input check
happens before anything is written; one process at a time trains in a run directory
(:class:`RunLock`); a run is resumable from its first checkpoint on (step 0), and resuming
needs the same data (checked by hash). See docs/new_task.md for a whole task in ~60 lines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from . import checkpoint as ckpt
from . import distributed
from .config import RunConfig
from .device import add_device_argument, autocast_dtype, resolve_device
from .lock import RunLock
from .loop import Bound, EvalFn, EventFn, LossFn, Trainer, TrainerState
from .predictor import Predictor as BasePredictor

RESULTS = "results.json"  # what Task.finish returns: scores of the best weights


@dataclass(frozen=True)
class Asset:
    """A file of a run directory besides config.json, and how to read and write it: JSON, or
    ``binary`` bytes (a sentencepiece model). An ``optional`` asset may be None: then there is no
    file (a run of word tokens has no subword model)."""

    file: str  # e.g. "vocab.json"
    load: Callable[[Any], Any]  # parsed JSON (or the bytes) -> object (raises ValueError on bad content)
    dump: Callable[[Any], Any]  # object -> JSON-able (or bytes)
    binary: bool = False
    optional: bool = False

    def read(self, folder: Path) -> Any:
        path = folder / self.file
        if self.optional and not path.exists():
            return None
        if not self.binary:
            return self.load(ckpt.read_json(path, self.file))
        try:
            return self.load(path.read_bytes())
        except FileNotFoundError:
            raise ValueError(f"{self.file} is missing: {str(path)!r}") from None

    def write(self, folder: Path, value: Any) -> None:
        if value is None and self.optional:
            return
        if self.binary:
            ckpt.atomic_write_bytes(folder / self.file, self.dump(value))
        else:
            ckpt.atomic_write_json(folder / self.file, self.dump(value))


@dataclass
class Run:
    """A loaded run directory: config, model (weights chosen by :meth:`Task.open_run`), assets.

    The task's assets read as attributes too: ``run.vocab``, ``run.classes``.
    """

    path: Path
    config: Any  # the task's RunConfig
    model: nn.Module
    assets: dict[str, Any]
    info: dict[str, Any]  # facts about the data, saved in config.json
    step: int | None = None  # the training step of the weights loaded (None: as built)

    def __getattr__(self, name: str) -> Any:
        assets = self.__dict__.get("assets", {})
        if name in assets:
            return assets[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute or asset {name!r}")


@dataclass
class Prepared:
    """The data of a run, read and checked by :meth:`Task.prepare`."""

    assets: dict[str, Any]  # built from the training data (new run) or the run's own (resume)
    data: Any  # the task's own object (corpus, splits), handed back to fit() and finish()
    sha256: str  # of the data files: a resumed run must see the same data
    source: str  # what the data is, for messages
    info: dict[str, Any]  # facts for config.json's "info" (sizes, sources)


@dataclass
class Fit:
    """What the training loop needs from a task (see :class:`unrolled.training.Trainer`)."""

    batches: Sequence[Any]
    loss_fn: LossFn
    evaluate: EvalFn  # model -> {"val_loss": ..., other "val_*" metrics}
    carry_state: bool = False  # truncated BPTT: carry the recurrent state from batch to batch
    make_state: Callable[[list[Any]], Any] | None = None  # saved carried tensors -> the cells' state
    # the metric of `evaluate` that picks the best weights, "min" or "max", and optionally one whose
    # lowest value breaks ties (e.g. the loss, between checkpoints of the same accuracy)
    select: tuple[str, ...] = ("val_loss", "min")
    bound: Bound | None = None  # the validation figure of knowing nothing: far beyond it = diverged
    # parameter groups of the optimizer (every parameter in one), and epoch -> each group's multiple
    # of the learning rate: discriminative rates, and gradual unfreezing (a multiple of 0 freezes)
    groups: Sequence[Sequence[nn.Parameter]] | None = None
    lr_scales: Callable[[int], Sequence[float]] | None = None


class Task:
    """Base of every task; see the module docstring. Subclasses set the class attributes."""

    name: ClassVar[str]  # `unrolled train NAME`, and config.json's "task"
    help: ClassVar[str]  # one line for `unrolled train --help`
    description: ClassVar[str]  # the paragraph of `unrolled train NAME --help`
    Config: ClassVar[type[RunConfig]]
    assets: ClassVar[dict[str, Asset]] = {}
    unit: ClassVar[str] = "tokens"  # what the progress bar counts per second
    default_limits: ClassVar[dict[str, float]] = {"max_minutes": 10.0}  # when no limit is given
    eval_inputs: ClassVar[dict[str, str]] = {}  # `unrolled eval` flag -> its help, e.g. {"text": ...}
    eval_optional: ClassVar[bool] = False  # True: `unrolled eval RUN` may leave the inputs out
    # further `unrolled eval` options: name -> argparse keywords (e.g. {"beam": {"type": int, ...}})
    eval_options: ClassVar[dict[str, dict[str, Any]]] = {}
    Predictor: ClassVar[type[BasePredictor]] = BasePredictor  # what unrolled.load returns: the task's verbs

    # ---- what a task provides ---------------------------------------------------------------
    def prepare(self, config: Any, assets: dict[str, Any] | None) -> Prepared:
        """Read and check the data (``assets`` given: a resumed run's own, to be reused)."""
        raise NotImplementedError

    def build_model(self, config: Any, assets: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def fit(self, config: Any, model: nn.Module, prepared: Prepared) -> Fit:
        raise NotImplementedError

    def finish(self, run: Run, state: TrainerState, prepared: Prepared) -> dict[str, Any] | None:
        """After training: scores to write to results.json (None: nothing to write)."""
        return None

    def evaluate(self, run: Run, **inputs: Any) -> dict[str, Any]:
        """``unrolled eval RUN --<input> FILE``: the run's scores on the given data (and the
        values of the task's :attr:`eval_options`)."""
        raise ValueError(f"`unrolled eval` does not apply to {self.name} runs")

    def eval_line(self, result: dict[str, Any], **inputs: str) -> str:
        return ", ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float))

    def describe_val(self, record: dict[str, Any]) -> tuple[str, str]:
        """(short text for the progress bar, line printed above it) for a validation record."""
        parts = [
            f"{k.removeprefix('val_').replace('_', ' ')} {v:.4f}"
            for k, v in record.items()
            if k.startswith("val_") and isinstance(v, float)
        ]
        return f"{record['val_loss']:.3f}", "val " + ", ".join(parts)

    def add_train_args(self, parser: argparse.ArgumentParser) -> None:
        """Flags of `unrolled train NAME` that are not config fields (e.g. --sample-length)."""

    def report(self, run: Run, state: TrainerState, results: dict[str, Any] | None, args: Any) -> None:
        """Print what a finished `unrolled train NAME` shows (the CLI's part of a task)."""

    def add_commands(self, commands: Any) -> None:
        """Add the task's own subcommands (``sample``, ``predict``, ...) to ``unrolled``."""

    @staticmethod
    def print_summary(run: Run, state: TrainerState) -> None:
        """The line on stderr that ends a training report: where, how long, which step was best."""
        print(
            f"run: {run.path}  steps: {state.step}  epochs: {state.epoch}  best step: {state.best_step}"
            f"  time: {state.elapsed / 60:.1f} min",
            file=sys.stderr,
        )

    # ---- the skeleton -----------------------------------------------------------------------
    def open_run(
        self, path: str | Path, weights: str | None = ckpt.BEST, device: torch.device | str | None = None
    ) -> Run:
        """Load a run directory: config, assets, the model with its ``best``/``latest`` weights
        (``None``: as built), on ``device`` (None: the CPU)."""
        p = ckpt.check_run_dir(path)
        raw = ckpt.read_json(p / ckpt.CONFIG, "config.json")
        config = self.Config.from_json(raw)
        assets = {key: a.read(p) for key, a in self.assets.items()}
        model = self.build_model(config, assets)
        step = None if weights is None else ckpt.load_run_weights(model, p, weights)
        model.to(device).eval()
        return Run(p, config, model, assets, raw.get("info", {}), step)

    def load(
        self, path: str | Path, *, which: str = ckpt.BEST, device: torch.device | str | None = None
    ) -> BasePredictor:
        """The run in ``path`` as this task's predictor (``unrolled.load``)."""
        return self.Predictor(self, self.open_run(path, weights=which, device=device))

    def train(
        self,
        config: Any = None,
        out: str | Path | None = None,
        *,
        resume: bool = False,
        loop_overrides: dict[str, Any] | None = None,
        optim_overrides: dict[str, Any] | None = None,
        on_event: EventFn | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[Run, TrainerState, dict[str, Any] | None]:
        """Train a new run into ``out`` (which must not hold one), or continue it (``resume``).

        On resume the run's config.json fixes everything but ``loop_overrides`` (fields of its
        :class:`LoopConfig`: this invocation's limits, how often to validate and log) and
        ``optim_overrides`` (the learning rate and clipping: a diverged run goes on more gently). The model
        trains on ``device`` (None: the CPU); the run directory does not depend on it. Returns
        the run (with its best weights), the final trainer state and what :meth:`finish` wrote.
        """
        out = Path(out if out is not None else f"runs/{self.name}")
        world = distributed.current()  # under torchrun: rank 0 alone writes the run directory
        main = world is None or world.main
        if resume:
            ckpt.check_run_dir(out)
            with RunLock(out) if main else contextlib.nullcontext():
                run = self.open_run(out, weights=None, device=device)
                run.config.loop = replace(run.config.loop, **(loop_overrides or {}))
                run.config.optim = replace(run.config.optim, **(optim_overrides or {}))
                run.config.validate()
                autocast_dtype(run.config.optim.precision, torch.device(device or "cpu"))  # fp16 needs CUDA
                prepared = self.prepare(run.config, run.assets)
                known = run.info.get("data_sha256", run.info.get("text_sha256"))  # 0.1: text_sha256
                if known not in (None, prepared.sha256):
                    raise ValueError(
                        f"the data ({prepared.source}) have changed since the run began; "
                        "resume needs the same data"
                    )
                trainer = self._trainer(run, prepared, on_event)
                trainer.load()
                if main:
                    ckpt.atomic_write_json(out / ckpt.CONFIG, {**run.config.to_json(), "info": run.info})
                return self._run(run, trainer, prepared)
        cfg = config if config is not None else self.Config()
        cfg.loop = replace(cfg.loop, **(loop_overrides or {}))
        cfg.validate()
        autocast_dtype(cfg.optim.precision, torch.device(device or "cpu"))  # fp16 needs CUDA
        ckpt.check_new_run_dir(out)
        prepared = self.prepare(cfg, None)  # every input check happens before anything is written
        torch.manual_seed(cfg.loop.seed)  # the same on every rank: the same weights, the same dropout
        model = self.build_model(cfg, prepared.assets).to(device)  # initialised on the CPU: any device, same
        if world is not None:
            torch.manual_seed(cfg.loop.seed + world.rank)  # the same weights; each rank its own dropout
            distributed.barrier()  # every rank has checked `out` before rank 0 fills it
            if not main:  # trains along, saves nothing: its save() only joins the collectives
                run = Run(out, cfg, model, prepared.assets, {})
                trainer = self._trainer(run, prepared, None)
                trainer.save()
                return self._run(run, trainer, prepared)
        # The new run is made complete (config, assets, the step-0 checkpoint) in a hidden folder
        # beside `out` and renamed into place: a crash before that leaves `out` untouched.
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.temp_dir(out.parent, out.name)
        try:
            with RunLock(tmp):  # the lock file moves with the folder, and stays held
                info = {
                    **prepared.info,
                    "data_sha256": prepared.sha256,
                    "parameters": sum(p.numel() for p in model.parameters()),
                }
                for key, asset in self.assets.items():
                    asset.write(tmp, prepared.assets[key])
                ckpt.atomic_write_json(tmp / ckpt.CONFIG, {**cfg.to_json(), "info": info})
                run = Run(tmp, cfg, model, prepared.assets, info)
                trainer = self._trainer(run, prepared, on_event)
                trainer.save()  # step 0: a complete, resumable run at once (the other ranks save along)
                _rename_new_run(tmp, out)
                run.path = trainer.run_dir = out
                return self._run(run, trainer, prepared)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already, unless the run never got into place

    def _trainer(self, run: Run, prepared: Prepared, on_event: EventFn | None) -> Trainer:
        f = self.fit(run.config, run.model, prepared)
        return Trainer(
            run.model,
            f.batches,
            f.loss_fn,
            f.evaluate,
            run.config.optim,
            run.config.loop,
            run.path,
            carry_state=f.carry_state,
            on_event=on_event,
            make_state=f.make_state,
            select=f.select,
            bound=f.bound,
            groups=f.groups,
            lr_scales=f.lr_scales,
        )

    def _run(self, run: Run, trainer: Trainer, prepared: Prepared) -> tuple[Run, TrainerState, Any]:
        state = trainer.run()
        if not trainer.main:  # the other ranks of torchrun: rank 0 scores and reports
            return run, state, None
        ckpt.load_run_weights(run.model, run.path, ckpt.BEST)
        run.model.eval()
        with trainer.autocast():  # scored as validation was, in the run's precision
            results = self.finish(run, state, prepared)
        if results is not None:
            ckpt.atomic_write_json(run.path / RESULTS, results)
        return run, state, results

    @staticmethod
    def add_run_argument(parser: argparse.ArgumentParser, what: str = "run directory") -> None:
        """The ``RUN`` positional, ``--latest`` and ``--device`` of a command that opens a run."""
        parser.add_argument("run", metavar="DIR", help=what)
        parser.add_argument("--latest", action="store_true", help="use the latest weights, not the best")
        add_device_argument(parser)

    @staticmethod
    def open_args(args: argparse.Namespace) -> dict[str, Any]:
        """``open_run`` keywords from the arguments of :meth:`add_run_argument`."""
        return {"weights": ckpt.LATEST if args.latest else ckpt.BEST, "device": resolve_device(args.device)}

    def load_args(self, args: argparse.Namespace) -> BasePredictor:
        """The predictor of the run a command names (:meth:`add_run_argument`'s arguments)."""
        which = ckpt.LATEST if args.latest else ckpt.BEST
        return self.load(args.run, which=which, device=resolve_device(args.device))


def _rename_new_run(tmp: Path, out: Path) -> None:
    """Move a complete new run into place; ``out`` may be missing or an empty folder."""
    try:
        os.rename(tmp, out)  # atomic; replaces an empty folder, fails on a non-empty one
    except OSError:
        if out.exists():  # another process made a run there meanwhile
            ckpt.check_new_run_dir(out)
        raise
    ckpt.fsync_dir(out.parent)
