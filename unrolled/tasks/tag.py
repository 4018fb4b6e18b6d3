"""Sequence tagging (part of speech and the like): tagged sentences -> run directory -> tags.

Wiring only: data (:mod:`unrolled.data.tagged`: the slash, CoNLL-U and two-column formats,
sentences as ids, padded batches), model (:class:`unrolled.models.tagger.Tagger`: word
embeddings and a character encoder, any recurrent layer, softmax or CRF), metrics (token
accuracy, accuracy on words unseen in training, per-tag precision/recall/F1, the most frequent
confusions), the baseline every tagger must beat (each word's most frequent training tag, and
the most frequent tag overall for a word never seen), and the predictor (``unrolled.load(RUN)``,
which the ``tag`` command calls) with the export of its emission network as one whole graph (a
CRF's transition scores go to the sidecar, for a Viterbi outside unrolled).

The sentences are split (seeded) into training, validation (picks the best weights by token
accuracy) and test parts (scored once at the end, with the baseline, into results.json).
A tag of the validation or test part that training never saw cannot be predicted: its tokens
count as errors, and the run says how many and which tags (more than half of a part's tokens
is an error: the file is then in another tag set).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..data import PAD, UNK, WordVocab, split_indices
from ..data.tagged import (
    FORMATS,
    TAG_COLUMNS,
    EncodedSentence,
    Sentence,
    SentenceBatches,
    guess_format,
    pad_sentences,
    read_tagged,
)
from ..export import Graph
from ..metrics.tagging import scores
from ..models.tagger import CHAR_ENCODERS, DECODERS, Tagger
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
from .base import CELLS, Pretrained, RecurrentConfig, follow, load_pretrained, start_from

log = logging.getLogger(__name__)
TAGS = "tags.json"  # the tag names, in output order
CHARS = "chars.json"  # the character vocabulary
TOKEN = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")  # words (U.S, 3.5, don't, well-known), punctuation


@dataclass
class ModelConfig(RecurrentConfig):
    """The network: word embeddings + character encoder -> recurrent layers -> tag scores."""

    cell: str = flag("lstm", choices=tuple(CELLS))  # recurrent cell of every layer
    hidden: int = 100  # units per layer and direction
    layers: int = 1  # stacked recurrent layers
    bidirectional: bool = True  # read each sentence both ways (--no-bidirectional: left to right)
    embedding_dim: int = 100  # learned word embedding size
    # a BiLSTM or a CNN over each word's characters, for words unseen in training (none: words only)
    char_encoder: str = flag("lstm", choices=CHAR_ENCODERS)
    decoder: str = flag("softmax", choices=DECODERS)  # softmax per word, or a linear-chain CRF
    dropout: float = 0.5  # on the word features and the recurrent outputs
    lower: bool = False  # look words up lower-cased (the character encoder still sees the case)
    # a word-LM run whose vocabulary, embedding and recurrent encoder start the tagger; the
    # architecture follows the LM: its cell, sizes and case, left to right, no character encoder
    init_from: str | None = flag(None, metavar="LM_RUN", fixed=True)

    def validate(self) -> None:
        super().validate()
        positive(self, ("embedding_dim",))
        if self.char_encoder not in CHAR_ENCODERS:
            raise ValueError(
                f"unknown --char-encoder {self.char_encoder!r}: expected {', '.join(CHAR_ENCODERS)}"
            )
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown --decoder {self.decoder!r}: expected {', '.join(DECODERS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")


@dataclass
class DataConfig:
    """Where the tagged sentences come from and how they are split and batched."""

    data: str | None = flag(None, metavar="FILE")  # tagged sentences (required)
    format: str | None = flag(None, choices=FORMATS)  # slash, conllu or conll [from the suffix]
    tag_column: str = flag("upos", choices=TAG_COLUMNS)  # CoNLL-U: which tags to learn
    test_data: str | None = flag(None, metavar="FILE")  # a separate test file (then no test split)
    val_frac: float = 0.1  # validation sentences: pick the best weights
    test_frac: float = 0.1  # test sentences, scored once at the end
    batch_size: int = 16  # sentences per step
    min_count: int = 1  # words seen fewer times in training become <unk> (their characters still count)

    def validate(self) -> None:
        if self.data is None:
            raise ValueError("--data FILE is required: a file of tagged sentences")
        positive(self, ("batch_size", "min_count"))
        split_fractions(self.val_frac, 0.0 if self.test_data else self.test_frac)


@dataclass
class TagConfig(RunConfig):
    """Everything needed to rebuild and continue a tagger run; saved as config.json."""

    TASK: ClassVar[str] = "tag"

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(eval_every=100, patience=8))


# ---- data ----------------------------------------------------------------------------------
@dataclass
class Vocabs:
    words: WordVocab
    chars: WordVocab
    tags: list[str]
    lower: bool

    def __post_init__(self) -> None:
        self.tag_index = {t: k for k, t in enumerate(self.tags)}

    def encode(self, words: list[str], tags: list[str] | None) -> EncodedSentence:
        """Ids of a sentence; ``tags`` (training sentences only: their tags are all known) or None."""
        return EncodedSentence(
            self.words.encode([w.lower() if self.lower else w for w in words]),
            [self.chars.encode(list(w)) for w in words],
            torch.tensor([self.tag_index[t] for t in tags] if tags is not None else [-1] * len(words)),
        )

    def unseen_tags(self, sentences: list[Sentence], what: str) -> int:
        """How many tokens of ``sentences`` carry a tag that training never saw, and say so.

        The model cannot predict such a tag, so those tokens count as errors in every score. More
        than half of them is an error: the file is then most likely in another tag set (another
        ``--tag-column``, another corpus).
        """
        unseen = Counter(t for s in sentences for t in s.tags if t not in self.tag_index)
        n, total = sum(unseen.values()), sum(len(s.tags) for s in sentences)
        if n == 0:
            return 0
        ranked = sorted(unseen, key=lambda t: (-unseen[t], t))  # the most frequent first
        names = ", ".join(map(repr, ranked[:5])) + (", ..." if len(ranked) > 5 else "")
        if 2 * n > total:
            raise ValueError(
                f"{n} of the {total} tokens of {what} carry tags that training never saw ({names}): is it "
                "the same tag set? (check --tag-column and --format)"
            )
        log.info(
            f"{what}: {n} of {total} tokens carry tags that training never saw ({names}); the model cannot "
            "predict them: they count as errors"
        )
        return n


@dataclass
class Dataset:
    vocabs: Vocabs
    train: list[Sentence]
    val: list[Sentence]
    test: list[Sentence] | None
    sources: list[str]
    sha256: str
    init: dict[str, Tensor] | None = None  # --init-from (a new run): the LM's embedding and encoder


def _format(cfg: DataConfig, path: str) -> str:
    """--format, or the format guessed from the file's suffix (and said so)."""
    if cfg.format:
        return cfg.format
    fmt = guess_format(path)
    log.info(f"reading {path} as --format {fmt} (from its suffix; give --format to choose)")
    return fmt


