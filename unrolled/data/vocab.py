"""Vocabularies: characters (sorted set of a corpus) and words (by frequency), id <-> token maps."""

from __future__ import annotations

import json
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
            raise ValueError(f"characters not in the model's vocabulary: {shown}{more}")
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"kind": "char", "chars": self.chars}, ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str | dict[str, Any]) -> CharVocab:
        obj = json.loads(data) if isinstance(data, str) else data
        if not isinstance(obj, dict) or obj.get("kind") != "char" or not isinstance(obj.get("chars"), list):
            raise ValueError("not a character vocabulary (expected {'kind': 'char', 'chars': [...]})")
        return cls(obj["chars"])


PAD, UNK = 0, 1  # ids of the padding and the unknown-word tokens of every WordVocab
_SPECIALS = ("<pad>", "<unk>")


class WordVocab:
    """Maps words to ids: ``<pad>`` = 0, ``<unk>`` = 1, then the words by falling frequency.

    Built from tokenised training texts, keeping words seen at least ``min_count`` times, at
    most ``max_size`` of them (ties broken alphabetically, so the same texts give the same ids).

    Example:
        >>> v = WordVocab.from_tokens([["a", "b", "a"]])
        >>> v.tokens
        ['<pad>', '<unk>', 'a', 'b']
        >>> v.encode(["a", "zzz"]).tolist()
        [2, 1]
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        self.tokens: list[str] = list(tokens)
        if tuple(self.tokens[:2]) != _SPECIALS or len(set(self.tokens)) != len(self.tokens):
            raise ValueError("a word vocabulary must start with '<pad>', '<unk>' and hold distinct words")
        self.index: dict[str, int] = {w: i for i, w in enumerate(self.tokens)}

    @classmethod
    def from_tokens(
        cls, texts: Iterable[Iterable[str]], min_count: int = 1, max_size: int | None = None
    ) -> WordVocab:
        counts: dict[str, int] = {}
        for words in texts:
            for w in words:
                counts[w] = counts.get(w, 0) + 1
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count and w not in _SPECIALS),
            key=lambda w: (-counts[w], w),
        )
        return cls([*_SPECIALS, *kept[:max_size]])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, words: Iterable[str]) -> Tensor:
        """Words -> int64 ids; words outside the vocabulary become ``<unk>``."""
        return torch.tensor([self.index.get(w, UNK) for w in words], dtype=torch.long)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "word", "tokens": self.tokens}

    @classmethod
    def from_json(cls, obj: Any) -> WordVocab:
        if not isinstance(obj, dict) or obj.get("kind") != "word" or not isinstance(obj.get("tokens"), list):
            raise ValueError("not a word vocabulary (expected {'kind': 'word', 'tokens': [...]})")
        return cls(obj["tokens"])
