"""Tagging accuracy: tokens, words unseen in training, per tag, and the most frequent errors.

accuracy      = share of tokens whose predicted tag is the gold one, with its 95% Wilson
                interval (scipy's ``binomtest(...).proportion_ci(method="wilson")``)
OOV accuracy  = the same over the tokens whose word is not in the training vocabulary
per tag t     precision = right t / predicted t, recall = right t / gold t, F1 their harmonic mean
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..data.tagged import Sentence


def wilson(successes: int, n: int) -> list[float]:
    """The 95% Wilson score interval of ``successes`` out of ``n`` ([0, 1] for n = 0)."""
    if n == 0:
        return [0.0, 1.0]
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def scores(
    sentences: list[Sentence], predicted: list[list[str]], known: set[str], lower: bool, top: int = 10
) -> dict[str, Any]:
    """Token accuracy, OOV accuracy (words not in ``known``), per-tag P/R/F1, top confusions."""
    right = total = oov_right = oov_total = 0
    gold_count: Counter[str] = Counter()
    pred_count: Counter[str] = Counter()
    hit: Counter[str] = Counter()
    confusions: Counter[tuple[str, str]] = Counter()
    for s, pred in zip(sentences, predicted, strict=True):
        for w, g, p in zip(s.words, s.tags, pred, strict=True):
            ok = g == p
            right += ok
            total += 1
            gold_count[g] += 1
            pred_count[p] += 1
            if ok:
                hit[g] += 1
            else:
                confusions[(g, p)] += 1
            if (w.lower() if lower else w) not in known:
                oov_total += 1
                oov_right += ok
    per_tag = {}
    for t in sorted(gold_count | pred_count):
        precision = hit[t] / pred_count[t] if pred_count[t] else 0.0
        recall = hit[t] / gold_count[t] if gold_count[t] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_tag[t] = {"precision": precision, "recall": recall, "f1": f1, "support": gold_count[t]}
    return {
        "accuracy": right / max(total, 1),
        "accuracy_ci95": wilson(right, total),
        "tokens": total,
        "oov_accuracy": oov_right / oov_total if oov_total else None,
        "oov_accuracy_ci95": wilson(oov_right, oov_total) if oov_total else None,
        "oov_tokens": oov_total,
        "per_tag": per_tag,
        "confusions": [{"gold": g, "predicted": p, "count": c} for (g, p), c in confusions.most_common(top)],
    }
