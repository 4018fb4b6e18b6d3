"""Training: config dataclasses and their flags, the loop, checkpoints, and the task skeleton.
Knows nothing about any particular task."""

from ..errors import Diverged, NonFiniteOutput
from .config import LoopConfig, OptimConfig, RunConfig
from .flags import flag
from .loop import Bound, Trainer, TrainerState, detach_state
from .predictor import Predictor
from .task import Asset, Fit, Prepared, Run, Task

__all__ = [
    "Asset",
    "Bound",
    "Diverged",
    "Fit",
    "LoopConfig",
    "NonFiniteOutput",
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
