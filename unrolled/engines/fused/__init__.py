"""The fused engine: one GEMM for the input projection of all steps, one recurrent GEMM and
in-place gate math per step, and an explicit, hand-derived BPTT backward (a
``torch.autograd.Function`` per cell family) whose weight gradients are one GEMM over all steps.
See :mod:`.common` for the scheme and each family's module for its equations.

Supported: the Elman cell (tanh, relu), the LSTM family (torch's cell, projections, every Greff
et al. variant including FGR) and both GRU forms, each with or without bias, in either
direction and with variable lengths. Not yet: layer normalisation, recurrent dropout and
zoneout, MUT1-3 (:func:`fused_supports` says no, and ``impl="auto"`` uses the reference loop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ...cells import GRUCell, LSTMCell, RNNCell
from ..reference import step_mask
from ..support import has_step_options
from .elman import FusedElman
from .gru import FusedGRU
from .lstm import run_lstm


def _tensor_state(function: Any, flag: Callable[[nn.Module], bool]) -> Callable[..., tuple[Tensor, Tensor]]:
    """The runner of a cell whose state is one tensor and whose parameters are torch's four."""

    def run(
        cell: nn.Module, x: Tensor, state: Tensor, reverse: bool, mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        return function.apply(flag(cell), reverse, mask, x, state, *weights)

    return run


_RUNNERS = {
    RNNCell: _tensor_state(FusedElman, lambda cell: cell.nonlinearity == "relu"),
    LSTMCell: run_lstm,
    GRUCell: _tensor_state(FusedGRU, lambda cell: cell.reset_after),
}


def fused_supports(cell: nn.Module) -> bool:
    """Whether the fused engine has a hand-derived backward for ``cell`` as configured."""
    if type(cell) not in _RUNNERS:
        return False
    return not has_step_options(cell)


def run_fused(
    cell: nn.Module, x: Tensor, state: Any, *, reverse: bool = False, lengths: Tensor | None = None
) -> tuple[Tensor, Any]:
    """Same contract as :func:`unrolled.engines.run_reference`, for a supported cell."""
    if not fused_supports(cell):
        raise ValueError(f"the fused engine does not support {cell!r} yet: use impl='reference'")
    mask = None if lengths is None else step_mask(lengths, x.size(0))
    return _RUNNERS[type(cell)](cell, x, state, reverse, mask)
