"""Text classification: a labelled CSV/TSV file -> trained run directory -> predictions.

Wiring only: data (:mod:`unrolled.data.labelled`: rows, word tokens, a stratified
train/validation/test split, padded batches with lengths), model (:class:`TextCNN` or a
:class:`RecurrentClassifier` over an RNN/LSTM/GRU/BiLSTM), loss (cross-entropy), metrics
(accuracy and macro-F1), and the predictor (``unrolled.load(RUN)``: every class's probability,
the likeliest label; the ``predict`` command calls it) with its export, one whole graph over a
padded batch of texts.

The validation split picks the best weights; the test split is scored once, at the end, with
the best weights, and written to ``results.json`` next to the validation scores.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells import GRUCell, LSTMCell, RNNCell
from ..data import (
    PAD,
    UNK,
    ClassBatches,
    LabelledTexts,
    WordVocab,
    check_classes,
    pad_batch,
    read_labelled,
    read_text,
    split_indices,
)
from ..data import tokenize as _tokenize
from ..data.labelled import _TOKEN
from ..data.subwords import FILE as SPM_FILE
from ..data.subwords import KINDS as SUBWORDS
from ..data.subwords import Subwords
from ..data.vocab import SPECIALS
from ..data.words import NEWLINE
from ..data.words import tokenize as word_tokens
from ..export import Graph
from ..layers import Recurrent
from ..models import RecurrentClassifier, TextCNN
from ..models.classifier import POOLS
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
from ..training import checkpoint as ckpt
from ..training.config import positive, split_fractions
from ..training.device import model_device, to_device
from .base import Pretrained, RecurrentConfig, follow, load_pretrained, start_from

LABELS = "labels.json"  # the class names, in output order
TOKENS = ("word", *SUBWORDS)
TOKEN_UNITS = ("word", "subword")  # the language models whose encoder a classifier can start from

# --arch NAME -> (cell class, bidirectional); "cnn" is the TextCNN
RECURRENT: dict[str, tuple[type[nn.Module], bool]] = {
    "rnn": (RNNCell, False),
    "lstm": (LSTMCell, False),
    "gru": (GRUCell, False),
    "bilstm": (LSTMCell, True),
}
ARCHS = ("cnn", *RECURRENT, "lm")  # lm: the recurrent encoder of a language model (--init-from)


@dataclass
class ModelConfig:
    """The network: word embeddings -> convolutions or a recurrent layer -> pooling -> linear."""

    arch: str = flag("cnn", choices=ARCHS)  # network: Kim's TextCNN, or a recurrent layer and pooling
    embedding_dim: int = 128  # learned word embedding size (id 0, the pad, stays zero)
    widths: list[int] = flag(factory=lambda: [3, 4, 5], metavar="W,W,...")  # cnn: kernel widths (Kim 2014)
    channels: int = 100  # cnn: feature maps per width
    hidden: int = 128  # recurrent: units per layer and direction
    layers: int = 1  # recurrent: stacked layers
    # recurrent: max or mean over each text's steps, its last state, or concat: the three side by side
    pool: str = flag("max", choices=POOLS)
    dropout: float = 0.5  # on the pooled features (and the embeddings, recurrent): small data overfit
    # recurrent: DropConnect on the recurrent weights W_hh, one mask per batch (AWD-LSTM, ULMFiT)
    weight_drop: float = 0.0
    # a word- or subword-LM run whose embedding and recurrent encoder start the classifier (ULMFiT);
    # the architecture, vocabulary and tokeniser follow the LM
    init_from: str | None = flag(None, metavar="LM_RUN", fixed=True)
    # --init-from: gradual unfreezing: epoch e < K trains only the top e + 1 layer groups (the output
    # layer alone in epoch 0); from epoch K on, every group trains
    freeze_epochs: int = 0
    lr_decay_per_layer: float = 1.0  # --init-from: each layer group's rate is this times the one above
    encoder: dict[str, Any] | None = flag(None, hidden=True)  # the LM's recurrent config (set by --init-from)

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown --arch {self.arch!r}: expected one of {', '.join(ARCHS)}")
        if self.arch == "lm" and self.encoder is None and self.init_from is None:
            raise ValueError("--arch lm is the encoder of a language model: give --init-from LM_RUN instead")
        if self.freeze_epochs < 0:
            raise ValueError(f"--freeze-epochs must be >= 0, got {self.freeze_epochs}")
        if not 0.0 < self.lr_decay_per_layer <= 1.0:
            raise ValueError(f"--lr-decay-per-layer must be in (0, 1], got {self.lr_decay_per_layer}")
        if self.pool not in POOLS:
            raise ValueError(f"unknown --pool {self.pool!r}: expected one of {', '.join(POOLS)}")
        positive(self, ("embedding_dim", "channels", "hidden", "layers"))
        if not self.widths or any(w <= 0 for w in self.widths):
            raise ValueError(f"--widths must be positive integers, got {self.widths}")
        for name in ("dropout", "weight_drop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if self.weight_drop and self.arch == "cnn":
            raise ValueError("--weight-drop drops recurrent weights: it needs a recurrent --arch, not cnn")


@dataclass
class DataConfig:
    """Where the labelled texts come from, how they are split, tokenised and batched."""

    data: str | None = flag(None, metavar="FILE")  # CSV/TSV file of labelled texts (required)
    text_column: str | None = flag(None, metavar="C")  # text column: header name or 0-based index [text / 1]
    # label column: header name or 0-based index [label / 0]
    label_column: str | None = flag(None, metavar="C")
    # a separate test file with the same columns (then no test split of --data)
    test_data: str | None = flag(None, metavar="FILE")
    val_frac: float = 0.1  # validation fraction: held out to pick the best weights
    test_frac: float = 0.1  # test fraction, 0 = none: held out and scored once, at the end
    batch_size: int = 50  # texts per step
    max_tokens: int = 400  # longer texts are cut to their first max_tokens tokens
    # words (lower-cased), or the pieces of a sentencepiece model learnt from the training split
    # (bpe or unigram, --vocab-size pieces) [word; with --init-from, the LM's]
    tokens: str | None = flag(None, choices=TOKENS)
    vocab_size: int = 8000  # --tokens bpe|unigram: pieces of the sentencepiece model (<unk> included)
    min_count: int = 1  # words seen fewer times in the training split become <unk> (--tokens word)
    max_vocab: int = 50_000  # the most frequent words kept (--tokens word)
    # --init-from: the texts are read as the LM reads them (its tokeniser; lower-cased or not)
    lm_lower: bool | None = flag(None, hidden=True)

    def validate(self) -> None:
        if self.data is None:
            raise ValueError("--data FILE is required: a CSV or TSV file of labelled texts")
        if self.tokens is not None and self.tokens not in TOKENS:
            raise ValueError(f"unknown --tokens {self.tokens!r}: expected {' or '.join(TOKENS)}")
        positive(self, ("batch_size", "max_tokens", "min_count", "max_vocab", "vocab_size"))
        word_only = [
            o
            for o, v in (("--min-count", self.min_count != 1), ("--max-vocab", self.max_vocab != 50_000))
            if v
        ]
        if self.tokens in SUBWORDS and word_only:
            raise ValueError(
                f"{' and '.join(word_only)} apply to --tokens word: the vocabulary of --tokens "
                f"{self.tokens} is every piece of its model (--vocab-size)"
            )
        if self.tokens == "word" and self.vocab_size != 8000:
            raise ValueError("--vocab-size applies to --tokens bpe or unigram, not to --tokens word")
        split_fractions(self.val_frac, 0.0 if self.test_data else self.test_frac)


SELECT = ("accuracy", "loss")


@dataclass
class ClassifyLoopConfig(LoopConfig):
    """:class:`LoopConfig` and which validation figure picks the best weights."""

    # the validation figure that picks the best weights (and that --patience waits on): the
    # highest accuracy (ties: the lower loss), or the lowest loss (a classifier's accuracy often
    # still rises for a while after its loss, which grows with its confidence, has turned; older
    # runs: the loss)
    select: str = flag("accuracy", choices=SELECT, fixed=True)

    def validate(self) -> None:
        super().validate()
        if self.select not in SELECT:
            raise ValueError(f"unknown --select {self.select!r}: expected {' or '.join(SELECT)}")


@dataclass
class ClassifyConfig(RunConfig):
    """Everything needed to rebuild and continue a classifier run; saved as config.json."""

    TASK: ClassVar[str] = "classify"

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3))
    # small data sets overfit within a few epochs: stop 5 validations after the best one
    loop: ClassifyLoopConfig = field(default_factory=lambda: ClassifyLoopConfig(eval_every=100, patience=5))

    @classmethod
    def from_json(cls, obj: Any) -> Any:
        """A run's config.json; one written before ``--select`` picked its weights by the loss."""
        if isinstance(obj, dict) and isinstance(obj.get("loop"), dict):
            obj = {**obj, "loop": {"select": "loss", **obj["loop"]}}
        return super().from_json(obj)


