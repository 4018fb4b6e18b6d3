"""A recurrent language model: embedding -> recurrent layer -> linear to the vocabulary.

    e_t = drop_e(E'[x_t])              (B, T, E)   or a one-hot vector when embedding_dim = 0
    h_t, state = Recurrent(e_t, state)  (B, T, H)
    logits_t = W drop(h_t) + b          (B, T, V)

In training, ``E'`` is ``E`` with whole rows (words) dropped with probability ``word_dropout``
(and the rest scaled by 1 / (1 - p)); the two dropouts draw one mask per sequence when the
recurrent layer's between-layer dropout is locked (``Recurrent(locked_dropout=True)``); and
``penalty`` holds AWD-LSTM's ``ar * mean(drop(h)^2) + tar * mean((h_t - h_{t-1})^2)`` of the
last call, for the loss to add (None outside training or with both weights 0).

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

from ..layers import LockedDropout, Recurrent, activation_penalty, embedding_dropout
from ..layers.dropout import check_rate


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
        word_dropout: probability of dropping a word's whole embedding row for a batch.
        ar, tar: weights of the activation and temporal-activation penalties (>= 0).

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
        word_dropout: float = 0.0,
        ar: float = 0.0,
        tar: float = 0.0,
    ) -> None:
        super().__init__()
        if ar < 0 or tar < 0:
            raise ValueError(f"ar and tar are penalty weights: they must be >= 0, got {ar} and {tar}")
        if word_dropout and not embedding_dim:
            raise ValueError("word_dropout drops rows of the embedding: it needs embedding_dim > 0")
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
        drop: Callable[[float], nn.Module] = LockedDropout if rnn.locked_dropout else nn.Dropout
        self.embed_drop = drop(embedding_dropout)
        self.word_dropout = check_rate("word_dropout", word_dropout)
        self.rnn = rnn
        self.drop = drop(dropout)
        self.ar, self.tar = float(ar), float(tar)
        self.penalty: Tensor | None = None
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
        if self.embed is None:
            x = F.one_hot(tokens, self.vocab_size).to(self.decoder.weight.dtype)  # (B, T, V)
        elif self.training and self.word_dropout:
            weight = embedding_dropout(self.embed.weight, self.word_dropout, training=True)
            x = self.embed_drop(F.embedding(tokens, weight))
        else:
            x = self.embed_drop(self.embed(tokens))  # (B, T, E)
        out, state = self.rnn(x, state)  # (B, T, H)
        dropped = self.drop(out)
        penalize = self.training and (self.ar or self.tar)
        self.penalty = activation_penalty(out, dropped, self.ar, self.tar) if penalize else None
        return self.decoder(dropped), state  # (B, T, V)
