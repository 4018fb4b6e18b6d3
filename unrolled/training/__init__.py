"""Training: config dataclasses, the loop, checkpoints. Knows nothing about any task."""

from .config import LoopConfig, OptimConfig, RunConfig
from .loop import Trainer, TrainerState, detach_state

__all__ = ["LoopConfig", "OptimConfig", "RunConfig", "Trainer", "TrainerState", "detach_state"]
