"""TensorBoard scalars of a run (``--tensorboard``): an optional listener of the training loop.

Writes every numeric field of the loop's ``train`` records (loss, lr, grad_norm, tokens_per_s,
skipped) under ``train/`` and of its ``val`` records (``val_loss`` and the task's metrics) under
``val/``, at their step, to ``RUN/tensorboard/``. Needs the ``tensorboard`` package
(``pip install 'unrolled[tensorboard]'``); :class:`unrolled.training.LoopConfig` checks for it
before a run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SKIP = {"step", "epoch", "elapsed", "best"}


class TensorBoardWriter:
    """``writer(kind, record)`` for the loop's events; ``close()`` flushes."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def __call__(self, kind: str, record: dict[str, Any]) -> None:
        if kind not in ("train", "val"):
            return
        for key, value in record.items():
            if key in SKIP or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            tag = f"val/{key.removeprefix('val_')}" if kind == "val" else f"train/{key}"
            self.writer.add_scalar(tag, value, record["step"])

    def close(self) -> None:
        self.writer.close()
