"""The ``unrolled experiment`` commands: the counting study and the LSTM ablation."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..plotting import save_png


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_commands(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """``unrolled experiment counting|ablation``."""
    from ..cells.lstm import VARIANTS
    from ..training.device import add_device_argument
    from .ablation import AblationConfig
    from .counting import CountingConfig

    experiment = commands.add_parser(
        "experiment",
        help="the lectures' experiments: counting, LSTM ablation",
        description="Studies of many runs, resumable, with a table, a plot and a JSON of the results.",
    )
    kinds = experiment.add_subparsers(
        dest="experiment", required=True, metavar="EXPERIMENT", parser_class=parser_class
    )
    c, cd = (
        kinds.add_parser(
            "counting",
            help="can a cell count? the a^n b^n recogniser of Weiss et al. (2018)",
            description=(
                "Train small recognisers of a^n b^n (LSTM, GRU, Elman, or any cell) on n <= N and test them "
                "on n up to 5N; report, per n, the share of seeds that recognise it, and plot the unit that "
                "follows the count #a - #b. Writes DIR/counting.json (after every run: a killed study "
                "continues) and DIR/counting.png."
            ),
        ),
        CountingConfig(),
    )
    c.add_argument("--cells", default=",".join(cd.cells), metavar="A,B,...", help=f"[{','.join(cd.cells)}]")
    c.add_argument("--seeds", type=int, default=cd.seeds, metavar="K", help=f"seeds 0..K-1 [{cd.seeds}]")
    c.add_argument(
        "--train-max", type=int, default=cd.train_max, metavar="N", help=f"train on n <= N [{cd.train_max}]"
    )
    c.add_argument(
        "--test-factor",
        type=int,
        default=cd.test_factor,
        metavar="F",
        help=f"test n <= F*N [{cd.test_factor}]",
    )
    c.add_argument("--hidden", type=int, default=cd.hidden, metavar="H", help=f"units [{cd.hidden}]")
    c.add_argument("--steps", type=int, default=cd.steps, help=f"training steps per run [{cd.steps}]")
    c.add_argument("--batch-size", type=int, default=cd.batch_size, help=f"[{cd.batch_size}]")
    c.add_argument(
        "--lr", type=float, default=cd.lr, help=f"Adam's learning rate, cosine-annealed [{cd.lr:g}]"
    )
    c.add_argument("--out", default="experiments/counting", metavar="DIR", help="[experiments/counting]")
    c.set_defaults(func=_cmd_counting)

    a, ad = (
        kinds.add_parser(
            "ablation",
            help="which parts of the LSTM matter: Greff et al.'s variants on a char-LM",
            description=(
                "Train a char-LM with each LSTM variant of Greff et al. (2017) and several seeds, one run "
                "directory per (variant, seed) under DIR/runs, and compare their best validation losses: "
                "mean ± sd and Welch's t-test against vanilla. Writes DIR/ablation.json after every run (a "
                "killed study continues with the runs it lacks) and DIR/ablation.png."
            ),
        ),
        AblationConfig(),
    )
    a.add_argument("--task", default=ad.task, help="the task whose models are compared [charlm]")
    a.add_argument(
        "--variants", default=",".join(ad.variants), metavar="A,B,...", help=f"of {', '.join(VARIANTS)} [all]"
    )
    a.add_argument("--seeds", type=int, default=ad.seeds, metavar="K", help=f"seeds 0..K-1 [{ad.seeds}]")
    a.add_argument("--max-minutes", type=float, default=None, metavar="M", help="budget per run [2]")
    a.add_argument("--max-steps", type=int, default=None, metavar="N", help="budget per run, in steps")
    a.add_argument("--hidden", type=int, default=ad.hidden, metavar="H", help=f"LSTM units [{ad.hidden}]")
    a.add_argument("--layers", type=int, default=ad.layers, metavar="L", help=f"[{ad.layers}]")
    a.add_argument("--text", metavar="FILE", help="the text [Shakespeare, as unrolled train charlm]")
    a.add_argument("--batch-size", type=int, default=ad.batch_size, metavar="B", help=f"[{ad.batch_size}]")
    a.add_argument("--seq-len", type=int, default=ad.seq_len, metavar="T", help=f"BPTT length [{ad.seq_len}]")
    a.add_argument("--out", default="experiments/ablation", metavar="DIR", help="[experiments/ablation]")
    add_device_argument(a)
    a.set_defaults(func=_cmd_ablation)


def _cmd_counting(args: argparse.Namespace) -> int:
    from .counting import CountingConfig, plot, run_counting, table

    config = CountingConfig(
        cells=_names(args.cells),
        seeds=args.seeds,
        train_max=args.train_max,
        test_factor=args.test_factor,
        hidden=args.hidden,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
    )

    def said(r: dict[str, Any]) -> None:
        print(
            f"{r['cell']} seed {r['seed']}: recognises every n up to {r['generalises_to']} "
            f"({r['recognised_beyond']} of n = {config.train_max + 1}..{len(r['recognised'])} "
            "beyond training), "
            f"loss {r['final_loss']:.4f}, {r['seconds']:.0f} s",
            flush=True,
        )

    study = run_counting(config, args.out, on_result=said)
    summary = study.summary
    out = Path(args.out) / "counting.png"
    save_png(plot(config, study.runs, summary), out)
    print(
        "share of seeds that recognise a^n b^n (* beyond training; reach: median of the largest n up to which"
    )
    print("every n is recognised):")
    print(table(config, summary))
    print(f"written: {study.path} and {out}")
    return 0


def _cmd_ablation(args: argparse.Namespace) -> int:
    from ..training.device import resolve_device
    from .ablation import AblationConfig, plot, run_ablation, table

    minutes = args.max_minutes
    if minutes is None and args.max_steps is None:
        minutes = 2.0
    config = AblationConfig(
        task=args.task,
        variants=_names(args.variants),
        seeds=args.seeds,
        max_minutes=minutes,
        max_steps=args.max_steps,
        hidden=args.hidden,
        layers=args.layers,
        text=args.text,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
    )
    config.validate()
    device = resolve_device(args.device)

    def starting(variant: str, seed: int, k: int, total: int) -> None:
        print(f"[{k}/{total}] {variant} seed {seed} ...", flush=True)

    def said(r: dict[str, Any]) -> None:
        print(
            f"        {r['variant']} seed {r['seed']}: best val {r['val_loss']:.4f} nats/char "
            f"({r['steps']} steps, {r['minutes']:.1f} min)",
            flush=True,
        )

    study = run_ablation(config, args.out, device=device, on_start=starting, on_result=said)
    summary = study.summary
    out = Path(args.out) / "ablation.png"
    save_png(plot(summary, study.runs), out)
    print(table(summary))
    print(f"written: {study.path} and {out}")
    return 0
