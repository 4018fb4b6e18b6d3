"""A linear-chain conditional random field over tag sequences (Lafferty et al. 2001; as the
output layer of a BiLSTM tagger, Lample et al. 2016).

For emission scores E (T, K) of one sentence (a network's output per word and tag) and learned
transition scores A (K, K), start s (K,) and end e (K,), a tag sequence y scores

    score(y) = s[y_1] + sum_t E[t, y_t] + sum_{t>1} A[y_{t-1}, y_t] + e[y_T]

and p(y) = exp(score(y)) / Z with Z = sum over all K^T sequences. The forward algorithm finds
log Z in O(T K^2):

    alpha_1 = s + E[1];   alpha_t[j] = logsumexp_i(alpha_{t-1}[i] + A[i, j]) + E[t, j]
    log Z = logsumexp_j(alpha_T[j] + e[j])

and Viterbi the best sequence with max in place of logsumexp and back-pointers. Both run on a
batch of padded sentences with a mask (B, T) of their real words (each a prefix of its row).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LinearChainCRF(nn.Module):
    """Transition, start and end scores over ``num_tags`` tags; see the module docstring.

    Shapes: ``emissions`` (B, T, K), ``tags`` (B, T) int64, ``mask`` (B, T) bool with every
    row's True entries first (at least one per row).
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if num_tags <= 0:
            raise ValueError(f"num_tags must be positive, got {num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # [from, to]
        self.start = nn.Parameter(torch.empty(num_tags))
        self.end = nn.Parameter(torch.empty(num_tags))
        for p in (self.transitions, self.start, self.end):
            nn.init.uniform_(p, -0.1, 0.1)

    def _check(self, emissions: Tensor, mask: Tensor) -> None:
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(f"emissions must be (B, T, {self.num_tags}), got {tuple(emissions.shape)}")
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask must be {tuple(emissions.shape[:2])}, got {tuple(mask.shape)}")
        if not bool(mask[:, 0].all()):
            raise ValueError("every sentence needs at least one word (mask[:, 0] must be True)")

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """log Z per sentence, (B,), by the forward algorithm."""
        self._check(emissions, mask)
        alpha = self.start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.size(1)):
            step = torch.logsumexp(alpha[:, :, None] + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t, None], step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """score(y) of the given tag sequences, (B,)."""
        self._check(emissions, mask)
        m = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags[:, :, None]).squeeze(2)  # (B, T)
        trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        last = tags.gather(1, (mask.sum(1) - 1)[:, None]).squeeze(1)
        return self.start[tags[:, 0]] + (emit * m).sum(1) + (trans * m[:, 1:]).sum(1) + self.end[last]

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """-log p(tags) per sentence, (B,)."""
        return self.log_partition(emissions, mask) - self.score(emissions, tags, mask)

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """The highest-scoring tag sequence of each sentence (Viterbi), (B, T); padding gets 0."""
        self._check(emissions, mask)
        B, T, _ = emissions.shape
        score = self.start + emissions[:, 0]
        pointers = []
        for t in range(1, T):
            best, index = (score[:, :, None] + self.transitions).max(dim=1)  # over the previous tag
            pointers.append(index)  # (B, K): the best previous tag for each tag at step t
            score = torch.where(mask[:, t, None], best + emissions[:, t], score)
        last = (score + self.end).argmax(dim=1)  # (B,)
        lengths = mask.sum(1)
        path = torch.zeros(B, T, dtype=torch.long, device=emissions.device)
        current = last
        for t in range(T - 1, -1, -1):
            current = torch.where(lengths - 1 == t, last, current)
            path[:, t] = current
            if t > 0:
                previous = pointers[t - 1].gather(1, current[:, None]).squeeze(1)
                current = torch.where(t <= lengths - 1, previous, current)
        return path * mask
