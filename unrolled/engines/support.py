"""What decides whether a fast engine can run a cell."""

from __future__ import annotations

from torch import nn


def has_step_options(cell: nn.Module) -> bool:
    """Whether ``cell`` uses an option that only the reference loop runs: layer norm,
    recurrent dropout or zoneout."""
    return bool(
        getattr(cell, "layer_norm", False)
        or getattr(cell, "recurrent_dropout", 0)
        or getattr(cell, "zoneout", 0)
    )
