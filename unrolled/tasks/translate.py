"""Machine translation: a file of sentence pairs -> trained encoder-decoder run -> translations.

Wiring only: data (:mod:`unrolled.data.pairs`, or English->French number names from
:mod:`unrolled.data.numbers` when no file is given), model (:class:`unrolled.models.Seq2Seq`
over any cell of the package, attention none/bahdanau/luong), loss (cross-entropy per real
target token, with teacher forcing and optional label smoothing), decoding (greedy or beam
search, :mod:`unrolled.models.decoding`) and scores (sacrebleu's corpus BLEU and chrF, exact
match, token accuracy; :mod:`unrolled.metrics`).

Validation decodes the validation pairs greedily each time and keeps the weights of the best
corpus BLEU; the test pairs are scored once, at the end, with the best weights.

``unrolled.load(RUN)`` gives a :class:`TranslatePredictor` (``.translate(texts, beam,
length_penalty, attention=)``), which the ``translate`` command calls; its export is two ONNX
graphs, the ``encoder`` over a batch of sources and the ``decoder_step`` that a greedy or beam
search loop outside Python calls once per output token (:class:`EncoderGraph`,
:class:`DecoderStepGraph`; docs/python_api.md has the loop in numpy).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells.base import state_like, state_tensors
from ..data import PAD, UNK, WordVocab, pad_batch, read_text
from ..data.numbers import SOURCE as NUMBERS
from ..data.numbers import number_splits
from ..data.pairs import SPECIALS, SUBWORDS, TOKENS, Codec, PairBatches, Pairs, read_pairs
from ..data.subwords import FILE as SPM_FILE
from ..data.subwords import Subwords
from ..export import Graph, state_names
from ..metrics import corpus_scores
from ..models.decoding import Hypothesis, beam_search, greedy
from ..models.seq2seq import ATTENTIONS, Memory, Seq2Seq
from ..plotting import pyplot, save_png
from ..training import (
    Asset,
    Bound,
    Fit,
    LoopConfig,
    OptimConfig,
    Predictor,
    Prepared,
    Run,
    RunConfig,
    Task,
    TrainerState,
    flag,
)
from ..training.config import positive, split_fractions
from ..training.device import model_device
from ..training.loop import LossFn
from .base import RecurrentConfig

log = logging.getLogger(__name__)

SRC_VOCAB, TGT_VOCAB = "source_vocab.json", "target_vocab.json"
TARGET_SPM_FILE = "spm.target.model"  # --separate-subwords: the target side's model (spm.model: the source's)


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
    # word: d2l's words (punctuation split off); char: characters; bpe, unigram: sentencepiece pieces
    tokens: str = flag("word", choices=TOKENS)
    vocab_size: int = 8000  # --tokens bpe|unigram: pieces of each sentencepiece model (<unk> included)
    separate_subwords: bool = False  # --tokens bpe|unigram: one model per side (default: one joint model)
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
        positive(self, ("batch_size", "min_freq", "train_numbers", "held_out", "max_len", "vocab_size"))
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
    references: list[str]  # the targets as outputs are compared with them (Codec.reference)

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class Dataset:
    src_vocab: WordVocab
    tgt_vocab: WordVocab
    codec: Codec
    train: Split
    val: Split
    test: Split | None
    info: dict[str, Any]
    sha256: str
    source: str


def load_data(
    cfg: DataConfig,
    seed: int,
    vocabs: tuple[WordVocab, WordVocab] | None = None,
    subwords: tuple[Subwords, Subwords] | None = None,
) -> Dataset:
    """Read (or generate), split, tokenise and limit the pairs; learn the subword models and build
    the vocabularies from the training part (or reuse a run's)."""
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
    if cfg.tokens in SUBWORDS and subwords is None:
        subwords = learn_subwords(cfg, train)
    codec = Codec(cfg.tokens, cfg.keep_case, *(subwords or (None, None)))
    src_tok, tgt_tok = [codec.source(s) for s in train.sources], [codec.target(t) for t in train.targets]
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
    if vocabs is None and subwords is not None:  # every piece of the models, not only those seen
        pieces = [[*SPECIALS, *m.vocabulary()] for m in subwords]
        vocabs = tuple(WordVocab(p, specials=SPECIALS) for p in pieces)  # type: ignore[assignment]
    elif vocabs is None:
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
        st = src_tokens if src_tokens is not None else [codec.source(s) for s in p.sources]
        tt = tgt_tokens if tgt_tokens is not None else [codec.target(t) for t in p.targets]
        refs = [codec.reference(t) for t in p.targets]
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
        src_v, tgt_v, codec, train_split, split(val), None if test is None else split(test), info, sha, source
    )


