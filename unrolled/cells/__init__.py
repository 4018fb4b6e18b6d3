"""Cells: the math of one time step, one family per file."""

from .base import Cell, LSTMGateState, LSTMState, probe_gates
from .elman import RNNCell
from .gru import GRUCell
from .lstm import LSTMCell
from .minimal import MinGRUCell, MinLSTMCell
from .mogrifier import MogrifierLSTMCell
from .mut import MUTCell

__all__ = [
    "Cell",
    "GRUCell",
    "LSTMCell",
    "LSTMGateState",
    "LSTMState",
    "MUTCell",
    "MinGRUCell",
    "MinLSTMCell",
    "MogrifierLSTMCell",
    "RNNCell",
    "probe_gates",
]