def _read(cfg: DataConfig, path: str) -> list[Sentence]:
    return read_tagged(path, _format(cfg, path), cfg.tag_column).sentences


def load_data(
    cfg: DataConfig,
    model: ModelConfig,
    seed: int,
    vocabs: Vocabs | None = None,
    words: WordVocab | None = None,
) -> Dataset:
    """Read and split the sentences; build the vocabularies from the training part (or reuse them;
    ``words``: a language model's, for ``--init-from``)."""
    assert cfg.data is not None  # validate() says so to the user
    main = read_tagged(cfg.data, _format(cfg, cfg.data), cfg.tag_column)
    sentences = main.sentences
    if len(sentences) < cfg.batch_size:
        raise ValueError(
            f"{cfg.data!r} has {len(sentences)} sentences, fewer than one batch (--batch-size "
            f"{cfg.batch_size}): give more sentences or a smaller --batch-size"
        )
    test_file = (
        read_tagged(cfg.test_data, _format(cfg, cfg.test_data), cfg.tag_column) if cfg.test_data else None
    )
    fractions = [cfg.val_frac] + ([] if test_file or cfg.test_frac == 0 else [cfg.test_frac])
    parts = split_indices([0] * len(sentences), fractions, seed)  # one stratum: a seeded shuffle
    val_i, rest = parts[0], parts[1:]
    test_i, train_i = (rest[0], rest[1]) if len(rest) == 2 else ([], rest[0])
    train = [sentences[i] for i in train_i]
    if cfg.batch_size > len(train):
        raise ValueError(
            f"the training part has {len(train)} sentences, fewer than one batch (--batch-size "
            f"{cfg.batch_size}): give more sentences or a smaller --batch-size"
        )
    if vocabs is None:
        words = words or WordVocab.from_tokens(
            ([w.lower() if model.lower else w for w in s.words] for s in train), cfg.min_count
        )
        chars = WordVocab.from_tokens("".join(s.words) for s in train)
        tags = [
            t
            for t, _ in sorted(
                Counter(t for s in train for t in s.tags).items(), key=lambda kv: (-kv[1], kv[0])
            )
        ]
        vocabs = Vocabs(words, chars, tags, model.lower)
    test = test_file.sentences if test_file else [sentences[i] for i in test_i] or None
    sources = [main.source] + ([test_file.source] if test_file else [])
    sha = main.sha256 + (test_file.sha256 if test_file else "")
    return Dataset(vocabs, train, [sentences[i] for i in val_i], test, sources, sha)


