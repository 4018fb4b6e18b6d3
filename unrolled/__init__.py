"""unrolled: recurrent sequence models from the single cell up, on PyTorch.

Public API (everything else is an implementation detail):

- cells: :class:`RNNCell`, :class:`LSTMCell` (and Greff et al.'s variants), :class:`GRUCell`,
  :class:`MUTCell` (MUT1-3), :class:`MinGRUCell` and :class:`MinLSTMCell` (Feng et al. 2024, run
  as a parallel scan), :class:`MogrifierLSTMCell` (Melis et al. 2020), :class:`LSTMState`,
  :class:`LSTMGateState`
- :func:`init_recurrent_`: uniform / xavier / orthogonal initialisation, per gate block
- layers: :class:`Recurrent` (any cell -> multi-layer, bidirectional layer),
  :class:`RNN`, :class:`LSTM`, :class:`GRU` (drop-in for torch.nn's); AWD-LSTM's regularisers
  around them: :class:`LockedDropout`, :func:`embedding_dropout`, :func:`activation_penalty`
  (and ``Recurrent(weight_drop=, locked_dropout=)``)
- dense to conv: :class:`Linear`, :class:`LocallyConnected1d`/``2d``, :class:`Conv1d`/``2d``, parameter counts
- trained runs: :func:`load` (a run directory -> its task's predictor: ``sample``, ``predict``,
  ``translate``, ``tag``, ``forecast``, ``score``, ``export``; docs/python_api.md)
"""

from .api import load
from .cells import (
    Cell,
    GRUCell,
    LSTMCell,
    LSTMGateState,
    LSTMState,
    MinGRUCell,
    MinLSTMCell,
    MogrifierLSTMCell,
    MUTCell,
    RNNCell,
)
from .cells.init import init_recurrent_
from .layers import (
    GRU,
    LSTM,
    RNN,
    Conv1d,
    Conv2d,
    Linear,
    LocallyConnected1d,
    LocallyConnected2d,
    LockedDropout,
    Recurrent,
    activation_penalty,
    conv_output_size,
    conv_params,
    embedding_dropout,
    fully_connected_params,
    locally_connected_params,
)

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Cell",
    "Conv1d",
    "Conv2d",
    "GRUCell",
    "LSTMCell",
    "LSTMGateState",
    "LSTMState",
    "Linear",
    "LocallyConnected1d",
    "LocallyConnected2d",
    "LockedDropout",
    "MUTCell",
    "MinGRUCell",
    "MinLSTMCell",
    "MogrifierLSTMCell",
    "RNNCell",
    "Recurrent",
    "__version__",
    "activation_penalty",
    "conv_output_size",
    "conv_params",
    "embedding_dropout",
    "fully_connected_params",
    "init_recurrent_",
    "load",
    "locally_connected_params",
]
