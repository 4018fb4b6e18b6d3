"""Subword units: a sentencepiece model (BPE or a unigram LM) trained on the training text of a run.

Sennrich et al. (2016) split rare words into frequent pieces (byte-pair encoding); Kudo (2018)
keeps the pieces of a unigram language model instead. Either way a vocabulary of a few thousand
pieces covers any text of its alphabet with no ``<unk>``, and words unseen in training are read as
their pieces. Both are sentencepiece's (Kudo & Richardson 2018): trained here at run time, on the
training part only, and saved with the run as ``spm.model`` (the file sentencepiece itself reads).
Detokenisation is exact: ``text(pieces(s)) == s`` for any ``s`` of the model's alphabet, white
space normalised (runs of spaces read as one, none at either end).

    >>> sw = Subwords.train(["the river runs", "the mill stood"] * 20, "bpe", 30)
    >>> sw.pieces("the river")
    ['▁the', '▁r', 'iv', 'er']
    >>> sw.text(sw.pieces("the river"))
    'the river'
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

KINDS = ("bpe", "unigram")
FILE = "spm.model"
NEWLINE = "\n"  # the line-break token of a stream of lines (a language model's text)
SPACE = "\u2581"  # sentencepiece's word-boundary mark


class Subwords:
    """A trained sentencepiece model: text -> pieces -> text."""

    def __init__(self, model: bytes) -> None:
        import sentencepiece as spm

        self.model = bytes(model)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(self.model)
        except (RuntimeError, OSError) as e:
            raise ValueError(f"not a sentencepiece model ({' '.join(str(e).split())})") from None

    @classmethod
    def train(cls, texts: Iterable[str], kind: str, vocab_size: int) -> Subwords:
        """A ``kind`` ("bpe" or "unigram") model of ``vocab_size`` pieces (``<unk>`` included)
        trained on ``texts`` (one sentence each); ``ValueError`` for a size the text cannot give."""
        import sentencepiece as spm

        if kind not in KINDS:
            raise ValueError(f"unknown subword kind {kind!r}: expected {' or '.join(KINDS)}")
        if vocab_size < 2:
            raise ValueError(f"--vocab-size must be >= 2, got {vocab_size}")
        lines = [t for t in (" ".join(t.split()) for t in texts) if t]
        if not lines:
            raise ValueError("no text to learn subword units from")
        out = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines),
                model_writer=out,
                model_type=kind,
                vocab_size=vocab_size,
                character_coverage=1.0,  # every character of the training text is a piece
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                unk_id=0,
                hard_vocab_limit=True,
                num_threads=1,  # the same model from the same text, on any machine
                minloglevel=2,
                max_sentence_length=1 << 16,
            )
        except RuntimeError as e:
            raise ValueError(_why(str(e), vocab_size)) from None
        return cls(out.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Subwords:
        try:
            return cls(Path(path).read_bytes())
        except FileNotFoundError:
            raise ValueError(f"subword model is missing: {str(path)!r}") from None

    def __len__(self) -> int:
        return self.sp.GetPieceSize()

    @property
    def kind(self) -> str:
        from sentencepiece import sentencepiece_model_pb2 as pb

        proto = pb.ModelProto()
        proto.ParseFromString(self.model)
        return "bpe" if proto.trainer_spec.model_type == pb.TrainerSpec.BPE else "unigram"

    def vocabulary(self) -> list[str]:
        """Every piece but ``<unk>``, in the model's order."""
        return [self.sp.IdToPiece(i) for i in range(len(self)) if not self.sp.IsUnknown(i)]

    def pieces(self, text: str) -> list[str]:
        """``text`` as pieces (characters the model never saw become ``<unk>`` pieces)."""
        return self.sp.EncodeAsPieces(text)

    def text(self, pieces: Sequence[str]) -> str:
        """Pieces -> text, exactly: the inverse of :meth:`pieces` (specials other than pieces are
        left out)."""
        return self.sp.DecodePieces([p for p in pieces if not _special(p)])

    def stream(self, text: str) -> list[str]:
        """A text of many lines as one stream of pieces: each line's :meth:`pieces`, and
        :data:`NEWLINE` for every line break (a language model learns where lines end).
        :class:`PieceJoiner` turns the stream back into the text, line by line."""
        out: list[str] = []
        lines = text.split("\n")
        for k, line in enumerate(lines):
            out.extend(self.pieces(line))
            if k + 1 < len(lines):
                out.append(NEWLINE)
        return out


class PieceJoiner:
    """Joins a stream of pieces (:meth:`Subwords.stream`) into text one piece at a time, for
    generated samples: ``push(piece)`` returns the text to append. A line's text is that of
    :meth:`Subwords.text`: the word-boundary mark is a space, but not at the start of a line;
    specials (``<unk>``) are left out."""

    def __init__(self) -> None:
        self._line_start = True

    def push(self, piece: str) -> str:
        if piece == NEWLINE:
            self._line_start = True
            return NEWLINE
        if _special(piece):
            return ""
        text = piece.replace(SPACE, " ")
        if self._line_start:
            text = text.lstrip(" ")
            self._line_start = not text
        return text


def _special(piece: str) -> bool:
    return piece.startswith("<") and piece.endswith(">")


def _why(message: str, vocab_size: int) -> str:
    """sentencepiece's complaint about a vocabulary size, as our one line."""
    text = " ".join(message.split())
    low = re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", text)
    if low:
        return (
            f"--vocab-size {vocab_size} is too small: the training text has {low.group(2)} distinct "
            f"characters, each a piece of its own; give at least {int(low.group(2)) + 1}"
        )
    high = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", text)
    if high:
        return (
            f"--vocab-size {vocab_size} is more than the training text supports: give at most {high.group(2)}"
        )
    return f"subword units cannot be learnt from the training text: {text}"
