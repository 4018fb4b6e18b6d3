"""Engines: how a layer runs its time loop, chosen by the layer's ``impl`` argument.

- ``reference`` (:mod:`.reference`): the plain autograd loop over the cell; the oracle.
- ``fused`` (:mod:`.fused`): one input GEMM, one recurrent GEMM per step, explicit BPTT; for
  minGRU/minLSTM the parallel scan of :mod:`.scan`.
- ``compiled`` (:mod:`.compiled`): the fused engine's time loops in C++, built on first use (CPU).
- ``graphed`` (:mod:`.graphed`): the fused engine's time loops captured as CUDA graphs (CUDA).
- ``native`` (:mod:`.native`): torch's own fused kernel on our cells' parameters, for the cells
  torch has.
- ``auto``: the first engine that supports the layer's cells in the preference list of its
  device (:mod:`.registry`, with the measurements behind each entry).
"""

from . import compiled, graphed
from .fused import fused_supports, register_fused, run_fused
from .native import native_mode, native_supports, run_native
from .reference import run_reference
from .registry import ENGINES, PREFERENCES, Engine, choose, register

register(Engine("reference", lambda cells: True, run_cell=run_reference))
register(
    Engine(
        "fused",
        lambda cells: all(fused_supports(c) for c in cells),
        run_cell=run_fused,
        why_not=(
            "impl='fused' does not support {cell!r} (it runs the cells of this package, not custom cells): "
            "use impl='auto' or 'reference'"
        ),
    )
)
register(
    Engine(
        "compiled",
        compiled.supports,
        run_cell=compiled.run_compiled,
        why_not=(
            "impl='compiled' does not run {cell!r}: it runs this package's step cells (Elman, the LSTM "
            "family, GRU, MUT) and needs a C++ compiler (unrolled.engines.compiled.unavailable_reason() "
            "says why a build failed): use impl='auto' or 'fused'"
        ),
        devices=("cpu",),
    )
)
register(
    Engine(
        "graphed",
        graphed.supports,
        run_cell=graphed.run_graphed,
        why_not=(
            "impl='graphed' does not run {cell!r}: it runs this package's step cells (Elman, the LSTM "
            "family, GRU, MUT, minGRU, minLSTM): use impl='auto' or 'reference'"
        ),
        devices=graphed.CAPTURES,  # CUDA
    )
)
register(
    Engine(
        "native",
        native_supports,
        run_stack=run_native,
        why_not=(
            "impl='native' runs only the cells torch fuses (RNN, LSTM without options, GRU with "
            "reset_after=True; no layer norm, recurrent dropout or zoneout): use impl='auto' for these cells"
        ),
    )
)

IMPLS = ("auto", *ENGINES)

__all__ = [
    "ENGINES",
    "IMPLS",
    "PREFERENCES",
    "Engine",
    "choose",
    "fused_supports",
    "native_mode",
    "native_supports",
    "register",
    "register_fused",
    "run_fused",
    "run_native",
    "run_reference",
]
