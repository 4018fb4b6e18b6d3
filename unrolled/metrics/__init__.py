"""Metrics of the applications that no library gives in the lectures' form."""

from .translation import corpus_scores, sentence_bleu

__all__ = ["corpus_scores", "sentence_bleu"]