def learn_subwords(cfg: DataConfig, train: Pairs) -> tuple[Subwords, Subwords]:
    """The sentencepiece models of ``--tokens bpe|unigram``, learnt from the training pairs only:
    one joint model of both sides (the same object twice), or one per side."""
    case = (lambda t: t) if cfg.keep_case else str.lower
    sources, targets = [case(t) for t in train.sources], [case(t) for t in train.targets]
    if cfg.separate_subwords:
        return tuple(Subwords.train(side, cfg.tokens, cfg.vocab_size) for side in (sources, targets))  # type: ignore[return-value]
    joint = Subwords.train(sources + targets, cfg.tokens, cfg.vocab_size)
    return joint, joint


def codec_of(config: Any, assets: dict[str, Any]) -> Codec:
    """The run's :class:`Codec`, from its config and its subword models (if any)."""
    d = config.data
    if d.tokens not in SUBWORDS:
        return Codec(d.tokens, d.keep_case)
    source = assets["subwords"]
    return Codec(d.tokens, d.keep_case, source, assets.get("target_subwords") or source)


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


def hypothesis_text(h: Hypothesis, vocab: WordVocab, codec: Codec) -> str:
    return codec.join(vocab.decode(h.tokens))


def score(
    model: Seq2Seq,
    split: Split,
    tgt_vocab: WordVocab,
    codec: Codec,
    max_len: int,
    beam: int = 1,
    alpha: float = 0.0,
) -> dict[str, Any]:
    """Corpus BLEU and chrF (sacrebleu), exact match, and the teacher-forced loss and token accuracy."""
    hyps = decode(model, split.src, tgt_vocab, beam=beam, alpha=alpha, max_len=max_len)
    texts = [hypothesis_text(h, tgt_vocab, codec) for h in hyps]
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


# ---- translation: the predictor (unrolled.load(RUN)) ----------------------------------------
@dataclass
class Translation:
    """One translated text, as ``translate(..., attention=True)`` returns it."""

    text: str
    source_tokens: list[str]  # as the model read them (unknown ones as they were written)
    unknown: list[str]  # source tokens outside the vocabulary, read as <unk>
    output_tokens: list[str]
    translation: str
    hypothesis: Hypothesis  # the decoder's own record (token ids, scores, attention as a tensor)

    @property
    def log_prob(self) -> float:
        """log P(output [+ <eos>] | source), natural log."""
        return self.hypothesis.log_prob

    @property
    def finished(self) -> bool:
        """True if the output ended with ``<eos>`` (False: cut at the maximum length)."""
        return self.hypothesis.finished

    @property
    def attention(self) -> np.ndarray | None:
        """The attention weights, float32 (output steps, source tokens + 1): row t is the
        distribution over ``source_tokens + ["<eos>"]`` that produced output token t (the last
        row produced ``<eos>`` when :attr:`finished`); every row sums to 1. None for a run with
        ``--attention none``."""
        a = self.hypothesis.attention
        return None if a is None else a.float().numpy()

    def __str__(self) -> str:
        return self.translation


