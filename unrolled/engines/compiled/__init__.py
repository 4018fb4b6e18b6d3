"""The compiled engine: the fused engine's time loops in C++, built on first use.

The fused engine (:mod:`unrolled.engines.fused`) does the work over all steps at once (the input
projection, the weight gradients) in a few large GEMMs, but its time loop is Python: 15-30 small
operations per step, each with several microseconds of dispatch, which dominates at batch 1 and
costs a fifth of the time at batch 32. This engine runs the same autograd Functions with the two
loops (forward, and the hand-derived BPTT backward) in C++ (``csrc/``): per step one recurrent
GEMM and the gate math as raw loops over the rows, vectorised by the compiler. Same equations,
same saved tensors, same random masks; only the loop changed. minGRU and minLSTM have no
recurrent GEMM: their coefficients and the linear recurrence are one sequential C++ pass
(``csrc/scan.cpp``), which on a CPU beats the parallel scan of the fused engine.

The per-step GEMM (``csrc/gemm.cpp``) runs through ATen's GEMM (MKL), oneDNN's matmul (the
library of torch's own fused RNN kernel), oneDNN's inner product on the weights packed once per
loop, MKL's GEMM on the weights packed once per loop (``cblas_sgemm_pack``/``_compute``, MKL's
interface for a product repeated with one matrix; ATen's call repacks the weights every step) or,
for up to 8 rows, plain vectorised loops: whichever the first loop of each shape
measured fastest on this machine (:func:`gemm_choices` lists the choices;
:func:`set_gemm_kernel` forces one). On the AMD CPU measured here MKL runs its AVX2 kernel and
oneDNN its AVX-512 one, 20-30% faster at a batch of 32-64 for weights past a megabyte, packed
7-37% faster again; at batch 1 the loops beat both libraries 2-3x (a matrix-vector product,
bound by reading the weights, where a library's set-up costs more than the arithmetic). The
products over all steps (input projection, weight gradients) stay with ATen: routed through the
same choice they measured no faster in training, within the runs' noise.

Measured on a 2-core CPU (benchmarks/results/speed-2026-11-30e/f/g-cpu2.json, three runs of
the whole table, g with the packed kernel; runs of the same day vary by 10-25%), forward +
backward against torch.nn.LSTM of the same size: at (B,T,I,H) = (1,200,128,128) every cell
trains in 0.16-1.70x (FGR 1.72-1.89x) and infers in 0.15-2.10x (FGR 2.09-2.26x), where the
fused engine's Python loop took 5.5-11.6x to train the gated cells (FGR 15x); at
(32,100,256,256) every cell but FGR trains in 0.21-1.16x (the LSTM with layer norm: 1.10-1.16,
and 1.32 in a run whose every round ran slower than the one before) and at (64,100,512,512) in
0.20-1.16x; FGR in 1.82-2.17x and 2.02-2.12x. FGR's gate-to-gate matrix R is (3H, 3H): with I = H a training
step does 47 H^2 multiply-adds per row where the LSTM does 20 H^2, a floor of 2.35x for GEMMs
of equal speed; it is under that only because its per-step GEMMs run on oneDNN at 190-210
GFLOP/s, near this CPU's peak. minGRU trains 15-16x faster than its step-by-step loop at
T = 4096 (the parallel scan: 3.8-4.6x).

Inference (nothing to differentiate: grad mode off, or nothing that requires grad) keeps nothing
for a backward pass that will not come: the buffers of all steps are scratch reused from call to
call (:mod:`unrolled.engines.fused.arena`: the page faults of fresh memory were about a tenth of a
call), the input projection is written into them, and the LSTM's summed bias joins each step's
rows in the pointwise loop instead of a pass over the projection. Against torch's LSTM under
``torch.no_grad()`` (oneDNN's fused RNN kernel: weights packed once per call, the pointwise math
inside its GEMM) every LSTM of Greff et al.'s variants infers in 0.80-1.23x its time at the three
sizes (speed-2026-12-06a/b/c; 1.2-1.6x before), the LSTM with layer norm in 1.24-1.39x (its two
norms per step are work torch's LSTM does not do) and FGR in 2.0-2.4x (the floor above).

Why C++ and not ``torch.compile`` of the step: measured here (benchmarks/torch_compile_step.py),
the compiled pointwise step of the peephole LSTM alone takes 17 us a call at batch 1 (eager:
27 us), 3.4 ms for 200 steps, which is 2.8x torch's whole LSTM forward before any GEMM, Python
loop or backward, after an 18 s first compile per variant; this engine runs that LSTM's whole
forward in 1.3-1.9 ms (the benchmark's lstm-vanilla/compiled, inference).

The C++ is built with :func:`torch.utils.cpp_extension.load` on first use (about a minute on
two cores) and cached under torch's extension directory (``TORCH_EXTENSIONS_DIR``), so later
processes load it in a fraction of a second. Where it cannot be built (no C++ compiler),
:func:`available` is False with the reason in :func:`unavailable_reason`; ``impl="auto"`` then
falls back to the fused engine with a one-time note, and ``impl="compiled"`` raises.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ...cells import GRUCell, LSTMCell, MinGRUCell, MinLSTMCell, MUTCell, RNNCell
from ..fused import run_with_runner
from ..fused.elman import run_elman
from ..fused.gru import run_gru
from ..fused.lstm import run_lstm
from ..fused.mut import run_mut

CSRC = Path(__file__).with_name("csrc")


class _MinimalRecurrence(torch.autograd.Function):
    """minGRU/minLSTM from their pre-activations ``k`` (T, B, G*H): ``h_t = a_t h_{t-1} + b_t``
    with ``a``, ``b`` computed from ``k`` in the same C++ pass (``csrc/scan.cpp``: the equations
    and their backward); returns ``(out, h_n)`` as the reference loop does."""

    @staticmethod
    def forward(
        ctx: Any, module: ModuleType, k: Tensor, h0: Tensor, mask: Tensor | None, gru: bool, reverse: bool
    ) -> tuple[Tensor, Tensor]:
        out, h_n, h_in = module.min_forward(k, h0, mask, gru, reverse)
        ctx.save_for_backward(k, mask, h_in)
        ctx.module, ctx.gru, ctx.reverse = module, gru, reverse
        return out, h_n

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_out: Tensor, d_hn: Tensor) -> tuple[Tensor | None, ...]:
        k, mask, h_in = ctx.saved_tensors
        dk, dh0 = ctx.module.min_backward(k, mask, h_in, d_out, d_hn, ctx.gru, ctx.reverse)
        return None, dk, dh0, None, None, None


def _run_minimal(
    cell: nn.Module, x: Tensor, state: Tensor, reverse: bool, mask: Tensor | None, steps: ModuleType
) -> tuple[Tensor, Tensor]:
    """minGRU and minLSTM on the compiled engine: one GEMM for every step's pre-activations,
    then the recurrence as one sequential pass (on a CPU faster than the parallel scan of
    :mod:`unrolled.engines.scan`, which the fused engine runs; see ``csrc/scan.cpp``)."""
    k = F.linear(x, cell.weight_ih, cell.bias_ih)  # (T, B, G*H)
    return _MinimalRecurrence.apply(steps, k, state, mask, isinstance(cell, MinGRUCell), reverse)


# The C++ loops behind the fused engine's step interface: each family's ``STEPS`` (forward,
# backward) take the same arguments as its Python loops (the variant, the direction, the mask,
# the noise and the tensors); these adapters unpack what C++ takes as plain values.
def _lstm_args(spec: Any, reverse: bool) -> tuple[Any, ...]:
    """An LSTM variant as plain values: the column block of each gate i, f, g, o and the row of
    each peephole i, f, o (-1 where absent), the sigmoid gates' columns, the flags, the direction."""
    col = {name: j for j, name in enumerate(spec.gates)}
    peep = {name: j for j, name in enumerate(spec.sigmoid)} if spec.peephole else {}
    return (
        [col.get(g, -1) for g in "ifgo"],
        [peep.get(g, -1) for g in "ifo"],
        [col[s] for s in spec.sigmoid],
        spec.coupled,
        spec.input_activation,
        spec.output_activation,
        reverse,
    )


