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

import random
from collections.abc import Sequence
from typing import Any

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


class BPTTChunks(Sequence[tuple[Tensor, Tensor]]):
    """The ``(x, y)`` chunks of one pass over a stream, each of shape (B, seq_len).

    Indexable, so that a resumed run can start mid-epoch. ``y[b, t] == x[b, t + 1]`` within a
    chunk, and chunk k+1 of row b begins where chunk k of row b ended
    (``chunk[k + 1].x[b, 0] == chunk[k].y[b, -1]``).
    """

    def __init__(self, ids: Tensor, batch_size: int, seq_len: int) -> None:
        self.n = num_chunks(ids, batch_size, seq_len)
        self.rows = stream_rows(ids, batch_size)  # (B, L)
        self.seq_len = seq_len

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        if not 0 <= k < self.n:
            raise IndexError(f"chunk {k} out of range (0..{self.n - 1})")
        i = k * self.seq_len
        return self.rows[:, i : i + self.seq_len], self.rows[:, i + 1 : i + 1 + self.seq_len]


def grouped_batches(
    keys: Sequence[Any], batch_size: int, shuffle: bool, seed: int, epoch: int, pool: int = 50
) -> list[list[int]]:
    """Row indices cut into batches of ``batch_size``; rows of similar ``keys`` (lengths) together.

    Without ``shuffle``: in order. With it: an order fixed by ``seed`` and ``epoch`` (a resumed
    run sees the same batches): the rows are shuffled, sorted by key within pools of ``pool``
    batches (little padding), and the batches shuffled.
    """
    n = len(keys)
    if not shuffle:
        return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(n))
    rng.shuffle(order)
    batches = []
    for start in range(0, n, batch_size * pool):
        chunk = sorted(order[start : start + batch_size * pool], key=keys.__getitem__)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


class GroupedBatches(Sequence[Any]):
    """The batches of one epoch over rows with length ``keys``, for any batch of rows.

    With ``shuffle``, each epoch has its own order, fixed by ``seed`` and the epoch number
    (:meth:`set_epoch`, called by the trainer), so a resumed run sees the same batches; rows of
    similar key are batched together (:func:`grouped_batches`) so that little time goes into
    padding. A subclass says how a list of row indices becomes a batch (:meth:`make`).
    """

    def __init__(
        self, keys: Sequence[Any], batch_size: int, *, shuffle: bool = True, seed: int = 0, pool: int = 50
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.keys, self.batch_size, self.shuffle, self.seed, self.pool = (
            list(keys),
            batch_size,
            shuffle,
            seed,
            pool,
        )
        self.epoch: int | None = None
        self.batches: list[list[int]] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches = grouped_batches(
                self.keys, self.batch_size, self.shuffle, self.seed, epoch, self.pool
            )

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> Any:
        if not 0 <= k < len(self.batches):
            raise IndexError(f"batch {k} out of range (0..{len(self.batches) - 1})")
        return self.make(self.batches[k])

    def make(self, rows: list[int]) -> Any:
        """The batch of the rows ``rows``."""
        raise NotImplementedError
