"""Can a recurrent cell count? The a^n b^n recogniser of Weiss, Goldberg & Yahav (2018).

A string over {a, b} is in L = { a^n b^n : n >= 1 } when its a's come first and there are as
many b's as a's. A network reads the string one symbol at a time and after every symbol says
whether the prefix read so far is in L (a sigmoid output, trained with binary cross-entropy on
every prefix). Telling a^n b^n from a^n b^(n-1) and a^n b^(n+1) needs a count of a's minus b's:
Weiss et al. prove that a finite-precision LSTM (or ReLU RNN) can keep one in a memory cell
(c_t grows by about 1 per a, shrinks per b) while a GRU or a tanh RNN, whose state is squashed
into [-1, 1], can only count as far as its precision lets it, and they find that trained LSTMs
generalise far beyond the n of training while GRUs do not.

Protocol (:func:`run_counting`): train on strings with n <= N (``train_max``); test each n in
1..5N on the string a^n b^(n+1): the model *recognises n* when all its decisions on the prefixes
a^n b^j, j = 0..n+1, are right (accept only j = n). A cell *generalises to n* when it
recognises every n' <= n. Training strings are a^k b^m with k <= N and m near k (the near
misses that need a count), a^k b^m with any m <= 2N+2, and random strings over {a, b}.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import Recurrent
from .study import Study

A, B = 0, 1  # one-hot positions of the two symbols


@dataclass
class CountingConfig:
    """The settings of one counting study; every field is in the results file."""

    cells: list[str] = field(default_factory=lambda: ["lstm", "gru", "rnn"])
    seeds: int = 3  # seeds 0 .. seeds-1
    train_max: int = 20  # N: training strings have n <= N
    test_factor: int = 5  # test n = 1 .. test_factor * N
    hidden: int = 10  # Weiss et al. used 10 units
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-2
    clip: float = 1.0

    def validate(self) -> None:
        from ..tasks.base import CELLS

        for name in ("seeds", "train_max", "test_factor", "hidden", "steps", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        unknown = [c for c in self.cells if c not in CELLS]
        if unknown or not self.cells:
            raise ValueError(
                f"unknown cell {', '.join(map(repr, unknown)) or '(none)'}: expected {', '.join(CELLS)}"
            )


def labels(s: list[int]) -> list[float]:
    """1.0 after each prefix of ``s`` that is in L = {a^n b^n, n >= 1}, else 0.0."""
    out, a, b, broken = [], 0, 0, False
    for x in s:
        if x == A:
            broken |= b > 0  # an a after a b: no prefix from here on is in L
            a += 1
        else:
            b += 1
        out.append(float(not broken and a == b and a > 0))
    return out


def training_batch(N: int, size: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """``size`` training strings: (x (size, T, 2) one-hot, y (size, T), mask (size, T))."""

    def randint(lo: int, hi: int) -> int:  # lo..hi inclusive
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    strings = []
    for i in range(size):
        k = randint(1, N)
        kind = i % 4
        if kind < 2:  # near misses and hits: a^k b^m with |m - k| <= 2
            s = [A] * k + [B] * max(0, k + randint(-2, 2))
        elif kind == 2:  # any number of b's
            s = [A] * k + [B] * randint(0, 2 * N + 2)
        else:  # random strings: an a after a b breaks the pattern
            s = torch.randint(0, 2, (randint(1, 2 * N + 2),), generator=g).tolist()
        strings.append(s)
    T = max(len(s) for s in strings)
    ids = torch.full((size, T), A, dtype=torch.long)
    y = torch.zeros(size, T)
    mask = torch.zeros(size, T)
    for i, s in enumerate(strings):
        ids[i, : len(s)] = torch.tensor(s)
        y[i, : len(s)] = torch.tensor(labels(s))
        mask[i, : len(s)] = 1.0
    return F.one_hot(ids, 2).float(), y, mask


class Recogniser(nn.Module):
    """One recurrent layer and a linear read-out: the logit of "the prefix is in L" after each symbol."""

    def __init__(self, make_cell: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.rnn = Recurrent(make_cell, 2, batch_first=True)
        H = self.rnn.output_size
        self.out = nn.Sequential(nn.Linear(H, 2 * H), nn.Tanh(), nn.Linear(2 * H, 1))

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.rnn(x)
        return self.out(h).squeeze(-1)  # (B, T)


def test_string(n: int) -> list[int]:
    """a^n b^(n+1): its prefixes a^n b^j, j = 0..n+1, hold the hit and both near misses."""
    return [A] * n + [B] * (n + 1)


@torch.no_grad()
def recognised(model: Recogniser, n_max: int) -> list[bool]:
    """For n = 1..n_max, whether every decision on the prefixes a^n b^j (j <= n+1) is right."""
    model.eval()
    out = []
    for n in range(1, n_max + 1):
        s = test_string(n)
        logits = model(F.one_hot(torch.tensor([s]), 2).float())[0]
        right = (logits > 0).float() == torch.tensor(labels(s))
        out.append(bool(right[n:].all()))  # from a^n on: the rest is a^j, no b yet
    model.train()
    return out


def generalises_to(passed: list[bool]) -> int:
    """The largest n such that every n' <= n is recognised (0 if n = 1 is not)."""
    return next((n for n, ok in enumerate(passed) if not ok), len(passed))


