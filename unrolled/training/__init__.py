"""Training: config dataclasses and their flags, the loop, checkpoints, and the task skeleton.
Knows nothing about any particular task."""

from .config import LoopConfig, OptimConfig, RunConfig
from .flags import flag
from .loop import Diverged, Trainer, TrainerState, detach_state
from .predictor import Predictor
from .task import Asset, Fit, Prepared, Run, Task

__all__ = [
    "Asset",
    "Diverged",
    "Fit",
    "LoopConfig",
    "OptimConfig",
    "Predictor",
    "Prepared",
    "Run",
    "RunConfig",
    "Task",
    "Trainer",
    "TrainerState",
    "detach_state",
    "flag",
]
