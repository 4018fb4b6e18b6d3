"""Labelled texts from a CSV or TSV file: reading, word tokens, splits and padded batches.

A file holds one example per row, a label column and a text column::

    label,text
    pos,"a gripping, funny film"
    neg,flat and far too long

The delimiter follows the suffix (``.tsv``/``.tab``: tab, ``.csv``: comma; otherwise the first
line decides). Columns are chosen by header name or by 0-based index; without a header row the
order is (label, text). Batches pad each row to the longest one in the batch and carry the true
lengths, so that the models never read the pads (see :mod:`unrolled.models.classifier`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .batching import GroupedBatches
from .text import read_text
from .vocab import PAD

_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
_DEFAULT_NAMES = ("label", "text")


def tokenize(text: str) -> list[str]:
    """Lower-cased words (with inner apostrophes) and single punctuation marks.

    Example:
        >>> tokenize("It's a GREAT film!")
        ["it's", 'a', 'great', 'film', '!']
    """
    return _TOKEN.findall(text.lower())


@dataclass
class LabelledTexts:
    """The rows of a labelled file: ``texts[i]`` has label ``labels[i]``."""

    texts: list[str]
    labels: list[str]
    source: str
    sha256: str  # of the file's bytes: a resumed run checks that its data did not change

    def __len__(self) -> int:
        return len(self.texts)


def _delimiter(path: Path, first_line: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        return "\t"
    if suffix == ".csv":
        return ","
    return "\t" if "\t" in first_line else ","


def _csv_rows(raw: str, delimiter: str, path: str) -> list[list[str]]:
    """Parse CSV/TSV text; long fields (whole documents) are fine, malformed input is a ValueError."""
    reader = csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter, strict=True)
    limit = csv.field_size_limit(2**31 - 1)  # the default, 128 KiB, is too small for long texts
    try:
        return list(reader)
    except csv.Error as e:
        raise ValueError(f"{path!r} is not valid CSV/TSV near line {reader.line_num}: {e}") from None
    finally:
        csv.field_size_limit(limit)


def _column(spec: str | None, default: int, header: list[str] | None, what: str, path: str) -> int:
    """A column given by header name or 0-based index -> its index (``what``: also the header
    name looked for when no column is given, and the flag ``--{what}-column`` to give one)."""
    if spec is None:
        if header is None:
            return default
        lowered = [h.lower() for h in header]
        if what in lowered:
            return lowered.index(what)
        have = ", ".join(repr(h) for h in header)
        raise ValueError(f"no {what} column in {path!r} (the header has {have}); give --{what}-column NAME")
    if header is not None and spec in header:
        return header.index(spec)
    if spec.strip().isdigit():
        return int(spec)
    have = f"the header has {', '.join(repr(h) for h in header)}" if header else "the file has no header row"
    raise ValueError(
        f"no {what} column {spec!r} in {path!r}: {have}; "
        f"give --{what}-column as a header name or a 0-based index"
    )


def read_labelled(
    path: str | Path, text_column: str | None = None, label_column: str | None = None
) -> LabelledTexts:
    """Read a CSV/TSV file of labelled texts; ``ValueError`` with a one-line reason if unusable.

    The first row is a header when it names the columns asked for (or, with no columns given,
    when it has cells ``label`` and ``text``, in any case; with no columns given, a first row
    whose label occurs nowhere else is taken for a header with other names and rejected, asking
    for the columns). Rejected with the row number: a
    row too short for the columns, an empty label or text; and a file with no data rows or a
    single class.
    """
    p = Path(path)
    raw = read_text(p)  # missing, empty, directory or not UTF-8: one-line errors there
    rows = _csv_rows(raw, _delimiter(p, raw.split("\n")[0]), str(p))
    numbered = [(i + 1, r) for i, r in enumerate(rows) if any(cell.strip() for cell in r)]
    if not numbered:
        raise ValueError(f"no rows in {str(p)!r}: expected one labelled text per row")
    first = [c.strip() for c in numbered[0][1]]
    lowered = [c.lower() for c in first]
    asked = [c for c in (text_column, label_column) if c is not None]
    if asked:
        is_header = any(c in first for c in asked)
    else:
        is_header = all(name in lowered for name in _DEFAULT_NAMES)
    header = first if is_header else None
    ti = _column(text_column, 1, header, "text", str(p))
    li = _column(label_column, 0, header, "label", str(p))
    if ti == li:
        raise ValueError(f"the text and label columns are the same column ({ti}); give two different ones")
    body = numbered[1:] if is_header else numbered
    if (
        not asked
        and not is_header
        and len(first) > li
        and all(len(r) <= li or r[li].strip() != first[li] for _, r in body[1:])
    ):
        # a header with other names reads as a row whose label occurs nowhere else
        raise ValueError(
            f"the first row of {str(p)!r} ({', '.join(map(repr, first))}) looks like a header without "
            "'label' and 'text' columns; give --label-column and --text-column (names or 0-based indices)"
        )
    if not body:
        raise ValueError(f"{str(p)!r} has a header row but no data rows")
    texts, labels = [], []
    need = max(ti, li) + 1
    for line, row in body:
        if len(row) < need:
            raise ValueError(
                f"row {line} of {str(p)!r} has {len(row)} field(s), expected at least {need} "
                f"(text in column {ti}, label in column {li}); check the delimiter and quoting"
            )
        label, text = row[li].strip(), row[ti].strip()
        if not label:
            raise ValueError(f"row {line} of {str(p)!r} has an empty label; every row needs one")
        if not text:
            raise ValueError(f"row {line} of {str(p)!r} has an empty text; remove the row or fill it in")
        texts.append(text)
        labels.append(label)
    sha = hashlib.sha256(p.read_bytes()).hexdigest()
    return LabelledTexts(texts, labels, str(p), sha)


def check_classes(data: LabelledTexts) -> list[str]:
    """The sorted distinct labels; ``ValueError`` if there are fewer than two."""
    classes = sorted(set(data.labels))
    if len(classes) < 2:
        raise ValueError(
            f"{data.source!r} has a single class ({classes[0]!r}) in {len(data)} rows; "
            "a classifier needs at least two (check --label-column)"
        )
    return classes


def split_indices(labels: Sequence[str], fractions: Sequence[float], seed: int) -> tuple[list[int], ...]:
    """Stratified random split of row indices: one list per fraction, then the rest.

    Each class is shuffled (by ``seed``) and cut in the given proportions, so every part keeps
    the class balance; a part with a positive fraction gets at least one row overall.
    """
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for label in sorted(by_class):
        rows = by_class[label]
        rng.shuffle(rows)
        start = 0
        for k, frac in enumerate(fractions):
            n = int(len(rows) * frac)
            parts[k].extend(rows[start : start + n])
            start += n
        parts[-1].extend(rows[start:])
    for k, frac in enumerate(fractions):  # tiny files: take a row from the rest if a part is empty
        if frac > 0 and not parts[k]:
            if len(parts[-1]) < 2:
                raise ValueError(
                    f"{len(labels)} rows are too few to split off a {frac:g} fraction "
                    "and keep rows for training"
                )
            parts[k].append(parts[-1].pop())
    for part in parts:
        part.sort()
    return tuple(parts)


def pad_batch(rows: Sequence[Tensor], min_len: int = 1) -> tuple[Tensor, Tensor]:
    """Token-id rows -> ((B, T) int64 padded with the pad id, (B,) lengths); T >= ``min_len``."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    T = max(int(lengths.max()), min_len)
    out = torch.full((len(rows), T), PAD, dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, : len(r)] = r
    return out, lengths


class ClassBatches(GroupedBatches):
    """The batches of one epoch: ``((tokens (B, T), lengths (B,)), labels (B,))``, texts of
    similar length together, in an order fixed by ``seed`` and the epoch (:class:`GroupedBatches`)."""

    def __init__(
        self,
        ids: Sequence[Tensor],
        labels: Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        min_len: int = 1,
        pool: int = 50,
    ) -> None:
        self.ids, self.labels, self.min_len = list(ids), labels, min_len
        super().__init__([len(r) for r in self.ids], batch_size, shuffle=shuffle, seed=seed, pool=pool)

    def make(self, rows: list[int]) -> tuple[tuple[Tensor, Tensor], Tensor]:
        tokens, lengths = pad_batch([self.ids[i] for i in rows], self.min_len)
        return (tokens, lengths), self.labels[rows]
