"""Tagged sentences for sequence tagging: three file formats, one :class:`Sentence` each.

- ``slash``: the lecture's ``word/TAG word/TAG ...``, one sentence per line. The tag is what
  follows the *last* slash, so ``1/2/CD`` is the word ``1/2`` tagged CD, and ``//:`` or
  ``,/,`` are punctuation. A token without a slash (or with an empty word or tag) is an error
  naming its line and token.
- ``conllu``: CoNLL-U, parsed by the ``conllu`` package. Comments are skipped; a multi-word
  token line (``3-4 du``) is left out and its syntactic words (``de``, ``le``), which carry
  the tags, are kept; empty nodes (``5.1``) are left out. ``tag_column`` is ``upos`` or
  ``xpos``.
- ``conll``: two columns, ``word<TAB>tag`` (or separated by spaces), a blank line between
  sentences; further columns are ignored.

:func:`guess_format` picks the format from the file's suffix (``.conllu`` -> conllu; ``.conll``,
``.tsv`` -> conll; otherwise slash).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .batching import GroupedBatches

FORMATS = ("slash", "conllu", "conll")
TAG_COLUMNS = ("upos", "xpos")


@dataclass
class Sentence:
    words: list[str]
    tags: list[str]


@dataclass
class Tagged:
    """The sentences of one file."""

    sentences: list[Sentence]
    source: str
    sha256: str


def guess_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".conllu":
        return "conllu"
    if suffix in (".conll", ".tsv"):
        return "conll"
    return "slash"


def read_tagged(path: str | Path, fmt: str, tag_column: str = "upos") -> Tagged:
    """Read a tagged file in format ``fmt``; ``ValueError`` naming the line of any problem."""
    from .text import read_text

    if fmt not in FORMATS:
        raise ValueError(f"unknown --format {fmt!r}: expected one of {', '.join(FORMATS)}")
    text = read_text(path)
    name = str(path)
    if fmt == "slash":
        sentences = _slash(text, name)
    elif fmt == "conll":
        sentences = _conll(text, name)
    else:
        sentences = _conllu(text, name, tag_column)
    if not sentences:
        raise ValueError(f"{name!r} holds no tagged sentences")
    return Tagged(sentences, name, hashlib.sha256(text.encode("utf-8")).hexdigest())


def split_slash(token: str) -> tuple[str, str]:
    """``word/TAG`` -> (word, TAG), splitting at the last slash; ValueError without one."""
    word, slash, tag = token.rpartition("/")
    if not slash or not word or not tag:
        raise ValueError(token)
    return word, tag


def _slash(text: str, name: str) -> list[Sentence]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue  # blank lines separate nothing in this format
        words, tags = [], []
        for token in tokens:
            try:
                word, tag = split_slash(token)
            except ValueError:
                raise ValueError(
                    f"line {n} of {name!r}: the token {token!r} has no tag (expected word/TAG, the tag "
                    "after the last slash)"
                ) from None
            words.append(word)
            tags.append(tag)
        out.append(Sentence(words, tags))
    return out


def _conll(text: str, name: str) -> list[Sentence]:
    out: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    for n, line in enumerate(text.splitlines() + [""], 1):
        if not line.strip():
            if words:
                out.append(Sentence(words, tags))
            words, tags = [], []
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"line {n} of {name!r}: expected word<TAB>tag, got {line.strip()!r}")
        words.append(parts[0].strip())
        tags.append(parts[1].strip())
    return out


def _conllu(text: str, name: str, tag_column: str) -> list[Sentence]:
    import conllu

    if tag_column not in TAG_COLUMNS:
        raise ValueError(f"unknown --tag-column {tag_column!r}: expected one of {', '.join(TAG_COLUMNS)}")
    for n, line in enumerate(text.splitlines(), 1):  # conllu's own errors do not say where
        if line.strip() and not line.startswith("#") and len(line.split("\t")) != 10:
            raise ValueError(
                f"line {n} of {name!r} is not CoNLL-U: expected 10 tab-separated fields, got "
                f"{len(line.split(chr(9)))}"
            )
    try:
        parsed = conllu.parse(text)
    except Exception as e:  # conllu raises its own ParseException and plain errors
        raise ValueError(f"{name!r} is not valid CoNLL-U: {' '.join(str(e).split())}") from None
    out = []
    for k, tokenlist in enumerate(parsed, 1):
        words, tags = [], []
        for token in tokenlist:
            if not isinstance(token["id"], int):  # a multi-word range (3-4) or an empty node (5.1)
                continue
            tag = token[tag_column]
            if tag in (None, "_"):
                raise ValueError(
                    f"sentence {k} of {name!r}: the word {token['form']!r} has no {tag_column} tag; "
                    f"try --tag-column {'xpos' if tag_column == 'upos' else 'upos'}"
                )
            words.append(token["form"])
            tags.append(tag)
        if not words:
            raise ValueError(f"sentence {k} of {name!r} is empty")
        out.append(Sentence(words, tags))
    return out


# ---- ids and batches -------------------------------------------------------------------------
@dataclass
class EncodedSentence:
    """A sentence as ids: words (T,), characters per word, tags (T,) (-1 where unknown)."""

    words: Tensor
    chars: list[Tensor]
    tags: Tensor


def pad_sentences(batch: Sequence[EncodedSentence]) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
    """((words (B, T), chars (B, T, W), lengths (B,)), tags (B, T)); pads are 0 (tags too)."""
    B = len(batch)
    T = max(s.words.numel() for s in batch)
    W = max(max((c.numel() for c in s.chars), default=1) for s in batch)
    words = torch.zeros(B, T, dtype=torch.long)
    chars = torch.zeros(B, T, W, dtype=torch.long)
    tags = torch.zeros(B, T, dtype=torch.long)
    lengths = torch.tensor([s.words.numel() for s in batch])
    for i, s in enumerate(batch):
        n = s.words.numel()
        words[i, :n], tags[i, :n] = s.words, s.tags.clamp_min(0)
        for t, c in enumerate(s.chars):
            chars[i, t, : c.numel()] = c
    return (words, chars, lengths), tags


class SentenceBatches(GroupedBatches):
    """The batches of one epoch (see :func:`pad_sentences`), sentences of similar length together,
    in an order fixed by ``seed`` and the epoch (:class:`GroupedBatches`)."""

    def __init__(
        self, sentences: Sequence[EncodedSentence], batch_size: int, *, shuffle: bool = True, seed: int = 0
    ) -> None:
        self.sentences = list(sentences)
        super().__init__([s.words.numel() for s in self.sentences], batch_size, shuffle=shuffle, seed=seed)

    def make(self, rows: list[int]) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
        return pad_sentences([self.sentences[i] for i in rows])
