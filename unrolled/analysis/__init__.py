"""Analysis: what the lectures show about why recurrent networks behave as they do: how far back
a gradient reaches (:mod:`.gradients`), how far back a trained model looks (:mod:`.jacobian`) and
the recurrent matrix's spectrum (:mod:`.spectrum`), and what single units respond to
(:mod:`.neurons`)."""

from .gradients import gradient_flow
from .jacobian import sequential_jacobian
from .neurons import activations, cell_signals, correlations, text_features
from .spectrum import power_iteration, recurrent_blocks, spectrum

__all__ = [
    "activations",
    "cell_signals",
    "correlations",
    "gradient_flow",
    "power_iteration",
    "recurrent_blocks",
    "sequential_jacobian",
    "spectrum",
    "text_features",
]
