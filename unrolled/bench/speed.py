"""``unrolled bench speed``: every cell under every engine that runs it, against torch.nn.LSTM.

For each size (B, T, I, H) every candidate layer (torch.nn.LSTM/GRU, and each unrolled cell
under each engine that supports it) is timed for

- ``train``: forward + backward of ``out.sum()`` from a fresh zero state;
- ``infer``: forward under ``torch.no_grad()``;
- ``generate``: B = 1, one step per call with the state carried (steps per second);

in rounds, each round timing every candidate once in turn (interleaved, so that a slow spell
of the machine hits all of them alike); the median over rounds is reported, with its ratio to
torch.nn.LSTM of the same size (every round's time is kept too, ``train_rounds_ms`` and
``infer_rounds_ms``, for the spread). ``activation_bytes`` is the memory a training step keeps for
backward at T = ``memory_steps`` and B = min(B, ``MEMORY_BATCH``) (the bytes of every tensor
saved by autograd, counted through ``torch.autograd.graph.saved_tensors_hooks``), which shows
whether memory grows linearly in T.

:func:`scan_vs_loop` adds one long-sequence comparison (T = 4096): minGRU's parallel scan, and
on a CPU the compiled engine's sequential pass, against its own step-by-step loop (key
``scan_vs_loop`` of the JSON).
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..cells import GRUCell, LSTMCell, MinGRUCell, MinLSTMCell, MogrifierLSTMCell, MUTCell, RNNCell
from ..cells.lstm import VARIANTS
from ..engines import ENGINES as REGISTERED
from ..engines import compiled
from ..layers import Recurrent
from .timing import timed

FULL_SIZES = ((32, 100, 256, 256), (64, 100, 512, 512), (1, 200, 128, 128))
SMOKE_SIZES = ((2, 5, 8, 8),)
SCAN_SMOKE = {"T": 16, "B": 2, "I": 8, "H": 8}  # scan_vs_loop's arguments under --smoke

# name -> cell factory taking (input_size, hidden_size)
CELLS: dict[str, Callable[[int, int], nn.Module]] = {
    "rnn": lambda i, h: RNNCell(i, h),
    "lstm": lambda i, h: LSTMCell(i, h),
    "gru": lambda i, h: GRUCell(i, h),
    "gru-reset-before": lambda i, h: GRUCell(i, h, reset_after=False),
    **{
        f"lstm-{v}": functools.partial(lambda i, h, v: LSTMCell(i, h, variant=v), v=v)
        for v in VARIANTS
        if v != "NP"
    },
    "lstm-layer-norm": lambda i, h: LSTMCell(i, h, layer_norm=True),
    "gru-layer-norm": lambda i, h: GRUCell(i, h, layer_norm=True),
    **{f"mut{a}": functools.partial(lambda i, h, a: MUTCell(i, h, arch=a), a=a) for a in (1, 2, 3)},
    "mingru": lambda i, h: MinGRUCell(i, h),  # fused = the parallel scan
    "minlstm": lambda i, h: MinLSTMCell(i, h),
    "mogrifier": lambda i, h: MogrifierLSTMCell(i, h),  # 5 rounds, full matrices, as in the paper
}
# auto: what a layer runs by default on the device
ENGINES = ("auto", "reference", "fused", "compiled", "graphed", "native")  # each where it runs
MEMORY_BATCH = 4


@dataclass
class Result:
    name: str  # "torch.nn.LSTM" or "<cell>/<engine>"
    size: tuple[int, int, int, int]
    train_ms: float = float("nan")
    infer_ms: float = float("nan")
    generate_steps_per_s: float = float("nan")
    train_ratio: float = float("nan")  # to torch.nn.LSTM of the same size
    infer_ratio: float = float("nan")
    activation_bytes: int | None = None
    # every round's time, in round order: the spread behind each median (this VM's runs vary by 10%+)
    train_rounds_ms: list[float] = field(default_factory=list)
    infer_rounds_ms: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def candidates(
    input_size: int, hidden_size: int, device: torch.device | None = None
) -> Iterator[tuple[str, nn.Module]]:
    """torch.nn.LSTM and GRU, then every cell under every engine that supports it, on ``device``."""
    yield "torch.nn.LSTM", nn.LSTM(input_size, hidden_size).to(device)
    yield "torch.nn.GRU", nn.GRU(input_size, hidden_size).to(device)
    device_type = torch.device(device or "cpu").type
    for name, make in CELLS.items():
        for engine in ENGINES:
            if engine != "auto" and not REGISTERED[engine].runs_on(device_type):
                continue  # compiled: CPU only; graphed: CUDA only
            try:
                layer = Recurrent(lambda i, make=make: make(i, hidden_size), input_size, impl=engine)
            except ValueError:
                continue  # this engine does not run this cell
            yield f"{name}/{engine}", layer.to(device)


def _train(layer: nn.Module, x: torch.Tensor) -> None:
    out, _ = layer(x)
    out.sum().backward()


def _infer(layer: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        layer(x)


def _generate(layer: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        state = None
        for t in range(x.size(0)):
            _, state = layer(x[t : t + 1], state)


def activation_bytes(layer: nn.Module, x: torch.Tensor) -> int:
    """Bytes of every tensor autograd saves for backward in one forward pass (storage counted once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = layer(x)
    del out
    return sum(seen.values())


def run_speed(
    sizes: tuple[tuple[int, int, int, int], ...] = FULL_SIZES,
    repeats: int = 5,
    generate_steps: int = 50,
    memory_steps: int = 1000,
    only: Callable[[str], bool] | None = None,
    progress: Callable[[str], None] | None = None,
    on_size: Callable[[list[Result]], None] | None = None,
    device: torch.device | None = None,
) -> list[Result]:
    """Time every candidate at every size on ``device`` (None: the CPU); see the module docstring.
    ``on_size`` receives the results so far after each size (to save them as they come)."""
    torch.manual_seed(0)
    results: list[Result] = []
    for size in sizes:
        B, T, I, H = size
        layers = [
            (n, m) for n, m in candidates(I, H, device) if only is None or only(n) or n == "torch.nn.LSTM"
        ]
        x = torch.randn(T, B, I, device=device)
        x_gen = torch.randn(generate_steps, 1, I, device=device)
        rows = {n: Result(n, size) for n, _ in layers}
        times: dict[str, dict[str, list[float]]] = {
            n: {"train": [], "infer": [], "gen": []} for n, _ in layers
        }
        for _, layer in layers:  # warm-up, and a first check that each one runs
            _train(layer, x)
            _infer(layer, x)
        for r in range(repeats):
            if progress:
                progress(f"size {size}: round {r + 1}/{repeats}")
            for name, layer in layers:
                layer.zero_grad(set_to_none=True)
                times[name]["train"].append(timed(_train, layer, x))
                times[name]["infer"].append(timed(_infer, layer, x))
                times[name]["gen"].append(timed(_generate, layer, x_gen))
        for name, _ in layers:
            row = rows[name]
            row.train_rounds_ms = [t * 1e3 for t in times[name]["train"]]
            row.infer_rounds_ms = [t * 1e3 for t in times[name]["infer"]]
            row.train_ms = statistics.median(row.train_rounds_ms)
            row.infer_ms = statistics.median(row.infer_rounds_ms)
            row.generate_steps_per_s = generate_steps / statistics.median(times[name]["gen"])
        base = rows["torch.nn.LSTM"]
        for name, layer in layers:
            row = rows[name]
            row.train_ratio = row.train_ms / base.train_ms
            row.infer_ratio = row.infer_ms / base.infer_ms
            x_mem = torch.randn(memory_steps, min(B, MEMORY_BATCH), I, device=device)
            row.activation_bytes = activation_bytes(layer, x_mem)
            results.append(row)
        if on_size is not None:
            on_size(results)
    return results


def scan_vs_loop(
    T: int = 4096,
    B: int = 8,
    I: int = 128,
    H: int = 128,
    repeats: int = 5,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """minGRU over a long sequence: its parallel scan (``impl="fused"``) and, on a CPU where it
    is built, the compiled engine's sequential C++ pass (``impl="compiled"``) against its
    step-by-step loop (``impl="reference"``), for ``train`` (forward + backward) and ``infer``,
    timed in interleaved rounds as :func:`run_speed` does; medians in ms and the loop/scan and
    loop/compiled speedups."""
    torch.manual_seed(0)
    loop = Recurrent(lambda i: MinGRUCell(i, H), I, impl="reference").to(device)
    layers = {"scan": Recurrent(lambda i: MinGRUCell(i, H), I, impl="fused").to(device)}
    if (device is None or torch.device(device).type == "cpu") and compiled.available():
        layers["compiled"] = Recurrent(lambda i: MinGRUCell(i, H), I, impl="compiled").to(device)
    layers["loop"] = loop
    for layer in layers.values():
        layer.load_state_dict(loop.state_dict())
    x = torch.randn(T, B, I, device=device)
    for layer in layers.values():  # warm-up on a short prefix: the loop at full T takes seconds
        _train(layer, x[:64])
        _infer(layer, x[:64])
    times: dict[str, list[float]] = {f"{n}_{k}": [] for n in layers for k in ("train", "infer")}
    for _ in range(repeats):
        for name, layer in layers.items():
            layer.zero_grad(set_to_none=True)
            times[f"{name}_train"].append(timed(_train, layer, x))
            times[f"{name}_infer"].append(timed(_infer, layer, x))
    ms = {f"{k}_ms": statistics.median(v) * 1e3 for k, v in times.items()}
    speedups = {
        f"{prefix}{mode}_speedup": ms[f"loop_{mode}_ms"] / ms[f"{name}_{mode}_ms"]
        for name, prefix in (("scan", ""), ("compiled", "compiled_"))
        if name in layers
        for mode in ("train", "infer")
    }
    return {"cell": "mingru", "size": [B, T, I, H], **ms, **speedups}


def format_scan(scan: dict[str, Any]) -> str:
    """One line per mode of a :func:`scan_vs_loop` result."""
    lines = [f"minGRU parallel scan vs step-by-step loop, (B, T, I, H) = {tuple(scan['size'])}"]
    for mode in ("train", "infer"):
        line = (
            f"  {mode:5s} scan {scan[f'scan_{mode}_ms']:9.1f} ms   loop {scan[f'loop_{mode}_ms']:9.1f} ms   "
            f"speedup {scan[f'{mode}_speedup']:5.1f}x"
        )
        if f"compiled_{mode}_ms" in scan:
            line += (
                f"   compiled (sequential C++) {scan[f'compiled_{mode}_ms']:9.1f} ms   "
                f"speedup {scan[f'compiled_{mode}_speedup']:5.1f}x"
            )
        lines.append(line)
    return "\n".join(lines)


def to_json(
    results: list[Result], meta: dict[str, Any], scan: dict[str, Any] | None = None
) -> dict[str, Any]:
    report = {"meta": meta, "results": [asdict(r) for r in results]}
    if scan is not None:
        report["scan_vs_loop"] = scan  # from scan_vs_loop()
    return report


def format_table(results: list[Result]) -> str:
    lines = []
    size = None
    for r in results:
        if r.size != size:
            size = r.size
            lines.append(f"\n(B, T, I, H) = {size}")
            lines.append(
                f"  {'layer/engine':28s} {'train ms':>9s} {'x LSTM':>7s} {'infer ms':>9s} {'x LSTM':>7s} "
                f"{'gen steps/s':>12s} {'saved MB@T':>10s}"
            )
        mem = "" if r.activation_bytes is None else f"{r.activation_bytes / 2**20:10.1f}"
        lines.append(
            f"  {r.name:28s} {r.train_ms:9.2f} {r.train_ratio:7.2f} {r.infer_ms:9.2f} {r.infer_ratio:7.2f} "
            f"{r.generate_steps_per_s:12.0f} {mem}"
        )
    return "\n".join(lines).lstrip("\n")
