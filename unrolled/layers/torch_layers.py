"""``RNN``, ``LSTM`` and ``GRU``: drop-in replacements for torch.nn's, built on our cells.

Same constructor arguments, forward signature, shapes and ``state_dict`` keys as
torch.nn.RNN/LSTM/GRU, so that weights load both ways::

    ours = unrolled.LSTM(10, 20, num_layers=2, bidirectional=True)
    ours.load_state_dict(torch.nn.LSTM(10, 20, num_layers=2, bidirectional=True).state_dict())

The cells underneath are plain tensor ops (:mod:`unrolled.cells`) run by :class:`Recurrent`;
``impl=`` (keyword only, not in torch) picks the engine that runs them (``"auto"``: torch's own
kernel where the cell is torch's, see :mod:`unrolled.engines`); ``locked_dropout=`` and
``weight_drop=`` (keyword only) are AWD-LSTM's regularisers (see :class:`Recurrent`).
"""

from __future__ import annotations

import functools

import torch

from ..cells import GRUCell, LSTMCell, RNNCell
from ..cells.lstm import resolve_variant
from .recurrent import Recurrent


def _check_sizes(input_size: int, hidden_size: int) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class RNN(Recurrent):
    """Elman RNN layer with torch.nn.RNN's interface (see :class:`unrolled.RNNCell`).

    Example:
        >>> rnn = RNN(10, 20, num_layers=2)
        >>> out, h_n = rnn(torch.randn(5, 3, 10))
        >>> out.shape, h_n.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        impl: str = "auto",
        locked_dropout: bool = False,
        weight_drop: float = 0.0,
    ) -> None:
        _check_sizes(input_size, hidden_size)
        cell = functools.partial(
            RNNCell,
            hidden_size=hidden_size,
            bias=bias,
            nonlinearity=nonlinearity,
            device=device,
            dtype=dtype,
        )
        super().__init__(
            cell,
            input_size,
            num_layers,
            bidirectional,
            dropout,
            batch_first,
            impl=impl,
            locked_dropout=locked_dropout,
            weight_drop=weight_drop,
        )
        self.nonlinearity = nonlinearity
        self.bias = bias


class LSTM(Recurrent):
    """LSTM layer with torch.nn.LSTM's interface (see :class:`unrolled.LSTMCell`).

    ``forward(input, (h_0, c_0))`` returns ``output, (h_n, c_n)``. Not in torch: ``variant``
    (a Greff et al. abbreviation such as ``"CIFG"``), the cell's flags (``peephole=True``,
    ``forget_gate=False``, ...), ``forget_bias``, ``layer_norm``, ``recurrent_dropout`` and
    ``zoneout``, passed to every :class:`unrolled.LSTMCell`. With ``variant="FGR"`` the state
    is ``(h, c, a)``, ``a`` (D*num_layers, B, 3*H) the gates' previous activations.

    Example:
        >>> lstm = LSTM(10, 20, batch_first=True)
        >>> out, (h_n, c_n) = lstm(torch.randn(3, 5, 10))
        >>> out.shape, c_n.shape
        (torch.Size([3, 5, 20]), torch.Size([1, 3, 20]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        variant: str | None = None,
        forget_bias: float | None = None,
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        impl: str = "auto",
        locked_dropout: bool = False,
        weight_drop: float = 0.0,
        **cell_flags: bool,
    ) -> None:
        _check_sizes(input_size, hidden_size)
        resolve_variant(variant, **cell_flags)  # a clear error before any cell is built
        cell = functools.partial(
            LSTMCell,
            hidden_size=hidden_size,
            bias=bias,
            proj_size=proj_size,
            device=device,
            dtype=dtype,
            variant=variant,
            forget_bias=forget_bias,
            layer_norm=layer_norm,
            recurrent_dropout=recurrent_dropout,
            zoneout=zoneout,
            **cell_flags,
        )
        super().__init__(
            cell,
            input_size,
            num_layers,
            bidirectional,
            dropout,
            batch_first,
            impl=impl,
            locked_dropout=locked_dropout,
            weight_drop=weight_drop,
        )
        self.bias = bias
        self.proj_size = proj_size


class GRU(Recurrent):
    """GRU layer with torch.nn.GRU's interface (see :class:`unrolled.GRUCell`).

    ``reset_after=False`` (not in torch) gives the form of Cho et al. and the d2l lectures;
    ``layer_norm=True`` (not in torch) layer-normalises the gate products (Ba et al. 2016);
    ``recurrent_dropout`` and ``zoneout`` regularise the recurrence (training only).

    Example:
        >>> gru = GRU(10, 20, bidirectional=True)
        >>> out, h_n = gru(torch.randn(5, 3, 10))
        >>> out.shape, h_n.shape
        (torch.Size([5, 3, 40]), torch.Size([2, 3, 20]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        reset_after: bool = True,
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        impl: str = "auto",
        locked_dropout: bool = False,
        weight_drop: float = 0.0,
    ) -> None:
        _check_sizes(input_size, hidden_size)
        cell = functools.partial(
            GRUCell,
            hidden_size=hidden_size,
            bias=bias,
            reset_after=reset_after,
            layer_norm=layer_norm,
            recurrent_dropout=recurrent_dropout,
            zoneout=zoneout,
            device=device,
            dtype=dtype,
        )
        super().__init__(
            cell,
            input_size,
            num_layers,
            bidirectional,
            dropout,
            batch_first,
            impl=impl,
            locked_dropout=locked_dropout,
            weight_drop=weight_drop,
        )
        self.bias = bias
        self.reset_after = reset_after