# ---- data ----------------------------------------------------------------------------------
@dataclass
class Split:
    """One part of the data: token ids per text (cut to max_tokens) and class ids."""

    ids: list[Tensor]
    labels: Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Dataset:
    classes: list[str]
    vocab: WordVocab
    train: Split
    val: Split
    test: Split | None
    sources: list[str]
    sha256: str  # of the file(s): a resumed run needs the same data
    subwords: Subwords | None = None  # --tokens bpe|unigram: the sentencepiece model
    init: dict[str, Tensor] | None = None  # --init-from (a new run): the LM's embedding and encoder


def load_data(
    cfg: DataConfig,
    seed: int,
    vocab: WordVocab | None = None,
    classes: list[str] | None = None,
    subwords: Subwords | None = None,
) -> Dataset:
    """Read, check and split the data; learn the subword model and build the vocabulary from the
    training split (or reuse a run's)."""
    assert cfg.data is not None  # validate() says so to the user
    rows = read_labelled(cfg.data, cfg.text_column, cfg.label_column)
    classes = classes or check_classes(rows)
    test_rows: LabelledTexts | None = None
    if cfg.test_data:
        test_rows = read_labelled(cfg.test_data, cfg.text_column, cfg.label_column)
        val_i, train_i = split_indices(rows.labels, [cfg.val_frac], seed)
        test_i: list[int] = []
    elif cfg.test_frac > 0:
        val_i, test_i, train_i = split_indices(rows.labels, [cfg.val_frac, cfg.test_frac], seed)
    else:
        (val_i, train_i), test_i = split_indices(rows.labels, [cfg.val_frac], seed), []
    if cfg.tokens in SUBWORDS and subwords is None:
        subwords = Subwords.train((rows.texts[i].lower() for i in train_i), cfg.tokens, cfg.vocab_size)
    tok = tokenizer_of(cfg, subwords)
    tokens = [tok(t)[: cfg.max_tokens] for t in rows.texts]
    if vocab is None and subwords is not None:  # every piece of the model, not only those seen
        vocab = WordVocab([*SPECIALS, *subwords.vocabulary()])
    vocab = vocab or WordVocab.from_tokens((tokens[i] for i in train_i), cfg.min_count, cfg.max_vocab)

    def encode(source: LabelledTexts, toks: list[list[str]], rows_i: list[int]) -> Split:
        labels = class_ids([source.labels[i] for i in rows_i], classes, source.source)
        return Split([vocab.encode(toks[i]) for i in rows_i], labels)

    test = None
    if test_rows is not None:
        test_tokens = [tok(t)[: cfg.max_tokens] for t in test_rows.texts]
        test = encode(test_rows, test_tokens, list(range(len(test_rows))))
    elif test_i:
        test = encode(rows, tokens, test_i)
    sources = [rows.source] + ([test_rows.source] if test_rows else [])
    sha = hashlib.sha256((rows.sha256 + (test_rows.sha256 if test_rows else "")).encode()).hexdigest()
    train, val = encode(rows, tokens, train_i), encode(rows, tokens, val_i)
    return Dataset(classes, vocab, train, val, test, sources, sha, subwords)


