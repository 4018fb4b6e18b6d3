"""Analysis: what the lectures show about why recurrent networks behave as they do (spectra, ...)."""

from .spectrum import power_iteration, recurrent_blocks, spectrum

__all__ = ["power_iteration", "recurrent_blocks", "spectrum"]
