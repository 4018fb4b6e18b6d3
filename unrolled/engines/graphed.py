"""The graphed engine: the fused engine's time loops captured once as CUDA graphs, then replayed.

On a GPU the fused engine's arithmetic per step is one GEMM and a dozen small pointwise
kernels, but each is launched from Python: 5-50 us of host work per operation, which the GPU
waits for. Measured on an H200 (torch 2.11, forward + backward): at (B,T,I,H) = (64,100,512,512)
the fused GRU took 47 ms against 6.5 ms for cuDNN's, and 56-72x cuDNN's LSTM at batch 1. This
engine removes the host from the loop: each family's forward and backward time loop (the same
Python loops, ``STEPS`` of :mod:`unrolled.engines.fused`, so the same equations, saved tensors
and random masks) is captured once per signature as a CUDA graph and replayed, so a step costs
only its kernels' run time on the GPU (the approach of haste and of cuDNN's persistent kernels,
here without writing a kernel).

A call of a loop (:class:`GraphedLoop`):

- Its signature is the loop's non-tensor arguments (the variant, the direction) and each
  tensor's shape, dtype and device. The first call of a signature allocates static buffers
  (one per distinct tensor: an argument passed twice, as the LSTM's ``d_q`` and ``d_pre``
  without layer norm, stays one buffer), runs the loop once on them on a side stream (warm-up:
  cuBLAS workspaces, the allocator) and captures it.
- Every call copies its arguments into the buffers, replays the graph, copies back the buffers
  the loop writes (the gates, the saved activations; found at capture from their autograd
  version counters) and returns copies of the loop's outputs (the next replay overwrites them).
- A loop that cannot be captured (an op the device refuses during capture) runs uncaptured for
  that signature, with one warning; so does a call autograd records (``create_graph=True``).
  The loops index gate blocks by integers, never by a Python list, whose index tensor would be
  copied to the device mid-capture (tests/test_graphed.py checks every op of every loop).
- Up to :data:`MAX_GRAPHS` signatures per loop are kept, the least recently used dropped. Fixed
  shapes (a language model's BPTT window, a fixed batch) capture once; a data set of many
  sequence lengths captures once per length: pad or bucket the lengths.
- The buffers double the loop's activation memory, and the graphs hold their own pools.

minGRU and minLSTM run the parallel scan as on the fused engine: a few kernels over all steps,
with no time loop to capture.

Status: written on a machine without a GPU. Its buffer logic (signatures, aliases, write-back,
copies of the outputs, eviction) is tested on the CPU through a capture that re-runs the loop on
the static buffers (tests/test_graphed.py); the tests on CUDA compare it with the reference loop
and skip without a device. It is not in ``impl="auto"``'s preferences until it has been measured
on a GPU (``benchmarks/gpu_check.sh`` runs those tests and the benchmark in one go).
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..cells import GRUCell, LSTMCell, MinGRUCell, MinLSTMCell, MUTCell, RNNCell
from .fused import elman, gru, lstm, mut, run_with_runner
from .scan import run_scan

MAX_GRAPHS = 8  # captured signatures kept per loop


class CudaGraph:
    """``run()`` warmed up on a side stream, then captured as a CUDA graph: ``outputs`` are
    ``run()``'s results, which every :meth:`replay` recomputes in place.

    One capture at a time in the process (CUDA allows no more), on one capture stream per
    device; errors only for this thread's unsafe calls (``thread_local``: a backward loop is
    captured on autograd's worker thread while, say, a data loader's thread works). cuBLAS's
    workspaces are cleared before and after, so that each graph allocates its own in its own
    pool instead of sharing one that a dropped graph would free."""

    _lock = threading.Lock()
    _streams: dict[torch.device, torch.cuda.Stream] = {}

    def __init__(self, run: Callable[[], Any], device: torch.device) -> None:
        clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: None)
        with CudaGraph._lock, torch.cuda.device(device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                run()
            torch.cuda.current_stream().wait_stream(side)
            stream = CudaGraph._streams.setdefault(device, torch.cuda.Stream())
            self.graph = torch.cuda.CUDAGraph()
            clear()
            try:
                with torch.cuda.graph(self.graph, stream=stream, capture_error_mode="thread_local"):
                    self.outputs = run()
            finally:
                clear()

    def replay(self) -> None:
        self.graph.replay()


# device type -> how a loop is captured there (called with the loop and the device); the engine
# runs on these device types only
CAPTURES: dict[str, Callable[[Callable[[], Any], torch.device], Any]] = {"cuda": CudaGraph}


@dataclass(frozen=True)
class _Node:
    """A tuple, list or named tuple of the arguments, with its tensors taken out."""

    kind: type
    children: tuple[Any, ...]


class _Tensor:
    """Where a tensor was in the arguments."""


_TENSOR = _Tensor()


def _flatten(value: Any, tensors: list[Tensor]) -> Any:
    """``value``'s structure with each tensor replaced by ``_TENSOR`` (appended to ``tensors``)."""
    if isinstance(value, Tensor):
        tensors.append(value)
        return _TENSOR
    if isinstance(value, (tuple, list)):
        return _Node(type(value), tuple(_flatten(v, tensors) for v in value))
    return value  # a constant: a flag, a variant's spec, None


def _rebuild(structure: Any, tensors: Any) -> Any:
    """The inverse of :func:`_flatten`, drawing the tensors from the iterator ``tensors``."""
    if structure is _TENSOR:
        return next(tensors)
    if isinstance(structure, _Node):
        items = [_rebuild(s, tensors) for s in structure.children]
        if hasattr(structure.kind, "_fields"):  # a named tuple
            return structure.kind(*items)
        return structure.kind(items)
    return structure


