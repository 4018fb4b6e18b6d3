"""``Recurrent``: turns any cell into a multi-layer, bidirectional sequence layer.

Layout and conventions are torch.nn.RNN/LSTM/GRU's: time-major input (T, B, I) unless
``batch_first``; unbatched input (T, I); initial and final states stacked along a first
dimension of size D * num_layers (D = 2 if bidirectional else 1), ordered layer by layer with
the forward direction first; the output of layer k (both directions concatenated, dropout
applied in training) is the input of layer k + 1.

Parameters are stored in the cells (``cells[layer * D + direction]``) but appear in
``state_dict()`` under torch's flat names, ``{name}_l{layer}`` and ``{name}_l{layer}_reverse``
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), so that weights load both ways with torch.nn.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells.base import map_state, state_like, state_tensors
from ..engines import ENGINES, choose
from ..engines.native import native_stepper
from .dropout import check_rate, dropped_weights, locked_dropout, replaced_weights

_TORCH_KEY = re.compile(r"^(?P<name>.+)_l(?P<layer>\d+)(?P<rev>_reverse)?$")


def _stack_states(states: list[Any]) -> Any:
    """Stack per-cell states (tensor or NamedTuple of tensors) along a new dim 0."""
    return map_state(lambda *ts: torch.stack(ts), *states)


def _pick_state(hx: Any, index: int, proto: Any) -> Any:
    """Slice cell ``index``'s state out of a stacked state, shaped like ``proto``."""
    return state_like(proto, [h[index] for h in state_tensors(hx)])


