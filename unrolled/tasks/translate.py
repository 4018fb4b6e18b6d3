"""Machine translation: a file of sentence pairs -> trained encoder-decoder run -> translations.

Wiring only: data (:mod:`unrolled.data.pairs`, or English->French number names from
:mod:`unrolled.data.numbers` when no file is given), model (:class:`unrolled.models.Seq2Seq`
over any cell of the package, attention none/bahdanau/luong), loss (cross-entropy per real
target token, with teacher forcing and optional label smoothing), decoding (greedy or beam
search, :mod:`unrolled.models.decoding`) and scores (sacrebleu's corpus BLEU and chrF, exact
match, token accuracy; :mod:`unrolled.metrics`).

Validation decodes the validation pairs greedily each time and keeps the weights of the best
corpus BLEU; the test pairs are scored once, at the end, with the best weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import PAD, UNK, WordVocab, pad_batch, read_text
from ..data.numbers import SOURCE as NUMBERS
from ..data.numbers import number_splits
from ..data.pairs import SPECIALS, TOKENS, PairBatches, Pairs, detokenize, read_pairs, tokenizer
from ..metrics import corpus_scores
from ..models.decoding import Hypothesis, beam_search, greedy
from ..models.seq2seq import ATTENTIONS, Seq2Seq
from ..plotting import pyplot, save_png
from ..training import Asset, Fit, LoopConfig, OptimConfig, Prepared, Run, RunConfig, Task, TrainerState, flag
from ..training.config import positive, split_fractions
from ..training.device import model_device
from ..training.loop import LossFn
from .base import RecurrentConfig

log = logging.getLogger(__name__)

SRC_VOCAB, TGT_VOCAB = "source_vocab.json", "target_vocab.json"


@dataclass
class ModelConfig(RecurrentConfig):
    """The network: embeddings -> recurrent encoder -> recurrent decoder with attention -> linear."""

    layers: int = 1  # stacked recurrent layers, in the encoder and in the decoder
    # bahdanau: additive attention, the previous decoder state as query (d2l's attention decoder);
    # luong: general score on the current state; none: d2l's fixed context on every input
    attention: str = flag("bahdanau", choices=ATTENTIONS)
    bidirectional: bool = False  # the encoder reads both ways, each direction with hidden/2 units
    embedding_dim: int = 128  # learned word (or character) embedding size, source and target
    dropout: float = 0.1  # on the embeddings, between layers and before the output layer

    def validate(self) -> None:
        super().validate()
        if self.attention not in ATTENTIONS:
            raise ValueError(
                f"unknown --attention {self.attention!r}: expected one of {', '.join(ATTENTIONS)}"
            )
        if self.bidirectional and self.hidden % 2:
            raise ValueError(
                f"--bidirectional splits --hidden over two directions: give an even one, got {self.hidden}"
            )
        positive(self, ("embedding_dim",))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")


@dataclass
class DataConfig:
    """Where the pairs come from, how they are tokenised, limited, split and batched."""

    # TSV file of 'source<TAB>target' lines, or CSV with named columns (default: number names)
    data: str | None = flag(None, metavar="FILE")
    source_column: str | None = flag(None, metavar="C")  # source column: header name or 0-based index [0]
    target_column: str | None = flag(None, metavar="C")  # target column: header name or 0-based index [1]
    test_data: str | None = flag(None, metavar="FILE")  # a separate test file (then no test split of --data)
    tokens: str = flag("word", choices=TOKENS)  # word: d2l's words (punctuation split off); char: characters
    keep_case: bool = False  # do not lower-case the text
    min_freq: int = 1  # tokens seen fewer times in the training pairs become <unk>
    max_len: int | None = 50  # training pairs with a longer source or target (in tokens) are dropped
    truncate: bool = False  # cut training pairs to --max-len tokens instead of dropping them
    val_frac: float = 0.05  # --data: fraction held out to pick the best weights (by BLEU)
    test_frac: float = 0.05  # --data: fraction held out and scored once, at the end
    train_numbers: int = 50_000  # number names: training pairs (from 0..999,999)
    held_out: int = 1_000  # number names: validation pairs, and as many test pairs, never trained on
    batch_size: int = 64  # pairs per step, grouped by length

    def validate(self) -> None:
        if self.tokens not in TOKENS:
            raise ValueError(f"unknown --tokens {self.tokens!r}: expected {' or '.join(TOKENS)}")
        positive(self, ("batch_size", "min_freq", "train_numbers", "held_out", "max_len"))
        split_fractions(self.val_frac, 0.0 if self.test_data else self.test_frac, "pairs")


@dataclass
class TranslateOptim(OptimConfig):
    """How parameters are updated, and the loss they follow."""

    # probability of feeding the gold previous token (1: always; below 1 the model's own
    # prediction is fed back otherwise, per sentence and step)
    teacher_forcing: float = 1.0
    label_smoothing: float = 0.0  # spread this much of each target's probability over the vocabulary

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ValueError(f"--teacher-forcing must be in [0, 1], got {self.teacher_forcing}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass
class TranslateConfig(RunConfig):
    """Everything needed to rebuild and continue a translation run; saved as config.json."""

    TASK: ClassVar[str] = "translate"

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: TranslateOptim = field(default_factory=lambda: TranslateOptim(lr=2e-3))
    # stop 5 validations after the best BLEU (the number names reach it within a few minutes)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(eval_every=500, patience=5))


# ---- data ----------------------------------------------------------------------------------
@dataclass
class Split:
    """One part of the data: source ids (with <eos>), target ids, and the texts scored against."""

    src: list[Tensor]
    tgt: list[Tensor]
    sources: list[str]  # as read
    references: list[str]  # the targets tokenised and detokenised (what BLEU compares with)

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class Dataset:
    src_vocab: WordVocab
    tgt_vocab: WordVocab
    train: Split
    val: Split
    test: Split | None
    info: dict[str, Any]
    sha256: str
    source: str


def load_data(cfg: DataConfig, seed: int, vocabs: tuple[WordVocab, WordVocab] | None = None) -> Dataset:
    """Read (or generate), split, tokenise and limit the pairs; build the vocabularies from the
    training part (or reuse a run's)."""
    test: Pairs | None
    if cfg.data is None:
        train, val, test = number_splits(cfg.train_numbers, cfg.held_out, cfg.held_out)
        if cfg.test_data:
            test = read_pairs(cfg.test_data, cfg.source_column, cfg.target_column)
    else:
        pairs = read_pairs(cfg.data, cfg.source_column, cfg.target_column)
        order = list(range(len(pairs)))
        random.Random(seed).shuffle(order)
        n_val = max(1, int(len(pairs) * cfg.val_frac))
        n_test = 0 if cfg.test_data else int(len(pairs) * cfg.test_frac)
        if len(pairs) - n_val - n_test < 1:
            raise ValueError(f"{len(pairs)} pairs are too few to hold out validation and test pairs")
        val, train = pairs.subset(order[:n_val]), pairs.subset(order[n_val + n_test :])
        test = pairs.subset(order[n_val : n_val + n_test]) if n_test else None
        if cfg.test_data:
            test = read_pairs(cfg.test_data, cfg.source_column, cfg.target_column)
    tok = tokenizer(cfg.tokens, cfg.keep_case)
    src_tok, tgt_tok = [tok(s) for s in train.sources], [tok(t) for t in train.targets]
    kept, cut = [], 0
    for i, (s, t) in enumerate(zip(src_tok, tgt_tok, strict=True)):
        if cfg.max_len is not None and max(len(s), len(t)) > cfg.max_len:
            if not cfg.truncate:
                continue
            src_tok[i], tgt_tok[i], cut = s[: cfg.max_len], t[: cfg.max_len], cut + 1
        kept.append(i)
    dropped = len(train) - len(kept)
    if dropped or cut:
        what = f"dropped {dropped:,}" if dropped else f"truncated {cut:,}"
        log.info(f"--max-len {cfg.max_len}: {what} of {len(train):,} training pairs longer than that")
    if len(kept) < cfg.batch_size:
        raise ValueError(
            f"{len(kept)} training pairs are fewer than one batch (--batch-size {cfg.batch_size})"
            + (f" after --max-len {cfg.max_len} dropped {dropped:,}" if dropped else "")
            + "; use more pairs or a smaller --batch-size"
        )
    src_tok, tgt_tok = [src_tok[i] for i in kept], [tgt_tok[i] for i in kept]
    if vocabs is None:
        vocabs = tuple(  # type: ignore[assignment]
            WordVocab.from_tokens(t, cfg.min_freq, specials=SPECIALS) for t in (src_tok, tgt_tok)
        )
        for side, v in zip(("source", "target"), vocabs, strict=True):
            if len(v) == len(SPECIALS):
                raise ValueError(
                    f"--min-freq {cfg.min_freq} leaves the {side} vocabulary empty: no {side} token occurs "
                    f"{cfg.min_freq} times in the training pairs; lower --min-freq"
                )
    src_v, tgt_v = vocabs
    eos = src_v.id("<eos>")

    def split(
        p: Pairs, src_tokens: list[list[str]] | None = None, tgt_tokens: list[list[str]] | None = None
    ) -> Split:
        st = src_tokens if src_tokens is not None else [tok(s) for s in p.sources]
        tt = tgt_tokens if tgt_tokens is not None else [tok(t) for t in p.targets]
        refs = [detokenize(tok(t), cfg.tokens) for t in p.targets]
        return Split(
            [encode_source(src_v, s, eos) for s in st], [tgt_v.encode(t) for t in tt], p.sources, refs
        )

    train_split = split(train.subset(kept), src_tok, tgt_tok)
    sha = hashlib.sha256((train.sha256 + (test.sha256 if test is not None else "")).encode()).hexdigest()
    source = NUMBERS if cfg.data is None else str(cfg.data)
    info = {
        "source": source,
        "pairs": {"train": len(kept), "val": len(val), "test": 0 if test is None else len(test)},
        "long_pairs": {"max_len": cfg.max_len, "dropped": dropped, "truncated": cut},
        "vocab_size": {"source": len(src_v), "target": len(tgt_v)},
        "max_target_len": max(len(t) for t in tgt_tok),
    }
    return Dataset(
        src_v, tgt_v, train_split, split(val), None if test is None else split(test), info, sha, source
    )


def encode_source(vocab: WordVocab, tokens: list[str], eos: int) -> Tensor:
    """Source tokens -> ids with ``<eos>`` appended (d2l's layout; the encoder sees where it ends)."""
    return torch.cat([vocab.encode(tokens), torch.tensor([eos])])


# ---- model, loss ---------------------------------------------------------------------------
def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    cfg.validate()
    per_direction = cfg.hidden // 2 if cfg.bidirectional else cfg.hidden
    encoder = cfg.build_recurrent(
        cfg.embedding_dim, dropout=cfg.dropout, bidirectional=cfg.bidirectional, hidden=per_direction
    )
    context = 0 if cfg.attention == "luong" else encoder.output_size
    decoder = cfg.build_recurrent(cfg.embedding_dim + context, dropout=cfg.dropout)
    return Seq2Seq(src_vocab, tgt_vocab, encoder, decoder, cfg.embedding_dim, cfg.attention, cfg.dropout)


def masked_loss(logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy over the real target tokens of (B, T, V) logits; ``<pad>`` never counts."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        target.reshape(-1),
        ignore_index=PAD,
        label_smoothing=label_smoothing,
    )


def seq2seq_loss(teacher_forcing: float, label_smoothing: float) -> LossFn:
    """The loop's loss: ``(model, (src, lengths, tgt_in), tgt_out, _) -> (loss, None, tokens)``."""

    def loss_fn(
        model: nn.Module, x: tuple[Tensor, Tensor, Tensor], y: Tensor, state: Any
    ) -> tuple[Tensor, None, Tensor]:
        src, lengths, tgt_in = x
        logits = model(src, lengths, tgt_in, teacher_forcing=teacher_forcing)
        return masked_loss(logits, y, label_smoothing), None, (y != PAD).sum()  # counted on the device

    return loss_fn


# ---- decoding and scores -------------------------------------------------------------------
@torch.no_grad()
def decode(
    model: Seq2Seq,
    src: list[Tensor],
    tgt_vocab: WordVocab,
    *,
    beam: int = 1,
    alpha: float = 0.0,
    max_len: int = 50,
    batch_size: int = 128,
) -> list[Hypothesis]:
    """Translate source id rows (with <eos>): greedy (``beam`` 1) or beam search, in batches of
    similar lengths; the result is in the order of ``src`` and independent of the batching."""
    if beam < 1:
        raise ValueError(f"--beam must be >= 1, got {beam}")
    if max_len < 1:
        raise ValueError(f"--max-output must be >= 1, got {max_len}")
    was_training = model.training
    model.eval()
    device = model_device(model)
    bos, eos = tgt_vocab.id("<bos>"), tgt_vocab.id("<eos>")
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    out: list[Hypothesis | None] = [None] * len(src)

    never = torch.tensor([PAD, bos], device=device)  # never a target, so never an output

    def step(tokens: Tensor, st: Any) -> tuple[Tensor, Any, Tensor | None]:
        memory, dstate = st
        logits, dstate, attn = model.step(memory, tokens, dstate)
        return logits.index_fill(1, never, float("-inf")), (memory, dstate), attn

    def select(st: Any, rows: Tensor) -> Any:
        return model.select(st[0], st[1], rows)

    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        tokens, lengths = pad_batch([src[i] for i in rows])
        state = model.encode(tokens.to(device), lengths.to(device))
        if beam == 1:
            hyps = greedy(step, state, len(rows), bos, eos, max_len, device)
        else:
            hyps = beam_search(step, select, state, len(rows), bos, eos, max_len, beam, alpha, device)
        for i, h in zip(rows, hyps, strict=True):
            if h.attention is not None:
                h.attention = h.attention[:, : len(src[i])]  # the batch's padding is not the sentence's
            out[i] = h
    model.train(was_training)
    return out  # type: ignore[return-value]


@torch.no_grad()
def teacher_forced(
    model: Seq2Seq, split: Split, tgt_vocab: WordVocab, batch_size: int = 128
) -> dict[str, float]:
    """Masked loss (nats per target token) and token accuracy with the gold previous tokens."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    batches = PairBatches(
        split.src, split.tgt, batch_size, tgt_vocab.id("<bos>"), tgt_vocab.id("<eos>"), shuffle=False
    )
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, correct, tokens: one sync at the end
    for k in range(len(batches)):
        (src, lengths, tgt_in), tgt_out = batches[k]
        src, lengths, tgt_in, tgt_out = (t.to(device) for t in (src, lengths, tgt_in, tgt_out))
        logits = model(src, lengths, tgt_in)
        real = tgt_out != PAD
        n = real.sum().double()
        correct = ((logits.argmax(-1) == tgt_out) & real).sum().double()
        sums += torch.stack([masked_loss(logits, tgt_out).double() * n, correct, n])
    model.train(was_training)
    total, correct, count = sums.tolist()
    return {"loss": total / max(count, 1), "token_accuracy": correct / max(count, 1), "tokens": int(count)}


def hypothesis_text(h: Hypothesis, vocab: WordVocab, kind: str) -> str:
    return detokenize(vocab.decode(h.tokens), kind)


def score(
    model: Seq2Seq,
    split: Split,
    tgt_vocab: WordVocab,
    kind: str,
    max_len: int,
    beam: int = 1,
    alpha: float = 0.0,
) -> dict[str, Any]:
    """Corpus BLEU and chrF (sacrebleu), exact match, and the teacher-forced loss and token accuracy."""
    hyps = decode(model, split.src, tgt_vocab, beam=beam, alpha=alpha, max_len=max_len)
    texts = [hypothesis_text(h, tgt_vocab, kind) for h in hyps]
    return {
        **corpus_scores(texts, split.references),
        **teacher_forced(model, split, tgt_vocab),
        "pairs": len(split),
        "beam": beam,
        "length_penalty": alpha,
    }


def default_max_output(run_info: dict[str, Any]) -> int:
    """Decoding stops after this many tokens unless told: twice the longest training target."""
    return max(10, 2 * int(run_info.get("max_target_len", 50)))


# ---- the task ------------------------------------------------------------------------------
def _vocab(obj: Any) -> WordVocab:
    v = WordVocab.from_json(obj)
    if v.specials != SPECIALS:
        raise ValueError(f"a translation vocabulary needs the specials {SPECIALS}, got {v.specials}")
    return v


class Translate(Task):
    """The translator as a :class:`Task`: training, ``eval --data`` and ``translate``."""

    name = "translate"
    help = "sequence-to-sequence translation (RNN encoder-decoder with attention)"
    description = (
        "Train an RNN encoder-decoder on sentence pairs: a TSV file with one 'source<TAB>target' pair "
        "per line (the Tatoeba/Anki layout) or a CSV with named columns. Without --data it learns "
        "English->French number names generated by num2words (0..999,999; the held-out numbers are "
        "never trained on). The pairs are split (by --seed) into training, validation (corpus BLEU "
        "picks the best weights) and test (scored once at the end) parts; BLEU, chrF and exact match "
        "of the best weights go to results.json, and a few held-out translations are printed."
    )
    Config = TranslateConfig
    assets = {
        "src_vocab": Asset(SRC_VOCAB, _vocab, WordVocab.to_json),
        "tgt_vocab": Asset(TGT_VOCAB, _vocab, WordVocab.to_json),
    }
    eval_inputs = {"data": "translate runs: TSV/CSV file of sentence pairs (read with the run's columns)"}
    eval_options = {
        "beam": {
            "type": int,
            "default": 1,
            "metavar": "K",
            "help": "translate runs: beam size, 1 = greedy [1]",
        },
        "length_penalty": {
            "type": float,
            "default": 0.0,
            "metavar": "ALPHA",
            "help": "translate runs: beam search length penalty alpha of Wu et al. 2016 [0]",
        },
    }

    def prepare(self, config: TranslateConfig, assets: dict[str, Any] | None) -> Prepared:
        vocabs = None if assets is None else (assets["src_vocab"], assets["tgt_vocab"])
        data = load_data(config.data, config.loop.seed, vocabs)
        assets = {"src_vocab": data.src_vocab, "tgt_vocab": data.tgt_vocab}
        return Prepared(assets, data, data.sha256, repr(data.source), data.info)

    def build_model(self, config: TranslateConfig, assets: dict[str, Any]) -> nn.Module:
        return build_model(config.model, len(assets["src_vocab"]), len(assets["tgt_vocab"]))

    def fit(self, config: TranslateConfig, model: nn.Module, prepared: Prepared) -> Fit:
        data: Dataset = prepared.data
        tgt, size = data.tgt_vocab, config.data.batch_size
        bos, eos = tgt.id("<bos>"), tgt.id("<eos>")
        batches = PairBatches(data.train.src, data.train.tgt, size, bos, eos, seed=config.loop.seed)
        max_len = default_max_output(data.info)

        def validate(m: nn.Module) -> dict[str, float]:
            r = score(m, data.val, tgt, config.data.tokens, max_len)  # type: ignore[arg-type]
            return {
                "val_loss": r["loss"],
                "val_bleu": r["bleu"],
                "val_chrf": r["chrf"],
                "val_exact_match": r["exact_match"],
                "val_token_accuracy": r["token_accuracy"],
            }

        loss = seq2seq_loss(config.optim.teacher_forcing, config.optim.label_smoothing)
        return Fit(batches, loss, validate, select=("val_bleu", "max"))

    def finish(self, run: Run, state: TrainerState, prepared: Prepared) -> dict[str, Any]:
        data: Dataset = prepared.data
        max_len = default_max_output(data.info)
        kind = run.config.data.tokens
        results: dict[str, Any] = {"best_step": state.best_step, "decoding": "greedy"}
        for part in ("val", "test"):
            split = getattr(data, part)
            results[part] = None if split is None else score(run.model, split, data.tgt_vocab, kind, max_len)
        shown = data.test if data.test is not None else data.val
        hyps = decode(run.model, shown.src[:5], data.tgt_vocab, max_len=max_len)
        results["examples"] = [
            {"source": s, "translation": hypothesis_text(h, data.tgt_vocab, kind), "reference": r}
            for s, h, r in zip(shown.sources, hyps, shown.references, strict=False)
        ]
        return results

    def evaluate(self, run: Run, **inputs: Any) -> dict[str, Any]:
        d = run.config.data
        pairs = read_pairs(inputs["data"], d.source_column, d.target_column)
        tok = tokenizer(d.tokens, d.keep_case)
        eos = run.src_vocab.id("<eos>")
        split = Split(
            [encode_source(run.src_vocab, tok(s), eos) for s in pairs.sources],
            [run.tgt_vocab.encode(tok(t)) for t in pairs.targets],
            pairs.sources,
            [detokenize(tok(t), d.tokens) for t in pairs.targets],
        )
        beam, alpha = inputs.get("beam", 1), inputs.get("length_penalty", 0.0)
        return score(run.model, split, run.tgt_vocab, d.tokens, default_max_output(run.info), beam, alpha)

    def eval_line(self, result: dict[str, Any], **inputs: str) -> str:
        return (
            f"{inputs['data']}: BLEU {result['bleu']:.2f}, chrF {result['chrf']:.2f}, exact match "
            f"{result['exact_match']:.4f}, token accuracy {result['token_accuracy']:.4f}, loss "
            f"{result['loss']:.4f} nats/token over {result['pairs']:,} pairs"
        )

    def describe_val(self, record: dict[str, Any]) -> tuple[str, str]:
        return f"bleu {record['val_bleu']:.1f}", (
            f"val loss {record['val_loss']:.4f}, BLEU {record['val_bleu']:.2f}, "
            f"chrF {record['val_chrf']:.2f}, exact match {record['val_exact_match']:.4f}, "
            f"token accuracy {record['val_token_accuracy']:.4f}"
        )

    # ---- command line -----------------------------------------------------------------------
    def report(self, run: Run, state: TrainerState, results: Any, args: argparse.Namespace) -> None:
        self.print_summary(run, state)
        for part in ("val", "test"):
            r = results[part]
            if r is not None:
                print(
                    f"{part}: BLEU {r['bleu']:.2f}  chrF {r['chrf']:.2f}  exact match {r['exact_match']:.4f}"
                    f"  ({r['pairs']} pairs, greedy)"
                )
        for ex in results["examples"]:
            mark = "ok" if ex["translation"] == ex["reference"] else f"reference: {ex['reference']}"
            print(f"  {ex['source']}  ->  {ex['translation']}    [{mark}]")

    def add_commands(self, commands: Any) -> None:
        p = commands.add_parser(
            "translate",
            help="translate sentences with a translation run",
            description=(
                "Print one translation per line, with the best weights of a translation run: greedy "
                "decoding, or beam search with --beam K. Source words outside the run's vocabulary "
                "are read as <unk> (with a note on stderr)."
            ),
        )
        self.add_run_argument(p, "run directory of `unrolled train translate`")
        p.add_argument("--text", action="append", metavar="TEXT", help="a sentence to translate (repeatable)")
        p.add_argument("--file", metavar="FILE", help="UTF-8 file with one sentence per line ('-' = stdin)")
        for name, kwargs in self.eval_options.items():
            p.add_argument(
                f"--{name.replace('_', '-')}", **{**kwargs, "help": kwargs["help"].split(": ", 1)[1]}
            )
        p.add_argument(
            "--max-output",
            type=int,
            metavar="N",
            help="stop after N tokens [twice the longest training target]",
        )
        p.add_argument(
            "--attention-plot", metavar="PNG", help="draw the attention weights of the first sentence"
        )
        p.add_argument(
            "--json", action="store_true", help="one JSON object per sentence, with tokens and scores"
        )
        p.set_defaults(func=self._cmd_translate)

    def _cmd_translate(self, args: argparse.Namespace) -> int:
        if (args.text is None) == (args.file is None):
            raise ValueError("give the sentences with --text TEXT (repeatable) or --file FILE, not both")
        if args.file is not None:
            raw = sys.stdin.read() if args.file == "-" else read_text(args.file)
            texts = raw.splitlines()
            if not texts:
                raise ValueError(f"{args.file!r} holds no sentences: give one per line")
            blank = next((k + 1 for k, t in enumerate(texts) if not t.strip()), None)
            if blank is not None:
                raise ValueError(f"line {blank} of {args.file!r} is empty: give one sentence per line")
        else:
            texts = args.text
        run = self.open_run(args.run, **self.open_args(args))
        if args.attention_plot is not None:
            if run.config.model.attention == "none":
                raise ValueError("--attention-plot needs a run with attention; this one has --attention none")
            if not args.attention_plot.lower().endswith(".png"):
                raise ValueError(
                    "--attention-plot writes a PNG file: give a name ending in .png, "
                    f"got {args.attention_plot!r}"
                )
        results = translate(run, texts, beam=args.beam, alpha=args.length_penalty, max_len=args.max_output)
        for t in results:
            if args.json:
                h = t.hypothesis
                record = {"text": t.text, "translation": t.translation, "log_prob": h.log_prob}
                print(json.dumps({**record, "finished": h.finished, "unknown": t.unknown}))
            else:
                print(t.translation)
        if args.attention_plot is not None:
            plot_attention(results[0], args.attention_plot)
        return 0


TASK = Translate()
open_run = TASK.open_run
train = TASK.train


# ---- translation ---------------------------------------------------------------------------
@dataclass
class Translation:
    text: str
    source_tokens: list[str]  # as the model read them (unknown ones as they were written)
    unknown: list[str]  # source tokens outside the vocabulary, read as <unk>
    output_tokens: list[str]
    translation: str
    hypothesis: Hypothesis  # with the attention weights (output steps x source tokens + <eos>)


def translate(
    run: Run, texts: list[str], *, beam: int = 1, alpha: float = 0.0, max_len: int | None = None
) -> list[Translation]:
    """Translate ``texts`` with a run's model; ``ValueError`` for an empty text or a bad option."""
    d = run.config.data
    tok = tokenizer(d.tokens, d.keep_case)
    tokens = []
    for k, text in enumerate(texts):
        tokens.append(tok(text))
        if not tokens[-1]:
            raise ValueError(f"text {k + 1} is empty: nothing to translate")
    eos = run.src_vocab.id("<eos>")
    ids = [encode_source(run.src_vocab, t, eos) for t in tokens]
    unknown = [
        [w for w, i in zip(t, x.tolist(), strict=False) if i == UNK] for t, x in zip(tokens, ids, strict=True)
    ]
    seen = sorted({w for u in unknown for w in u})
    if seen:
        shown = ", ".join(map(repr, seen[:10])) + (f" and {len(seen) - 10} more" if len(seen) > 10 else "")
        print(f"unrolled: note: not in the source vocabulary, read as <unk>: {shown}", file=sys.stderr)
    limit = max_len if max_len is not None else default_max_output(run.info)
    hyps = decode(run.model, ids, run.tgt_vocab, beam=beam, alpha=alpha, max_len=limit)  # type: ignore[arg-type]
    return [
        Translation(
            text, t, u, run.tgt_vocab.decode(h.tokens), hypothesis_text(h, run.tgt_vocab, d.tokens), h
        )
        for text, t, u, h in zip(texts, tokens, unknown, hyps, strict=True)
    ]


def plot_attention(t: Translation, path: str | Path) -> None:
    """A heat map of one translation's attention weights (rows: output tokens, columns: source)."""
    plt = pyplot()

    weights = t.hypothesis.attention
    assert weights is not None
    cols = [*t.source_tokens, "<eos>"]
    rows = [*t.output_tokens, *(["<eos>"] if t.hypothesis.finished else [])]
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * len(cols), 1.0 + 0.4 * len(rows)))
    image = ax.imshow(weights[: len(rows)].numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    save_png(fig, path, dpi=120)
