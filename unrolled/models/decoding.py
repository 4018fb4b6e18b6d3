"""Greedy and beam-search decoding for any step-by-step model, batched.

A model is decoded through two functions:

- ``step(tokens (N,), state) -> (logits (N, V), state, attention (N, S) or None)``: one step
  for N rows, given each row's previous token;
- ``select(state, rows (M,)) -> state``: the state of the given rows (beam search copies and
  reorders its hypotheses with it).

Greedy decoding feeds back the likeliest token until ``<eos>`` or ``max_len`` tokens. Beam search
(Wu et al. 2016) keeps the ``beam`` best live hypotheses of each sentence: every step it extends
them with every token and keeps the ``beam`` best extensions by total log-probability; an
extension that ends in ``<eos>`` is finished (it leaves the beam, which then holds fewer live
hypotheses), as is a hypothesis cut at ``max_len`` tokens. Finished hypotheses are ranked by

    score(Y) = log P(Y | X) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha

where |Y| counts the tokens including ``<eos>`` and ``alpha`` is the length penalty (0: raw
log-probability; larger favours longer output). A sentence stops when it has no live hypothesis
or when none can still beat its best finished one: log P only falls as a hypothesis grows, so a
live hypothesis of log-probability s can reach at most max(s / lp(|Y| + 1), s / lp(max_len)).
With ``beam`` 1 this is greedy decoding; with a beam as large as the number of prefixes it is
an exhaustive search. Rows never interact: a sentence decodes the same in any batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import check_logits

StepFn = Callable[[Tensor, Any], tuple[Tensor, Any, Tensor | None]]
SelectFn = Callable[[Any, Tensor], Any]


@dataclass
class Hypothesis:
    """One decoded sentence."""

    tokens: list[int]  # the output without <eos>
    log_prob: float  # log P(tokens [+ <eos>] | source), natural log
    score: float  # log_prob / lp(length): what beam search ranks by
    finished: bool  # ended with <eos> (False: cut at max_len)
    attention: Tensor | None  # (steps, S): row t is the attention that produced output token t


def length_penalty(length: int, alpha: float) -> float:
    """Wu et al. (2016)'s lp = ((5 + length) / 6) ** alpha.

    Example:
        >>> length_penalty(1, 0.6), round(length_penalty(7, 1.0), 4)
        (1.0, 2.0)
    """
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def _log_probs(logits: Tensor) -> Tensor:
    """log softmax in float64 on the CPU; :class:`NonFiniteOutput` if a logit is NaN or +inf (a
    model whose weights diverged decodes nothing sensible; -inf marks a masked token)."""
    check_logits(logits)
    return torch.log_softmax(logits.double(), dim=-1).cpu()


def greedy(
    step: StepFn, state: Any, batch: int, bos: int, eos: int, max_len: int, device: torch.device | None = None
) -> list[Hypothesis]:
    """The likeliest next token at every step, for ``batch`` sentences at once (on ``device``)."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    tokens = torch.full((batch,), bos, dtype=torch.long)
    out, logps, attns = [], [], []
    done = torch.zeros(batch, dtype=torch.bool)
    for _ in range(max_len):
        logits, state, attn = step(tokens.to(device), state)
        logp = _log_probs(logits)
        tokens = logp.argmax(-1)
        out.append(tokens)
        logps.append(logp.gather(1, tokens[:, None])[:, 0])
        attns.append(None if attn is None else attn.float().cpu())
        done |= tokens == eos
        if bool(done.all()):
            break
    seqs, logp_all = torch.stack(out, 1).tolist(), torch.stack(logps, 1)
    hyps = []
    for b, seq in enumerate(seqs):
        ended = eos in seq
        n = seq.index(eos) + 1 if ended else len(seq)
        total = float(logp_all[b, :n].sum())
        attention = None if attns[0] is None else torch.stack([a[b] for a in attns[:n]])
        hyps.append(Hypothesis(seq[: n - ended], total, total, ended, attention))
    return hyps


@torch.no_grad()
def beam_search(
    step: StepFn,
    select: SelectFn,
    state: Any,
    batch: int,
    bos: int,
    eos: int,
    max_len: int,
    beam: int,
    alpha: float = 0.0,
    device: torch.device | None = None,
) -> list[Hypothesis]:
    """The best finished hypothesis of each of ``batch`` sentences (see the module docstring)."""
    if beam < 1:
        raise ValueError(f"the beam must be >= 1, got {beam}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    K = beam
    rows = torch.arange(batch).repeat_interleave(K)  # row n*K + k: beam k of sentence n
    state = select(state, rows.to(device))
    scores = torch.full((batch, K), -math.inf, dtype=torch.float64)
    scores[:, 0] = 0.0  # one live hypothesis to start with
    seqs = torch.zeros(batch, K, 0, dtype=torch.long)
    attns: Tensor | None = None  # (batch, K, t, S)
    tokens = torch.full((batch * K,), bos, dtype=torch.long)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    active = torch.ones(batch, dtype=torch.bool)
    for t in range(max_len):
        logits, state, attn = step(tokens.to(device), state)
        logp = _log_probs(logits)  # (N*K, V)
        V = logp.size(1)
        cand = (scores.unsqueeze(2) + logp.view(batch, K, V)).view(batch, K * V)
        top, index = cand.topk(K, dim=1)  # (batch, K), best first
        parent, token = index // V, index % V
        seqs = torch.cat([_pick(seqs, parent), token[:, :, None]], 2)
        if attn is not None:  # the attention of step t belongs to the parent's row
            new = attn.float().cpu().view(batch, K, 1, -1)
            attns = _pick(new if attns is None else torch.cat([attns, new], 2), parent)
        ends = (token == eos) | (t + 1 == max_len)
        lp = length_penalty(t + 1, alpha)
        for n in active.nonzero().flatten().tolist():
            for k in range(K):
                if ends[n, k] and top[n, k] > -math.inf:
                    s = float(top[n, k])
                    ended = bool(token[n, k] == eos)
                    body = seqs[n, k, : t + 1 - ended].tolist()
                    att = None if attns is None else attns[n, k].clone()
                    finished[n].append(Hypothesis(body, s, s / lp, ended, att))
        scores = top.masked_fill(ends, -math.inf)
        for n in active.nonzero().flatten().tolist():  # can a live hypothesis still beat the best?
            live = scores[n][scores[n] > -math.inf]
            if live.numel() == 0:
                active[n] = False
                continue
            best = max(h.score for h in finished[n]) if finished[n] else -math.inf
            s = float(live.max())
            reach = max(s / length_penalty(t + 2, alpha), s / length_penalty(max_len, alpha))
            if best >= reach:
                active[n] = False
        scores[~active] = -math.inf
        if not bool(active.any()):
            break
        flat_parent = (torch.arange(batch)[:, None] * K + parent).flatten()
        state = select(state, flat_parent.to(device))
        tokens = token.flatten()
    return [max(f, key=lambda h: h.score) for f in finished]


def _pick(x: Tensor, parent: Tensor) -> Tensor:
    """Rows of ``x`` (batch, K, ...) of each hypothesis's parent beam ``parent`` (batch, K)."""
    index = parent.view(*parent.shape, *[1] * (x.dim() - 2)).expand(-1, -1, *x.shape[2:])
    return x.gather(1, index)
