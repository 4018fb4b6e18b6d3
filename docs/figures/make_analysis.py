"""Regenerate the pictures of docs/analysis.md.

    python docs/figures/make_analysis.py                 # trains the default char-LM for 3 minutes first
    python docs/figures/make_analysis.py --run runs/charlm-...

Writes gradients.png, spectrum.png and jacobian.png (and their JSON) next to this script, with
the same commands a user runs (``unrolled analyze ...``), and prints their summaries.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?"


def unrolled(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "unrolled", *args], check=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="a char-LM run directory (default: train one for --minutes)")
    p.add_argument("--minutes", type=float, default=3.0, help="training time of the default char-LM [3]")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = str(Path(tmp) / "charlm")
            unrolled("train", "charlm", "--max-minutes", str(args.minutes), "--out", run, "--no-progress",
                     "--sample-length", "0")  # fmt: skip
        unrolled("analyze", "gradients", "--compare", "rnn,lstm,gru", "--forget-bias", "1", "--steps", "60",
                 "--out", str(HERE / "gradients.png"))  # fmt: skip
        unrolled("analyze", "spectrum", run, "--layer", "1", "--out", str(HERE / "spectrum.png"))
        unrolled("analyze", "jacobian", run, "--text", TEXT, "--out", str(HERE / "jacobian.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
