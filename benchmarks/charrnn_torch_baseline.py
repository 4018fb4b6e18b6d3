"""The lectures' char-RNN on torch.nn.LSTM, for comparison with `unrolled train charlm`.

Reimplements the recipe of the char-RNN lecture (seed 002): one-hot characters, a stacked
torch.nn.LSTM with dropout, dropout before the linear decoder, Adam, gradient clipping by norm
(5), contiguous batches (`get_batches`), the last ``val_frac`` of the text held out, and the
validation loss computed as the lecture does (mean over validation batches of the same shape,
state carried across them). A wall-clock budget replaces the epoch count. Defaults are the
"settings chosen for a CPU" of the foundation issue (2x256, batch 64, seq 100, Adam 3e-3,
dropout 0.1); ``--lecture`` gives the lecture's own (2x512, batch 128, dropout 0.5, lr 1e-3).

    python benchmarks/charrnn_torch_baseline.py --text FILE --minutes 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from torch import nn


class CharRNN(nn.Module):
    def __init__(self, n_chars: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.n_chars = n_chars
        self.lstm = nn.LSTM(n_chars, hidden, layers, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, n_chars)

    def forward(self, x, h=None):
        out, h = self.lstm(F.one_hot(x, self.n_chars).float(), h)
        return self.fc(self.drop(out)), h


def get_batches(arr: torch.Tensor, batch_size: int, seq_len: int):
    """Contiguous rows; y is x shifted by one (the lecture wraps the very last target)."""
    n = len(arr) // (batch_size * seq_len)
    rows = arr[: n * batch_size * seq_len].view(batch_size, -1)
    for i in range(0, rows.size(1), seq_len):
        x = rows[:, i : i + seq_len]
        y = torch.empty_like(x)
        y[:, :-1] = x[:, 1:]
        y[:, -1] = rows[:, i + seq_len] if i + seq_len < rows.size(1) else rows[:, 0]
        yield x, y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", required=True)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument(
        "--lecture", action="store_true", help="the lecture's settings (2x512, b128, p0.5, lr1e-3)"
    )
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--json", help="write the result here")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    hidden, layers, batch, seq, lr, dropout = (
        (512, 2, 128, 100, 1e-3, 0.5) if a.lecture else (256, 2, 64, 100, 3e-3, 0.1)
    )
    torch.manual_seed(a.seed)
    text = open(a.text, encoding="utf-8").read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text])
    cut = int(len(data) * 0.9)
    train, val = data[:cut], data[cut:]
    model = CharRNN(len(chars), hidden, layers, dropout)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def validate() -> float:
        model.eval()
        losses, h = [], None
        with torch.no_grad():
            for x, y in get_batches(val, batch, seq):
                out, h = model(x, h)
                losses.append(F.cross_entropy(out.reshape(-1, len(chars)), y.reshape(-1)).item())
        model.train()
        return sum(losses) / len(losses)

    t0, step, chars_seen, history = time.perf_counter(), 0, 0, []
    done = False
    while not done:
        h = None
        for x, y in get_batches(train, batch, seq):
            if time.perf_counter() - t0 >= a.minutes * 60:
                done = True
                break
            h = None if h is None else tuple(t.detach() for t in h)
            out, h = model(x, h)
            loss = F.cross_entropy(out.reshape(-1, len(chars)), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            chars_seen += x.numel()
            if step % a.eval_every == 0:
                v = validate()
                history.append({"step": step, "val_loss": v, "elapsed": time.perf_counter() - t0})
                print(
                    f"step {step}: train {loss.item():.4f} val {v:.4f} ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    train_time = time.perf_counter() - t0
    v = validate()
    result = {
        "settings": dict(hidden=hidden, layers=layers, batch=batch, seq=seq, lr=lr, dropout=dropout),
        "steps": step,
        "val_loss": v,
        "val_bpc": v / math.log(2),
        "best_val_loss": min([v] + [r["val_loss"] for r in history]),
        "chars_per_s": chars_seen / train_time,
        "minutes": a.minutes,
        "history": history,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
