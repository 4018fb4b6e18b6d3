"""Truncated-BPTT batching of one long token stream, as the char-RNN lectures do it.

The stream is cut into ``B`` contiguous rows (row b holds tokens [b*L, (b+1)*L)), and the rows
are walked left to right in chunks of ``seq_len``: chunk k of row b is followed by chunk k+1 of
the same row, so the hidden state at the end of one chunk is the right initial state for the
next (it is detached there: gradients flow back at most ``seq_len`` steps)::

    row 0: | x_0 ... x_{T-1} | x_T ... x_{2T-1} | ...
    row 1: | ...

Targets are the inputs shifted by one token.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor


def stream_rows(ids: Tensor, batch_size: int) -> Tensor:
    """(N,) ids -> (B, N // B) contiguous rows; the tail that doesn't fill a row is dropped."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    L = ids.numel() // batch_size
    return ids[: batch_size * L].view(batch_size, L)


def num_chunks(ids: Tensor, batch_size: int, seq_len: int) -> int:
    """How many (x, y) chunks of ``seq_len`` one pass over the stream yields."""
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    L = ids.numel() // batch_size
    return max(0, (L - 1) // seq_len)


def chunks(ids: Tensor, batch_size: int, seq_len: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x, y)`` chunks of shape (B, seq_len), beginning at chunk ``start``.

    ``y[b, t] == x[b, t + 1]`` within a chunk, and chunk k+1 of row b begins where chunk k of
    row b ended (``x_{k+1}[b, 0] == y_k[b, -1]``).
    """
    rows = stream_rows(ids, batch_size)
    for k in range(start, num_chunks(ids, batch_size, seq_len)):
        i = k * seq_len
        yield rows[:, i : i + seq_len], rows[:, i + 1 : i + 1 + seq_len]
