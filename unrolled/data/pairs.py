"""Sentence pairs for translation: reading, tokens, length limits and batches with lengths.

A file holds one ``source<TAB>target`` pair per line (the Tatoeba/Anki ``fra.txt`` layout;
further columns are ignored; no quoting), or, for a ``.csv`` file, a header row naming the
columns (``source`` and ``target`` unless ``--source-column``/``--target-column`` say otherwise)::

    go .<TAB>va !
    i lost .<TAB>j'ai perdu .

Tokens are words the way d2l prepares them (lower-cased unless ``keep_case``; punctuation at
the start or end of a word split off, so ``"j'ai"`` and ``"quatre-vingt-dix"`` stay whole and
``"perdu."`` becomes ``perdu .``), characters, or subword pieces (:class:`Codec`). The source
gets ``<eos>`` appended; the decoder reads ``<bos> y_1 ... y_n`` and is trained to predict
``y_1 ... y_n <eos>`` (d2l's layout).
Batches pad with ``<pad>`` and carry each sentence's true length: no model reads a pad.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .batching import GroupedBatches
from .labelled import _column, pad_batch
from .subwords import Subwords
from .text import read_text
from .words import split_marks

SUBWORDS = ("bpe", "unigram")  # sentencepiece models trained on the training pairs (data/subwords.py)
TOKENS = ("word", "char", *SUBWORDS)
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")  # the specials of a translator's vocabularies


def word_tokens(text: str, keep_case: bool = False) -> list[str]:
    """Words split on white space, with the punctuation at either end of each split off.

    Example:
        >>> word_tokens("J'ai perdu.")
        ["j'ai", 'perdu', '.']
        >>> word_tokens('"Quatre-vingt-dix", dit-il !', keep_case=True)
        ['"', 'Quatre-vingt-dix', '"', ',', 'dit-il', '!']
    """
    out: list[str] = []
    for chunk in (text if keep_case else text.lower()).split():
        split_marks(chunk, out)
    return out


def char_tokens(text: str, keep_case: bool = False) -> list[str]:
    """Characters, with runs of white space read as one space.

    Example:
        >>> char_tokens("Va  !")
        ['v', 'a', ' ', '!']
    """
    return list(" ".join((text if keep_case else text.lower()).split()))


def tokenizer(kind: str, keep_case: bool = False) -> Callable[[str], list[str]]:
    """``--tokens word|char`` -> text -> tokens (subword tokens need their model: :class:`Codec`)."""
    if kind not in ("word", "char"):
        raise ValueError(f"unknown --tokens {kind!r}: expected word or char")
    split = word_tokens if kind == "word" else char_tokens
    return lambda text: split(text, keep_case)


def detokenize(tokens: Sequence[str], kind: str) -> str:
    """Tokens -> text: words joined by single spaces, characters joined as they are.

    A reference is scored in this form too (``detokenize(tokenize(target))``), so BLEU compares
    like with like (see :mod:`unrolled.metrics`).
    """
    return (" " if kind == "word" else "").join(tokens)


@dataclass(frozen=True)
class Codec:
    """How a translator's sentences become tokens and back: words or characters (``--tokens
    word|char``, :func:`tokenizer`), or the pieces of a sentencepiece model (``--tokens
    bpe|unigram``: one model for both sides, or one per side).

    A reference is scored as :meth:`reference` gives it: for words and characters tokenised and
    joined again (so BLEU compares like with like), for subwords the text itself (lower-cased
    unless ``keep_case``, white space normalised): the output of :meth:`join` is real text, so
    sacrebleu's own 13a tokenisation applies to both sides.
    """

    kind: str
    keep_case: bool = False
    source_model: Subwords | None = None
    target_model: Subwords | None = None

    def __post_init__(self) -> None:
        subword = self.kind in SUBWORDS
        if self.kind not in TOKENS:
            raise ValueError(f"unknown --tokens {self.kind!r}: expected {' or '.join(TOKENS)}")
        if subword != (self.source_model is not None and self.target_model is not None):
            raise ValueError(f"--tokens {self.kind} {'needs' if subword else 'takes no'} subword models")

    def _case(self, text: str) -> str:
        return text if self.keep_case else text.lower()

    def source(self, text: str) -> list[str]:
        if self.source_model is None:
            return tokenizer(self.kind, self.keep_case)(text)
        return self.source_model.pieces(self._case(text))

    def target(self, text: str) -> list[str]:
        if self.target_model is None:
            return tokenizer(self.kind, self.keep_case)(text)
        return self.target_model.pieces(self._case(text))

    def join(self, tokens: Sequence[str]) -> str:
        """Target tokens -> text."""
        if self.target_model is None:
            return detokenize(tokens, self.kind)
        return self.target_model.text(tokens)

    def reference(self, text: str) -> str:
        """A target text as the outputs are compared with it."""
        if self.target_model is None:
            return detokenize(self.target(text), self.kind)
        return " ".join(self._case(text).split())


@dataclass
class Pairs:
    """Source and target sentences: ``sources[i]`` translates to ``targets[i]``."""

    sources: list[str]
    targets: list[str]
    source: str  # where they come from, for messages
    sha256: str  # of the file's bytes (or of the generated pairs)

    def __len__(self) -> int:
        return len(self.sources)

    def subset(self, rows: Sequence[int]) -> Pairs:
        return Pairs(
            [self.sources[i] for i in rows], [self.targets[i] for i in rows], self.source, self.sha256
        )


def read_pairs(path: str | Path, source_column: str | None = None, target_column: str | None = None) -> Pairs:
    """Read a TSV (or CSV) file of sentence pairs; ``ValueError`` with a one-line reason if unusable.

    TSV (any suffix but ``.csv``): one pair per line, split at tabs, no quoting; the columns are 0
    and 1 unless given (by 0-based index, or by name when the first line is a header; a first
    line with cells ``source`` and ``target`` is a header). A line
    without a tab, or with an empty source or target, is rejected with its line number; blank
    lines are skipped. CSV: parsed with quoting; a header row names the columns.
    """
    p = Path(path)
    raw = read_text(p)
    if p.suffix.lower() == ".csv":
        rows = _csv(raw, str(p))
    else:
        rows = [(n + 1, line.rstrip("\r").split("\t")) for n, line in enumerate(raw.split("\n"))]
        rows = [(n, r) for n, r in rows if any(c.strip() for c in r)]
        for n, r in rows:
            if len(r) < 2:
                raise ValueError(
                    f"line {n} of {str(p)!r} has no tab: expected 'source<TAB>target' on every line"
                )
    if not rows:
        raise ValueError(f"no pairs in {str(p)!r}: expected one 'source<TAB>target' pair per line")
    first = [c.strip() for c in rows[0][1]]
    asked = [c for c in (source_column, target_column) if c is not None]
    named = {"source", "target"} <= {c.lower() for c in first}  # a TSV may begin with a header too
    is_header = p.suffix.lower() == ".csv" or named or any(c in first for c in asked)
    header = first if is_header else None
    si = _column(source_column, 0, header, "source", str(p))
    ti = _column(target_column, 1, header, "target", str(p))
    if si == ti:
        raise ValueError(f"the source and target columns are the same column ({si}); give two different ones")
    body = rows[1:] if is_header else rows
    if not body:
        raise ValueError(f"{str(p)!r} has a header row but no pairs")
    sources, targets = [], []
    for n, row in body:
        if len(row) <= max(si, ti):
            raise ValueError(
                f"line {n} of {str(p)!r} has {len(row)} field(s), expected at least {max(si, ti) + 1} "
                f"(source in column {si}, target in column {ti})"
            )
        src, tgt = row[si].strip(), row[ti].strip()
        for what, text in (("source", src), ("target", tgt)):
            if not text:
                raise ValueError(f"line {n} of {str(p)!r} has an empty {what}; remove the line or fill it in")
        sources.append(src)
        targets.append(tgt)
    return Pairs(sources, targets, str(p), hashlib.sha256(p.read_bytes()).hexdigest())


def _csv(raw: str, path: str) -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(raw, newline=""), strict=True)
    rows = []
    try:
        for row in reader:
            if any(c.strip() for c in row):
                rows.append((reader.line_num, row))
    except csv.Error as e:
        raise ValueError(f"{path!r} is not valid CSV near line {reader.line_num}: {e}") from None
    return rows


def pairs_sha256(pairs: Sequence[tuple[str, str]]) -> str:
    """A fingerprint of generated pairs (a resumed run checks that they are the same)."""
    h = hashlib.sha256()
    for s, t in pairs:
        h.update(f"{s}\t{t}\n".encode())
    return h.hexdigest()


class PairBatches(GroupedBatches):
    """The batches of one epoch: ``((src (B, S), src_lengths (B,), tgt_in (B, T)), tgt_out (B, T))``.

    ``src`` rows are the given source ids (``<eos>`` already appended); ``tgt_in`` is ``<bos>``
    followed by the target ids and ``tgt_out`` the target ids followed by ``<eos>``, both padded
    with ``<pad>`` (id 0, which the loss ignores). With ``shuffle``, pairs of similar lengths are
    batched together in an order fixed by ``seed`` and the epoch (:class:`GroupedBatches`).
    """

    def __init__(
        self,
        src: Sequence[Tensor],
        tgt: Sequence[Tensor],
        batch_size: int,
        bos: int,
        eos: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.src, self.tgt, self.bos, self.eos = list(src), list(tgt), bos, eos
        keys = [(len(s), len(t)) for s, t in zip(self.src, self.tgt, strict=True)]
        super().__init__(keys, batch_size, shuffle=shuffle, seed=seed)

    def make(self, rows: list[int]) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
        src, lengths = pad_batch([self.src[i] for i in rows])
        tgt_in, _ = pad_batch([torch.cat([self.tgt[i].new_tensor([self.bos]), self.tgt[i]]) for i in rows])
        tgt_out, _ = pad_batch([torch.cat([self.tgt[i], self.tgt[i].new_tensor([self.eos])]) for i in rows])
        return (src, lengths, tgt_in), tgt_out
