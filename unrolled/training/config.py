"""Typed configuration of the training loop (task-independent)."""

from __future__ import annotations

import importlib.util
import math
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from .flags import flag

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
FLOAT32_MAX = 3.4028234663852886e38
OPTIMIZERS = ("adam", "sgd")
AVERAGES = ("off", "nt")


def _finite(section: Any, names: tuple[str, ...]) -> None:
    """``ValueError`` for a float setting that is NaN or infinite (``--lr inf`` is not a learning rate)."""
    for name in names:
        value = getattr(section, name)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {value}")


@dataclass
class OptimConfig:
    """How parameters are updated."""

    # adam: Adam with decoupled weight decay (AdamW); sgd: plain SGD, the classic word-LM recipe
    # (an lr around 20 with --clip 0.25); its --weight-decay is an L2 term in the gradient
    optimizer: str = flag("adam", choices=OPTIMIZERS)
    lr: float = 3e-3  # peak learning rate; char-LMs of a few hundred units like 2e-3..5e-3 with Adam
    clip: float = 1.0  # max global gradient norm, 0 = no clipping; tames exploding BPTT gradients
    weight_decay: float = 0.0  # decoupled from the gradient with Adam (AdamW); an L2 term with SGD
    # cosine: decay to lr x min-lr-ratio at the planned end of the run; constant: no decay
    schedule: str = flag("cosine", name="lr-schedule", choices=("cosine", "constant"))
    min_lr_ratio: float = 0.1  # floor of the cosine schedule, as a fraction of --lr
    warmup_steps: int = 0  # linear warm-up from 0 over this many steps
    # mixed precision: autocast to bf16 or fp16 (fp16 with a gradient scaler; CUDA only); auto: bf16
    # where the device multiplies bf16 in hardware (AMX or AVX512-BF16 CPUs, bf16 GPUs), else fp32;
    # the weights and the optimizer stay fp32
    precision: str = flag("fp32", choices=PRECISIONS)
    # nt: weight averaging started by a non-monotone trigger (AWD-LSTM's NT-ASGD with any optimizer):
    # once a validation is worse than the best before the last --average-window ones, the weights of
    # every later step are averaged, and the average is what is validated, saved and used
    average: str = flag("off", choices=AVERAGES)
    average_window: int = 5  # --average nt: validations a new one is not compared with (AWD-LSTM's n)

    def validate(self) -> None:
        _finite(self, ("lr", "clip", "weight_decay", "min_lr_ratio"))
        if self.lr <= 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        # the optimizer turns lr (Adam: divided by its bias correction, down to 0.1) and lr x weight
        # decay into float32 numbers: beyond FLOAT32_MAX / 10 they overflow inside its step
        for what, value in (("--lr", self.lr), ("--lr x --weight-decay", self.lr * self.weight_decay)):
            if value > FLOAT32_MAX / 10:
                raise ValueError(
                    f"{what} = {value:g} overflows float32 where the optimizer uses it: "
                    f"keep it below {FLOAT32_MAX / 10:.3g} (learning rates that train are below 100)"
                )
        if self.clip < 0:
            raise ValueError(f"--clip must be >= 0 (0 disables clipping), got {self.clip}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown --optimizer {self.optimizer!r}: expected {' or '.join(OPTIMIZERS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown --precision {self.precision!r}: expected {', '.join(PRECISIONS)}")
        if self.average not in AVERAGES:
            raise ValueError(f"unknown --average {self.average!r}: expected {' or '.join(AVERAGES)}")
        if self.average_window < 1:
            raise ValueError(f"--average-window must be >= 1, got {self.average_window}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown --lr-schedule {self.schedule!r}: expected cosine or constant")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError(
                "--warmup-steps and --weight-decay must be >= 0, "
                f"got {self.warmup_steps} and {self.weight_decay}"
            )


def positive(section: Any, names: tuple[str, ...]) -> None:
    """``ValueError`` for a size or count of ``section`` that is <= 0 (None: not set, allowed)."""
    for name in names:
        value = getattr(section, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")


def split_fractions(val_frac: float, test_frac: float, rows: str = "rows") -> None:
    """``ValueError`` unless 0 < val_frac < 1, 0 <= test_frac < 1 and some ``rows`` are left to train on."""
    if not 0.0 < val_frac < 1.0 or not 0.0 <= test_frac < 1.0 or val_frac + test_frac >= 1.0:
        raise ValueError(
            f"--val-frac ({val_frac:g}) must be in (0, 1) and --test-frac ({test_frac:g}) in [0, 1), "
            f"together below 1 so that some {rows} are left to train on"
        )


NONFINITE = ("stop", "skip")


@dataclass
class LoopConfig:
    """When training stops, and how often it evaluates, logs and saves."""

    max_steps: int | None = None  # training steps for this invocation
    max_minutes: float | None = None  # wall-clock budget of this invocation, validation included
    max_epochs: float | None = None  # passes over the training data in this invocation
    eval_every: int = 200  # steps between validations (each also writes a checkpoint)
    log_every: int = 10  # steps between metrics.jsonl records
    # seeds init, dropout and data order: the same seed gives the same run
    seed: int = flag(1337, fixed=True)
    patience: int | None = None  # stop after N validations without a better validation loss
    # a NaN or infinite loss or gradient norm: stop (exit code 3; the last checkpoint stays
    # resumable) or skip that step (counted in metrics.jsonl; 100 in a row stop the run)
    on_nonfinite: str = flag("stop", choices=NONFINITE)
    # a validation figure above this multiple of the task's "knowing nothing" (ln V for a softmax
    # over V classes; a MASE of 1, the naive forecast's, for the forecaster) stops the run as
    # diverged (exit code 3; never skipped) [the task's: 3, classifier 10, forecaster 10]
    diverge_factor: float | None = None
    tensorboard: bool = False  # also write the scalars to RUN/tensorboard/ (needs unrolled[tensorboard])

    def validate(self) -> None:
        _finite(self, ("max_minutes", "max_epochs", "diverge_factor"))
        positive(self, ("max_steps", "eval_every", "log_every", "patience", "max_minutes", "max_epochs"))
        if self.diverge_factor is not None and self.diverge_factor <= 1:
            raise ValueError(f"--diverge-factor must be above 1 (a multiple), got {self.diverge_factor}")
        if self.on_nonfinite not in NONFINITE:
            raise ValueError(
                f"unknown --on-nonfinite {self.on_nonfinite!r}: expected {' or '.join(NONFINITE)}"
            )
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                "--tensorboard needs the tensorboard package: pip install 'unrolled[tensorboard]'"
            )


@dataclass
class RunConfig:
    """Base of a task's config: dataclass sections (model, data, optim, loop), each with a
    ``validate()``; saved as a run's config.json, tagged with the task's name."""

    TASK: ClassVar[str] = ""
    FORMAT: ClassVar[int] = 1

    def validate(self) -> None:
        for f in fields(self):
            getattr(self, f.name).validate()

    def to_json(self) -> dict[str, Any]:
        return {"task": self.TASK, "format": self.FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, obj: Any) -> Any:
        if not isinstance(obj, dict) or obj.get("task") != cls.TASK:
            raise ValueError(f"config.json is not that of a {cls.TASK} run")
        sections = typing.get_type_hints(cls)
        try:
            return cls(**{f.name: sections[f.name](**obj[f.name]) for f in fields(cls)})
        except (KeyError, TypeError) as e:
            raise ValueError(f"config.json is not valid: {e}") from None
