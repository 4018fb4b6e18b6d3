"""kill -9 a real training process at random moments, again and again: the run always opens and resumes.

Slow (about a minute on 2 cores: each round starts a Python process); CI runs it. Every round
validates and saves at every step, so most kills land in the middle of a save.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import task_data

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
    assert len(kept) <= 3 and not any(name.endswith(".tmp") for name in kept)  # the leftovers are gone
    # metrics.jsonl tells one history: whole lines, steps never going back (records after a kill's
    # last checkpoint were dropped on resume and written again)
    records = [json.loads(line) for line in (out / ckpt.METRICS).read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == sorted(train_steps) and len(set(train_steps)) == len(train_steps)


# ---- every task: kill -9 at random moments, resume, and end where an unbroken run ends --------------
TASK_ROUNDS, TASK_STEPS = 20, 150  # at most 20 kills per task: a run that ends sooner ends the rounds


@pytest.mark.slow
@pytest.mark.parametrize("task", ["word-lm", "classify", "translate", "tag", "forecast"])
def test_every_task_killed_at_random_moments_resumes_to_the_unbroken_run(tmp_path, task) -> None:
    """kill -9 (most kills land inside a save: every step validates and saves), resume with the steps
    left, again and again: the weights at the end equal those of a run never killed, bit for bit."""
    argv = [*task_data(tmp_path)[task], "--lr-schedule", "constant", "--eval-every", "1"]
    argv += ["--patience", "1000"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert main(["train", *argv, "--out", str(whole), "--max-steps", str(TASK_STEPS), "--no-progress"]) == 0
    rng = random.Random(task)
    kills = 0
    for i in range(TASK_ROUNDS):
        done = ckpt.trainer_state(broken)["step"] if (broken / ckpt.POINTER).exists() else None
        if done == TASK_STEPS:
            break
        where = ["--out", str(broken)] if done is None else ["--resume", str(broken)]
        left = TASK_STEPS - (done or 0)
        head = argv[:1] if done is not None else argv  # a resumed run keeps its config
        cmd = [sys.executable, "-m", "unrolled", "train", *head, *where, "--max-steps", str(left)]
        cmd += ["--patience", "1000"] if done is not None else []
        proc = subprocess.Popen([*cmd, "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        metrics = broken / ckpt.METRICS
        lines = metrics.read_text().count("\n") if metrics.exists() else 0
        deadline = time.time() + 120
        while (not metrics.exists() or metrics.read_text().count("\n") <= lines) and proc.poll() is None:
            assert time.time() < deadline, f"round {i}: no progress"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.returncode in (0, -signal.SIGKILL), f"round {i}: {err}"
        kills += proc.returncode == -signal.SIGKILL
    assert kills >= 3, f"only {kills} of the rounds were killed before they ended"  # the test tests something
    done = ckpt.trainer_state(broken)["step"]
    if done < TASK_STEPS:
        more = ["--max-steps", str(TASK_STEPS - done), "--no-progress"]
        assert main(["train", argv[0], "--resume", str(broken), *more]) == 0
    assert ckpt.trainer_state(broken)["step"] == ckpt.trainer_state(whole)["step"] == TASK_STEPS
    a = ckpt.load_weights(ckpt.weights_file(whole, ckpt.LATEST))[0]
    b = ckpt.load_weights(ckpt.weights_file(broken, ckpt.LATEST))[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), task


@pytest.mark.slow
def test_a_run_copied_while_it_saves_always_opens(tiny_text_file, tmp_path) -> None:
    """A copy of a run that saves every 25 steps, taken 40 times, file by file: every copy opens and
    has a whole checkpoint, whatever files a save switched while it was copying (see
    checkpoint.committed: now and then the copy's pointer names a folder the copy does not hold).
    What is promised is a copy taken while one save runs: a copy slower than the time between two
    saves may miss every checkpoint, which no layout short of keeping them all can prevent."""
    out = tmp_path / "run"
    argv = ["train", "charlm", "--text", str(tiny_text_file), "--out", str(out), "--max-minutes", "5"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "unrolled", *argv, "--eval-every", "25", *SMALL],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not (out / ckpt.METRICS).exists():
            assert proc.poll() is None and time.time() < deadline, "the run did not train"
            time.sleep(0.02)
        steps, rng = [], random.Random(3)

        def slow_copy(src, dst):
            time.sleep(rng.uniform(0.0, 0.002))
            return shutil.copy2(src, dst)

        for i in range(40):
            time.sleep(rng.uniform(0.0, 0.05))
            copy = tmp_path / f"copy{i}"
            try:  # a slow copy (a backup over the network): saves switch checkpoints while it copies
                shutil.copytree(out, copy, copy_function=slow_copy)
            except shutil.Error:  # files that a save deleted before they were copied
                pass
            _, _, state = ckpt.load_checkpoint(copy)
            lm.open_run(copy)
            steps.append(state["step"])
    finally:
        proc.kill()
        proc.wait()
    assert steps == sorted(steps) and steps[-1] > steps[0], steps  # the copies were taken while it trained
