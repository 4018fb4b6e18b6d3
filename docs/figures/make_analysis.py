"""Regenerate the pictures of docs/analysis.md.

    python docs/figures/make_analysis.py                 # trains the default char-LM for 455 steps first
    python docs/figures/make_analysis.py --run runs/charlm-...

Writes gradients.png, spectrum.png, jacobian.png and neurons.png (and their JSON) next to this
script, with the same commands a user runs (``unrolled analyze ...``), and prints their
summaries. The neuron page itself (several MB) is written to a temporary folder, or to --page.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from unrolled.data.shakespeare import load_shakespeare

HERE = Path(__file__).resolve().parent
TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?"
NEURON_CHARS = 3000


def unrolled(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "unrolled", *args], check=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="a char-LM run directory (default: train one for --steps)")
    p.add_argument("--steps", type=int, default=455, help="training steps of the default char-LM [455]")
    p.add_argument("--page", help="where to keep the neuron page (HTML) [not kept]")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = str(Path(tmp) / "charlm")
            unrolled("train", "charlm", "--max-steps", str(args.steps), "--out", run, "--no-progress",
                     "--sample-length", "0")  # fmt: skip
        unrolled("analyze", "gradients", "--compare", "rnn,lstm,gru", "--forget-bias", "1", "--steps", "60",
                 "--out", str(HERE / "gradients.png"))  # fmt: skip
        unrolled("analyze", "spectrum", run, "--layer", "1", "--out", str(HERE / "spectrum.png"))
        unrolled("analyze", "jacobian", run, "--text", TEXT, "--out", str(HERE / "jacobian.png"))
        text = Path(tmp) / "text.txt"  # the end of the corpus: the validation part, never trained on
        text.write_text(load_shakespeare()[-NEURON_CHARS:], encoding="utf-8")
        page = Path(args.page or Path(tmp) / "neurons.html")
        unrolled("analyze", "neurons", run, "--text", str(text), "--out", str(page))
        shutil.copy(page.with_suffix(".png"), HERE / "neurons.png")
        shutil.copy(page.with_suffix(".json"), HERE / "neurons.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
