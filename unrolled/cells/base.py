"""The cell protocol: the contract between one time step and the loops that run it.

A *cell* computes one step of a recurrence,

    h_t, state_t = cell(x_t, state_{t-1})

with ``x_t`` of shape ``(B, input_size)`` and ``h_t`` of shape ``(B, output_size)``.
``state`` is a tensor (Elman RNN, GRU) or a NamedTuple of tensors (``LSTMState(h, c)``),
each of shape ``(B, ...)``. Any ``torch.nn.Module`` with these members can be turned into
a multi-layer, bidirectional sequence layer by :class:`unrolled.Recurrent`:

- ``input_size: int`` and ``hidden_size: int``;
- ``output_size: int`` (optional; defaults to ``hidden_size``), the width of ``h_t``;
- ``forward(x_t, state) -> (h_t, new_state)``;
- ``init_state(batch, *, device, dtype) -> state`` (zeros for the cells of this package);
- ``start_sequence(batch, *, device, dtype)`` (optional): called before the first step of each
  sequence, for per-sequence randomness such as a variational dropout mask.

A layer stacks the states of its cells along a new first dimension, component by component,
which gives torch's ``h_0`` (D*num_layers, B, H) for a tensor state and ``(h_0, c_0)`` for an
LSTM.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor


class LSTMState(NamedTuple):
    """State of an LSTM cell: hidden ``h`` (B, P or H) and memory cell ``c`` (B, H)."""

    h: Tensor
    c: Tensor


class LSTMGateState(NamedTuple):
    """State of an LSTM with full gate recurrence (Greff et al.'s FGR): ``h``, ``c`` and the
    previous activations ``a`` (B, K*H) of its K sigmoid gates, in the order i, f, o."""

    h: Tensor
    c: Tensor
    a: Tensor


@runtime_checkable
class Cell(Protocol):
    """What :class:`unrolled.Recurrent` needs of a cell (see the module docstring)."""

    input_size: int
    hidden_size: int

    def forward(self, x: Tensor, state: Any) -> tuple[Tensor, Any]: ...

    def init_state(
        self, batch: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Any: ...


class TensorStateMixin:
    """``init_state`` for a cell whose state is one (B, H) tensor (Elman, GRU, MUT)."""

    hidden_size: int
    weight_hh: Tensor

    def init_state(
        self, batch: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """Zero hidden state of shape (batch, H)."""
        return self.weight_hh.new_zeros(batch, self.hidden_size, device=device, dtype=dtype)


def state_tensors(state: Any) -> list[Tensor]:
    """The tensors of a state (a tensor, or a NamedTuple/tuple of tensors), in order."""
    return [state] if isinstance(state, Tensor) else list(state)


def state_like(proto: Any, parts: list[Tensor]) -> Any:
    """A state of the same kind as ``proto`` (tensor, NamedTuple or tuple) made of ``parts``."""
    if isinstance(proto, Tensor):
        return parts[0]
    return proto._make(parts) if hasattr(proto, "_make") else tuple(parts)


def map_state(fn: Callable[..., Tensor], state: Any, *others: Any) -> Any:
    """Apply ``fn`` to every tensor of a state, or to the matching tensors of several states.

    The one helper for states of any cell (``Tensor`` or ``LSTMState(h, c)`` and the like):
    ``map_state(Tensor.detach, s)``, ``map_state(lambda a, b: a + b, s1, s2)``.
    """
    columns = zip(*(state_tensors(s) for s in (state, *others)), strict=True)
    return state_like(state, [fn(*ts) for ts in columns])


_PROBE = "_gate_probe"  # an instance attribute, set only inside probe_gates


def record_gates(cell: torch.nn.Module, **gates: Tensor | None) -> None:
    """Hand one step's gate activations (B, H) to a probe attached by :func:`probe_gates`.

    A cell calls this from ``forward`` with the gates it has just computed (the LSTM's i, f, o
    and candidate g; the GRU's r, z and n). Without a probe it does nothing, at the cost of one
    dictionary lookup per step. Gates a variant lacks are passed as None and left out.
    """
    probe = cell.__dict__.get(_PROBE)
    if probe is not None:
        probe.append({name: g.detach() for name, g in gates.items() if g is not None})


@contextmanager
def probe_gates(cell: torch.nn.Module) -> Iterator[list[dict[str, Tensor]]]:
    """Collect the gate activations of every step ``cell`` runs inside the ``with`` block.

    Yields a list that gains one ``{gate name: (B, H) tensor}`` per call of ``cell.forward``
    (empty for a cell without gates, such as the Elman RNN). Only engines that call the cell's
    ``forward`` step by step (``reference``) pass through it; run the cell yourself to be sure.

        >>> from unrolled.cells import GRUCell
        >>> cell = GRUCell(3, 4)
        >>> with probe_gates(cell) as steps:
        ...     h, _ = cell(torch.randn(2, 3))
        >>> sorted(steps[0]), tuple(steps[0]["z"].shape)
        (['n', 'r', 'z'], (2, 4))
    """
    steps: list[dict[str, Tensor]] = []
    cell.__dict__[_PROBE] = steps
    try:
        yield steps
    finally:
        del cell.__dict__[_PROBE]


def check_step_input(x: Tensor, input_size: int, name: str = "input") -> None:
    """Raise a clear error unless ``x`` is (B, input_size) or (input_size,)."""
    if x.dim() not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D (input_size,) or 2-D (batch, input_size); "
            f"got {x.dim()}-D with shape {tuple(x.shape)}"
        )
    if x.size(-1) != input_size:
        raise ValueError(
            f"{name}.size(-1) must be equal to input_size. Expected {input_size}, got {x.size(-1)}"
        )


def check_state(t: Tensor, expected: tuple[int, ...], name: str) -> None:
    """Raise a clear error unless tensor ``t`` has shape ``expected``."""
    if tuple(t.shape) != expected:
        raise ValueError(f"{name} has the wrong shape: expected {expected}, got {tuple(t.shape)}")


def add_gate_parameters(
    cell: torch.nn.Module,
    gates: int,
    input_size: int,
    hidden_size: int,
    bias: bool,
    *,
    recurrent_size: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Register torch.nn's stacked gate parameters on ``cell``.

    ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, R) with R = ``recurrent_size`` (default H), and
    with ``bias`` ``bias_ih`` and ``bias_hh`` (G*H,); otherwise both biases are None.
    """
    kw: dict[str, Any] = {"device": device, "dtype": dtype}
    rows, R = gates * hidden_size, recurrent_size or hidden_size
    cell.weight_ih = torch.nn.Parameter(torch.empty(rows, input_size, **kw))
    cell.weight_hh = torch.nn.Parameter(torch.empty(rows, R, **kw))
    for name in ("bias_ih", "bias_hh"):
        cell.register_parameter(name, torch.nn.Parameter(torch.empty(rows, **kw)) if bias else None)


def tensor_state_step_input(cell: Any, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor, bool]:
    """Check and batch the inputs of a cell whose state is one (B, H) tensor.

    Returns ``(x (B, I), h (B, H), unbatched)``: unbatched input gains a batch dimension of 1
    (the caller removes it again) and a missing state becomes zeros.
    """
    check_step_input(x, cell.input_size)
    unbatched = x.dim() == 1
    if unbatched:
        x = x.unsqueeze(0)
        state = None if state is None else state.unsqueeze(0)
    if state is None:
        state = cell.init_state(x.size(0), dtype=x.dtype)
    check_state(state, (x.size(0), cell.hidden_size), "hx")
    return x, state, unbatched


def uniform_init_(module: torch.nn.Module, hidden_size: int, skip: tuple[str, ...] = ()) -> None:
    """torch.nn's default RNN initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)).

    Parameters named in ``skip`` (e.g. layer-norm gains) keep their values.
    """
    bound = 1.0 / hidden_size**0.5 if hidden_size > 0 else 0.0
    for name, p in module.named_parameters():
        if name not in skip:
            torch.nn.init.uniform_(p, -bound, bound)
