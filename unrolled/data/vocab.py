"""Vocabularies: characters (sorted set of a corpus) and words (by frequency), id <-> token maps."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


class CharVocab:
    """Maps each character of a corpus to an integer id (ids follow sorted character order).

    Example:
        >>> v = CharVocab.from_text("hello")
        >>> v.chars
        ['e', 'h', 'l', 'o']
        >>> v.decode(v.encode("hole").tolist())
        'hole'
    """

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars: list[str] = list(chars)
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise ValueError("a vocabulary must be a list of distinct single characters")
        if not self.chars:
            raise ValueError("a vocabulary needs at least one character")
        self.index: dict[str, int] = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that are not in the vocabulary, in order seen."""
        return list(dict.fromkeys(c for c in text if c not in self.index))

    def encode(self, text: str) -> Tensor:
        """``text`` -> int64 tensor of ids; ``ValueError`` naming any unknown characters."""
        missing = self.unknown(text)
        if missing:
            shown = ", ".join(repr(c) for c in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise ValueError(
                f"characters not in the model's vocabulary: {shown}{more} (it was trained without them: "
                "leave them out of the text, or train on a text that has them)"
            )
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the form of a run's vocab.json)."""
        return {"kind": "char", "chars": self.chars}

    @classmethod
    def from_json(cls, obj: Any) -> CharVocab:
        if not isinstance(obj, dict) or obj.get("kind") != "char" or not isinstance(obj.get("chars"), list):
            raise ValueError("not a character vocabulary (expected {'kind': 'char', 'chars': [...]})")
        return cls(obj["chars"])


PAD, UNK = 0, 1  # ids of the padding and the unknown-word tokens of every WordVocab
SPECIALS = ("<pad>", "<unk>")  # the specials of a classifier's vocabulary; a translator adds <bos>, <eos>


class WordVocab:
    """Maps words to ids: the special tokens first (``<pad>`` = 0, ``<unk>`` = 1, then any others
    such as ``<bos>``, ``<eos>``), then the words by falling frequency.

    Built from tokenised training texts, keeping words seen at least ``min_count`` times, at
    most ``max_size`` of them (ties broken alphabetically, so the same texts give the same ids).

    Example:
        >>> v = WordVocab.from_tokens([["a", "b", "a"]])
        >>> v.tokens
        ['<pad>', '<unk>', 'a', 'b']
        >>> v.encode(["a", "zzz"]).tolist()
        [2, 1]
        >>> t = WordVocab.from_tokens([["hi", "there"]], specials=("<pad>", "<unk>", "<bos>", "<eos>"))
        >>> t.id("<eos>"), t.tokens[4:]
        (3, ['hi', 'there'])
    """

    def __init__(self, tokens: Iterable[str], specials: Iterable[str] = SPECIALS) -> None:
        self.tokens: list[str] = list(tokens)
        self.specials: tuple[str, ...] = tuple(specials)
        if self.specials[:2] != SPECIALS or len(set(self.specials)) != len(self.specials):
            raise ValueError(
                "a word vocabulary's specials must start with '<pad>', '<unk>' and be distinct; "
                f"got {self.specials}"
            )
        if tuple(self.tokens[: len(self.specials)]) != self.specials or len(set(self.tokens)) != len(
            self.tokens
        ):
            raise ValueError(
                f"a word vocabulary must start with its specials {self.specials} and hold distinct words"
            )
        self.index: dict[str, int] = {w: i for i, w in enumerate(self.tokens)}

    @classmethod
    def from_tokens(
        cls,
        texts: Iterable[Iterable[str]],
        min_count: int = 1,
        max_size: int | None = None,
        specials: Iterable[str] = SPECIALS,
    ) -> WordVocab:
        specials = tuple(specials)
        counts: dict[str, int] = {}
        for words in texts:
            for w in words:
                counts[w] = counts.get(w, 0) + 1
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count and w not in specials),
            key=lambda w: (-counts[w], w),
        )
        return cls([*specials, *kept[:max_size]], specials)

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        """The id of a special token or a word; ``KeyError`` if it is not in the vocabulary."""
        return self.index[token]

    def encode(self, words: Iterable[str]) -> Tensor:
        """Words -> int64 ids; words outside the vocabulary become ``<unk>``."""
        return torch.tensor([self.index.get(w, UNK) for w in words], dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the form of a run's vocab.json)."""
        return {"kind": "word", "specials": list(self.specials), "tokens": self.tokens}

    @classmethod
    def from_json(cls, obj: Any) -> WordVocab:
        if not isinstance(obj, dict) or obj.get("kind") != "word" or not isinstance(obj.get("tokens"), list):
            raise ValueError("not a word vocabulary (expected {'kind': 'word', 'tokens': [...]})")
        return cls(obj["tokens"], obj.get("specials", SPECIALS))  # vocabularies of 0.1 have no "specials"
