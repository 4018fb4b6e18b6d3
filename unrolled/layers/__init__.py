"""Layers: what turns a cell into a sequence layer, and torch.nn-compatible front doors; the
fully-connected, locally-connected and convolutional layers built from patches, with their
parameter counts; the regularisers of AWD-LSTM that act around a recurrent layer."""

from .conv import Conv1d, Conv2d
from .counting import conv_output_size, conv_params, fully_connected_params, locally_connected_params
from .dropout import LockedDropout, activation_penalty, embedding_dropout
from .linear import Linear
from .local import LocallyConnected1d, LocallyConnected2d
from .recurrent import Recurrent
from .torch_layers import GRU, LSTM, RNN

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Conv1d",
    "Conv2d",
    "Linear",
    "LocallyConnected1d",
    "LocallyConnected2d",
    "LockedDropout",
    "Recurrent",
    "activation_penalty",
    "conv_output_size",
    "conv_params",
    "embedding_dropout",
    "fully_connected_params",
    "locally_connected_params",
]
