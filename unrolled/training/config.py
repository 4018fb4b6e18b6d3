"""Typed configuration of the training loop (task-independent)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OptimConfig:
    """How parameters are updated."""

    lr: float = 3e-3  # Adam's step size; char-LMs of a few hundred units like 2e-3..5e-3
    clip: float = 1.0  # max global gradient norm (0 = no clipping); tames exploding BPTT grads
    weight_decay: float = 0.0  # AdamW-style decoupled decay (0 = plain Adam)
    schedule: str = "cosine"  # "cosine": decay to lr * min_lr_ratio over the planned run; "constant"
    min_lr_ratio: float = 0.1  # floor of the cosine schedule, as a fraction of lr
    warmup_steps: int = 0  # linear warm-up from 0 over this many steps


@dataclass
class LoopConfig:
    """When training stops, and how often it evaluates, logs and saves."""

    max_steps: int | None = None  # optimizer steps for this invocation (None = no step limit)
    max_minutes: float | None = None  # wall-clock budget of this invocation, evaluation included
    max_epochs: float | None = None  # passes over the training data (None = no limit)
    eval_every: int = 200  # steps between validations (each also writes a checkpoint)
    log_every: int = 10  # steps between metrics.jsonl records
    seed: int = 1337  # seeds init, dropout and data order; the same seed gives the same run

    def validate(self) -> None:
        for name in ("max_steps", "eval_every", "log_every"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
        for name in ("max_minutes", "max_epochs"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
