"""A recurrent language model: embedding -> recurrent layer -> linear to the vocabulary.

    e_t = drop_e(E[x_t])               (B, T, E)   or a one-hot vector when embedding_dim = 0
    h_t, state = Recurrent(e_t, state)  (B, T, H)
    logits_t = W drop(h_t) + b          (B, T, V)

With ``tie_weights`` (Press & Wolf 2017; Inan et al. 2017) the decoder's weight *is* the
embedding matrix, W = E (V x E, so H must equal E): one tensor, read at both ends, trained by
both, saved once (as ``embed.weight``; the decoder keeps only its bias).

The recurrent layer is any :class:`unrolled.Recurrent`; the model only adds the two ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import Recurrent


class TiedDecoder(nn.Module):
    """``logits = h E^T + b`` with the embedding matrix ``E`` of ``embed``, which it does not own:
    ``weight`` is ``embed.weight`` itself, and the state dict holds only ``bias``."""

    def __init__(self, embed: nn.Embedding) -> None:
        super().__init__()
        object.__setattr__(self, "_embed", embed)  # a reference, not a submodule: saved once, by its owner
        self.bias = nn.Parameter(torch.zeros(embed.num_embeddings))

    @property
    def weight(self) -> Tensor:
        return self._embed.weight

    def forward(self, h: Tensor) -> Tensor:
        return F.linear(h, self._embed.weight, self.bias)


class LanguageModel(nn.Module):
    """Next-token model over a vocabulary of ``vocab_size`` tokens.

    Args:
        vocab_size: V, number of distinct tokens.
        rnn: a batch-first recurrent layer whose ``input_size`` is ``embedding_dim``
            (or V for one-hot input).
        embedding_dim: E; 0 feeds one-hot vectors instead of learned embeddings (the lecture's
            char-RNN).
        dropout: dropout on the recurrent layer's output, before the decoder.
        embedding_dropout: dropout on the embeddings, before the recurrent layer.
        tie_weights: the decoder reuses the embedding matrix (needs ``embedding_dim`` equal to
            the recurrent layer's output size; the embedding then starts uniform in [-0.1, 0.1]).

    Shapes: ``tokens`` (B, T) int64 -> ``logits`` (B, T, V) and the final state.
    """

    def __init__(
        self,
        vocab_size: int,
        rnn: Recurrent,
        embedding_dim: int = 0,
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        if not rnn.batch_first:
            raise ValueError("LanguageModel needs a batch_first recurrent layer")
        expected = embedding_dim or vocab_size
        if rnn.input_size != expected:
            raise ValueError(
                f"the recurrent layer's input_size must be {expected} "
                f"({'embedding_dim' if embedding_dim else 'vocab_size, one-hot'}), got {rnn.input_size}"
            )
        if tie_weights and embedding_dim != rnn.output_size:
            got = f"--embedding-dim {embedding_dim}" if embedding_dim else "one-hot input (--embedding-dim 0)"
            raise ValueError(
                f"--tie-weights needs the embedding size to equal the last layer's output size "
                f"{rnn.output_size}, got {got}: set --embedding-dim {rnn.output_size} "
                "(or the same --hidden), or leave out --tie-weights"
            )
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.embed = nn.Embedding(vocab_size, embedding_dim) if embedding_dim else None
        self.embed_drop = nn.Dropout(embedding_dropout)
        self.rnn = rnn
        self.drop = nn.Dropout(dropout)
        self.decoder: nn.Module
        if tie_weights:
            assert self.embed is not None
            nn.init.uniform_(self.embed.weight, -0.1, 0.1)  # N(0, 1) rows would start with huge logits
            self.decoder = TiedDecoder(self.embed)
        else:
            self.decoder = nn.Linear(rnn.output_size, vocab_size)

    @property
    def tied(self) -> bool:
        return isinstance(self.decoder, TiedDecoder)

    def stepper(self) -> Callable[[Tensor, Any], tuple[Tensor, Any]]:
        """``self(tokens, state)`` as generation calls it, one token per row and call in
        evaluation mode: the same results, through :meth:`Recurrent.stepper` and without the
        module calls of the embedding and the (inactive) dropouts. In training mode, the model."""
        if self.training:
            return self.__call__
        rnn, decoder = self.rnn.stepper(), self.decoder
        embed = self.embed

        def step(tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
            if embed is not None:
                x = F.embedding(tokens, embed.weight)  # (B, 1, E)
            else:
                x = F.one_hot(tokens, self.vocab_size).to(decoder.weight.dtype)
            out, state = rnn(x, state)
            return decoder(out), state

        return step

    def forward(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        if self.embed is not None:
            x = self.embed_drop(self.embed(tokens))  # (B, T, E)
        else:
            x = F.one_hot(tokens, self.vocab_size).to(self.decoder.weight.dtype)  # (B, T, V)
        out, state = self.rnn(x, state)  # (B, T, H)
        return self.decoder(self.drop(out)), state  # (B, T, V)