def _zones(noise: Any, parts: int) -> tuple[Tensor | None, ...]:
    return noise.zoneout or (None,) * parts


def _steps(module: ModuleType) -> dict[type[nn.Module], tuple[Any, Any]]:
    """Each supported cell class -> (its fused runner, the C++ steps it runs with)."""
    m = module
    lstm = SimpleNamespace(
        forward=lambda spec, reverse, mask, noise, acts, h0, c0, a0, *rest: m.lstm_forward(
            acts,
            h0,
            c0,
            a0,
            *rest[:7],
            mask,
            noise.dropout,
            *_zones(noise, 2),
            *rest[7:16],
            rest[16] if len(rest) > 16 else None,
            *_lstm_args(spec, reverse),
        ),
        backward=lambda spec, reverse, mask, noise, *rest: m.lstm_backward(
            *rest[:13], mask, noise.dropout, *_zones(noise, 2), *rest[13:], *_lstm_args(spec, reverse)
        ),
        adds_bias=True,  # forward takes the summed bias last (None: already in acts)
    )
    gru = SimpleNamespace(
        forward=lambda reset_after, reverse, mask, noise, *rest: m.gru_forward(
            *rest[:5], mask, noise.dropout, *_zones(noise, 1), *rest[5:], reset_after, reverse
        )[0],
        backward=lambda reset_after, reverse, mask, noise, *rest: tuple(
            m.gru_backward(*rest[:7], mask, noise.dropout, *_zones(noise, 1), *rest[7:], reset_after, reverse)
        ),
    )
    elman = SimpleNamespace(
        forward=lambda relu, reverse, mask, hs, h0, w_hh, h_in, out: m.elman_forward(
            hs, h0, w_hh, mask, h_in, out, relu, reverse
        )[0],
        backward=lambda relu, reverse, mask, hs, d_out, d_h, w_hh, d_pre: m.elman_backward(
            hs, d_out, d_h, w_hh, mask, d_pre, relu, reverse
        )[0],
    )
    mut = SimpleNamespace(
        forward=lambda arch, reverse, mask, acts, h0, w_hh, h_in, rh_in, th_in, out: m.mut_forward(
            acts, h0, w_hh, mask, h_in, rh_in, th_in, out, arch, reverse
        )[0],
        backward=lambda arch, reverse, mask, acts, d_out, d_h, h_in, th_in, w_hh, d_acts: m.mut_backward(
            acts, d_out, d_h, h_in, th_in, w_hh, mask, d_acts, arch, reverse
        )[0],
    )
    return {
        RNNCell: (run_elman, elman),
        LSTMCell: (run_lstm, lstm),
        GRUCell: (run_gru, gru),
        MUTCell: (run_mut, mut),
        MinGRUCell: (_run_minimal, m),  # the recurrence h = a h + b as one sequential C++ pass
        MinLSTMCell: (_run_minimal, m),
    }