def adopt_language_model(model: ModelConfig) -> Pretrained:
    """``--init-from LM_RUN``: check the word LM and make ``model`` follow it (its encoder's cell and
    sizes, its embedding size and case, left to right, no character encoder: the LM's encoder
    reads the embeddings alone); the LM's vocabulary and weights come back to start from."""
    assert model.init_from is not None
    lm = load_pretrained(model.init_from, ("word",), "the tagger")
    lm_values = lm.encoder | {"embedding_dim": lm.embedding_dim, "lower": lm.lower}
    follow(model, ModelConfig(), lm_values | {"bidirectional": False, "char_encoder": "none"})
    return lm


# ---- the baseline and prediction -------------------------------------------------------------
class MostFrequentTag:
    """Each word's most frequent training tag; the most frequent tag overall for unseen words."""

    def __init__(self, train: list[Sentence], lower: bool) -> None:
        self.lower = lower
        per_word: dict[str, Counter[str]] = {}
        overall: Counter[str] = Counter()
        for s in train:
            for w, t in zip(s.words, s.tags, strict=True):
                per_word.setdefault(self._key(w), Counter())[t] += 1
                overall[t] += 1
        self.default = min(overall, key=lambda t: (-overall[t], t))
        self.best = {w: min(c, key=lambda t: (-c[t], t)) for w, c in per_word.items()}

    def _key(self, w: str) -> str:
        return w.lower() if self.lower else w

    def tag(self, words: list[str]) -> list[str]:
        return [self.best.get(self._key(w), self.default) for w in words]


