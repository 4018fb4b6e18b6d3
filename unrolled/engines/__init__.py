"""Engines: how a layer runs its time loop, chosen by the layer's ``impl`` argument.

- ``reference`` (:mod:`.reference`): the plain autograd loop over the cell; the oracle.
- ``fused`` (:mod:`.fused`): one input GEMM, one recurrent GEMM per step, explicit BPTT; for
  minGRU/minLSTM the parallel scan of :mod:`.scan`.
- ``native`` (:mod:`.native`): torch's own fused kernel on our cells' parameters, for the cells
  torch has.
- ``auto``: the fastest engine that supports the layer's cells (reference for custom cells).
"""

from .fused import fused_supports, run_fused
from .native import native_mode, native_supports, run_native
from .reference import run_reference

IMPLS = ("auto", "reference", "fused", "native")

__all__ = [
    "IMPLS",
    "fused_supports",
    "native_mode",
    "native_supports",
    "run_fused",
    "run_native",
    "run_reference",
]