def tokenizer_of(cfg: DataConfig, subwords: Subwords | None = None) -> Callable[[str], list[str]]:
    """The run's tokeniser: the classifier's own (lower-cased words, or the pieces of its
    sentencepiece model ``subwords``), or (``--init-from``) the LM's, line breaks left out."""
    lower = True if cfg.lm_lower is None else cfg.lm_lower
    if subwords is not None:
        model = subwords
        return lambda text: [p for p in model.stream(text.lower() if lower else text) if p != NEWLINE]
    if cfg.lm_lower is None:
        return _tokenize
    return lambda text: [t for t in word_tokens(text, lower) if t != NEWLINE]


def class_ids(labels: list[str], classes: list[str], source: str) -> Tensor:
    """Label names -> (N,) int64 class ids; ``ValueError`` naming labels outside ``classes``."""
    index = {c: k for k, c in enumerate(classes)}
    unknown = sorted(set(labels) - index.keys())
    if unknown:
        raise ValueError(
            f"labels {', '.join(map(repr, unknown[:5]))} of {source!r} are not among the "
            f"training classes ({', '.join(map(repr, classes))})"
        )
    return torch.tensor([index[c] for c in labels], dtype=torch.long)


# ---- transfer from a language model (ULMFiT) -------------------------------------------------
def adopt_language_model(config: ClassifyConfig) -> Pretrained:
    """``--init-from LM_RUN``: check the LM and make ``config`` follow it (encoder, embedding size,
    tokeniser); its vocabulary, sentencepiece model and weights come back to start from."""
    m, d = config.model, config.data
    assert m.init_from is not None
    lm = load_pretrained(m.init_from, TOKEN_UNITS, "the classifier")
    if d.tokens is not None and d.tokens != lm.tokens:
        raise ValueError(
            f"--tokens {d.tokens} differs from the language model's tokens ({lm.tokens}): drop --tokens "
            "(the classifier reads text as its LM does), or train an LM of those tokens"
        )
    encoder = RecurrentConfig(**lm.encoder)
    follows = {"arch": "lm", "hidden": encoder.hidden, "layers": encoder.layers}
    follows["embedding_dim"] = lm.embedding_dim
    follow(m, ModelConfig(), follows, {"arch": f"a {encoder.cell} encoder"})
    m.encoder = lm.encoder
    d.tokens, d.lm_lower = lm.tokens, lm.lower
    return lm


