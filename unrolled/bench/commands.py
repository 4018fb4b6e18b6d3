"""The ``unrolled bench`` commands: ``speed`` (every cell and engine vs torch.nn) and ``conv``."""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Any

from ..training.device import add_device_argument


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _size(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected four positive integers B,T,I,H, got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    """Check that ``--json`` can be written and the device exists (before any timing), and
    describe the machine."""
    import torch

    from ..training.device import resolve_device

    if args.json is not None and not Path(args.json).parent.resolve().is_dir():
        raise ValueError(f"cannot write {args.json}: its folder does not exist")
    device = resolve_device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "device": str(device),
        "gpu": gpu,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the SIMD level torch uses
        "repeats": args.repeats,
    }


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ''."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _gemm_kernels(device: str) -> list[dict[str, Any]]:
    """On the CPU, the per-step GEMM kernel the compiled loops measured fastest for each shape."""
    from ..engines import compiled

    return compiled.gemm_choices() if device == "cpu" and compiled.available() else []


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cmd_speed(args: argparse.Namespace) -> int:
    import torch

    from ..training.checkpoint import atomic_write_json
    from . import speed

    meta = _meta(args)
    sizes = tuple(args.size) if args.size else speed.SMOKE_SIZES if args.smoke else speed.FULL_SIZES
    meta["sizes"] = [list(s) for s in sizes]

    def save(results: list[speed.Result]) -> None:
        if args.json is not None:  # after every size: a crash keeps what was measured
            meta["gemm_kernels"] = _gemm_kernels(meta["device"])
            atomic_write_json(Path(args.json), speed.to_json(results, meta))

    results = speed.run_speed(
        sizes,
        repeats=args.repeats,
        generate_steps=5 if args.smoke else 50,
        memory_steps=20 if args.smoke else 1000,
        only=None if not args.only else (lambda name: any(s in name for s in args.only)),
        progress=_progress,
        on_size=save,
        device=torch.device(meta["device"]),
    )
    print(speed.format_table(results))
    if not args.only or any(s in "mingru/scan-vs-loop" for s in args.only):
        scan = speed.scan_vs_loop(
            **(speed.SCAN_SMOKE if args.smoke else {}),
            repeats=args.repeats,
            device=torch.device(meta["device"]),
        )
        if args.json is not None:
            atomic_write_json(Path(args.json), speed.to_json(results, meta, scan))
        print("\n" + speed.format_scan(scan))
    return 0


def _cmd_conv(args: argparse.Namespace) -> int:
    import torch

    from ..training.checkpoint import atomic_write_json
    from . import conv

    meta = _meta(args)
    sizes = conv.SMOKE_SIZES if args.smoke else conv.FULL_SIZES
    results = conv.run_conv(
        sizes, repeats=args.repeats, progress=_progress, device=torch.device(meta["device"])
    )
    if args.json is not None:
        atomic_write_json(Path(args.json), conv.to_json(results, meta))
    print(conv.format_conv(results))
    return 0


def _common(b: argparse.ArgumentParser, smoke: str) -> None:
    b.add_argument("--json", metavar="FILE", help="also write the results to this JSON file")
    b.add_argument("--repeats", type=_positive_int, default=5, help="rounds; the median is reported")
    b.add_argument("--smoke", action="store_true", help=smoke)
    add_device_argument(b)  # timed with the device synchronised before and after each call


def add_commands(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """``unrolled bench speed|conv``."""
    bench = commands.add_parser("bench", help="benchmarks", description="Measure unrolled against torch.nn.")
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="BENCH", parser_class=parser_class)
    b = kinds.add_parser(
        "speed",
        help="time every cell under every engine against torch.nn.LSTM",
        description=(
            "Time forward+backward, inference and step-by-step generation of torch.nn.LSTM/GRU and of "
            "every unrolled cell under every engine that runs it, interleaved in one process (median of "
            "--repeats rounds), at (B,T,I,H) = (32,100,256,256), (64,100,512,512), (1,200,128,128); print "
            "each ratio to torch.nn.LSTM and the activation memory at T=1000; then minGRU's parallel scan "
            "and the compiled engine's sequential pass against its step-by-step loop at (B,T,I,H) = "
            "(8,4096,128,128). Slow: --only narrows it."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common(b, smoke="one tiny size (checks that everything runs)")
    b.add_argument(
        "--size",
        type=_size,
        action="append",
        metavar="B,T,I,H",
        help="a size to run instead of the default three (repeatable)",
    )
    b.add_argument(
        "--only",
        nargs="+",
        metavar="SUBSTR",
        help="only layers whose name contains one of these (e.g. lstm/)",
    )
    b.set_defaults(func=_cmd_speed)
    b = kinds.add_parser(
        "conv",
        help="time unrolled's convolutions against torch.nn.Conv1d/Conv2d",
        description=(
            "Time forward and forward+backward of unrolled.Conv1d/Conv2d (patches and one matrix product) "
            "and LocallyConnected1d/2d against torch.nn.Conv1d/Conv2d, interleaved in one process (median "
            "of --repeats rounds), at a text-CNN's sizes (B=64, 128 -> 100 channels, L = 50..400, k = 3, 5) "
            "and a small image CNN's (B=32, 3x3 same, 32x32 and 64x64); print each ratio to torch."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common(b, smoke="two tiny sizes (checks that everything runs)")
    b.set_defaults(func=_cmd_conv)