@torch.no_grad()
def trace(model: Recogniser, n: int) -> dict[str, Any]:
    """The states over a^n b^(n+1), and the unit that follows the count #a - #b most closely.

    Looks at the memory cell c for the LSTM family and at h otherwise; returns the unit, its
    Pearson r with the count, and its values at every step.
    """
    from ..analysis.neurons import cell_signals, pearson

    s = test_string(n)
    was_training = model.training
    model.eval()
    signals = cell_signals(model.rnn.cells[0], F.one_hot(torch.tensor(s), 2).float())
    model.train(was_training)
    values = signals.get("c", signals["h"])
    count = torch.tensor([1.0 if x == A else -1.0 for x in s]).cumsum(0)  # #a - #b after each symbol
    r = pearson(values, count)
    unit = int(r.abs().argmax())
    return {
        "state": "c" if "c" in signals else "h",
        "unit": unit,
        "r": float(r[unit]),
        "values": [round(v, 5) for v in values[:, unit].tolist()],
        "count": count.tolist(),
    }


def train_one(config: CountingConfig, cell: str, seed: int) -> dict[str, Any]:
    """Train one recogniser and test it; returns its results."""
    from ..tasks.base import RecurrentConfig

    cfg = RecurrentConfig(cell=cell, hidden=config.hidden, layers=1)
    cfg.validate()
    torch.manual_seed(seed)
    model = Recogniser(cfg.cell_factory(config.hidden))
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)  # precise weights at the end
    g = torch.Generator().manual_seed(10_000 + seed)
    start, losses = time.perf_counter(), []
    for _ in range(config.steps):
        x, y, mask = training_batch(config.train_max, config.batch_size, g)
        loss = (F.binary_cross_entropy_with_logits(model(x), y, reduction="none") * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
        schedule.step()
        losses.append(loss.detach())  # read once at the end, not one host sync per step
    N = config.train_max
    passed = recognised(model, config.test_factor * N)
    tail = torch.stack(losses[-100:]).tolist()
    return {
        "cell": cell,
        "seed": seed,
        "final_loss": sum(tail) / len(tail),
        "recognised": passed,
        "generalises_to": generalises_to(passed),
        "recognised_in_training_range": sum(passed[:N]),
        "recognised_beyond": sum(passed[N:]),
        "seconds": round(time.perf_counter() - start, 1),
        "trace": trace(model, config.test_factor * N),
    }


def run_counting(
    config: CountingConfig, folder: str | Path, on_result: Callable[[dict[str, Any]], None] | None = None
) -> Study:
    """Every (cell, seed) of ``config`` that ``folder``'s study lacks; ``on_result`` sees each new run."""
    config.validate()
    study = Study(folder, "counting", asdict(config))
    for cell in config.cells:
        for seed in range(config.seeds):
            key = f"{cell}/seed{seed}"
            if study.done(key):
                continue
            result = train_one(config, cell, seed)
            study.add(key, result, summarise(config, study.runs))
            if on_result is not None:
                on_result(result)
    study.save(summarise(config, study.runs))
    return study


def summarise(config: CountingConfig, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per cell with runs: the share of seeds that recognise each n, and generalises_to per seed."""
    out = {}
    for cell in config.cells:
        mine = [r for r in runs.values() if r["cell"] == cell]
        if not mine:
            continue
        n_max = len(mine[0]["recognised"])
        reach = sorted(r["generalises_to"] for r in mine)
        out[cell] = {
            "seeds": len(mine),
            "share_by_n": [sum(r["recognised"][n] for r in mine) / len(mine) for n in range(n_max)],
            "generalises_to": [r["generalises_to"] for r in mine],
            "median_generalises_to": reach[len(reach) // 2],
            "all_of_training_range": sum(r["recognised_in_training_range"] == config.train_max for r in mine),
        }
    return out


def table(config: CountingConfig, summary: dict[str, Any]) -> str:
    """The share of seeds that recognise n, for n in steps of N / 2 up to 5N, one column per cell."""
    N, cells = config.train_max, list(summary)
    step = max(1, N // 2)
    rows = sorted({1, N, *range(step, config.test_factor * N + 1, step)})
    lines = ["n".rjust(5) + "".join(c.rjust(9) for c in cells)]
    for n in rows:
        mark = " " if n <= N else "*"
        lines.append(f"{n:>4}{mark}" + "".join(f"{summary[c]['share_by_n'][n - 1]:>9.2f}" for c in cells))
    lines.append("reach" + "".join(str(summary[c]["median_generalises_to"]).rjust(9) for c in cells))
    return "\n".join(lines)


def plot(config: CountingConfig, runs: dict[str, dict[str, Any]], summary: dict[str, Any]) -> Any:
    """Left: the share of seeds that recognise n. Right: each cell's unit that follows the count
    most closely on a^n b^(n+1), n = 5N (of the seed where it does so best)."""
    from ..plotting import pyplot

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    N = config.train_max
    for i, (cell, s) in enumerate(summary.items()):
        n = range(1, len(s["share_by_n"]) + 1)
        left.plot(n, s["share_by_n"], color=f"C{i}", label=f"{cell} (reach {s['generalises_to']})")
        best = max((r for r in runs.values() if r["cell"] == cell), key=lambda r: abs(r["trace"]["r"]))
        t = best["trace"]
        v, n = t["values"], config.test_factor * N
        top = max(abs(x) for x in v) or 1.0
        per_a, per_b = (v[n - 1] - v[0]) / (n - 1), (v[n - 1 + n // 2] - v[n - 1]) / (n // 2)
        label = (
            f"{cell} seed {best['seed']}: {t['state']}[{t['unit']}], r = {t['r']:+.2f}, "
            f"max {top:.3g}; {per_a:+.3g} per a, {per_b:+.3g} per b"
        )
        right.plot([x / top for x in v], color=f"C{i}", label=label)
    left.axvline(N, color="grey", ls="--", lw=0.8)
    left.text(N, 1.02, " trained up to here", fontsize=8, color="grey")
    left.set_xlabel("n")
    left.set_ylabel("share of seeds that recognise a^n b^n")
    left.set_ylim(-0.05, 1.1)
    left.legend(fontsize=8, loc="upper right")
    n_test = config.test_factor * N
    right.axvline(n_test - 0.5, color="grey", ls=":", lw=0.8)
    right.set_xlabel(f"position in a^{n_test} b^{n_test + 1} (the b's start at the dotted line)")
    right.set_ylabel("the unit closest to #a - #b / its max |value|")
    right.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig
