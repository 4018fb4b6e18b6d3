"""``unrolled bench conv``: the patch-and-matmul convolutions against torch.nn's kernels.

For each size, three layers with the same arguments are timed:

- ``torch.nn.Conv1d``/``Conv2d`` (torch's native kernels), the baseline;
- ``unrolled.Conv1d``/``Conv2d``: pad, gather the patches (one copy), one matrix product;
- ``unrolled.LocallyConnected1d``/``2d``: the same patches and one weight matrix per output position
  (a batched product over the positions), which torch.nn does not have; its ratio is to torch's conv.

``forward`` is a call under ``torch.no_grad()``; ``train`` is forward + backward of ``out.sum()``,
with the input requiring its gradient too (as under an embedding or a previous layer). Every layer
is timed once per round, in turn, so that a slow spell of the machine hits all of them alike; the
median over the rounds is reported, with its ratio to torch.nn of the same size.

The sizes are a text-CNN's (after Kim 2014: B = 64 sentences, 100 filters of widths 3 and 5, "valid";
128-dimensional embeddings, lengths 50 to 400) and the first two layers of a small image CNN (B = 32,
3 -> 16 and 16 -> 32 channels, 3x3 "same", 32x32 and 64x64 images).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from ..layers import Conv1d, Conv2d, LocallyConnected1d, LocallyConnected2d
from .timing import timed


class ConvSize(NamedTuple):
    dims: int  # 1: input (B, C_in, L); 2: input (B, C_in, L, L)
    batch: int
    in_channels: int
    out_channels: int
    length: int  # L, or the height = width of an image
    kernel_size: int  # k, or k x k
    padding: str  # "valid" or "same"

    def label(self) -> str:
        space = f"L={self.length}" if self.dims == 1 else f"{self.length}x{self.length}"
        kernel = f"k={self.kernel_size}" if self.dims == 1 else f"k={self.kernel_size}x{self.kernel_size}"
        return (
            f"Conv{self.dims}d B={self.batch} {self.in_channels}->{self.out_channels} {space} {kernel} "
            f"{self.padding}"
        )


TEXT_CNN = tuple(ConvSize(1, 64, 128, 100, L, k, "valid") for L in (50, 100, 200, 400) for k in (3, 5))
IMAGE_CNN = tuple(
    ConvSize(2, 32, c_in, c_out, n, 3, "same") for n in (32, 64) for c_in, c_out in ((3, 16), (16, 32))
)
FULL_SIZES: tuple[ConvSize, ...] = TEXT_CNN + IMAGE_CNN
SMOKE_SIZES: tuple[ConvSize, ...] = (ConvSize(1, 2, 3, 4, 8, 3, "valid"), ConvSize(2, 2, 3, 4, 6, 3, "same"))


@dataclass
class ConvResult:
    name: str  # "torch.nn.Conv1d", "unrolled.Conv1d" or "unrolled.LocallyConnected1d" (2d alike)
    size: ConvSize
    forward_ms: float = float("nan")
    train_ms: float = float("nan")
    forward_ratio: float = float("nan")  # to torch.nn.Conv*d of the same size
    train_ratio: float = float("nan")
    parameters: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def candidates(size: ConvSize) -> list[tuple[str, nn.Module]]:
    """torch.nn's conv, ours with torch's weights, and the locally-connected layer of that shape."""
    d, _, c_in, c_out, n, k, pad = size
    if d == 1:
        theirs: nn.Module = nn.Conv1d(c_in, c_out, k, padding=pad)
        ours: nn.Module = Conv1d(c_in, c_out, k, padding=pad)
        local: nn.Module = LocallyConnected1d(c_in, c_out, n, k, padding=pad)
    else:
        theirs, ours = nn.Conv2d(c_in, c_out, k, padding=pad), Conv2d(c_in, c_out, k, padding=pad)
        local = LocallyConnected2d(c_in, c_out, (n, n), k, padding=pad)
    ours.load_state_dict(theirs.state_dict())
    return [
        (f"torch.nn.Conv{d}d", theirs),
        (f"unrolled.Conv{d}d", ours),
        (f"unrolled.LocallyConnected{d}d", local),
    ]


def _forward(layer: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        layer(x)


def _train(layer: nn.Module, x: torch.Tensor) -> None:
    layer(x).sum().backward()


def run_conv(
    sizes: tuple[ConvSize, ...] = FULL_SIZES,
    repeats: int = 5,
    progress: Callable[[str], None] | None = None,
    device: torch.device | None = None,
) -> list[ConvResult]:
    """Time every layer at every size on ``device`` (None: the CPU); see the module docstring."""
    torch.manual_seed(0)
    results: list[ConvResult] = []
    for size in sizes:
        layers = [(name, layer.to(device)) for name, layer in candidates(size)]
        spatial = (size.length,) * size.dims
        x = torch.randn(size.batch, size.in_channels, *spatial, device=device, requires_grad=True)
        times: dict[str, dict[str, list[float]]] = {n: {"forward": [], "train": []} for n, _ in layers}
        for _, layer in layers:  # warm-up, and a first check that each one runs
            _train(layer, x)
            _forward(layer, x)
        for r in range(repeats):
            if progress:
                progress(f"{size.label()}: round {r + 1}/{repeats}")
            for name, layer in layers:
                layer.zero_grad(set_to_none=True)
                x.grad = None
                times[name]["forward"].append(timed(_forward, layer, x))
                times[name]["train"].append(timed(_train, layer, x))
        rows = [
            ConvResult(
                name,
                size,
                forward_ms=statistics.median(times[name]["forward"]) * 1e3,
                train_ms=statistics.median(times[name]["train"]) * 1e3,
                parameters=sum(p.numel() for p in layer.parameters()),
            )
            for name, layer in layers
        ]
        base = rows[0]  # torch.nn
        for row in rows:
            row.forward_ratio = row.forward_ms / base.forward_ms
            row.train_ratio = row.train_ms / base.train_ms
        results.extend(rows)
    return results


def to_json(results: list[ConvResult], meta: dict[str, Any]) -> dict[str, Any]:
    """``{"meta": meta, "results": [...]}``, each size as a dict of its named fields."""
    rows = []
    for r in results:
        row = asdict(r)
        row["size"] = r.size._asdict()
        rows.append(row)
    return {"meta": meta, "results": rows}


def format_conv(results: list[ConvResult]) -> str:
    """A table per size: forward and train ms, and their ratios to torch.nn's conv."""
    lines: list[str] = []
    size = None
    for r in results:
        if r.size != size:
            size = r.size
            lines.append(f"\n{size.label()}")
            head = f"{'forward ms':>10s} {'x torch':>8s} {'train ms':>9s} {'x torch':>8s} {'params':>10s}"
            lines.append(f"  {'layer':28s} {head}")
        times = f"{r.forward_ms:10.2f} {r.forward_ratio:8.2f} {r.train_ms:9.2f} {r.train_ratio:8.2f}"
        lines.append(f"  {r.name:28s} {times} {r.parameters:10,d}")
    return "\n".join(lines).lstrip("\n")
