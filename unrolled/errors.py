"""The errors the command line turns into exit code 3: a run or a model that has diverged.

They live below every layer (models, training, tasks raise them; the CLI catches them), so that
a model's decoding can say its logits are not finite without importing the training loop.
"""

from __future__ import annotations

import torch

__all__ = ["Diverged", "NonFiniteOutput", "check_logits"]


class Diverged(RuntimeError):
    """Training diverged (see :class:`Trainer`); the run directory keeps its last good checkpoint.

    ``skippable``: the problem was one step's non-finite loss or gradient, which ``--on-nonfinite
    skip`` passes over; anything else (weights or optimizer state gone non-finite, a validation
    beyond the task's bound, a failed optimizer step) is never skipped.
    """

    def __init__(self, step: int, problem: str, last_saved: int | None, *, skippable: bool = False) -> None:
        kept = "" if last_saved is None else f"; the checkpoint of step {last_saved} is kept"
        retry = "--on-nonfinite skip, or with a lower --lr" if skippable else "a lower --lr"
        super().__init__(
            f"training diverged at step {step}: {problem}{kept}; resume with {retry} "
            "(unrolled train TASK --resume RUN --lr X) or a smaller --clip"
        )
        self.step, self.problem = step, problem


class NonFiniteOutput(Diverged):
    """A model's outputs (logits in sampling or decoding) are NaN or infinite: its weights have
    diverged. The command line says so in one line, exit code 3, like a diverged training run."""

    def __init__(self, problem: str) -> None:
        RuntimeError.__init__(
            self,
            f"the model's {problem} are not finite: its weights have diverged; use an earlier "
            "checkpoint (the best weights, not --latest) or train again with a lower --lr",
        )
        self.step, self.problem = None, problem


def check_logits(logits: torch.Tensor) -> None:
    """:class:`NonFiniteOutput` if ``logits`` hold NaN or +inf (-inf is a masked token: allowed)."""
    if bool(torch.isnan(logits).any() or torch.isposinf(logits).any()):
        raise NonFiniteOutput("logits")
