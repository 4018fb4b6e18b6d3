"""Words for a word-level language model: a tokeniser that keeps line breaks, and its inverse.

:func:`tokenize` reads a text line by line. Each line is split on white space, and punctuation
(Unicode categories P* and S*) at either end of a piece becomes tokens of its own, one mark per
token, while punctuation inside a word stays (``don't``, ``well-known``, ``3.5``, ``o'er``). Every
line break is the token :data:`NEWLINE` (``"\\n"``), so a model learns where lines end and its
samples keep their lines; blank lines are consecutive newline tokens. Case is kept unless
``lower``. What is lost: indentation and runs of spaces (any white space inside a line is one
separator).

:func:`detokenize` joins tokens back into text: words separated by one space, a closing mark
(``. , ; : ! ? ) ] }`` ...) attached to the token before it, an opening mark (``( [ {`` ...)
to the token after it, straight double quotes alternately opening and closing within a line, an
apostrophe closing (``th'``) except at the start of a line or after an opening mark (``'Tis``),
and no space around a line break. Every mark attaches on one side at most, so two words are
never glued together and the round trip keeps the tokens::

    tokenize(detokenize(tokenize(text))) == tokenize(text)

Example:
    >>> tokenize('Is\\'t a verdict?\\nAll: "No!"')
    ["Is't", 'a', 'verdict', '?', '\\n', 'All', ':', '"', 'No', '!', '"']
    >>> detokenize(tokenize('Is\\'t a verdict?\\nAll: "No!"'))
    'Is\\'t a verdict?\\nAll: "No!"'
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

NEWLINE = "\n"  # the line-break token
CLOSING = frozenset(".,;:!?)]}%'»”’…")  # attach to the token before them
OPENING = frozenset("([{¿¡«“‘")  # attach to the token after them
QUOTE = '"'  # opening and closing in turn, within a line


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def split_marks(piece: str, out: list[str]) -> None:
    """Append a white-space-free piece to ``out`` as its leading marks (one token each), the word,
    its trailing marks (the translator's words are cut the same way)."""
    i, j = 0, len(piece)
    while i < j and _is_mark(piece[i]):
        i += 1
    while j > i and _is_mark(piece[j - 1]):
        j -= 1
    out.extend(piece[:i])
    if i < j:
        out.append(piece[i:j])
    out.extend(piece[j:])


def tokenize(text: str, lower: bool = False) -> list[str]:
    """Text -> words, punctuation marks and :data:`NEWLINE` tokens (see the module docstring)."""
    if lower:
        text = text.lower()
    out: list[str] = []
    lines = text.split("\n")
    for k, line in enumerate(lines):
        for piece in line.split():
            split_marks(piece, out)
        if k + 1 < len(lines):
            out.append(NEWLINE)
    return out


class Detokenizer:
    """Joins tokens into text one at a time (for streaming samples): ``push(token)`` returns the
    text to append, its leading space included. :func:`detokenize` is the whole-list form."""

    def __init__(self) -> None:
        self._glue_next = True  # no space before the next token (start of text or of a line)
        self._open_quote = False  # a straight double quote is open on this line

    def push(self, token: str) -> str:
        if token == NEWLINE:
            self._glue_next, self._open_quote = True, False
            return NEWLINE
        if token == QUOTE:
            closing = self._open_quote
            self._open_quote = not self._open_quote
        elif token == "'" and self._glue_next:  # at a line's start or after an opening mark: 'Tis
            closing = False
        else:
            closing = token in CLOSING
        glue = self._glue_next or closing
        self._glue_next = token in OPENING or (token in (QUOTE, "'") and not closing)
        return token if glue else " " + token


def detokenize(tokens: Iterable[str]) -> str:
    """Tokens -> text, with the spacing rules of the module docstring."""
    d = Detokenizer()
    return "".join(d.push(t) for t in tokens)