def layer_groups(model: RecurrentClassifier) -> list[list[nn.Parameter]]:
    """The layer groups of gradual unfreezing and discriminative rates, from the bottom: the
    embedding, each recurrent layer (both directions), the output layer."""
    D = 2 if model.rnn.bidirectional else 1
    layers: list[list[nn.Parameter]] = [[] for _ in range(model.rnn.num_layers)]
    for name, param in model.rnn.named_parameters():
        layers[int(name.split(".")[1]) // D].append(param)
    return [list(model.embed.parameters()), *layers, list(model.out.parameters())]


def lr_scales(groups: int, freeze_epochs: int, decay: float, epoch: int) -> list[float]:
    """Each group's multiple of the learning rate in ``epoch``: ``decay`` per group below the top
    (Howard & Ruder's discriminative rates, who use 1/2.6), and 0 for the groups still frozen:
    in epoch e < ``freeze_epochs`` only the top e + 1 groups train (the output layer first).

        >>> lr_scales(4, 2, 0.5, 0), lr_scales(4, 2, 0.5, 1), lr_scales(4, 2, 0.5, 2)
        ([0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.5, 1.0], [0.125, 0.25, 0.5, 1.0])
    """
    scales = [decay ** (groups - 1 - i) for i in range(groups)]
    if epoch < freeze_epochs:
        scales = [0.0 if i < groups - 1 - epoch else x for i, x in enumerate(scales)]
    return scales


# ---- model, loss, metrics ------------------------------------------------------------------
def build_model(cfg: ModelConfig, vocab_size: int, num_classes: int) -> TextCNN | RecurrentClassifier:
    cfg.validate()
    if cfg.encoder is not None:  # a language model's encoder, as that model built it (--init-from)
        encoder = RecurrentConfig(**cfg.encoder)
        encoder.weight_drop = cfg.weight_drop  # a regulariser of this run, not the LM's architecture
        rnn = encoder.build_recurrent(cfg.embedding_dim, dropout=cfg.dropout)
        return RecurrentClassifier(vocab_size, num_classes, rnn, cfg.embedding_dim, cfg.pool, cfg.dropout)
    if cfg.arch == "cnn":
        return TextCNN(vocab_size, num_classes, cfg.embedding_dim, cfg.widths, cfg.channels, cfg.dropout)
    cell, bidirectional = RECURRENT[cfg.arch]
    rnn = Recurrent(
        functools.partial(cell, hidden_size=cfg.hidden),
        cfg.embedding_dim,
        num_layers=cfg.layers,
        bidirectional=bidirectional,
        dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        batch_first=True,
        weight_drop=cfg.weight_drop,
    )
    return RecurrentClassifier(vocab_size, num_classes, rnn, cfg.embedding_dim, cfg.pool, cfg.dropout)


def class_loss(
    model: nn.Module, x: tuple[Tensor, Tensor], y: Tensor, state: Any
) -> tuple[Tensor, None, Tensor]:
    """Mean cross-entropy of a batch; counts its real (unpadded) tokens."""
    tokens, lengths = x
    return F.cross_entropy(model(tokens, lengths), y), None, lengths.sum()  # counted on the device


def scores(y_true: Tensor, y_pred: Tensor, num_classes: int) -> dict[str, Any]:
    """Accuracy, macro-F1 and the confusion matrix (rows: true class, columns: predicted).

    Per class, F1 = 2 TP / (2 TP + FP + FN); macro-F1 is their mean over the classes that occur
    in the truth or in the predictions (a class absent from both has no F1 to average).
    """
    confusion = torch.bincount(y_true * num_classes + y_pred, minlength=num_classes**2)
    confusion = confusion.view(num_classes, num_classes)
    tp = confusion.diag().double()
    denom = confusion.sum(0).double() + confusion.sum(1).double()  # 2 TP + FP + FN
    present = denom > 0
    f1 = 2 * tp[present] / denom[present]
    n = int(y_true.numel())
    return {
        "accuracy": float(tp.sum()) / max(n, 1),
        "macro_f1": float(f1.mean()) if present.any() else 0.0,
        "n": n,
        "confusion": confusion.tolist(),
    }


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, num_classes: int, batch_size: int = 256) -> dict[str, Any]:
    """Loss (mean cross-entropy, nats), accuracy, macro-F1 and confusion matrix on ``split``."""
    was_training = model.training
    model.eval()
    batches = ClassBatches(split.ids, split.labels, batch_size, shuffle=False, min_len=model.min_len)
    losses, preds = [], []  # kept as tensors: one host sync at the end, not one per batch
    device = model_device(model)
    for batch in batches:
        (tokens, lengths), y = to_device(batch, device)
        logits = model(tokens, lengths)
        losses.append(F.cross_entropy(logits, y, reduction="sum").double())
        preds.append(logits.argmax(dim=1))
    model.train(was_training)
    result = scores(split.labels, torch.cat(preds).cpu(), num_classes)
    return {"loss": float(torch.stack(losses).sum()) / max(len(split), 1), **result}


