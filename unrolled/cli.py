"""The ``unrolled`` command line: the entry point, the shared options and the error boundary.

    unrolled train TASK [flags]          train a new run of a task (charlm, classify, ...)
    unrolled train TASK --resume DIR     continue a run
    unrolled eval DIR --text|--data FILE score a run (the task of DIR says which input it takes)
    unrolled sample | predict ...        the tasks' own commands
    unrolled export DIR --out FILE       a run's model as ONNX or TorchScript
    unrolled serve [ROOT]                a local web app over a folder of runs
    unrolled analyze ...                 look inside a run or a fresh cell (gradients, spectrum, ...)
    unrolled experiment counting|ablation  the lectures' experiments, resumable
    unrolled bench speed|conv            benchmarks against torch.nn

Every task comes from the registry (:mod:`unrolled.tasks`), and its training flags from its
config dataclasses (:mod:`unrolled.training.flags`): nothing here is particular to one task.
Bad input gives one line on stderr and exit code 2; a run that diverges (NaN/Inf) exit code 3;
a closed pipe (``unrolled sample RUN | head``) ends quietly with 0. ``UNROLLED_DEBUG=1`` shows
the traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
from typing import Any, NoReturn

EXIT_USAGE, EXIT_DIVERGED = 2, 3
LIMITS = ("max_steps", "max_minutes", "max_epochs")  # this invocation's alone, never inherited
RETUNE = ("lr", "clip")  # optimizer settings --resume may change: a diverged run goes on more gently
TITLES = {
    "model": "model",
    "data": "data",
    "optim": "optimisation (--lr and --clip may change on --resume)",
    "loop": "loop (may change on --resume)",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# ---- unrolled train TASK ---------------------------------------------------------------------
def _add_train(commands: Any, tasks: dict[str, Any]) -> None:
    from .training.device import add_device_argument
    from .training.flags import add_config_flags

    train = commands.add_parser("train", help="train a model", description="Train a model for a task.")
    sub = train.add_subparsers(dest="task", required=True, metavar="TASK", parser_class=_Parser)
    for task in tasks.values():
        limits = " and ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in task.default_limits.items())
        p = sub.add_parser(
            task.name,
            help=task.help,
            description=task.description,
            epilog=f"Without --max-steps, --max-minutes or --max-epochs, training runs as if given {limits}.",
        )
        flags = add_config_flags(p, task.Config(), TITLES)
        g = p.add_argument_group("run")
        g.add_argument("--out", metavar="DIR", help=f"run directory to create [runs/{task.name}-<time>]")
        g.add_argument("--resume", metavar="DIR", help="continue the run in DIR (only loop flags may change)")
        g.add_argument("--no-progress", action="store_true", help="no progress bar")
        add_device_argument(g)
        task.add_train_args(p)
        p.set_defaults(func=functools.partial(_cmd_train, task, flags))


def _cmd_train(task: Any, flags: list[Any], args: argparse.Namespace) -> int:
    """Flags -> config (new run) or loop overrides (both), then train, then the task's report."""
    from .training import distributed
    from .training.device import resolve_device
    from .training.flags import apply_flags, given_flags
    from .training.progress import Progress

    given = given_flags(args, flags)
    loop = {fl: v for fl, v in given.items() if fl.section == "loop" and not fl.fixed}
    retune = {fl.name: v for fl, v in given.items() if fl.section == "optim" and fl.name in RETUNE}
    overrides = {fl.name: v for fl, v in loop.items()}
    overrides |= {k: overrides.get(k) for k in LIMITS}
    if all(overrides[k] is None for k in LIMITS):
        overrides |= task.default_limits  # never train forever by accident
    config = task.Config()
    if args.resume:
        fixed = sorted(fl.option for fl in given if fl not in loop and fl.name not in retune)
        fixed += ["--out"] if args.out else []
        if fixed:
            raise ValueError(
                f"{', '.join(fixed)} cannot be changed on --resume (the run's config.json fixes them)"
            )
        out = args.resume
    else:
        apply_flags(config, {fl: v for fl, v in given.items() if fl not in loop})
        out = args.out or time.strftime(f"runs/{task.name}-%Y%m%d-%H%M%S")
    device, world = resolve_device(args.device), distributed.from_env()
    if world is not None:  # torchrun: one process per rank, one GPU each
        device = distributed.init(world, device)
    main = world is None or world.main
    progress = Progress(main and not args.no_progress, task.unit, task.describe_val)
    try:
        run, state, results = task.train(
            config,
            out,
            resume=bool(args.resume),
            loop_overrides=overrides,
            optim_overrides=retune if args.resume else None,
            on_event=progress,
            device=device,
        )
        distributed.leave(wait=True)
    finally:
        progress.close()
        distributed.leave()
    if main:
        task.report(run, state, results, args)
    return 0


