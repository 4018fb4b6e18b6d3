"""One timed call, with the device's queue drained before and after (CUDA runs asynchronously)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[nn.Module, torch.Tensor], None], layer: nn.Module, x: torch.Tensor) -> float:
    """Seconds that ``fn(layer, x)`` takes on ``x``'s device, its queued kernels included."""
    sync(x.device)
    start = time.perf_counter()
    fn(layer, x)
    sync(x.device)
    return time.perf_counter() - start
