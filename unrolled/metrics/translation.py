"""Translation metrics: the lecture's sentence BLEU, and sacrebleu's corpus BLEU and chrF.

The lecture (d2l, seed 004) scores one prediction against one reference as

    BLEU = exp(min(0, 1 - len_label / len_pred)) * prod_{n=1}^{k} p_n ** (1 / 2**n)

where p_n is the fraction of the prediction's n-grams found in the reference (each reference
n-gram matched at most as often as it occurs there), and n-gram orders longer than the
prediction are left out. The weights 1/2^n give the longer, harder matches more say than a
plain geometric mean would, and the first factor penalises predictions shorter than the label.
This is not the BLEU of papers: that is a *corpus* score (Papineni et al. 2002: n-gram counts
summed over all sentences, geometric mean of p_1..p_4, brevity penalty on the total lengths)
and depends on how text is tokenised. For figures that compare with others', unrolled reports
sacrebleu's corpus BLEU and chrF (Popović 2015) with sacrebleu's defaults (13a tokenisation,
exponential smoothing, 0-100 scale), computed on the detokenised output against the reference
tokenised and rejoined the same way (:func:`unrolled.data.pairs.detokenize`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def sentence_bleu(pred: Sequence[str], label: Sequence[str], k: int = 4) -> float:
    """The lecture's BLEU of the tokens ``pred`` against ``label`` with n-grams up to ``k`` (0..1).

    Example:
        >>> sentence_bleu(["a", "b"], ["a", "b", "c", "d"], k=2) == math.exp(1 - 4 / 2)
        True
        >>> round(sentence_bleu("il est riche .".split(), "il est calme .".split(), k=2), 4)  # p1 3/4, p2 1/3
        0.658
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not pred:
        return 0.0
    score = math.exp(min(0.0, 1.0 - len(label) / len(pred)))
    for n in range(1, min(k, len(pred)) + 1):
        found = _ngrams(label, n)
        matches = sum(min(c, found[g]) for g, c in _ngrams(pred, n).items())
        score *= (matches / (len(pred) - n + 1)) ** (0.5**n)
    return score


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """sacrebleu's corpus BLEU and chrF (0..100) and the exact-match rate (0..1) of aligned lists."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not references:
        raise ValueError("no sentences to score")
    # force: the texts are tokenised on purpose (punctuation split off); sacrebleu need not warn
    bleu, chrf = BLEU(force=True), CHRF()
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    exact = sum(h == r for h, r in zip(hypotheses, references, strict=True)) / len(references)
    return {
        "bleu": b.score,
        "chrf": c.score,
        "exact_match": exact,
        "sacrebleu": {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())},
    }
