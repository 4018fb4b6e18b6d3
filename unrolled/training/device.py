"""Where a command runs its model: ``--device auto|cpu|cuda|cuda:N``, and moving batches there.

Run directories stay device-free: weights are saved from the CPU and loaded onto whatever device
the command that opens them asks for, so a run trained on a GPU samples and resumes on a CPU and
the other way round.
"""

from __future__ import annotations

import argparse
import functools
import re
from typing import Any

import torch
from torch import Tensor, nn

DEVICES = "auto, cpu, cuda or cuda:N"


def resolve_device(text: str | None) -> torch.device:
    """``--device`` -> a torch.device; ``auto`` (or None) is CUDA when there is one, else the CPU.

    ``ValueError`` for an unknown name or a CUDA device this machine does not have.
    """
    text = "auto" if text is None else text.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m is None:
        raise ValueError(f"unknown --device {text!r}: expected {DEVICES}")
    if not torch.cuda.is_available():
        raise ValueError(
            f"--device {text}: this machine has no CUDA device (or torch has no CUDA); --device cpu works"
        )
    index = int(m[1] or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0 to "
            f"cuda:{torch.cuda.device_count() - 1}"
        )
    return torch.device("cuda", index)


def to_device(batch: Any, device: torch.device | None) -> Any:
    """A tensor, or a tuple/list of them (e.g. (tokens, lengths)), on ``device`` (None: as is)."""
    if device is None:
        return batch
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(b, device) for b in batch)
    return batch


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters (the CPU for a model without any)."""
    first = next(model.parameters(), None)
    return torch.device("cpu") if first is None else first.device


def add_device_argument(parser: argparse.ArgumentParser | Any) -> None:
    """``--device``: the shared option of every command that runs a model."""
    parser.add_argument(
        "--device", default="auto", metavar="D", help=f"where the model runs: {DEVICES} [auto: CUDA if any]"
    )


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--precision`` on ``device`` (None for fp32); fp16 needs CUDA.

    ``auto`` is bf16 where ``device`` multiplies bf16 matrices in hardware (:func:`fast_bf16`),
    else fp32.
    """
    if precision == "auto":
        return torch.bfloat16 if fast_bf16(device) else None
    if precision == "fp32":
        return None
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"--precision fp16 needs a CUDA device (here: {device}); on the CPU use --precision bf16 or fp32"
        )
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` has bf16 matrix units: a CUDA GPU that supports bf16 (Ampere on), or a
    CPU with AMX or AVX512-BF16 instructions (Linux's ``/proc/cpuinfo`` flags ``amx_bf16``,
    ``avx512_bf16``). Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and bool(_CPU_BF16_FLAGS & _cpu_flags())


_CPU_BF16_FLAGS = {"amx_bf16", "avx512_bf16"}


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none: not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()
