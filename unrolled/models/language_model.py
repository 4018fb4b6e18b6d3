"""A recurrent language model: embedding -> recurrent layer -> linear to the vocabulary.

    e_t = E[x_t]                      (B, T, E)   or a one-hot vector when embedding_dim = 0
    h_t, state = Recurrent(e_t, state)  (B, T, H)
    logits_t = W h_t + b              (B, T, V)

The recurrent layer is any :class:`unrolled.Recurrent`; the model only adds the two ends.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import Recurrent


class LanguageModel(nn.Module):
    """Next-token model over a vocabulary of ``vocab_size`` tokens.

    Args:
        vocab_size: V, number of distinct tokens.
        rnn: a batch-first recurrent layer whose ``input_size`` is ``embedding_dim``
            (or V for one-hot input).
        embedding_dim: E; 0 feeds one-hot vectors instead of learned embeddings (the lecture's
            char-RNN).
        dropout: dropout on the recurrent layer's output, before the decoder.

    Shapes: ``tokens`` (B, T) int64 -> ``logits`` (B, T, V) and the final state.
    """

    def __init__(self, vocab_size: int, rnn: Recurrent, embedding_dim: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        if not rnn.batch_first:
            raise ValueError("LanguageModel needs a batch_first recurrent layer")
        expected = embedding_dim or vocab_size
        if rnn.input_size != expected:
            raise ValueError(
                f"the recurrent layer's input_size must be {expected} "
                f"({'embedding_dim' if embedding_dim else 'vocab_size, one-hot'}), got {rnn.input_size}"
            )
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.embed = nn.Embedding(vocab_size, embedding_dim) if embedding_dim else None
        self.rnn = rnn
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(rnn.output_size, vocab_size)

    def forward(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        if self.embed is not None:
            x = self.embed(tokens)  # (B, T, E)
        else:
            x = F.one_hot(tokens, self.vocab_size).to(self.decoder.weight.dtype)  # (B, T, V)
        out, state = self.rnn(x, state)  # (B, T, H)
        return self.decoder(self.drop(out)), state  # (B, T, V)