# ---- unrolled eval DIR -----------------------------------------------------------------------
def _add_eval(commands: Any, tasks: dict[str, Any]) -> None:
    from .training import Task

    inputs: dict[str, list[str]] = {}
    for task in tasks.values():
        for name, text in task.eval_inputs.items():
            inputs.setdefault(name, []).append(text)
    e = commands.add_parser(
        "eval",
        help="score a run on a file ("
        + "; ".join(f"{t.name}: --{' --'.join(t.eval_inputs)}" for t in tasks.values())
        + ")",
        description="Print a run's scores on a file; the run's task says which input it takes.",
    )
    Task.add_run_argument(e)
    for name, texts in inputs.items():
        e.add_argument(f"--{name}", metavar="FILE", help="; ".join(texts))
    for task in tasks.values():
        for name, kwargs in task.eval_options.items():
            e.add_argument(f"--{name.replace('_', '-')}", **kwargs)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=functools.partial(_cmd_eval, tasks, list(inputs)))


def _cmd_eval(tasks: dict[str, Any], names: list[str], args: argparse.Namespace) -> int:
    from .api import task_of

    task = task_of(args.run)
    kind = task.name
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if set(given) != set(task.eval_inputs) and not (
        task.eval_optional and set(given) <= set(task.eval_inputs)
    ):
        wanted = " ".join(f"--{n} FILE" for n in task.eval_inputs)
        extra = ", ".join(f"--{n}" for n in given if n not in task.eval_inputs)
        not_these = f" (not {extra})" if extra else ""
        if task.eval_optional:
            raise ValueError(f"a {kind} run is evaluated on its own data, or give {wanted}{not_these}")
        raise ValueError(f"a {kind} run is evaluated on a file: give {wanted}{not_these}")
    run = task.open_run(args.run, **task.open_args(args))
    result = task.evaluate(run, **given, **{n: getattr(args, n) for n in task.eval_options})
    print(
        json.dumps({**result, "run": str(run.path), **given})
        if args.json
        else task.eval_line(result, **given)
    )
    return 0


# ---- the entry point -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from . import __version__, api
    from .analysis import commands as analysis
    from .bench import commands as bench
    from .experiments import commands as experiments
    from .serve import command as serve
    from .tasks import registry

    tasks = registry()
    parser = _Parser(prog="unrolled", description="Recurrent sequence models from the cell up.")
    parser.add_argument("--version", action="version", version=f"unrolled {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_train(commands, tasks)
    _add_eval(commands, tasks)
    for task in tasks.values():
        task.add_commands(commands)
    api.add_commands(commands, _Parser)
    serve.add_commands(commands, _Parser)
    analysis.add_commands(commands, _Parser)
    experiments.add_commands(commands, _Parser)
    bench.add_commands(commands, _Parser)
    return parser


def _quiet_stdout() -> None:
    """After a closed pipe: send what is left to /dev/null, so that exiting does not complain."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (e.g. captured in tests)
        pass


def error_line(e: BaseException) -> int:
    """Print ``e`` as the one line of an error (docs/errors.md) and return its exit code."""
    from .training import Diverged

    message = " ".join(str(e).split()) or type(e).__name__
    rank = os.environ.get("RANK", "0")  # under torchrun: say which process, after the first
    print(f"unrolled: {'' if rank == '0' else f'rank {rank}: '}error: {message}", file=sys.stderr)
    return EXIT_DIVERGED if isinstance(e, Diverged) else EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    from .training import Diverged

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return args.func(args)
    except BrokenPipeError:  # `unrolled sample RUN | head`: the reader has all it wanted
        _quiet_stdout()
        return 0
    except (ValueError, TypeError, OSError, Diverged) as e:
        if os.environ.get("UNROLLED_DEBUG"):
            raise
        return error_line(e)
    except KeyboardInterrupt:
        print("unrolled: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
