"""The default translation data: English number names and their French, from ``num2words``.

Numbers are drawn without replacement from 0..999,999 with a fixed seed and cut into training,
validation and test parts, so no test number is ever seen in training. The words are
num2words' (``"ninety-seven thousand, two hundred and one"`` ->
``"quatre-vingt-dix-sept mille deux cent un"``): a real translation task, with French's
vigesimal tens, agreement (``quatre-vingts`` but ``quatre-vingt mille``, ``deux cents`` but
``deux cent un``) and a different word order, small enough to learn on a CPU in minutes.
"""

from __future__ import annotations

import random

from .pairs import Pairs, pairs_sha256

SEED = 20_140_901  # fixed: every run sees the same held-out numbers, so runs compare
HIGHEST = 999_999
SOURCE = "English->French number names (num2words)"


def number_pairs(numbers: list[int]) -> Pairs:
    """(English, French) names of ``numbers``, in order."""
    from num2words import num2words

    pairs = [(num2words(n, lang="en"), num2words(n, lang="fr")) for n in numbers]
    return Pairs([s for s, _ in pairs], [t for _, t in pairs], SOURCE, pairs_sha256(pairs))


def number_splits(train: int, val: int, test: int) -> tuple[Pairs, Pairs, Pairs]:
    """Disjoint training, validation and test pairs of distinct numbers drawn with :data:`SEED`.

    Example:
        >>> tr, va, te = number_splits(3, 1, 1)
        >>> len(tr), set(tr.sources) & set(te.sources)
        (3, set())
    """
    for name, n in (("train", train), ("val", val), ("test", test)):
        if n < 0:
            raise ValueError(f"the number of {name} pairs must be >= 0, got {n}")
    if train + val + test > HIGHEST + 1:
        raise ValueError(f"at most {HIGHEST + 1:,} distinct numbers exist, asked for {train + val + test:,}")
    drawn = random.Random(SEED).sample(range(HIGHEST + 1), train + val + test)
    return (
        number_pairs(drawn[:train]),
        number_pairs(drawn[train : train + val]),
        number_pairs(drawn[train + val :]),
    )
