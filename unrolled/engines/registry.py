"""Which engine runs a stack of cells: the engines, and the one table of what ``impl="auto"`` prefers.

An engine declares what it runs (``supports(cells)``) and how: ``run_cell`` (one cell over the
whole sequence, as the reference loop and the fused kernels do) or ``run_stack`` (every layer and
direction at once, as torch's kernels do). ``impl="auto"`` takes the first engine in the
preference list of the layer's device type and mode (training; inference under
``torch.no_grad()`` over a sequence; or inference one step per call, as generation runs) that
supports the cells; a preference may be narrowed to some cell classes.

The preferences, and the measurements behind them (ratios of forward+backward time to
torch.nn.LSTM of the same size; ``unrolled bench speed``, on a 2-core CPU, at (B,T,I,H) =
(32,100,256,256) / (64,100,512,512) / (1,200,128,128): benchmarks/results/speed-2026-12-06a/b/c,
and 2026-11-30e/f/g before the compiled engine's inference path; runs of a day vary by 10-25%):

- CPU, training: compiled for every cell of the package, torch's LSTM included. With its
  per-step GEMM on MKL's packed weights the compiled LSTM trains in 0.91-0.93 / 0.83-0.90 /
  0.90-0.93 of torch.nn.LSTM's time, where torch's kernel run on our cells (native) takes
  0.99-1.03 / 0.97-1.04 / 1.04-1.11: faster at every size in each of three runs (before, 0.84-1.00:
  inside the runs' spread, and native was preferred). The other cells, e.g. the GRU, 0.61-0.64 /
  0.61-0.66 / 0.72-0.74, against torch's GRU kernel 1.00-1.14 / 0.77-0.89 / 7.4-8.7 and the
  fused engine's 0.95 / 0.84 / 7.46 (speed-2026-11-30b). Where compiled cannot be built: native
  for torch's LSTM, fused for the rest, native for the cells only torch runs, then the
  reference loop (custom cells).
- CPU, inference over a sequence: native for torch's LSTM (oneDNN's fused RNN kernel, its
  pointwise math inside the GEMM: the compiled LSTM, with its inference path, infers in
  1.14-1.19 / 1.05-1.13 / 1.08-1.17x its time, 1.49-1.58 / 1.19-1.27 / 1.10-1.22x before), then
  compiled (the GRU in 0.70-0.78 / 0.71-0.79 / 0.23-0.26 of torch's GRU kernel's time, the Elman
  RNN in 0.85-0.88 / 0.89-0.93 / 0.23-0.28 of torch's RNN's), then as in training.
- CPU, one step per call in inference (generation: ``unrolled sample``, greedy and beam
  decoding): compiled for the LSTM family, where torch's oneDNN kernel sets itself up at every
  call (4,765-5,433 / 2,048-2,205 / 6,389-6,815 steps/s against 2,686-3,122 / 1,052-1,106 /
  5,264-6,326 native), then native where torch has the cells (its GRU: 10,999-13,996 /
  3,644-4,003 / 15,854-19,226 steps/s against 8,490-9,722 / 2,948-3,160 / 10,699-11,125
  compiled), then as in inference.
- CPU, inference of the Mogrifier LSTM (over a sequence or one step per call): the reference
  loop. The fused engine, which trains it faster (3.8-3.9x torch.nn.LSTM's time against
  4.7-5.2x at (32,100,256,256)), writes every round's products into the buffers its backward
  would read, and infers slower: 6.0-6.8x against 5.1-5.5x, and at (1,200,128,128) 31.5x against
  27.0x and 2,500 generation steps/s against 3,800 (benchmarks/results/speed-mogrifier-2026-12-06
  and -07-cpu2.json).
- CPU, under ``torch.autocast`` (``--precision bf16``), training or inference: native for
  torch's LSTM, whose oneDNN kernel computes in bf16 on the CPU's matrix units, where the
  compiled and fused engines compute in fp32 inside autocast. The char-LM's training step at
  batch 64, length 100 (``benchmarks/charlm_speed.py``; results/charlm-speed-{bf16,fp32}-h{256,
  512}-2026-12-06-cpu2.json): a 2x256 LSTM trains at 43,000 chars/s native in bf16 against
  23,100 compiled in fp32, 2x512 at 18,100 against 8,100. The GRU, which torch's kernel does
  not speed up as much in bf16, keeps the training order (compiled: 28,400 chars/s in bf16,
  30,900 in fp32 at 2x256).
- CUDA (and any other accelerator), training and inference: native (cuDNN) wherever torch has
  the cells, then fused, then reference. Measured on an H200 (torch 2.11): at (B,T,I,H) =
  (32,100,256,256) / (64,100,512,512) / (256,200,1024,1024) / (1,200,128,128) the GRU takes
  5.3 / 6.5 / 16 / 2.1 ms native against 41 / 47 / 98 / 68 ms fused (6-69x slower: kernel
  launches of a Python loop), the Elman RNN 1.8 / 5.6 / 10 / 1.6 ms native against
  13.8 / 14.8 / 29 / 18.8 ms fused, and the LSTM 0.99-1.07x cuDNN native. The graphed engine
  (the fused loops replayed from CUDA graphs) is not listed: it has not been measured on a GPU
  yet (``benchmarks/gpu_check.sh``).

An engine that runs on some device types only (compiled: the CPU; graphed: CUDA) says so in
``devices``; ``auto`` passes over it elsewhere, and so does ``bench speed``.

Adding an engine: a module with its functions, and one ``register(Engine(...))`` call in
``unrolled/engines/__init__.py``; adding it to ``PREFERENCES`` makes ``auto`` use it.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

RunCell = Callable[..., Any]  # (cell, x (T,B,I), state, *, reverse, lengths) -> (out, state)
RunStack = Callable[..., Any]  # (cells, x, hx, *, num_layers, bidirectional, dropout, training, lengths)


@dataclass(frozen=True)
class Engine:
    name: str
    supports: Callable[[Sequence[nn.Module]], bool]  # can it run this stack of cells?
    run_cell: RunCell | None = None
    run_stack: RunStack | None = None
    why_not: str = ""  # the error when impl=<name> is asked for cells it does not run
    devices: Container[str] | None = None  # the device types it runs on (None: any)

    def runs_on(self, device_type: str) -> bool:
        return self.devices is None or device_type in self.devices


ENGINES: dict[str, Engine] = {}


def register(engine: Engine) -> None:
    if (engine.run_cell is None) == (engine.run_stack is None):
        raise ValueError(f"engine {engine.name!r} needs exactly one of run_cell and run_stack")
    ENGINES[engine.name] = engine


# device type -> mode -> (engine, cell classes it is preferred for, or None for any), in order
Preference = tuple[tuple[str, tuple[str, ...] | None], ...]
_ACCELERATOR: Preference = (("native", None), ("fused", None), ("reference", None))
PREFERENCES: dict[str, dict[str, Preference]] = {
    "cpu": {
        "train": (
            ("compiled", None),
            ("native", ("LSTMCell",)),
            ("fused", None),
            ("native", None),
            ("reference", None),
        ),
        "infer": (
            ("native", ("LSTMCell",)),
            ("compiled", None),
            ("native", None),
            ("reference", ("MogrifierLSTMCell",)),
            ("fused", None),
            ("reference", None),
        ),
        "step": (
            ("compiled", ("LSTMCell",)),
            ("native", None),
            ("compiled", None),
            ("reference", ("MogrifierLSTMCell",)),
            ("fused", None),
            ("reference", None),
        ),
        "autocast": (
            ("native", ("LSTMCell",)),
            ("compiled", None),
            ("fused", None),
            ("native", None),
            ("reference", None),
        ),
    },
    "cuda": {"train": _ACCELERATOR, "infer": _ACCELERATOR, "step": _ACCELERATOR, "autocast": _ACCELERATOR},
}


def choose(
    cells: Sequence[nn.Module], device_type: str, training: bool, step: bool = False, autocast: bool = False
) -> str:
    """The engine ``impl="auto"`` runs ``cells`` with on a device of this type, in training or
    in inference (``step``: one step per call, as generation runs), or, whichever of those, under
    ``torch.autocast`` on that device (``autocast``)."""
    table = PREFERENCES.get(device_type, PREFERENCES["cuda"])  # other accelerators: as CUDA
    mode = "autocast" if autocast else "train" if training else "step" if step else "infer"
    for name, classes in table[mode]:
        if classes is not None and any(type(c).__name__ not in classes for c in cells):
            continue
        if ENGINES[name].runs_on(device_type) and ENGINES[name].supports(cells):
            return name
    raise AssertionError("the reference engine runs every cell")  # it is last in every list
