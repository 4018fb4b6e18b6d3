"""Engines: how a layer runs its time loop, chosen by the layer's ``impl`` argument.

- ``reference`` (:mod:`.reference`): the plain autograd loop over the cell; the oracle.
- ``native`` (:mod:`.native`): torch's own fused kernel on our cells' parameters, for the cells
  torch has.
- ``auto``: the fastest engine that supports the layer's cells.
"""

from .native import native_mode, native_supports, run_native
from .reference import run_reference

IMPLS = ("auto", "reference", "native")

__all__ = ["IMPLS", "native_mode", "native_supports", "run_native", "run_reference"]