SOURCES = ("bindings.cpp", "gemm.cpp", "lstm.cpp", "gru.cpp", "elman.cpp", "scan.cpp")
SUPPORTED = (RNNCell, LSTMCell, GRUCell, MUTCell, MinGRUCell, MinLSTMCell)

_module: ModuleType | None = None
_choice_file: Path | None = None
_runners: dict[type[nn.Module], tuple[Any, Any]] = {}
_error: str | None = None
_noted = False


def _flags() -> list[str]:
    """-O3, and AVX2/FMA where the CPU has them (the build is cached per flag set)."""
    # no FP traps: lets the float-to-int of exp_approx vectorise; OpenMP: torch's thread pool
    flags = ["-O3", "-fno-trapping-math", "-fopenmp"]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


def load(verbose: bool = False) -> ModuleType | None:
    """The compiled loops, built on the first call of the process (cached across processes);
    None if they cannot be built (:func:`unavailable_reason` says why)."""
    global _module, _error, _choice_file
    if _module is not None or _error is not None:
        return _module
    from torch.utils import cpp_extension

    flags = _flags()
    name = "unrolled_loops_" + ("avx2" if "-mavx2" in flags else "base")
    try:
        built = Path(cpp_extension._get_build_directory(name, verbose=False), f"{name}.so")
        if verbose or not built.exists():
            print("unrolled: building the compiled engine (once; about a minute)", file=sys.stderr)
        with _build_lock(built.parent), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the build's own notices (compiler version, ABI)
            _module = cpp_extension.load(
                name,
                [str(CSRC / s) for s in SOURCES],
                extra_cflags=flags,
                extra_ldflags=["-fopenmp"],
                extra_include_paths=[str(CSRC)],
                verbose=verbose,
            )
        _runners.update(_steps(_module))
        _choice_file = built.with_name(f"gemm_choices-torch{torch.__version__}.txt")
        _module.set_gemm_choice_file(str(_choice_file))
    except Exception as err:  # no compiler, a failed build: the fused engine remains
        _error = f"{type(err).__name__}: {_first_error(str(err))}"
    forced = os.environ.get("UNROLLED_GEMM")
    if _module is not None and forced:
        if forced not in GEMM_KERNELS:
            raise ValueError(f"UNROLLED_GEMM={forced!r}: expected one of {', '.join(GEMM_KERNELS)}")
        _module.set_gemm_backend(GEMM_KERNELS.index(forced))
    return _module


