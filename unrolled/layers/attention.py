"""Attention over a padded sequence of encoder outputs: Bahdanau's additive and Luong's general score.

For queries q_t (the decoder's state), keys k_s and values v_s (the encoder's outputs, s < S_b
for sentence b), an attention layer computes

    e_ts = score(q_t, k_s)                      (B, T, S)
    a_ts = softmax_s(e_ts) over the real s only (B, T, S), exactly 0 on the pads
    c_t  = sum_s a_ts v_s                       (B, T, V)

with ``score`` additive, v^T tanh(W_q q + W_k k) (Bahdanau et al. 2015), or general,
q^T W_a k (Luong et al. 2015; the dot score is W_a = I). The part that depends on the keys alone
(W_k k, W_a k) is computed once per sentence by :meth:`prepare` and reused at every step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dimension where ``mask`` (broadcast to ``scores``) is True; 0 elsewhere.

    Example:
        >>> masked_softmax(torch.zeros(1, 3), torch.tensor([[True, True, False]]))
        tensor([[0.5000, 0.5000, 0.0000]])
    """
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


class _Attention(nn.Module):
    def prepare(self, keys: Tensor) -> Tensor:
        raise NotImplementedError

    def scores(self, query: Tensor, prepared: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, query: Tensor, prepared: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Context and weights for ``query`` (B, T, Q) (or (B, Q): one step) over ``prepared`` keys
        (B, S, ·), ``values`` (B, S, V) and ``mask`` (B, S) (True: a real position).

        Returns ``(context (B, T, V), weights (B, T, S))`` (without the T for a one-step query).
        """
        one_step = query.dim() == 2
        q = query.unsqueeze(1) if one_step else query
        weights = masked_softmax(self.scores(q, prepared), mask.unsqueeze(1))  # (B, T, S)
        context = torch.bmm(weights, values)  # (B, T, V)
        return (context.squeeze(1), weights.squeeze(1)) if one_step else (context, weights)


class AdditiveAttention(_Attention):
    """Bahdanau's score e_ts = v^T tanh(W_q q_t + W_k k_s), with ``hidden`` units.

    Shapes: keys (B, S, K) -> prepared (B, S, hidden); query (B, T, Q) -> scores (B, T, S).
    """

    def __init__(self, query_size: int, key_size: int, hidden: int) -> None:
        super().__init__()
        self.w_query = nn.Linear(query_size, hidden, bias=False)
        self.w_key = nn.Linear(key_size, hidden, bias=False)
        self.v = nn.Linear(hidden, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.w_key(keys)

    def scores(self, query: Tensor, prepared: Tensor) -> Tensor:
        features = torch.tanh(self.w_query(query).unsqueeze(2) + prepared.unsqueeze(1))  # (B, T, S, h)
        return self.v(features).squeeze(-1)


class GeneralAttention(_Attention):
    """Luong's general score e_ts = q_t^T W_a k_s.

    Shapes: keys (B, S, K) -> prepared W_a k (B, S, Q); query (B, T, Q) -> scores (B, T, S).
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        self.w = nn.Linear(key_size, query_size, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.w(keys)

    def scores(self, query: Tensor, prepared: Tensor) -> Tensor:
        return torch.bmm(query, prepared.transpose(1, 2))
