"""Generation speed: characters per second of the char-LM's sampler against a plain torch loop.

``unrolled sample`` runs :func:`unrolled.tasks.lm.generate`: the model (embedding -> recurrent
layers on the engine ``auto`` picks -> decoder) one character per call with the state carried,
then the temperature, softmax and a draw. The baseline is the loop a PyTorch user writes:
``torch.nn.Embedding`` -> ``torch.nn.LSTM`` (or ``GRU``) -> ``torch.nn.Linear``, the same sizes,
one step per call under ``torch.inference_mode``, softmax and ``torch.multinomial``. Both at
batch 1 from a prime of 100 characters, the models untrained (speed does not depend on the
weights); the rounds interleave the two, and each figure is the median over rounds.

    python benchmarks/generation.py --json benchmarks/results/generation-cpu2.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import torch
from torch import nn

from unrolled.data.shakespeare import load_shakespeare
from unrolled.data.vocab import CharVocab
from unrolled.tasks.lm import ModelConfig, build_model, generate


class TorchLM(nn.Module):
    """The char-LM's architecture on torch.nn's recurrent layer."""

    def __init__(self, kind: str, vocab: int, embedding: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = rnn(embedding, hidden, layers, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        out, state = self.rnn(self.embed(tokens), state)
        return self.decoder(out), state


@torch.inference_mode()
def torch_sample(model: TorchLM, prime: torch.Tensor, length: int, gen: torch.Generator) -> list[int]:
    """The plain loop: warm the state on the prime, then one character per step."""
    model.eval()
    logits, state = model(prime.unsqueeze(0))
    out = []
    for _ in range(length):
        probs = torch.softmax(logits[0, -1], dim=-1)
        nxt = int(torch.multinomial(probs, 1, generator=gen))
        out.append(nxt)
        logits, state = model(torch.tensor([[nxt]]), state)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--length", type=int, default=2000, help="characters per timed sample")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--cells", default="gru,lstm", help="cells to time (the char-LM's default is gru)")
    p.add_argument("--sizes", default="256x2,512x2", help="HIDDENxLAYERS, comma-separated")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    text = load_shakespeare()
    vocab = CharVocab.from_text(text)
    prime_text = text[:100]
    prime = torch.tensor([vocab.index[c] for c in prime_text])
    results = []
    for cell in args.cells.split(","):
        for size in args.sizes.split(","):
            hidden, layers = (int(v) for v in size.split("x"))
            torch.manual_seed(0)
            cfg = ModelConfig(cell=cell, hidden=hidden, layers=layers)
            cfg.resolve("char")
            ours = build_model(cfg, len(vocab), "char")
            base = TorchLM(cell, len(vocab), cfg.embedding_dim, hidden, layers)
            ours_s, base_s = [], []
            for _ in range(args.rounds):
                start = time.perf_counter()
                n = sum(1 for _ in generate(ours, vocab, prime_text, args.length, seed=0))
                ours_s.append(n / (time.perf_counter() - start))
                start = time.perf_counter()
                n = len(torch_sample(base, prime, args.length, torch.Generator().manual_seed(0)))
                base_s.append(n / (time.perf_counter() - start))
            row = {
                "cell": cell,
                "hidden": hidden,
                "layers": layers,
                "unrolled_chars_per_s": statistics.median(ours_s),
                "torch_chars_per_s": statistics.median(base_s),
                "unrolled_rounds": ours_s,
                "torch_rounds": base_s,
            }
            row["ratio"] = row["unrolled_chars_per_s"] / row["torch_chars_per_s"]
            results.append(row)
            print(
                f"{cell} {hidden}x{layers}: unrolled {row['unrolled_chars_per_s']:8.0f} chars/s   "
                f"torch loop {row['torch_chars_per_s']:8.0f} chars/s   ratio {row['ratio']:.2f}",
                flush=True,
            )
    if args.json:
        meta = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "length": args.length,
            "rounds": args.rounds,
            "prime_chars": len(prime_text),
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
