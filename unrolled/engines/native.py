"""The native engine: torch's own fused kernels, run on the parameters of our cells.

torch.nn.RNN/LSTM/GRU hand their weights to one kernel (``torch._VF.rnn_tanh``, ``lstm``,
``gru``) that runs every layer and direction; on CPU that is oneDNN/MKL, on CUDA cuDNN. The
kernel takes a list of parameter tensors, so we pass our cells' parameters themselves, in
torch's order (per layer and direction: ``weight_ih, weight_hh[, bias_ih, bias_hh][, weight_hr]``);
nothing is copied, and gradients reach the cells' parameters through autograd.

Only cells whose step is exactly torch's qualify (:func:`native_mode`): the Elman cell, the
LSTM cell without options (``proj_size`` is allowed) and the GRU cell with ``reset_after=True``,
all without layer norm, recurrent dropout or zoneout.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import _VF, Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..cells import GRUCell, LSTMCell, RNNCell
from ..cells.base import LSTMState
from ..cells.lstm import resolve_variant

_PLAIN_LSTM = resolve_variant(None)


def has_step_options(cell: nn.Module) -> bool:
    """Whether ``cell`` uses an option torch's kernels lack: layer norm, recurrent dropout or zoneout."""
    return bool(
        getattr(cell, "layer_norm", False)
        or getattr(cell, "recurrent_dropout", 0)
        or getattr(cell, "zoneout", 0)
    )


def native_mode(cell: nn.Module) -> str | None:
    """torch's name for the kernel that computes ``cell``'s step exactly, or None."""
    if type(cell) is RNNCell:
        return "RNN_TANH" if cell.nonlinearity == "tanh" else "RNN_RELU"
    if type(cell) is LSTMCell and cell.flags == _PLAIN_LSTM and not has_step_options(cell):
        return "LSTM"
    if type(cell) is GRUCell and cell.reset_after and not has_step_options(cell):
        return "GRU"
    return None


def native_supports(cells: Sequence[nn.Module]) -> bool:
    """Whether one torch kernel can run this stack of cells (one mode, one bias setting)."""
    modes = {native_mode(c) for c in cells}
    return len(modes) == 1 and None not in modes and len({c.bias for c in cells}) == 1


def _flat_weights(cells: Sequence[nn.Module]) -> list[Tensor]:
    weights: list[Tensor] = []
    for cell in cells:
        weights += [cell.weight_ih, cell.weight_hh]
        if cell.bias:
            weights += [cell.bias_ih, cell.bias_hh]
        if getattr(cell, "weight_hr", None) is not None:
            weights.append(cell.weight_hr)
    return weights


def _quiet(kernel: Any) -> Any:
    """cuDNN warns on every call that our cells' weights are separate tensors, not one flat buffer
    (it copies them into one: part of the time the benchmark measures). Silenced here, once; a flat
    buffer shared with the cells, as torch.nn's ``flatten_parameters`` keeps, would save the copy."""

    def call(*args: Any) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
            return kernel(*args)

    return call


_KERNELS = {"RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu, "LSTM": _VF.lstm, "GRU": _VF.gru}


def _zero_state(cells: Sequence[nn.Module], mode: str, x: Tensor) -> Any:
    """The stacked zero state of the stack for ``x``'s batch, in torch's layout."""
    protos = [c.init_state(x.size(1), device=x.device, dtype=x.dtype) for c in cells]
    return LSTMState(*map(torch.stack, zip(*protos, strict=True))) if mode == "LSTM" else torch.stack(protos)


def native_stepper(
    cells: Sequence[nn.Module], *, num_layers: int, bidirectional: bool
) -> Callable[[Tensor, Any], tuple[Tensor, Any]]:
    """``run_native`` for inference over full rows, with the kernel and its weight list taken
    once: ``step(x (T, B, I), hx or None) -> (out, h_n)``, the same results. For generation,
    which calls the stack once per step, where gathering them per call costs as much as the
    kernel's own step at batch 1. Valid while the cells keep these parameter tensors."""
    mode = native_mode(cells[0])
    assert mode is not None, "native_stepper needs cells torch's kernels run"
    kernel = _KERNELS[mode]
    args = (_flat_weights(cells), bool(cells[0].bias), num_layers, 0.0, False, bidirectional, False)

    def step(x: Tensor, hx: Any) -> tuple[Tensor, Any]:
        if hx is None:
            hx = _zero_state(cells, mode, x)
        out, *state = kernel(x, tuple(hx) if mode == "LSTM" else hx, *args)
        return out, (LSTMState(*state) if mode == "LSTM" else state[0])

    return step


def run_native(
    cells: Sequence[nn.Module],
    x: Tensor,
    hx: Any,
    *,
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    training: bool,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Any]:
    """Run the whole stack with torch's kernel.

    Args:
        cells: the layer's cells, ``cells[layer * D + direction]``, all with one native mode.
        x: (T, B, I) time-major padded input.
        hx: the stacked initial state in torch's layout, or None for zeros.
        lengths: (B,) valid steps per row (0 allowed), or None for all T.

    Returns:
        ``(out (T, B, D*O), h_n)`` with the semantics of :func:`run_reference` per cell.
    """
    mode = native_mode(cells[0])
    assert mode is not None
    if hx is None:
        hx = _zero_state(cells, mode, x)
    weights = _flat_weights(cells)
    has_bias = bool(cells[0].bias)
    args = (weights, has_bias, num_layers, float(dropout), training, bidirectional)
    kernel = _KERNELS[mode]
    if x.is_cuda:
        kernel = _quiet(kernel)
    state_in = tuple(hx) if mode == "LSTM" else hx
    if lengths is None:
        out, *state = kernel(x, state_in, *args, False)
    else:
        # torch packs only lengths >= 1: run empty rows for one step and restore them afterwards
        empty = lengths == 0
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), enforce_sorted=False)
        order = packed.sorted_indices
        sorted_state = (
            tuple(s.index_select(1, order) for s in state_in)
            if mode == "LSTM"
            else state_in.index_select(1, order)
        )
        data, *state = kernel(packed.data, packed.batch_sizes, sorted_state, *args)
        state = [s.index_select(1, packed.unsorted_indices) for s in state]
        out, _ = pad_packed_sequence(packed._replace(data=data), total_length=x.size(0))
        if bool(empty.any()):
            keep = empty[None, :, None]
            out = out.masked_fill(keep, 0.0)
            initial = list(state_in) if mode == "LSTM" else [state_in]
            state = [torch.where(keep, h0, s) for h0, s in zip(initial, state, strict=True)]
    return out, (LSTMState(*state) if mode == "LSTM" else state[0])
