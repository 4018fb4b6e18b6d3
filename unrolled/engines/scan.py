"""The parallel scan: all T steps of a cell whose step is linear in its state, at once.

minGRU and minLSTM (:mod:`unrolled.cells.minimal`) step as ``h_t = a_t * h_{t-1} + b_t`` with
``a_t`` in (0, 1) and ``b_t > 0`` depending on ``x_t`` only. Unrolled, with ``A_t = sum_{s<=t}
log a_s``,

    h_t = exp(A_t) * h_0 + sum_{s<=t} exp(A_t - A_s) * b_s
        = exp(A_t) * h_0 + exp(A_t + logcumsumexp_{s<=t}(log b_s - A_s)),

so the whole sequence costs one input GEMM (T*B, I) x (I, G*H), a cumsum and a logcumsumexp
along time, and elementwise work (Feng et al. 2024, after Heinsen 2023); autograd derives the
backward. Two choices differ from the paper's code, for exactness:

- ``h_0`` enters by linearity, outside the logarithm (the first term), instead of as a first
  ``log g(h_0)`` inside the logcumsumexp: any real ``h_0`` works, zero included, exactly as in
  the step-by-step loop, and its gradient ``sum_t exp(A_t) dL/dh_t`` stays finite at zero.
- Time is cut into chunks of at most ``chunk`` steps (4 by default): within a chunk ``A`` is
  summed from the chunk's start, and the state at each chunk's start is carried from chunk to
  chunk in linear space (a loop of ceil(T / chunk) tiny steps). In one scan over all T, ``|A_t|``
  grows like T (about 0.7 per step for gates near 1/2), and ``A_t + logcumsumexp(...)`` loses
  ``|A_t| * eps`` of absolute precision in ``log h``: 2e-4 at T = 2000 in float32, more in the
  gradients, where the two terms' large derivatives cancel. Chunks bound the loss by ``chunk *
  max|log a|``; at 4 steps float32 results stay within a few times the loop's rounding error,
  and on CPU the scan is no slower than with longer chunks (the carry's tiny steps are cheap next
  to logcumsumexp; on a GPU, where each step is a kernel launch, longer chunks would pay).
  ``chunk=None`` is one scan over all T (the paper's form).

Shapes: ``x`` (T, B, I), ``h_0`` (B, H), ``log a``, ``log b`` and the output (T, B, H).
Variable lengths come as the mask the fused engine builds, (T, B, 1) bool: a step past a row's
end has ``a = 1``, ``b = 0`` (``log a = 0``, ``log b = -inf``), so the state is kept, and its
output is zero, exactly as the reference loop's masking. The reverse direction flips time, so
that a shorter row starts at its own end. A sequence of one step (generation) is the cell's own
step, the sequential mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CHUNK = 4  # steps per chunk: float32 error grows with it, the sequential carry with T / CHUNK


def linear_scan(log_a: Tensor, log_b: Tensor, h0: Tensor, chunk: int | None = CHUNK) -> Tensor:
    """``h_t = a_t * h_{t-1} + b_t`` for t = 0..T-1 from ``log a``, ``log b`` (T, B, H) and ``h0``
    (B, H): returns ``h`` (T, B, H). ``log b`` may be -inf (b = 0); see the module docstring."""
    T, B, H = log_a.shape
    n = 1 if chunk is None else -(-T // chunk)  # chunks
    C = -(-T // n)  # steps per chunk (<= chunk); the last chunk is padded with steps a = 1, b = 0
    pad = n * C - T
    if pad:
        log_a = F.pad(log_a, (0, 0, 0, 0, 0, pad))
        log_b = F.pad(log_b, (0, 0, 0, 0, 0, pad), value=float("-inf"))
    A = log_a.reshape(n, C, B, H).cumsum(1)  # (n, C, B, H): log(a_s ... a_t) from the chunk's start
    U = A + torch.logcumsumexp(log_b.reshape(n, C, B, H) - A, dim=1)  # log h_t from a zero start
    decay, part = A.exp(), U.exp()  # (n, C, B, H)
    starts = [h0]  # the state before each chunk, carried in linear space: any sign, zero exact
    for d, p in zip(decay[:-1, -1].unbind(0), part[:-1, -1].unbind(0), strict=True):
        starts.append(torch.addcmul(p, d, starts[-1]))  # d * start + p
    h = decay * torch.stack(starts).unsqueeze(1) + part  # (n, C, B, H)
    return h.reshape(n * C, B, H)[:T]


def run_scan(
    cell: nn.Module,
    x: Tensor,
    state: Tensor,
    reverse: bool = False,
    mask: Tensor | None = None,
    *,
    chunk: int | None = CHUNK,
) -> tuple[Tensor, Tensor]:
    """Run a minGRU/minLSTM ``cell`` over ``x`` (T, B, I) from ``state`` (B, H) in parallel.

    ``mask`` (T, B, 1) bool marks the valid steps (None: all). Returns ``(out, h_n)`` as
    :func:`unrolled.engines.run_reference` does: ``out`` (T, B, H), zero past a row's end, and
    ``h_n`` (B, H), the state after each row's last valid step.
    """
    T, B, _ = x.shape
    if T <= 1:  # a single step (generation): the cell's own step
        if T == 0:
            return x.new_zeros(0, B, cell.hidden_size), state
        h, _ = cell(x[0], state)
        if mask is not None:
            state, h = torch.where(mask[0], h, state), h.masked_fill(~mask[0], 0.0)
            return h.unsqueeze(0), state
        return h.unsqueeze(0), h
    k = F.linear(x, cell.weight_ih, cell.bias_ih)  # (T, B, G*H): every step's gates in one GEMM
    log_a, log_b = cell.log_coefficients(k)  # (T, B, H) each
    if mask is not None:
        log_a = log_a.masked_fill(~mask, 0.0)  # a = 1: the state is kept ...
        log_b = log_b.masked_fill(~mask, float("-inf"))  # ... and nothing is added
    if reverse:
        log_a, log_b = log_a.flip(0), log_b.flip(0)
    h = linear_scan(log_a, log_b, state, chunk)  # (T, B, H), in the order of processing
    h_n = h[-1]
    if reverse:
        h = h.flip(0)
    return (h if mask is None else h.masked_fill(~mask, 0.0)), h_n
