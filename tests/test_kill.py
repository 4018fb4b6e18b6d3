"""kill -9 a real training process at random moments, again and again: the run always opens and resumes.

Slow (about a minute on 2 cores: each round starts a Python process); CI runs it. Every round
validates and saves at every step, so most kills land in the middle of a save.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from unrolled.cli import main
from unrolled.tasks import lm
from unrolled.training import checkpoint as ckpt

ROUNDS = 12
SMALL = ["--hidden", "32", "--batch-size", "8", "--seq-len", "32", "--no-progress", "--sample-length", "0"]


@pytest.mark.slow
def test_kill_9_at_random_moments_never_loses_the_run(tiny_text_file, tmp_path) -> None:
    out = tmp_path / "run"
    rng = random.Random(11)
    steps = []
    for i in range(ROUNDS):
        where = ["--text", str(tiny_text_file), "--out", str(out)] if i == 0 else ["--resume", str(out)]
        argv = [sys.executable, "-m", "unrolled", "train", "charlm", *where, "--max-minutes", "5"]
        proc = subprocess.Popen(
            [*argv, "--eval-every", "1", *(SMALL if i == 0 else SMALL[-3:])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # wait until this process has trained (its first step's record), then kill it at a random moment
        lines = (out / ckpt.METRICS).read_text().count("\n") if (out / ckpt.METRICS).exists() else 0
        deadline = time.time() + 120
        while not (out / ckpt.METRICS).exists() or (out / ckpt.METRICS).read_text().count("\n") <= lines:
            assert proc.poll() is None, f"round {i}: {proc.stderr.read().decode()}"
            assert time.time() < deadline, f"round {i}: no progress"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))
        assert proc.poll() is None, f"round {i} ended by itself: {proc.stderr.read().decode()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        # whatever the moment, the last complete checkpoint is there, whole, and the run opens
        weights, _, state = ckpt.load_checkpoint(out)
        lm.open_run(out)
        steps.append(state["step"])
    assert steps == sorted(steps) and steps[-1] > steps[0], steps  # progress was kept across the kills
    assert main(["train", "charlm", "--resume", str(out), "--max-steps", "3", *SMALL[-3:]]) == 0
    assert ckpt.trainer_state(out)["step"] == steps[-1] + 3
    kept = {p.name for p in (out / ckpt.CHECKPOINTS).iterdir()}
    assert len(kept) <= 2 and not any(name.endswith(".tmp") for name in kept)  # the leftovers are gone
    # metrics.jsonl tells one history: whole lines, steps never going back (records after a kill's
    # last checkpoint were dropped on resume and written again)
    records = [json.loads(line) for line in (out / ckpt.METRICS).read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == sorted(train_steps) and len(set(train_steps)) == len(train_steps)
