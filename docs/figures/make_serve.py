"""Regenerate the pictures of docs/serve.md: the page of ``unrolled serve`` with each panel.

    python docs/figures/make_serve.py            # about 8 minutes on 2 cores
    python docs/figures/make_serve.py KEEP       # keep the runs in KEEP/runs (and reuse them next time)

Trains one small run per task into a temporary folder (the char-LM on the default Shakespeare,
the translator on the default number names, the forecaster with a Gaussian head (for its bands)
on the yearly sunspots, the word-LM, classifier and tagger on small made-up data), then runs
the browser test of tests/test_serve.py on them with ``UNROLLED_SCREENSHOTS`` set: the same
headless Chromium clicks through the page and writes serve-runs.png, serve-charlm.png,
serve-translate.png, serve-tag.png and serve-forecast.png next to this script.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent.parent / "tests"


def main() -> int:
    sys.path.insert(0, str(TESTS))
    from conftest import task_data

    keep = Path(sys.argv[1]) if len(sys.argv) > 1 else None  # a folder to keep (and reuse) the runs in
    with tempfile.TemporaryDirectory() as tmp:
        runs, data = (keep or Path(tmp)) / "runs", (keep or Path(tmp)) / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = task_data(data)
        argv["charlm"] = ["lm", "--hidden", "128", "--max-minutes", "2.5"]
        argv["translate"] = ["translate", "--max-minutes", "2.5"]
        argv["forecast"] = ["forecast", "--series", "sunspots", "--horizon", "10", "--loss", "gaussian"]
        argv["forecast"] += ["--max-minutes", "1"]
        for task in ("forecast", "charlm", "word-lm", "classify", "translate", "tag"):
            out = runs / ("lm" if task == "charlm" else "") / task
            if (out / "checkpoint.json").exists():
                continue  # kept from an earlier call
            limit = [] if "--max-minutes" in argv[task] else ["--max-steps", "300"]
            cmd = [sys.executable, "-m", "unrolled", "train", *argv[task], *limit, "--out", str(out)]
            subprocess.run([*cmd, "--no-progress"], check=True, stdout=subprocess.DEVNULL)
        env = {**os.environ, "UNROLLED_SERVE_RUNS": str(runs), "UNROLLED_SCREENSHOTS": str(HERE)}
        test = f"{TESTS / 'test_serve.py'}::test_the_page_in_headless_chromium"
        return subprocess.run([sys.executable, "-m", "pytest", "-q", test], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