# ---- the predictor: unrolled.load(RUN) -----------------------------------------------------
TOKEN_PATTERN = _TOKEN.pattern  # what unrolled.data.tokenize matches, in the lower-cased text
TOKENIZER = (
    "lower-case the text (Python's str.lower), then take, left to right, every match of the regular "
    "expression {pattern} (Python re, Unicode \\w: runs of letters, digits and underscores, with "
    "inner apostrophes kept: it's, don't; any other non-space character is a token of its own); "
    "keep the first {max_tokens} tokens; a token not in the vocabulary is <unk> (id 1)"
)


def top(labels: list[str], probs: np.ndarray) -> list[tuple[str, float]]:
    """Each row's likeliest label and its probability (the first of tied ones)."""
    best = probs.argmax(axis=1)
    return [(labels[k], float(row[k])) for k, row in zip(best, probs, strict=True)]


class ClassifierGraph(nn.Module):
    """The exported graph: ``tokens`` (B, T) and ``lengths`` (B,) -> ``logits`` and
    ``probabilities`` (B, K). A batch narrower than a CNN's widest kernel is padded here, inside
    the graph (the pads are never read), so the graph takes any T >= 1."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        short = self.model.min_len - tokens.size(1)  # > 0: a CNN and a batch of short texts
        tokens = F.pad(tokens, (0, torch.sym_max(0, short)), value=PAD)  # (B, max(T, min_len))
        logits = self.model(tokens, lengths)  # (B, K)
        return logits, torch.softmax(logits, dim=1)


class ClassifyPredictor(Predictor):
    """A classifier run: :meth:`predict` labels, :meth:`predict_proba` every class's probability,
    :meth:`export` the model (a whole graph over a batch of texts).

    Texts are read as in training: lower-cased word tokens (:func:`unrolled.data.tokenize`), the
    first ``max_tokens`` of them, words outside the vocabulary as ``<unk>``. A text's probabilities
    do not depend on what else is in its batch (but for float32 rounding, ~1e-7).
    """

    verbs = ("predict", "predict_proba")

    @property
    def labels(self) -> list[str]:
        """The class names, in the order of :meth:`predict_proba`'s columns."""
        return list(self.run.classes)

    @property
    def vocab(self) -> WordVocab:
        return self.run.vocab

    def encode(self, texts: str | Sequence[str]) -> list[Tensor]:
        """Each text's token ids, as the model reads them; ``ValueError`` for a text with no words."""
        if isinstance(texts, str):
            texts = [texts]
        ids, tok = [], tokenizer_of(self.config.data, self.run.subwords)  # built once, not per text
        for k, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {k + 1} is a {type(text).__name__}, expected a str")
            words = tok(text)[: self.config.data.max_tokens]
            if not words:
                raise ValueError(f"text {k + 1} has no words to classify: {text!r}")
            ids.append(self.vocab.encode(words))
        return ids

    @torch.inference_mode()
    def predict_proba(self, texts: str | Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Every class's probability for each text: (N, K) float64, rows summing to 1, columns in
        :attr:`labels` order. A single str is one text."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ids = self.encode(texts)
        model, device = self.model, self.device
        model.eval()
        rows = [np.zeros((0, len(self.labels)))]
        for start in range(0, len(ids), batch_size):
            tokens, lengths = to_device(pad_batch(ids[start : start + batch_size], model.min_len), device)
            logits = model(tokens, lengths).double()  # (B, K): the softmax in float64 sums to 1
            rows.append(torch.softmax(logits, dim=1).cpu().numpy())
        return np.concatenate(rows)

    def predict(self, texts: str | Sequence[str], batch_size: int = 256) -> list[tuple[str, float]]:
        """``(label, probability)`` of the likeliest class of each text. A single str is one text."""
        return top(self.labels, self.predict_proba(texts, batch_size))

    # ---- export -----------------------------------------------------------------------------
    def export_graphs(self) -> list[Graph]:
        model = self.model
        V, K = len(self.vocab), len(self.labels)

        def inputs(B: int, T: int) -> dict[str, Tensor]:
            g = torch.Generator().manual_seed(B * 100 + T)
            lengths = torch.randint(1, T + 1, (B,), generator=g)
            lengths[0] = T  # the longest row fills the batch, as pad_batch makes it
            tokens = torch.randint(1, V, (B, T), generator=g).masked_fill(
                torch.arange(T) >= lengths[:, None], PAD
            )
            return {"tokens": tokens, "lengths": lengths}

        doc = {
            "tokens": "(batch, time) int64 token ids (vocabulary in the sidecar), each row padded with "
            "<pad> (id 0) after its text; any time >= 1",
            "lengths": "(batch,) int64 each row's number of tokens, 1 to time",
            "logits": f"(batch, {K}) float32 class scores, columns in the order of the sidecar's labels",
            "probabilities": f"(batch, {K}) float32 softmax of the logits",
        }
        dynamic = {"tokens": {0: "batch", 1: "time"}, "lengths": {0: "batch"}}
        # the example at least as long as the widest kernel; the probe shorter (the graph pads it)
        T = max(model.min_len, 4) + 2
        outputs = ["logits", "probabilities"]
        return [
            Graph("classifier", ClassifierGraph(model), inputs(2, T), outputs, dynamic, inputs(3, 2), doc)
        ]

    def export_meta(self) -> dict[str, Any]:
        d = self.config.data
        meta = {
            "labels": self.labels,
            "vocab": self.vocab.to_json(),
            "pad_id": PAD,
            "unk_id": UNK,
            "max_tokens": d.max_tokens,
            "min_time": 1,
        }
        lower = "lower-case the text (Python's str.lower), then " if d.lm_lower in (None, True) else ""
        keep = f"; keep the first {d.max_tokens} tokens; a token not in the vocabulary is <unk> (id 1)"
        if self.run.subwords is not None:
            meta["sentencepiece"] = base64.b64encode(self.run.subwords.model).decode("ascii")
            meta["tokenizer"] = (
                f"{lower}cut each line into pieces with the sentencepiece model 'sentencepiece' (base64; "
                f"LoadFromSerializedProto, EncodeAsPieces){keep}"
            )
        elif d.lm_lower is not None:  # a word-LM's tokeniser (--init-from)
            meta["tokenizer"] = (
                f"{lower}split the text on white space; punctuation (Unicode P*/S*) at either end of a "
                f"piece is one token per mark{keep}"
            )
        else:
            meta["token_pattern"] = TOKEN_PATTERN
            meta["tokenizer"] = TOKENIZER.format(pattern=TOKEN_PATTERN, max_tokens=d.max_tokens)
        return meta


# ---- the task ------------------------------------------------------------------------------
def _classes(obj: Any) -> list[str]:
    if not isinstance(obj, list) or len(obj) < 2 or not all(isinstance(c, str) for c in obj):
        raise ValueError("labels.json is not a list of at least two class names")
    return obj


class Classify(Task):
    """The text classifier as a :class:`Task`: training, ``eval --data``, and ``predict``."""

    name = "classify"
    help = "text classifier (CNN or recurrent) on a CSV/TSV file"
    description = (
        "Train a text classifier on a CSV or TSV file with one labelled text per row. The rows are "
        "split (stratified, by --seed) into training, validation (picks the best weights) and test "
        "(scored once at the end) parts; accuracy and macro-F1 of the best weights go to "
        "results.json in the run directory, next to config, vocabulary, labels, checkpoints "
        "and metrics.jsonl. Columns: a header row naming 'label' and 'text', or "
        "--label-column/--text-column (header name or 0-based index); without a header the order "
        "is label, text."
    )
    Config = ClassifyConfig
    Predictor = ClassifyPredictor
    assets = {
        "vocab": Asset(ckpt.VOCAB, WordVocab.from_json, WordVocab.to_json),
        "classes": Asset(LABELS, _classes, list),
        "subwords": Asset(SPM_FILE, Subwords, lambda m: m.model, binary=True, optional=True),
    }
    default_limits = {"max_minutes": 10.0, "max_epochs": 10.0}
    eval_inputs = {"data": "classifier runs: labelled CSV/TSV file to score (read with the run's columns)"}

    def prepare(self, config: ClassifyConfig, assets: dict[str, Any] | None) -> Prepared:
        if assets is None and config.model.init_from is not None:
            lm = adopt_language_model(config)
            data = load_data(config.data, config.loop.seed, lm.vocab, subwords=lm.subwords)
            data.init = lm.weights
        elif assets is None:
            data = load_data(config.data, config.loop.seed)
        else:
            data = load_data(
                config.data, config.loop.seed, assets["vocab"], assets["classes"], assets["subwords"]
            )
        info = {
            "sources": data.sources,
            "rows": {"train": len(data.train), "val": len(data.val), "test": len(data.test or [])},
            "vocab_size": len(data.vocab),
        }
        assets = {"vocab": data.vocab, "classes": data.classes, "subwords": data.subwords}
        return Prepared(assets, data, data.sha256, ", ".join(map(repr, data.sources)), info)

    def build_model(self, config: ClassifyConfig, assets: dict[str, Any]) -> nn.Module:
        return build_model(config.model, len(assets["vocab"]), len(assets["classes"]))

    def fit(self, config: ClassifyConfig, model: nn.Module, prepared: Prepared) -> Fit:
        data, K = prepared.data, len(prepared.data.classes)
        batches = ClassBatches(
            data.train.ids,
            data.train.labels,
            config.data.batch_size,
            seed=config.loop.seed,
            min_len=model.min_len,
        )

        def validate(m: nn.Module) -> dict[str, float]:
            r = evaluate(m, data.val, K)
            return {"val_loss": r["loss"], "val_accuracy": r["accuracy"], "val_macro_f1": r["macro_f1"]}

        # 10 x ln K: an overfitted classifier's validation loss can pass 3 x ln 2 without diverging
        bound = Bound("val_loss", math.log(K), f"ln {K} (a uniform guess over the {K} classes)", factor=10.0)
        accuracy = ("val_accuracy", "max", "val_loss")  # of two checkpoints as accurate, the surer one
        select = accuracy if config.loop.select == "accuracy" else ("val_loss", "min")
        if config.model.encoder is None:
            return Fit(batches, class_loss, validate, select=select, bound=bound)
        if data.init is not None:  # a new run: start from the language model's weights
            start_from(model, data.init)
        groups = layer_groups(model)
        scales = functools.partial(
            lr_scales, len(groups), config.model.freeze_epochs, config.model.lr_decay_per_layer
        )
        return Fit(batches, class_loss, validate, select=select, bound=bound, groups=groups, lr_scales=scales)

    def finish(self, run: Run, state: TrainerState, prepared: Prepared) -> dict[str, Any]:
        data, K = prepared.data, len(prepared.data.classes)
        return {
            "classes": data.classes,
            "best_step": state.best_step,
            "val": evaluate(run.model, data.val, K),
            "test": None if data.test is None else evaluate(run.model, data.test, K),
        }

    def evaluate(self, run: Run, **inputs: str) -> dict[str, Any]:
        return evaluate_file(run, inputs["data"])

    def eval_line(self, result: dict[str, Any], **inputs: str) -> str:
        return (
            f"{inputs['data']}: accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f}, "
            f"loss {result['loss']:.4f} nats over {result['n']:,} texts"
        )

    def describe_val(self, record: dict[str, Any]) -> tuple[str, str]:
        return f"{record['val_loss']:.3f} acc {record['val_accuracy']:.3f}", (
            f"val loss {record['val_loss']:.4f}, accuracy {record['val_accuracy']:.4f}, "
            f"macro-F1 {record['val_macro_f1']:.4f}"
        )

    # ---- command line -----------------------------------------------------------------------
    def report(self, run: Run, state: TrainerState, results: Any, args: argparse.Namespace) -> None:
        self.print_summary(run, state)
        for part in ("val", "test"):
            r = results[part]
            if r is not None:
                print(f"{part}: accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  ({r['n']} texts)")

    def add_commands(self, commands: Any) -> None:
        p = commands.add_parser(
            "predict",
            help="classify texts with a classifier run",
            description=(
                "Print the predicted label and its probability (tab-separated), one line per text, "
                "with the best weights of a classifier run."
            ),
        )
        self.add_run_argument(p, "run directory of `unrolled train classify`")
        p.add_argument("--text", action="append", metavar="TEXT", help="a text to classify (repeatable)")
        p.add_argument("--file", metavar="FILE", help="UTF-8 file with one text per line ('-' = stdin)")
        p.add_argument(
            "--json", action="store_true", help="one JSON object per text, with every class's probability"
        )
        p.set_defaults(func=self._cmd_predict)

    def _cmd_predict(self, args: argparse.Namespace) -> int:
        if (args.text is None) == (args.file is None):
            raise ValueError(
                "give the texts to classify with --text TEXT (repeatable) or --file FILE, not both"
            )
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
        predictor = self.load_args(args)
        probs = predictor.predict_proba(texts)  # (N, K)
        labels = predictor.labels
        for text, (label, prob), row in zip(texts, top(labels, probs), probs, strict=True):
            if args.json:
                per_class = dict(zip(labels, row.tolist(), strict=True))
                record = {"text": text, "label": label, "probability": prob, "probabilities": per_class}
                print(json.dumps(record))
            else:
                print(f"{label}\t{prob:.4f}")
        return 0


TASK = Classify()
open_run = TASK.open_run
train = TASK.train


def evaluate_file(run: Run, path: str | Path) -> dict[str, Any]:
    """Score a run's model on a whole labelled file, read with the run's columns and vocabulary."""
    d = run.config.data
    rows = read_labelled(path, d.text_column, d.label_column)
    labels = class_ids(rows.labels, run.classes, rows.source)
    tok = tokenizer_of(d, run.subwords)
    ids = [run.vocab.encode(tok(t)[: d.max_tokens]) for t in rows.texts]
    return evaluate(run.model, Split(ids, labels), len(run.classes))
