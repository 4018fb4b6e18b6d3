"""Analysis: what the lectures show about why recurrent networks behave as they do: how far back
a gradient reaches (:mod:`.gradients`) and the recurrent matrix's spectrum (:mod:`.spectrum`)."""

from .gradients import gradient_flow
from .spectrum import power_iteration, recurrent_blocks, spectrum

__all__ = ["gradient_flow", "power_iteration", "recurrent_blocks", "spectrum"]