@contextlib.contextmanager
def _build_lock(directory: Path) -> Iterator[None]:
    """One build at a time, by ``flock``, which the kernel drops when its holder dies however it
    dies. torch's own lock (a file that a waiting process polls for) outlives a build that was
    killed (Ctrl-C, ``kill -9``, a closed pipe) and would make every later process wait forever;
    under the flock no other process of ours is building, so such a file is stale: removed."""
    try:
        import fcntl
    except ImportError:  # not POSIX: torch's lock alone
        yield
        return
    with open(directory / ".unrolled-build.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            (directory / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _first_error(text: str) -> str:
    """The compiler's first error line in a build's output (else its last line), trimmed."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    line = errors[0] if errors else (lines[-1] if lines else "no message")
    return line if len(line) <= 300 else line[:297] + "..."


def available() -> bool:
    """Whether the compiled loops are (or can be) built on this machine."""
    return load() is not None


def unavailable_reason() -> str | None:
    load()
    return _error


def note_fallback() -> None:
    """Say once per process that ``auto`` runs the fused engine because the build failed."""
    global _noted
    if not _noted and _error is not None:
        _noted = True
        print(
            f"unrolled: the compiled engine could not be built ({_error}); "
            "running the Python fused engine instead",
            file=sys.stderr,
        )


GEMM_KERNELS = ("auto", "aten", "onednn", "rows", "packed", "mkl-packed")


def set_gemm_kernel(name: str) -> str:
    """Run the compiled loops' per-step GEMMs (float32) through one kernel, and return the
    previous setting. ``"auto"`` (the default) measures, at the first loop of each shape, ATen's
    GEMM (MKL on x86), oneDNN's matmul, oneDNN on weights packed once per loop, MKL on weights
    packed once per loop (``"mkl-packed"``, where torch carries MKL; elsewhere forcing it runs
    ATen's) and, for up to 8 rows, plain vectorised loops, and keeps the fastest
    (``csrc/gemm.cpp`` says why); the others force one kernel for every shape, for tests and
    measurement. Other dtypes always use ATen's.

    The kernels round differently (in float32's last bits). ``"auto"`` measures a shape once per
    machine and keeps the choice in :func:`gemm_choice_file`, so every process computes with the
    same kernels; the environment variable ``UNROLLED_GEMM`` (read when the engine loads) forces
    one kernel for a process."""
    if name not in GEMM_KERNELS:
        raise ValueError(f"unknown GEMM kernel {name!r}: expected one of {', '.join(GEMM_KERNELS)}")
    module = load()
    if module is None:
        raise RuntimeError(f"the compiled engine could not be built ({_error})")
    return GEMM_KERNELS[module.set_gemm_backend(GEMM_KERNELS.index(name))]


def gemm_choices() -> list[dict[str, Any]]:
    """The kernel ``"auto"`` chose for each GEMM shape this process knows (measured here, or
    read from :func:`gemm_choice_file`): ``m, k, n`` (out (m, n) = a (m, k) b (k, n)), whether
    a and b were transposed, whether the product was added to the output, the thread count,
    whether it was a loop of many steps (where packing the weights once pays), and the kernel."""
    module = load()
    if module is None:
        return []
    keys = ("m", "k", "n", "a_transposed", "b_transposed", "accumulate", "threads", "loop", "kernel")
    rows = [dict(zip(keys, row, strict=True)) for row in module.gemm_choices()]
    for row in rows:
        row["kernel"] = GEMM_KERNELS[row["kernel"]]
    return rows


def gemm_choice_file() -> Path | None:
    """Where the choices of ``"auto"`` are kept for every process of this machine (next to the
    built module, one per torch version): a process that meets a shape first measures it under
    the file's lock and appends its choice, and the others read it, so that they all compute
    with the same kernels (and a resumed run matches an unbroken one bit for bit)."""
    load()
    return _choice_file


def onednn_error() -> str | None:
    """Why oneDNN refused to run (after which the loops never try that kernel again), or None."""
    module = load()
    return (module.onednn_error() or None) if module is not None else None


def compiled_supports(cell: nn.Module) -> bool:
    """Whether the compiled engine has a loop for ``cell``'s family: every cell of the fused
    engine (for minGRU and minLSTM the linear recurrence, run sequentially instead of scanned)."""
    return type(cell) in SUPPORTED


def supports(cells: Sequence[nn.Module]) -> bool:
    """Whether the compiled engine runs this stack: every cell of a supported family, and the
    loops built. When only the build is missing, say once that the fused engine runs instead."""
    if not all(compiled_supports(c) for c in cells):
        return False
    if available():
        return True
    note_fallback()
    return False


def run_compiled(
    cell: nn.Module, x: Tensor, state: Any, *, reverse: bool = False, lengths: Tensor | None = None
) -> tuple[Tensor, Any]:
    """Same contract as :func:`unrolled.engines.run_reference`, on the compiled loops."""
    module = load()
    if module is None:
        raise RuntimeError(
            f"the compiled engine could not be built ({_error}): install a C++ compiler, or use impl='fused'"
        )
    if not compiled_supports(cell):
        raise ValueError(f"the compiled engine does not run {cell!r}: use impl='auto' or 'fused'")
    if x.device.type != "cpu":
        raise ValueError(
            f"the compiled engine runs on the CPU, got a tensor on {x.device}: use impl='auto' or 'fused'"
        )
    runner, steps = _runners[type(cell)]
    return run_with_runner(runner, cell, x, state, reverse, lengths, steps=steps)