class Recurrent(nn.Module):
    """A stack of recurrent layers built from one cell factory.

    Args:
        cell: a factory ``cell(input_size) -> Cell``, called once per layer and direction,
            e.g. ``functools.partial(unrolled.LSTMCell, hidden_size=128)``.
        input_size: I, features of the input.
        num_layers: number of stacked layers.
        bidirectional: add a second cell per layer that reads the sequence backwards.
        dropout: dropout probability on the outputs of every layer but the last (training
            mode only).
        batch_first: input and output are (B, T, features) instead of (T, B, features).
        impl: the engine that runs the time loop (:mod:`unrolled.engines`): ``"reference"``
            (the autograd loop over the cell), ``"fused"`` (one recurrent GEMM per step and a
            hand-derived backward; for minGRU/minLSTM a parallel scan over time),
            ``"compiled"`` (the fused engine's time loops in C++, built on first use; CPU
            only), ``"graphed"`` (the fused engine's time loops replayed from CUDA graphs;
            CUDA only), ``"native"`` (torch's fused kernel; only for the cells torch has, without
            options) or ``"auto"`` (the fastest engine that supports the cells on the layer's
            device and mode, as measured: on CPU compiled for every cell of this package in
            training (fused where it cannot be built), torch's kernel for its LSTM in inference
            over a sequence and for its GRU and Elman cells one step per call, reference for
            custom cells; on CUDA native (cuDNN) wherever torch has the cells, then fused; see
            :mod:`unrolled.engines.registry`).
            Every engine computes the same function.
        locked_dropout: the dropout between layers draws one mask per sequence, the same at
            every step (variational dropout, Gal & Ghahramani 2016), instead of one per element.
        weight_drop: DropConnect on every cell's recurrent matrix ``weight_hh`` in training:
            ``W_hh * M / (1 - p)``, one mask ``M`` per forward call, drawn before the time loop
            (AWD-LSTM's weight drop; :mod:`unrolled.layers.dropout`).

    Shapes (D = 2 if bidirectional else 1, O = the cells' output size):
        input: (T, B, I), (B, T, I) with ``batch_first``, (T, I) unbatched, or a
            :class:`torch.nn.utils.rnn.PackedSequence` of variable-length sequences.
        hx: the cells' state stacked to (D * num_layers, B, ...) per component, or None for
            zeros; (D * num_layers, ...) for unbatched input.
        lengths: optional (B,) integer tensor (or list) for a padded batch: row b holds
            ``lengths[b]`` valid steps, 0 <= lengths[b] <= T.
        output: (T, B, D * O) (or batch first / unbatched as the input); a PackedSequence
            (same batch sizes and order) for packed input.
        h_n: same layout as ``hx``, the state after each cell's last step.

    Variable lengths (packed input or ``lengths``): outputs past a sequence's end are zero, the
    final state of each sequence is its state after its last valid step, and the reverse
    direction starts at each sequence's own end. States are in the batch's original order,
    as in torch.nn.

    Example:
        >>> import functools, unrolled
        >>> layer = unrolled.Recurrent(functools.partial(unrolled.GRUCell, hidden_size=8),
        ...                            input_size=4, num_layers=2, bidirectional=True)
        >>> out, h_n = layer(torch.randn(7, 3, 4))
        >>> out.shape, h_n.shape
        (torch.Size([7, 3, 16]), torch.Size([4, 3, 8]))
    """

    def __init__(
        self,
        cell: Callable[[int], nn.Module],
        input_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        batch_first: bool = False,
        *,
        impl: str = "auto",
        locked_dropout: bool = False,
        weight_drop: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1], got {dropout}")
        self.input_size = input_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.dropout = float(dropout)
        self.locked_dropout = bool(locked_dropout)
        self.weight_drop = check_rate("weight_drop", weight_drop)
        self.batch_first = batch_first
        cells: list[nn.Module] = []
        layer_in = input_size
        for _ in range(num_layers):
            for _ in range(self.num_directions):
                cells.append(cell(layer_in))
            out_size = getattr(cells[-1], "output_size", cells[-1].hidden_size)
            layer_in = self.num_directions * out_size
        self.cells = nn.ModuleList(cells)
        self.hidden_size: int = cells[0].hidden_size
        self.output_size: int = layer_in  # D * O, the features of the output
        if impl != "auto" and impl not in ENGINES:  # the engines registered now, not at import
            choices = ", ".join(map(repr, ("auto", *ENGINES)))
            raise ValueError(f"impl must be one of {choices}; got {impl!r}")
        if impl != "auto" and not ENGINES[impl].supports(self.cells):
            raise ValueError(ENGINES[impl].why_not.format(cell=self.cells[0]))
        self.impl = impl
        # (device type, training, one step per call, autocast) -> engine, for auto
        self._chosen: dict[tuple[str, bool, bool, bool], str] = {}
        self.register_state_dict_post_hook(_to_torch_keys)
        self.register_load_state_dict_pre_hook(_from_torch_keys)

    # ---- naming ---------------------------------------------------------------------------
    def _torch_name(self, index: int, name: str) -> str:
        layer, direction = divmod(index, self.num_directions)
        return f"{name}_l{layer}" + ("_reverse" if direction else "")

    def _internal_name(self, torch_name: str) -> str | None:
        m = _TORCH_KEY.match(torch_name)
        if m is None:
            return None
        index = int(m["layer"]) * self.num_directions + (1 if m["rev"] else 0)
        if m["rev"] and not self.bidirectional:
            return None
        return f"cells.{index}.{m['name']}"

    def __getattr__(self, name: str) -> Any:
        # torch.nn.LSTM exposes its parameters as attributes (lstm.weight_ih_l0): so do we.
        try:
            return super().__getattr__(name)
        except AttributeError:
            internal = self._internal_name(name) if "_l" in name else None
            if internal is not None:
                _, index, pname = internal.split(".", 2)
                cells = self._modules["cells"]
                if int(index) < len(cells) and hasattr(cells[int(index)], pname):
                    return getattr(cells[int(index)], pname)
            raise

    # ---- forward --------------------------------------------------------------------------
    def forward(
        self, input: Tensor | PackedSequence, hx: Any = None, lengths: Tensor | list[int] | None = None
    ) -> tuple[Tensor | PackedSequence, Any]:
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError(
                    "lengths is for a padded tensor; a PackedSequence carries its own lengths: pass one or "
                    "the other"
                )
            if input.data.size(-1) != self.input_size:
                raise ValueError(
                    f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                    f"got {input.data.size(-1)}"
                )
            padded, lengths = pad_packed_sequence(input)  # (T, B, I), original batch order
            out, h_n = self._run(padded, hx, lengths.to(padded.device), unbatched=False)
            order = input.sorted_indices
            out_sorted = out if order is None else out.index_select(1, order)
            data = pack_padded_sequence(out_sorted, lengths if order is None else lengths[order.cpu()]).data
            return PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices), h_n
        if input.dim() not in (2, 3):
            raise ValueError(
                "input must be 2-D (seq_len, input_size) for unbatched input or 3-D "
                f"({'batch, seq_len' if self.batch_first else 'seq_len, batch'}, input_size); "
                f"got {input.dim()}-D with shape {tuple(input.shape)}"
            )
        if input.size(-1) != self.input_size:
            raise ValueError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {input.size(-1)}"
            )
        unbatched = input.dim() == 2
        if unbatched:
            if lengths is not None:
                raise ValueError(
                    "lengths needs a batch: give input as (T, B, I) (or (B, T, I) with batch_first)"
                )
            x = input.unsqueeze(1)  # (T, 1, I)
        else:
            x = input.transpose(0, 1) if self.batch_first else input  # (T, B, I)
        if lengths is not None:
            lengths = self._check_lengths(lengths, x.size(1), x.size(0), x.device)
        x, h_n = self._run(x, hx, lengths, unbatched)
        if unbatched:
            return x.squeeze(1), map_state(lambda t: t.squeeze(1), h_n)
        return (x.transpose(0, 1) if self.batch_first else x), h_n

    @property
    def engine(self) -> str:
        """The engine that trains this layer on the device it is on (``impl``, with ``"auto"``
        resolved by :func:`unrolled.engines.choose`; moving the layer decides again)."""
        first = next(self.parameters(), None)
        return self.engine_for("cpu" if first is None else first.device.type)

    def engine_for(
        self, device_type: str, training: bool = True, step: bool = False, autocast: bool = False
    ) -> str:
        """The engine this layer runs with on a device of ``device_type``, in training or (with
        ``training=False``) under ``torch.no_grad()``, there over a sequence or (``step``) one
        step per call, as generation calls it; ``autocast``: inside ``torch.autocast`` on it."""
        if self.impl != "auto":
            return self.impl
        key = (device_type, training, step and not training, autocast)
        if key not in self._chosen:
            self._chosen[key] = choose(self.cells, device_type, training, key[2], autocast)
        return self._chosen[key]

    def stepper(self) -> Callable[[Tensor, Any], tuple[Tensor, Any]]:
        """The layer as generation calls it, one step at a time in inference: ``step(input,
        hx) -> (output, h_n)``, the same results as ``self(input, hx)``, with what every call
        would decide decided once. Where ``auto`` runs one step on torch's kernels (the GRU and
        Elman cells on a CPU) that is the kernel and its weight list, which cost as much as the
        kernel's step itself at batch 1; elsewhere it is the layer itself. For batched input
        without lengths, in evaluation mode; ask again after moving the layer or replacing its
        parameters."""
        first = next(self.parameters(), None)
        device_type = "cpu" if first is None else first.device.type
        if self.training or self.engine_for(device_type, training=False, step=True) != "native":
            return self.__call__
        run = native_stepper(self.cells, num_layers=self.num_layers, bidirectional=self.bidirectional)
        if not self.batch_first:
            return run

        def step(x: Tensor, hx: Any) -> tuple[Tensor, Any]:
            out, h_n = run(x.transpose(0, 1), hx)
            return out.transpose(0, 1), h_n

        return step

    def _run(self, x: Tensor, hx: Any, lengths: Tensor | None, unbatched: bool) -> tuple[Tensor, Any]:
        """Every layer and direction over time-major ``x`` (T, B, I); ``hx`` as given by the user."""
        B = x.size(1)
        exporting = torch.compiler.is_exporting()  # a graph for any T and lengths: no data-dependent test
        if lengths is not None and not exporting and bool((lengths == x.size(0)).all()):
            lengths = None  # every row is full: no masking needed
        proto = self.cells[0].init_state(B, device=x.device, dtype=x.dtype)
        if hx is not None:
            hx = self._check_hx(hx, proto, unbatched)
        # exported or traced (unrolled.export): the reference loop, the one engine written as plain ops
        plain = exporting or torch.jit.is_tracing()
        training = torch.is_grad_enabled()
        device_type = x.device.type
        autocast = torch.is_autocast_enabled(device_type)
        name = "reference" if plain else self.engine_for(device_type, training, x.size(0) == 1, autocast)
        engine = ENGINES[name]
        if self.training and self.weight_drop:  # one mask per call, before the time loop
            with replaced_weights(self.cells, dropped_weights(self.cells, self.weight_drop)):
                return self._layers(engine, x, hx, proto, lengths)
        return self._layers(engine, x, hx, proto, lengths)

    def _layers(
        self, engine: Any, x: Tensor, hx: Any, proto: Any, lengths: Tensor | None
    ) -> tuple[Tensor, Any]:
        """Every layer over ``x`` (T, B, I) with ``engine``: a whole-stack engine runs the stack in
        one call unless the dropout between layers is locked (then one call per layer)."""
        between = self.dropout if self.training and self.num_layers > 1 else 0.0
        locked = self.locked_dropout and between > 0
        if engine.run_stack is not None and not locked:
            return engine.run_stack(
                self.cells,
                x,
                hx,
                num_layers=self.num_layers,
                bidirectional=self.bidirectional,
                dropout=self.dropout,
                training=self.training,
                lengths=lengths,
            )
        D, B = self.num_directions, x.size(1)
        finals: list[Any] = []
        for layer in range(self.num_layers):
            first = layer * D
            if engine.run_stack is not None:
                layer_hx = None if hx is None else map_state(lambda h, f=first: h[f : f + D], hx)
                x, h_n = engine.run_stack(
                    self.cells[first : first + D],
                    x,
                    layer_hx,
                    num_layers=1,
                    bidirectional=self.bidirectional,
                    dropout=0.0,
                    training=self.training,
                    lengths=lengths,
                )
                finals += [map_state(lambda h, d=d: h[d], h_n) for d in range(D)]
            else:
                outs = []
                for d in range(D):
                    cell = self.cells[first + d]
                    if hx is None:
                        state = cell.init_state(B, device=x.device, dtype=x.dtype)
                    else:
                        state = _pick_state(hx, first + d, proto)
                    out, state = engine.run_cell(cell, x, state, reverse=d == 1, lengths=lengths)
                    outs.append(out)
                    finals.append(state)
                x = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (T, B, D*O)
            if between and layer < self.num_layers - 1:
                x = locked_dropout(x, between, batch_first=False) if locked else F.dropout(x, between)

        return x, _stack_states(finals)

    @staticmethod
    def _check_lengths(lengths: Any, batch: int, steps: int, device: torch.device) -> Tensor:
        lengths = torch.as_tensor(lengths)
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
        if tuple(lengths.shape) != (batch,):
            raise ValueError(
                f"lengths must have shape (batch,) = ({batch},), one length per sequence; "
                f"got {tuple(lengths.shape)}"
            )
        if torch.compiler.is_exporting():  # the values are the graph's input, unknown here
            return lengths.to(device=device, dtype=torch.long)
        low, high = int(lengths.min()), int(lengths.max())
        if low < 0 or high > steps:
            raise ValueError(
                f"lengths must lie in [0, {steps}] (the padded number of steps); "
                f"got values in [{low}, {high}]"
            )
        return lengths.to(device=device, dtype=torch.long)

    def _check_hx(self, hx: Any, proto: Any, unbatched: bool) -> Any:
        n = self.num_layers * self.num_directions
        parts = [hx] if isinstance(proto, Tensor) else list(hx) if isinstance(hx, (tuple, list)) else None
        protos = [proto] if isinstance(proto, Tensor) else list(proto)
        if parts is None or len(parts) != len(protos) or not all(isinstance(p, Tensor) for p in parts):
            raise TypeError(
                f"hx must be {'a tensor' if len(protos) == 1 else f'a tuple of {len(protos)} tensors'}"
                f" for this layer; got {type(hx).__name__}"
            )
        names = ["hx"] if len(protos) == 1 else [f"hx[{i}]" for i in range(len(protos))]
        checked = []
        for name, part, p in zip(names, parts, protos, strict=True):
            expected = (n, *p.shape[1:]) if unbatched else (n, *p.shape)
            if tuple(part.shape) != expected:
                kind = "unbatched " if unbatched else ""
                raise ValueError(
                    f"{name} for {kind}input must have shape {expected} "
                    f"(num_layers * num_directions, {'' if unbatched else 'batch, '}size); "
                    f"got {tuple(part.shape)}"
                )
            checked.append(part.unsqueeze(1) if unbatched else part)
        if isinstance(proto, Tensor):
            return checked[0]
        return checked

    def extra_repr(self) -> str:
        s = f"input_size={self.input_size}, num_layers={self.num_layers}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.impl != "auto":
            s += f", impl={self.impl!r}"
        return s


def _to_torch_keys(module: Recurrent, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    """state_dict post-hook: ``cells.{i}.{name}`` -> torch's ``{name}_l{layer}[_reverse]``."""
    head = prefix + "cells."
    for key in [k for k in state_dict if k.startswith(head)]:
        index, name = key[len(head) :].split(".", 1)
        state_dict[prefix + module._torch_name(int(index), name)] = state_dict.pop(key)


def _from_torch_keys(module: Recurrent, state_dict: dict, prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: torch's flat names -> ``cells.{i}.{name}``."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix) :]
        if rest.startswith("cells."):
            continue  # already an internal name
        internal = module._internal_name(rest)
        if internal is not None:
            state_dict[prefix + internal] = state_dict.pop(key)
