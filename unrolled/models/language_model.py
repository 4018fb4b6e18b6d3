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

from collections.abc import Callable, Sequence
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
        cutoffs: an adaptive softmax (Grave et al. 2017, ``torch.nn.AdaptiveLogSoftmaxWithLoss``)
            instead of the full one: the ids below ``cutoffs[0]`` (the most frequent words, as a
            word vocabulary orders them) in the head, each following range in a tail cluster whose
            projection 4 times narrower than the one before (less where a width would reach 0).
            None: the full softmax.

    Shapes: ``tokens`` (B, T) int64 -> ``logits`` (B, T, V) and the final state (with an adaptive
    softmax the log-probabilities, which serve as logits); with ``targets`` (B, T) the mean
    negative log-likelihood instead of the logits, computed without the full (B, T, V) scores where
    the softmax is adaptive.
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
        cutoffs: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if cutoffs is not None:
            check_cutoffs(cutoffs, vocab_size)
            if tie_weights:
                raise ValueError("an adaptive softmax has no one decoder matrix to tie: drop tie_weights")
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
        self.adaptive = cutoffs is not None
        if cutoffs is not None:
            size = rnn.output_size  # each cluster's projection 4x narrower, down to 1 wide at most
            div = min(4.0, size ** (1 / len(cutoffs)) * (1 - 1e-9))
            self.decoder = nn.AdaptiveLogSoftmaxWithLoss(size, vocab_size, list(cutoffs), div_value=div)
        elif tie_weights:
            assert self.embed is not None
            nn.init.uniform_(self.embed.weight, -0.1, 0.1)  # N(0, 1) rows would start with huge logits
            self.decoder = TiedDecoder(self.embed)
        else:
            self.decoder = nn.Linear(rnn.output_size, vocab_size)

    @property
    def tied(self) -> bool:
        return isinstance(self.decoder, TiedDecoder)

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point type of the weights (what one-hot input is made of)."""
        return self.rnn.cells[0].weight_ih.dtype

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return self.rnn.cells[0].weight_ih.device

    def scores(self, h: Tensor) -> Tensor:
        """The decoder's scores of outputs ``h`` (..., H): logits (..., V), or with an adaptive
        softmax log-probabilities (which a softmax leaves as they are)."""
        if not self.adaptive:
            return self.decoder(h)
        return self.decoder.log_prob(h.reshape(-1, h.size(-1))).view(*h.shape[:-1], self.vocab_size)

    def stepper(self) -> Callable[[Tensor, Any], tuple[Tensor, Any]]:
        """``self(tokens, state)`` as generation calls it, one token per row and call in
        evaluation mode: the same results, through :meth:`Recurrent.stepper` and without the
        module calls of the embedding and the (inactive) dropouts. In training mode, the model."""
        if self.training:
            return self.__call__
        rnn, scores = self.rnn.stepper(), self.decoder if not self.adaptive else self.scores
        embed = self.embed

        def step(tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
            if embed is not None:
                x = F.embedding(tokens, embed.weight)  # (B, 1, E)
            else:
                x = F.one_hot(tokens, self.vocab_size).to(self.dtype)
            out, state = rnn(x, state)
            return scores(out), state

        return step

    def forward(self, tokens: Tensor, state: Any = None, targets: Tensor | None = None) -> tuple[Tensor, Any]:
        if self.embed is None:
            x = F.one_hot(tokens, self.vocab_size).to(self.dtype)  # (B, T, V)
        elif self.training and self.word_dropout:
            weight = embedding_dropout(self.embed.weight, self.word_dropout, training=True)
            x = self.embed_drop(F.embedding(tokens, weight))
        else:
            x = self.embed_drop(self.embed(tokens))  # (B, T, E)
        out, state = self.rnn(x, state)  # (B, T, H)
        dropped = self.drop(out)
        penalize = self.training and (self.ar or self.tar)
        self.penalty = activation_penalty(out, dropped, self.ar, self.tar) if penalize else None
        if targets is None:
            return self.scores(dropped), state  # (B, T, V)
        if self.adaptive:
            return self.decoder(dropped.reshape(-1, dropped.size(-1)), targets.reshape(-1)).loss, state
        logits = self.decoder(dropped)
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1)), state


def check_cutoffs(cutoffs: Sequence[int], vocab_size: int, name: str = "adaptive softmax cut-offs") -> None:
    """``ValueError`` unless ``cutoffs`` are increasing integers in [1, vocab_size - 1]."""
    values = list(cutoffs)
    if (
        not values
        or any(not isinstance(c, int) or isinstance(c, bool) for c in values)
        or any(b <= a for a, b in zip(values, values[1:], strict=False))
        or values[0] < 1
        or values[-1] > vocab_size - 1
    ):
        raise ValueError(
            f"{name} must be increasing integers from 1 to the vocabulary size - 1 ({vocab_size - 1}), "
            f"got {values}"
        )