class TranslatePredictor(Predictor):
    """A translation run: :meth:`translate` texts; :meth:`export` an encoder and a decoder step."""

    verbs = ("translate",)

    @property
    def source_vocab(self) -> WordVocab:
        """The source vocabulary (ids 0-3: ``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``)."""
        return self.run.src_vocab

    @property
    def target_vocab(self) -> WordVocab:
        """The target vocabulary (the same specials)."""
        return self.run.tgt_vocab

    @property
    def attention_kind(self) -> str:
        """``"none"``, ``"bahdanau"`` or ``"luong"``: the run's ``--attention``."""
        return self.config.model.attention

    @property
    def max_output(self) -> int:
        """Decoding stops after this many tokens unless told: twice the longest training target."""
        return default_max_output(self.run.info)

    @property
    def codec(self) -> Codec:
        """How the run's texts become tokens and back (``--tokens``; its subword models)."""
        return codec_of(self.config, self.run.assets)

    def tokenize(self, text: str) -> list[str]:
        """A source text as the model reads it (``--tokens word|char|bpe|unigram``, lower-cased
        unless the run kept the case), before ``<eos>`` is appended."""
        return self.codec.source(text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Output tokens -> text: words joined by single spaces, characters as they are, subword
        pieces decoded by their model."""
        return self.codec.join(tokens)

    @overload
    def translate(
        self,
        texts: str | Sequence[str],
        beam: int = 1,
        length_penalty: float = 0.0,
        *,
        attention: Literal[False] = False,
        max_len: int | None = None,
    ) -> list[str]: ...

    @overload
    def translate(
        self,
        texts: str | Sequence[str],
        beam: int = 1,
        length_penalty: float = 0.0,
        *,
        attention: Literal[True],
        max_len: int | None = None,
    ) -> list[Translation]: ...

    @torch.inference_mode()
    def translate(
        self,
        texts: str | Sequence[str],
        beam: int = 1,
        length_penalty: float = 0.0,
        *,
        attention: bool = False,
        max_len: int | None = None,
    ) -> list[str] | list[Translation]:
        """Translate ``texts`` (a list of sentences, or one string for one sentence).

        Args:
            beam: 1 = greedy decoding; K > 1 = beam search of width K.
            length_penalty: alpha of Wu et al. 2016 for beam search (0: raw log-probability).
            attention: False: return the translations as strings. True: return
                :class:`Translation` records, with the source tokens read, the words read as
                ``<unk>``, the output tokens, the log-probability and ``.attention``, the weights
                as a numpy array (output steps, source tokens + 1) whose rows sum to 1 (None for
                a run with ``--attention none``).
            max_len: stop after this many output tokens [:attr:`max_output`].

        The result does not depend on how the texts are batched. ``ValueError`` for an empty
        text, ``beam`` < 1 or ``max_len`` < 1.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if beam < 1:
            raise ValueError(f"--beam must be >= 1, got {beam}")
        tokens = []
        for k, text in enumerate(texts):
            tokens.append(self.tokenize(text))
            if not tokens[-1]:
                raise ValueError(f"text {k + 1} is empty: nothing to translate")
        src_v, tgt_v, codec = self.source_vocab, self.target_vocab, self.codec
        eos = src_v.id("<eos>")
        ids = [encode_source(src_v, t, eos) for t in tokens]
        limit = max_len if max_len is not None else self.max_output
        model: Seq2Seq = self.model  # type: ignore[assignment]
        hyps = decode(model, ids, tgt_v, beam=beam, alpha=length_penalty, max_len=limit)
        if not attention:
            return [hypothesis_text(h, tgt_v, codec) for h in hyps]
        return [
            Translation(
                text,
                t,
                [w for w, i in zip(t, x.tolist(), strict=False) if i == UNK],
                tgt_v.decode(h.tokens),
                hypothesis_text(h, tgt_v, codec),
                h,
            )
            for text, t, x, h in zip(texts, tokens, ids, hyps, strict=True)
        ]

    # ---- export -----------------------------------------------------------------------------
    def export_graphs(self) -> list[Graph]:
        """``encoder`` (a whole graph over a batch of sources) and ``decoder_step`` (one target
        token per call); see :class:`EncoderGraph` and :class:`DecoderStepGraph`."""
        model: Seq2Seq = self.model  # type: ignore[assignment]
        encoder = EncoderGraph(model)
        step = decoder_step_graph(model)
        V_src, V_tgt = model.src_embed.num_embeddings, model.tgt_embed.num_embeddings
        state_in, state_out = step.state_in, step.state_out

        def encoder_inputs(B: int, S: int) -> dict[str, Tensor]:
            g = torch.Generator().manual_seed(B * 100 + S)
            lengths = torch.randint(1, S + 1, (B,), generator=g)
            lengths[0] = S  # the longest source fills the batch
            src = torch.randint(len(SPECIALS), V_src, (B, S), generator=g)
            src = src.masked_fill(torch.arange(S) >= lengths[:, None], PAD)
            return {"src": src, "lengths": lengths}

        def step_inputs(B: int, S: int) -> dict[str, Tensor]:
            enc = encoder_inputs(B, S)
            with torch.no_grad():
                outs = dict(zip(encoder.outputs, encoder(*enc.values()), strict=True))
            tokens = torch.randint(len(SPECIALS), V_tgt, (B, 1), generator=torch.Generator().manual_seed(B))
            memory = {k: outs[k] for k in step.memory}
            lengths = {"lengths": enc["lengths"]} if "lengths" in step.inputs else {}
            return {"tokens": tokens, **memory, **lengths, **{k: outs[k] for k in state_in}}

        batch_time = {0: "batch", 1: "src_time"}
        first = "(layers, batch, ·) float32 the decoder's state (the encoder's output of that name first)"
        state_doc = {n: first for n in state_in}
        state_doc |= {
            n: f"the state after this step: the next call's {i}"
            for n, i in zip(state_out, state_in, strict=True)
        }
        memory_doc = {
            "memory": "(batch, src_time, C) float32 the encoder's outputs (zero past each source's end)",
            "keys": "(batch, src_time, K) float32 the attention's keys, computed once per source",
            "context": "(batch, C) float32 the fixed context (the encoder's top layer's final state)",
        }
        enc_doc = {
            "src": "(batch, src_time) int64 source ids: tokens, then <eos>, then <pad> (0) to the longest",
            "lengths": "(batch,) int64 each source's length, <eos> included (>= 1)",
            **{k: v for k, v in memory_doc.items() if k in encoder.outputs},
            **{
                n: f"(layers, batch, ·) float32 the decoder's first state: decoder_step's {n}"
                for n in state_in
            },
        }
        step_doc = {
            "tokens": "(batch, 1) int64 the previous target token: <bos> at the first step",
            **{k: f"the encoder's {k}: " + v for k, v in memory_doc.items() if k in step.memory},
            "lengths": "(batch,) int64 the sources' lengths, as given to the encoder",
            **state_doc,
            "logits": "(batch, V) float32 scores of the next target token (mask <pad>, <bos>; argmax)",
            "attention": "(batch, src_time) float32 the attention weights of this step (0 on the pads)",
        }
        enc_dynamic = {"src": batch_time, "lengths": {0: "batch"}}
        step_dynamic: dict[str, dict[int, str]] = {
            "tokens": {0: "batch"},
            **{k: (batch_time if k != "context" else {0: "batch"}) for k in step.memory},
            **({"lengths": {0: "batch"}} if "lengths" in step.inputs else {}),
            **{n: {1: "batch"} for n in state_in},
        }
        enc = Graph(
            "encoder",
            encoder,
            encoder_inputs(2, 3),
            encoder.outputs,
            enc_dynamic,
            probe=encoder_inputs(3, 5),
            doc=enc_doc,
        )
        dec = Graph(
            "decoder_step",
            step,
            step_inputs(2, 3),
            step.outputs,
            step_dynamic,
            probe=step_inputs(3, 5),
            doc=step_doc,
            steps_fixed=True,
        )
        return [enc, dec]

    def export_meta(self) -> dict[str, Any]:
        d = self.config.data
        tgt = self.target_vocab
        step = decoder_step_graph(self.model)  # type: ignore[arg-type]
        lower = "" if d.keep_case else "lower-case the text, then "
        codec, subwords = self.codec, {}  # subwords: how the tokens join, or the models that join them
        if d.tokens == "word":
            how = (
                lower + "split it on white space; punctuation (Unicode P*/S*) at either end of a piece "
                "is one token per mark"
            )
            untok, subwords = "join the output tokens (up to <eos>) with 'joiner'", {"joiner": " "}
        elif d.tokens == "char":
            how = lower + "read runs of white space as one space; every character is a token"
            untok, subwords = "join the output tokens (up to <eos>) with 'joiner'", {"joiner": ""}
        else:  # the models themselves, base64: sentencepiece reads them (LoadFromSerializedProto)
            assert codec.source_model is not None and codec.target_model is not None
            subwords = {
                "source_sentencepiece": base64.b64encode(codec.source_model.model).decode("ascii"),
                "target_sentencepiece": base64.b64encode(codec.target_model.model).decode("ascii"),
            }
            how = lower + "cut it into pieces with the source sentencepiece model (EncodeAsPieces)"
            untok = "decode the output pieces (up to <eos>) with the target sentencepiece model"
        return {
            "source_vocab": self.source_vocab.to_json(),
            "target_vocab": tgt.to_json(),
            "special_ids": {s: tgt.id(s) for s in SPECIALS},  # the same in both vocabularies
            "tokens": d.tokens,
            "lower_case": not d.keep_case,
            "tokenizer": how + "; tokens outside the source vocabulary are <unk>; append <eos>",
            **subwords,
            "detokenizer": untok,
            "max_output": self.max_output,
            "attention": self.attention_kind,
            "never_output": [PAD, tgt.id("<bos>")],
            "decoder_state": {"inputs": step.state_in, "outputs": step.state_out},
            "decoding": (
                "run encoder on (src, lengths); feed decoder_step tokens = <bos>, the encoder's outputs "
                "by name (and lengths); at each step set logits[:, never_output] = -inf, take the argmax as "
                "the next tokens, feed each 'outputs' state back as the 'inputs' state of the same place; "
                "stop when every row has output <eos> or after max_output steps"
            ),
        }


class EncoderGraph(nn.Module):
    """The exported ``encoder``: ``(src (B, S) int64, lengths (B,) int64)`` ->
    ``memory`` (B, S, C), ``keys`` (B, S, K) with attention or ``context`` (B, C) without, and the
    decoder's initial state ``h0`` (and ``c0``, ``a0`` as the cell has them), (layers, B, H)."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model
        self.state_in = state_names(model.decoder.cells[0].init_state(1))[0]
        extra = ["keys"] if model.attention is not None else ["context"]
        self.outputs = ["memory", *extra, *self.state_in]

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        memory, state = self.model.encode(src, lengths)
        extra = memory.keys if memory.keys is not None else memory.context
        assert extra is not None
        return (memory.outputs, extra, *state_tensors(state))


class DecoderStepGraph(nn.Module):
    """The exported ``decoder_step``: one target token per sentence in, the next token's logits out.

    With attention (:class:`AttentionStepGraph`): ``(tokens (B, 1), memory (B, S, C), keys (B, S, K),
    lengths (B,), h0[, c0, a0])`` -> ``(logits (B, V), h_n[, c_n, a_n], attention (B, S))``. With
    ``--attention none`` (:class:`ContextStepGraph`): ``(tokens, context (B, C), h0[, c0, a0])`` ->
    ``(logits, h_n[, c_n, a_n])``. The state tensors are (layers, B, H); the first step's come
    from the encoder. :func:`decoder_step_graph` makes the one that fits a model.
    """

    memory: ClassVar[list[str]] = []  # the encoder's outputs it reads, besides the state

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model
        self.proto = model.decoder.cells[0].init_state(1)
        self.state_in, self.state_out = state_names(self.proto)
        attends = model.attention is not None
        self.inputs = ["tokens", *self.memory, *(["lengths"] if attends else []), *self.state_in]
        self.outputs = ["logits", *self.state_out, *(["attention"] if attends else [])]

    def _step(self, memory: Memory, tokens: Tensor, parts: list[Tensor | None]) -> tuple[Tensor, ...]:
        state = state_like(self.proto, [t for t in parts if t is not None])
        logits, state, weights = self.model.step(memory, tokens[:, 0], state)
        return (logits, *state_tensors(state), *([] if weights is None else [weights]))


class AttentionStepGraph(DecoderStepGraph):
    """:class:`DecoderStepGraph` of a model with Bahdanau's or Luong's attention."""

    memory: ClassVar[list[str]] = ["memory", "keys"]

    def forward(
        self,
        tokens: Tensor,
        memory: Tensor,
        keys: Tensor,
        lengths: Tensor,
        h0: Tensor,
        c0: Tensor | None = None,
        a0: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        mask = torch.arange(memory.size(1), device=memory.device) < lengths.unsqueeze(1)
        return self._step(Memory(memory, mask, keys, None), tokens, [h0, c0, a0])


class ContextStepGraph(DecoderStepGraph):
    """:class:`DecoderStepGraph` of a model with ``--attention none`` (a fixed context)."""

    memory: ClassVar[list[str]] = ["context"]

    def forward(
        self, tokens: Tensor, context: Tensor, h0: Tensor, c0: Tensor | None = None, a0: Tensor | None = None
    ) -> tuple[Tensor, ...]:
        unused = torch.ones_like(context[:, :1], dtype=torch.bool)  # the step reads only the context
        return self._step(Memory(context[:, None], unused, None, context), tokens, [h0, c0, a0])


def decoder_step_graph(model: Seq2Seq) -> DecoderStepGraph:
    """The :class:`DecoderStepGraph` that fits ``model``'s attention."""
    return (AttentionStepGraph if model.attention is not None else ContextStepGraph)(model)


# ---- the task ------------------------------------------------------------------------------
def _model_bytes(model: Subwords) -> bytes:
    return model.model


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
    Predictor = TranslatePredictor
    assets = {
        "src_vocab": Asset(SRC_VOCAB, _vocab, WordVocab.to_json),
        "tgt_vocab": Asset(TGT_VOCAB, _vocab, WordVocab.to_json),
        # --tokens bpe|unigram: the (source, or joint) sentencepiece model, and the target's if apart
        "subwords": Asset(SPM_FILE, Subwords, _model_bytes, binary=True, optional=True),
        "target_subwords": Asset(TARGET_SPM_FILE, Subwords, _model_bytes, binary=True, optional=True),
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
        models = None if assets is None or assets["subwords"] is None else codec_of(config, assets)
        subwords = None if models is None else (models.source_model, models.target_model)
        data = load_data(config.data, config.loop.seed, vocabs, subwords)  # type: ignore[arg-type]
        c = data.codec
        assets = {
            "src_vocab": data.src_vocab,
            "tgt_vocab": data.tgt_vocab,
            "subwords": c.source_model,
            "target_subwords": c.target_model if c.target_model is not c.source_model else None,
        }
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
            r = score(m, data.val, tgt, data.codec, max_len)  # type: ignore[arg-type]
            return {
                "val_loss": r["loss"],
                "val_bleu": r["bleu"],
                "val_chrf": r["chrf"],
                "val_exact_match": r["exact_match"],
                "val_token_accuracy": r["token_accuracy"],
            }

        loss = seq2seq_loss(config.optim.teacher_forcing, config.optim.label_smoothing)
        V = len(tgt)
        bound = Bound("val_loss", math.log(V), f"ln {V} (a uniform guess over the {V} target tokens)")
        return Fit(batches, loss, validate, select=("val_bleu", "max"), bound=bound)

    def finish(self, run: Run, state: TrainerState, prepared: Prepared) -> dict[str, Any]:
        data: Dataset = prepared.data
        max_len = default_max_output(data.info)
        codec = data.codec
        results: dict[str, Any] = {"best_step": state.best_step, "decoding": "greedy"}
        for part in ("val", "test"):
            split = getattr(data, part)
            results[part] = None if split is None else score(run.model, split, data.tgt_vocab, codec, max_len)
        shown = data.test if data.test is not None else data.val
        hyps = decode(run.model, shown.src[:5], data.tgt_vocab, max_len=max_len)
        results["examples"] = [
            {"source": s, "translation": hypothesis_text(h, data.tgt_vocab, codec), "reference": r}
            for s, h, r in zip(shown.sources, hyps, shown.references, strict=False)
        ]
        return results

    def evaluate(self, run: Run, **inputs: Any) -> dict[str, Any]:
        d = run.config.data
        pairs = read_pairs(inputs["data"], d.source_column, d.target_column)
        codec = codec_of(run.config, run.assets)
        eos = run.src_vocab.id("<eos>")
        split = Split(
            [encode_source(run.src_vocab, codec.source(s), eos) for s in pairs.sources],
            [run.tgt_vocab.encode(codec.target(t)) for t in pairs.targets],
            pairs.sources,
            [codec.reference(t) for t in pairs.targets],
        )
        beam, alpha = inputs.get("beam", 1), inputs.get("length_penalty", 0.0)
        return score(run.model, split, run.tgt_vocab, codec, default_max_output(run.info), beam, alpha)

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
        translator: TranslatePredictor = self.load_args(args)  # type: ignore[assignment]
        if args.attention_plot is not None:
            if translator.attention_kind == "none":
                raise ValueError("--attention-plot needs a run with attention; this one has --attention none")
            if not args.attention_plot.lower().endswith(".png"):
                raise ValueError(
                    "--attention-plot writes a PNG file: give a name ending in .png, "
                    f"got {args.attention_plot!r}"
                )
        results = translator.translate(
            texts, args.beam, args.length_penalty, attention=True, max_len=args.max_output
        )
        seen = sorted({w for t in results for w in t.unknown})
        if seen:
            more = f" and {len(seen) - 10} more" if len(seen) > 10 else ""
            shown = ", ".join(map(repr, seen[:10])) + more
            print(f"unrolled: note: not in the source vocabulary, read as <unk>: {shown}", file=sys.stderr)
        for t in results:
            if args.json:
                record = {"text": t.text, "translation": t.translation, "log_prob": t.log_prob}
                print(json.dumps({**record, "finished": t.finished, "unknown": t.unknown}))
            else:
                print(t.translation)
        if args.attention_plot is not None:
            plot_attention(results[0], args.attention_plot)
        return 0


TASK = Translate()
open_run = TASK.open_run
train = TASK.train


def translate(
    run: Run, texts: list[str], *, beam: int = 1, alpha: float = 0.0, max_len: int | None = None
) -> list[Translation]:
    """Translate ``texts`` with a run's model: :meth:`TranslatePredictor.translate` with the
    attention (``ValueError`` for an empty text or a bad option)."""
    predictor = TranslatePredictor(TASK, run)
    return predictor.translate(texts, beam, alpha, attention=True, max_len=max_len)


def plot_attention(t: Translation, path: str | Path) -> None:
    """A heat map of one translation's attention weights (rows: output tokens, columns: source)."""
    plt = pyplot()

    weights = t.attention
    assert weights is not None
    cols = [*t.source_tokens, "<eos>"]
    rows = [*t.output_tokens, *(["<eos>"] if t.finished else [])]
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * len(cols), 1.0 + 0.4 * len(rows)))
    image = ax.imshow(weights[: len(rows)], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    save_png(fig, path, dpi=120)
