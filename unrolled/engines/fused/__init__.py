"""The fused engine: one GEMM for the input projection of all steps, one recurrent GEMM and
in-place gate math per step, and an explicit, hand-derived BPTT backward (a
``torch.autograd.Function`` per cell family) whose weight gradients are one GEMM over all steps.
See :mod:`.common` for the scheme and each family's module for its equations.

Supported: the Elman cell (tanh, relu), the LSTM family (torch's cell, projections, every Greff
et al. variant including FGR), both GRU forms and MUT1-3 (any input size), each with or without
bias, in either direction and with variable lengths; the LSTM and GRU families also with layer
normalisation, recurrent dropout and zoneout (drawing the same masks as the reference loop); the
Mogrifier LSTM (its rounds gate each step's input, so its input GEMMs are made step by step).
minGRU and minLSTM, whose step is linear in the state, run as a parallel scan instead
(:mod:`unrolled.engines.scan`: one input GEMM, a log-space scan along time, autograd's backward).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...cells import GRUCell, LSTMCell, MinGRUCell, MinLSTMCell, MogrifierLSTMCell, MUTCell, RNNCell
from ...cells.base import map_state
from ..reference import step_mask
from ..scan import run_scan
from .elman import run_elman
from .gru import run_gru
from .lstm import run_lstm
from .mogrifier import run_mogrifier
from .mut import run_mut

_RUNNERS = {
    RNNCell: run_elman,
    LSTMCell: run_lstm,
    GRUCell: run_gru,
    MUTCell: run_mut,
    MogrifierLSTMCell: run_mogrifier,
    MinGRUCell: run_scan,
    MinLSTMCell: run_scan,
}


def register_fused(cell_class: type[nn.Module], runner: Any) -> None:
    """Run ``cell_class`` on the fused engine with ``runner(cell, x, state, reverse, mask)``: how a
    new cell's fused kernel, written in its own file, joins the engine."""
    _RUNNERS[cell_class] = runner


def fused_supports(cell: nn.Module) -> bool:
    """Whether the fused engine has a hand-derived backward for ``cell`` as configured."""
    return type(cell) in _RUNNERS


def run_fused(
    cell: nn.Module, x: Tensor, state: Any, *, reverse: bool = False, lengths: Tensor | None = None
) -> tuple[Tensor, Any]:
    """Same contract as :func:`unrolled.engines.run_reference`, for a supported cell.

    Under autocast (mixed precision) the hand-written kernels compute in float32: autocast is
    switched off inside and the input and state are cast up, so the results are those of fp32.
    """
    if not fused_supports(cell):
        raise ValueError(f"the fused engine does not support {cell!r} yet: use impl='reference'")
    return run_with_runner(_RUNNERS[type(cell)], cell, x, state, reverse, lengths)


def run_with_runner(
    runner: Any, cell: nn.Module, x: Tensor, state: Any, reverse: bool, lengths: Tensor | None, **options: Any
) -> tuple[Tensor, Any]:
    """``runner(cell, x, state, reverse, mask, **options)`` with the lengths made a step mask and
    autocast lifted (the compiled engine runs the same runners with its C++ loops as ``steps``)."""
    mask = None if lengths is None else step_mask(lengths, x.size(0))
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            state = map_state(lambda t: t.float(), state)
            return runner(cell, x.float(), state, reverse, mask, **options)
    return runner(cell, x, state, reverse, mask, **options)