class _Capture:
    """One signature's static buffers, its graph and which buffers the loop writes."""

    def __init__(self, fn: Callable[..., Any], structure: Any, slots: Sequence[int], tensors: list[Tensor]):
        # not inference tensors, even under torch.inference_mode(): their version counters tell
        # which buffers the loop writes (inference_mode(False) turns grad mode on: off again)
        with torch.inference_mode(False), torch.no_grad():
            self.static = [torch.empty_like(t, memory_format=torch.contiguous_format) for t in tensors]
            for s, t in zip(self.static, tensors, strict=True):
                s.copy_(t)

            def run() -> Any:
                return fn(*_rebuild(structure, iter([self.static[i] for i in slots])))

            before = [s._version for s in self.static]
            device = tensors[0].device
            self.graph = CAPTURES[device.type](run, device)
            self.written = [i for i, s in enumerate(self.static) if s._version != before[i]]
        self.outputs = self.graph.outputs


class GraphedLoop:
    """A time loop ``fn(*args)`` (a fused engine ``STEPS`` function: it fills buffers passed in
    and returns tensors) run as a captured graph, one per signature; see the module docstring.

    Where a signature cannot be captured, it runs as plain ``fn`` (with a warning, once per
    signature); so does a call that autograd records (a double backward, ``create_graph=True``)."""

    def __init__(self, fn: Callable[..., Any], max_graphs: int = MAX_GRAPHS) -> None:
        self.fn, self.max_graphs = fn, max_graphs
        self.graphs: OrderedDict[Any, _Capture] = OrderedDict()
        self.failed: set[Any] = set()
        self.captures = 0  # graphs captured so far (a signature seen again is replayed)
        self._lock = threading.Lock()  # the static buffers are shared by every caller

    def __call__(self, *args: Any) -> Any:
        tensors: list[Tensor] = []
        structure = _flatten(args, tensors)
        unique = list({id(t): t for t in tensors}.values())
        if not unique or _overlap(unique):  # views of one another: not capturable as copies
            return self.fn(*args)
        if torch.is_grad_enabled() and any(t.requires_grad for t in unique):
            return self.fn(*args)
        distinct = {id(t): i for i, t in enumerate(unique)}
        slots = [distinct[id(t)] for t in tensors]
        device = unique[0].device
        key = (
            structure,
            tuple(slots),
            tuple((t.shape, t.dtype, t.device) for t in unique),
            torch.get_float32_matmul_precision(),  # TF32 or not: fixed in the captured GEMMs
        )
        if key in self.failed:
            return self.fn(*args)
        with self._lock, torch.no_grad(), torch.autocast(device.type, enabled=False):
            entry = self.graphs.get(key)
            if entry is None:
                try:
                    entry = _Capture(self.fn, structure, slots, unique)
                except Exception as err:  # an op the device cannot capture: run this one plainly
                    self.failed.add(key)
                    name = getattr(self.fn, "__qualname__", repr(self.fn))
                    warnings.warn(
                        f"unrolled: the graphed engine could not capture {name} "
                        f"({type(err).__name__}: {err}); running it uncaptured",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    return self.fn(*args)
                self.graphs[key] = entry
                self.captures += 1
                while len(self.graphs) > self.max_graphs:
                    self.graphs.popitem(last=False)
            else:
                self.graphs.move_to_end(key)
            for s, t in zip(entry.static, unique, strict=True):  # the warm-up wrote into them
                s.copy_(t)
            entry.graph.replay()
            for i in entry.written:
                unique[i].copy_(entry.static[i])
            outputs: list[Tensor] = []
            structure_out = _flatten(entry.outputs, outputs)
            return _rebuild(structure_out, iter([t.clone() for t in outputs]))


def _overlap(tensors: list[Tensor]) -> bool:
    """Whether two of these distinct tensors share memory (a view and its base, two views)."""
    seen: set[int] = set()
    for t in tensors:
        if t.numel() == 0:
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:
            return True
        seen.add(ptr)
    return False


def _graphed(steps: Any) -> Any:
    return type(steps)(forward=GraphedLoop(steps.forward), backward=GraphedLoop(steps.backward))


# each cell class -> (its fused runner, the graphed loops it runs with; None: no loop to capture)
RUNNERS: dict[type[nn.Module], tuple[Any, Any]] = {
    RNNCell: (elman.run_elman, _graphed(elman.STEPS)),
    LSTMCell: (lstm.run_lstm, _graphed(lstm.STEPS)),
    GRUCell: (gru.run_gru, _graphed(gru.STEPS)),
    MUTCell: (mut.run_mut, _graphed(mut.STEPS)),
    MinGRUCell: (run_scan, None),
    MinLSTMCell: (run_scan, None),
}


def supports(cells: Sequence[nn.Module]) -> bool:
    """Whether the graphed engine runs this stack: every cell of the fused engine's families."""
    return all(type(c) in RUNNERS for c in cells)


def run_graphed(
    cell: nn.Module, x: Tensor, state: Any, *, reverse: bool = False, lengths: Tensor | None = None
) -> tuple[Tensor, Any]:
    """Same contract as :func:`unrolled.engines.run_reference`, with the time loops replayed
    from captured graphs (CUDA tensors only)."""
    if type(cell) not in RUNNERS:
        raise ValueError(f"the graphed engine does not run {cell!r}: use impl='auto' or 'reference'")
    if x.device.type not in CAPTURES:
        raise ValueError(
            f"the graphed engine captures CUDA graphs, got a tensor on {x.device}: "
            "use impl='auto' (on a CPU: 'compiled' or 'fused')"
        )
    runner, steps = RUNNERS[type(cell)]
    options = {} if steps is None else {"steps": steps}
    return run_with_runner(runner, cell, x, state, reverse, lengths, **options)
