"""Layers: what turns a cell into a sequence layer, and torch.nn-compatible front doors."""

from .recurrent import Recurrent
from .torch_layers import GRU, LSTM, RNN

__all__ = ["GRU", "LSTM", "RNN", "Recurrent"]