@torch.no_grad()
def predict(
    model: Tagger, vocabs: Vocabs, sentences: list[list[str]], batch_size: int = 64
) -> list[list[str]]:
    """The model's tags for each sentence (a list of words)."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    out: list[list[str]] = []
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start : start + batch_size]
        (words, chars, lengths), _ = pad_sentences([vocabs.encode(s, None) for s in chunk])
        words, chars, lengths = to_device((words, chars, lengths), device)
        ids = model.decode(model(words, chars, lengths), lengths).cpu()
        out += [[vocabs.tags[k] for k in ids[i, : len(s)].tolist()] for i, s in enumerate(chunk)]
    model.train(was_training)
    return out


def nll_per_word(model: Tagger, sentences: list[EncodedSentence], batch_size: int = 64) -> float:
    """The model's loss (cross-entropy, or the CRF's -log p(tags)) per word of ``sentences``, in
    nats: ln K for a uniform guess over K tags (0.0 for no sentences)."""
    device, total, words = model_device(model), 0.0, 0
    for start in range(0, len(sentences), batch_size):
        (w, c, lengths), tags = pad_sentences(sentences[start : start + batch_size])
        w, c, lengths, tags = to_device((w, c, lengths, tags), device)
        n = int(lengths.sum())
        total, words = total + float(model.loss(model(w, c, lengths), tags, lengths)) * n, words + n
    return total / max(words, 1)


def evaluate(model: Tagger, vocabs: Vocabs, sentences: list[Sentence], known: set[str]) -> dict[str, Any]:
    predicted = predict(model, vocabs, [s.words for s in sentences])
    return scores(sentences, predicted, known, vocabs.lower)


# ---- the predictor: unrolled.load(RUN) -----------------------------------------------------
TOKENIZER = (
    "take, left to right, every match of the regular expression {pattern} (Python re, Unicode \\w): "
    "words with inner hyphens, apostrophes or periods stay whole (well-known, don't, U.S, 3.5), any "
    "other non-space character is a token of its own; then a '.' token that is not the text's last "
    "is joined to the token before it when that one does not end with '.' and looks like an "
    "abbreviation: it holds a '.' once the periods at its ends are stripped (U.S), or it starts with "
    "an upper-case letter, is all letters and at most 4 long (Mr, Inc, Nov). Word ids: the word "
    "{case} looked up in the vocabulary, <unk> (id 1) if absent; character ids: each character of "
    "the word as written looked up in the chars vocabulary, <unk> (id 1) if absent; <pad> is 0"
)


class Emissions(nn.Module):
    """The exported graph: ``words`` (B, T), ``chars`` (B, T, W), ``lengths`` (B,) -> ``emissions``
    (B, T, K), the per-word tag scores that the softmax or the CRF decodes."""

    def __init__(self, model: Tagger) -> None:
        super().__init__()
        self.model = model

    def forward(self, words: Tensor, chars: Tensor, lengths: Tensor) -> tuple[Tensor]:
        return (self.model(words, chars, lengths),)


class WordEmissions(Emissions):
    """:class:`Emissions` of a tagger without a character encoder: no ``chars`` input."""

    def forward(self, words: Tensor, lengths: Tensor) -> tuple[Tensor]:  # type: ignore[override]
        return (self.model(words, words.unsqueeze(2), lengths),)  # the chars are not read


class TagPredictor(Predictor):
    """A tagger run: :meth:`tag` sentences, :meth:`export` the emission network (a whole graph).

    A sentence is a string, cut into words as ``unrolled tag --text`` does (:func:`tokenize`), or
    a list of words as they are. A sentence's tags do not depend on what else is in its batch.
    """

    verbs = ("tag",)

    @property
    def tags(self) -> list[str]:
        """The tag set, in the order of the emissions' last axis (the most frequent tag first)."""
        return list(self.run.tags)

    @property
    def vocabs(self) -> Vocabs:
        return Vocabs(self.run.vocab, self.run.chars, self.run.tags, self.config.model.lower)

    @staticmethod
    def words(sentences: str | Sequence[str | Sequence[str]]) -> list[list[str]]:
        """Each sentence as its list of words (a string tokenised by :func:`tokenize`); a single
        string is one sentence. ``ValueError`` for a sentence without words or an empty word."""
        if isinstance(sentences, str):
            sentences = [sentences]
        out = []
        for k, sentence in enumerate(sentences, 1):
            if isinstance(sentence, str):
                words = tokenize(sentence)
            elif isinstance(sentence, Sequence) and all(isinstance(w, str) for w in sentence):
                words = list(sentence)
            else:
                raise TypeError(f"sentence {k} must be a str or a list of str, got {type(sentence).__name__}")
            if not words:
                raise ValueError(f"sentence {k} has no words to tag: {sentence!r}")
            if not all(words):
                raise ValueError(f"sentence {k} has an empty word: {sentence!r}")
            out.append(words)
        return out

    def tag(
        self, sentences: str | Sequence[str | Sequence[str]], batch_size: int = 64
    ) -> list[list[tuple[str, str]]]:
        """``(word, tag)`` pairs of each sentence (a str or a list of words; a single str is one
        sentence), decoded as trained: each word's likeliest tag (softmax) or the likeliest
        sequence (CRF, Viterbi)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        words = self.words(sentences)
        with torch.inference_mode():
            tags = predict(self.model, self.vocabs, words, batch_size)
        return [list(zip(w, t, strict=True)) for w, t in zip(words, tags, strict=True)]

    # ---- export -----------------------------------------------------------------------------
    def export_graphs(self) -> list[Graph]:
        model = self.model
        V, C, K = len(self.run.vocab), len(self.run.chars), len(self.tags)

        def inputs(B: int, T: int, W: int) -> dict[str, Tensor]:
            g = torch.Generator().manual_seed(B * 100 + T)
            lengths = torch.randint(1, T + 1, (B,), generator=g)
            lengths[0] = T
            real = torch.arange(T) < lengths[:, None]  # (B, T)
            words = torch.randint(1, V, (B, T), generator=g) * real
            spelled = torch.randint(1, W + 1, (B, T), generator=g) * real  # characters per word
            chars = torch.randint(1, C, (B, T, W), generator=g) * (torch.arange(W) < spelled[..., None])
            named = {"words": words, "chars": chars, "lengths": lengths}
            return named if model.chars is not None else {"words": words, "lengths": lengths}

        doc = {
            "words": "(batch, time) int64 word ids (vocab in the sidecar), <pad> (0) after each sentence",
            "chars": "(batch, time, chars_per_word) int64 each word's character ids (chars in the "
            "sidecar), 0 after the word's last character and in the rows of <pad> words",
            "lengths": "(batch,) int64 each sentence's number of words, 1 to time",
            "emissions": f"(batch, time, {K}) float32 tag scores of each word, columns in the order of "
            "the sidecar's tags; rows past a sentence's length mean nothing",
        }
        dynamic = {
            "words": {0: "batch", 1: "time"},
            "chars": {0: "batch", 1: "time", 2: "chars_per_word"},
            "lengths": {0: "batch"},
        }
        example, probe = inputs(2, 4, 3), inputs(3, 7, 6)
        dynamic = {k: v for k, v in dynamic.items() if k in example}
        graph = Emissions(model) if model.chars is not None else WordEmissions(model)
        return [Graph("tagger", graph, example, ["emissions"], dynamic, probe, doc)]

    def export_meta(self) -> dict[str, Any]:
        m = self.config.model
        meta: dict[str, Any] = {
            "tags": self.tags,
            "vocab": self.run.vocab.to_json(),
            "chars": None if m.char_encoder == "none" else self.run.chars.to_json(),
            "lower": m.lower,
            "pad_id": PAD,
            "unk_id": UNK,
            "token_pattern": TOKEN.pattern,
            "tokenizer": TOKENIZER.format(
                pattern=TOKEN.pattern, case="lower-cased" if m.lower else "as written (case kept)"
            ),
            "decoder": m.decoder,
        }
        if self.model.crf is None:
            meta["decode"] = "each word's tag is the argmax of its row of the emissions"
        else:
            crf = self.model.crf
            meta["decode"] = (
                "Viterbi over each sentence's first `length` rows of the emissions (T, K): the tag "
                "sequence y of highest start[y_1] + sum_t emissions[t, y_t] + sum_t transitions[y_(t-1), "
                "y_t] + end[y_T] (transitions[i][j]: tag i followed by tag j)"
            )
            meta["crf"] = {
                "transitions": crf.transitions.detach().cpu().tolist(),
                "start": crf.start.detach().cpu().tolist(),
                "end": crf.end.detach().cpu().tolist(),
            }
        return meta


# ---- the task ------------------------------------------------------------------------------
def _tags(obj: Any) -> list[str]:
    if not isinstance(obj, list) or not obj or not all(isinstance(t, str) for t in obj):
        raise ValueError("tags.json is not a list of tag names")
    return obj


class Tag(Task):
    """The tagger as a :class:`Task`: training, ``eval --data``, and ``tag``."""

    name = "tag"
    help = "sequence tagger (BiLSTM with character features, softmax or CRF) on tagged sentences"
    description = (
        "Train a tagger (part of speech or any per-word tags) on tagged sentences: word/TAG per token "
        "one sentence per line (--format slash), CoNLL-U (conllu, --tag-column upos|xpos) or word<TAB>tag "
        "with blank lines between sentences (conll); the format is guessed from the suffix unless "
        "given. The sentences are split (by --seed) into training, validation (picks the best weights "
        "by token accuracy) and test parts; token accuracy, accuracy on words unseen in training, "
        "per-tag F1 and the most frequent errors of the model and of the most-frequent-tag baseline go "
        "to results.json."
    )
    Config = TagConfig
    Predictor = TagPredictor
    assets = {
        "vocab": Asset(ckpt.VOCAB, WordVocab.from_json, WordVocab.to_json),
        "chars": Asset(CHARS, WordVocab.from_json, WordVocab.to_json),
        "tags": Asset(TAGS, _tags, list),
    }
    unit = "sentences"
    default_limits = {"max_minutes": 10.0, "max_epochs": 30.0}
    eval_inputs = {"data": "tagger runs: a tagged file to score (read in the run's format)"}

    def prepare(self, config: TagConfig, assets: dict[str, Any] | None) -> Prepared:
        vocabs, lm = None, None
        if assets is not None:
            vocabs = Vocabs(assets["vocab"], assets["chars"], assets["tags"], config.model.lower)
        elif config.model.init_from is not None:
            lm = adopt_language_model(config.model)
        data = load_data(config.data, config.model, config.loop.seed, vocabs, lm and lm.vocab)
        data.init = lm and lm.weights
        unseen = {part: data.vocabs.unseen_tags(sentences, f"the {part} part") for part, sentences in
                  (("validation", data.val), ("test", data.test or []))}  # fmt: skip
        info = {
            "tokens_with_unseen_tags": unseen,
            "sources": data.sources,
            "sentences": {"train": len(data.train), "val": len(data.val), "test": len(data.test or [])},
            "tokens": {"train": sum(len(s.words) for s in data.train)},
            "vocab_size": len(data.vocabs.words),
            "tags": len(data.vocabs.tags),
        }
        v = data.vocabs
        return Prepared(
            {"vocab": v.words, "chars": v.chars, "tags": v.tags},
            data,
            data.sha256,
            ", ".join(data.sources),
            info,
        )

    def build_model(self, config: TagConfig, assets: dict[str, Any]) -> nn.Module:
        m = config.model
        m.validate()
        char_size = 0 if m.char_encoder == "none" else 50
        rnn = m.build_recurrent(m.embedding_dim + char_size, dropout=m.dropout, bidirectional=m.bidirectional)
        return Tagger(
            len(assets["vocab"]), len(assets["chars"]), len(assets["tags"]), rnn, m.embedding_dim,
            m.char_encoder, m.decoder, m.dropout,
        )  # fmt: skip

    def fit(self, config: TagConfig, model: nn.Module, prepared: Prepared) -> Fit:
        data = prepared.data
        if data.init is not None:  # a new run: start from the language model's weights
            start_from(model, data.init)
        v = data.vocabs
        encoded = [v.encode(s.words, s.tags) for s in data.train]
        batches = SentenceBatches(encoded, config.data.batch_size, seed=config.loop.seed)
        known = set(v.words.tokens)

        def loss_fn(
            m: nn.Module, x: tuple[Tensor, Tensor, Tensor], y: Tensor, state: Any
        ) -> tuple[Tensor, None, int]:
            words, chars, lengths = x
            return m.loss(m(words, chars, lengths), y, lengths), None, words.size(0)  # sentences

        scored = [v.encode(s.words, s.tags) for s in data.val if all(t in v.tag_index for t in s.tags)]

        def validate(m: nn.Module) -> dict[str, float]:
            r = evaluate(m, v, data.val, known)
            return {
                "val_loss": 1.0 - r["accuracy"],
                "val_accuracy": r["accuracy"],
                "val_oov_accuracy": r["oov_accuracy"] or 0.0,
                "val_nll": nll_per_word(m, scored),
            }

        K = len(v.tags)
        bound = Bound("val_nll", math.log(K), f"ln {K} (a uniform guess over the {K} tags)", factor=10.0)
        return Fit(batches, loss_fn, validate, select=("val_accuracy", "max"), bound=bound)

    def finish(self, run: Run, state: TrainerState, prepared: Prepared) -> dict[str, Any]:
        data = prepared.data
        v = data.vocabs
        known = set(v.words.tokens)
        baseline = MostFrequentTag(data.train, v.lower)
        out: dict[str, Any] = {
            "best_step": state.best_step,
            "baseline": "most frequent tag per word; the most frequent tag overall for unseen words",
        }
        for part, sentences in (("val", data.val), ("test", data.test)):
            if not sentences:
                out[part] = None
                continue
            out[part] = {
                "model": evaluate(run.model, v, sentences, known),
                "baseline": scores(sentences, [baseline.tag(s.words) for s in sentences], known, v.lower),
            }
        return out

    def evaluate(self, run: Run, **inputs: Any) -> dict[str, Any]:
        d = run.config.data
        v = Vocabs(run.vocab, run.chars, run.tags, run.config.model.lower)
        sentences = _read(d, inputs["data"])
        unseen = v.unseen_tags(sentences, repr(inputs["data"]))
        return {**evaluate(run.model, v, sentences, set(run.vocab.tokens)), "tokens_with_unseen_tags": unseen}

    def eval_line(self, result: dict[str, Any], **inputs: str) -> str:
        oov = result["oov_accuracy"]
        return (
            f"{inputs['data']}: accuracy {result['accuracy']:.4f} over {result['tokens']:,} tokens, "
            f"OOV accuracy {'-' if oov is None else f'{oov:.4f}'} over {result['oov_tokens']:,}"
        )

    def describe_val(self, record: dict[str, Any]) -> tuple[str, str]:
        return f"acc {record['val_accuracy']:.4f}", (
            f"val accuracy {record['val_accuracy']:.4f}, OOV accuracy {record['val_oov_accuracy']:.4f}"
        )

    def report(self, run: Run, state: TrainerState, results: Any, args: argparse.Namespace) -> None:
        self.print_summary(run, state)
        for part in ("val", "test"):
            if results[part] is None:
                continue
            for who in ("model", "baseline"):
                r = results[part][who]
                lo, hi = r["accuracy_ci95"]
                oov = "-" if r["oov_accuracy"] is None else f"{r['oov_accuracy']:.4f}"
                print(
                    f"{part:<4} {who:<8} accuracy {r['accuracy']:.4f} [{lo:.4f}, {hi:.4f}]  "
                    f"OOV accuracy {oov} ({r['oov_tokens']} tokens)"
                )

    def add_commands(self, commands: Any) -> None:
        p = commands.add_parser(
            "tag",
            help="tag sentences with a tagger run",
            description=(
                "Tokenise plain text on whitespace and punctuation and print each sentence as word/TAG "
                "(--format slash) or word<TAB>tag lines with a blank line after each sentence (conll)."
            ),
        )
        self.add_run_argument(p, "run directory of `unrolled train tag`")
        p.add_argument("--text", action="append", metavar="TEXT", help="a sentence to tag (repeatable)")
        p.add_argument("--file", metavar="FILE", help="UTF-8 file with one sentence per line ('-' = stdin)")
        p.add_argument("--format", choices=("slash", "conll"), default="slash", help="output format [slash]")
        p.set_defaults(func=self._cmd_tag)

    def _cmd_tag(self, args: argparse.Namespace) -> int:
        from ..data import read_text

        if (args.text is None) == (args.file is None):
            raise ValueError("give the sentences with --text TEXT (repeatable) or --file FILE, not both")
        lines = (
            args.text
            if args.file is None
            else (sys.stdin.read() if args.file == "-" else read_text(args.file)).splitlines()
        )
        for k, line in enumerate(lines, 1):
            if not tokenize(line):
                where = f"line {k} of {args.file!r}" if args.file else f"--text number {k}"
                raise ValueError(f"{where} has no words to tag")
        for pairs in self.load_args(args).tag(lines):  # refuses a run of another task
            if args.format == "slash":
                print(" ".join(f"{w}/{t}" for w, t in pairs))
            else:
                print("\n".join(f"{w}\t{t}" for w, t in pairs) + "\n")
        return 0


def tokenize(text: str) -> list[str]:
    """Plain text -> words and punctuation marks, as the Penn Treebank writes them.

    ``don't``, ``well-known``, ``3.5`` stay whole. A period stays with the word before it when
    that word looks like an abbreviation (an initialism such as ``U.S``, or a capitalised word
    of at most four letters such as ``Mr``, ``Inc``, ``Nov``) and the period does not end the
    text; otherwise it is a token of its own.
    """
    tokens = TOKEN.findall(text)
    out: list[str] = []
    for k, token in enumerate(tokens):
        previous = out[-1] if out else ""
        abbreviation = "." in previous.strip(".") or (
            previous[:1].isupper() and previous.isalpha() and len(previous) <= 4
        )
        if token == "." and abbreviation and k + 1 < len(tokens) and not previous.endswith("."):
            out[-1] = previous + "."
        else:
            out.append(token)
    return out


TASK = Tag()
open_run = TASK.open_run
train = TASK.train
