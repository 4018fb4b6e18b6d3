"""What long runs rely on: the NaN/Inf guard, one writer per run directory, quiet closed pipes,
gradient norms in metrics.jsonl and TensorBoard scalars."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from unrolled.cli import EXIT_DIVERGED, main
from unrolled.tasks import lm
from unrolled.training import checkpoint as ckpt

SMALL = ["--hidden", "16", "--batch-size", "4", "--seq-len", "16", "--no-progress", "--sample-length", "0"]
# an Elman RNN stepped with lr 1e30 and no clipping: its weights overflow within a few steps
BLOW_UP = ["--cell", "rnn", "--lr", "1e30", "--clip", "0", "--lr-schedule", "constant", "--eval-every", "3"]
BLOW_UP += ["--diverge-factor", "1e300"]  # the NaN guard is tested here, not the bound (test_divergence.py)


def _records(run_dir, kind):
    lines = (run_dir / ckpt.METRICS).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _train(text, out, *extra):
    return main(["train", "charlm", "--text", str(text), "--out", str(out), *SMALL, *extra])


def test_every_training_record_carries_the_gradient_norm_before_clipping(tiny_text_file, tmp_path) -> None:
    out = tmp_path / "run"
    assert _train(tiny_text_file, out, "--max-steps", "6", "--log-every", "1", "--clip", "1e-6") == 0
    records = _records(out, "train")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    # clipped to 1e-6, yet the logged norm is the one before clipping
    assert all(math.isfinite(r["grad_norm"]) and r["grad_norm"] > 1e-3 for r in records)
    assert all(r["skipped"] == 0 for r in records)


def test_a_diverging_run_stops_with_exit_3_and_keeps_its_last_good_checkpoint(
    tiny_text_file, tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    code = _train(tiny_text_file, out, *BLOW_UP, "--max-steps", "50")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_DIVERGED == 3
    assert len(err) == 1 and err[0].startswith("unrolled: error: training diverged at step "), err
    assert "is nan" in err[0] or "is inf" in err[0]
    step = int(err[0].split("at step ")[1].split(":")[0])
    saved = ckpt.trainer_state(out)["step"]
    assert saved < step and f"the checkpoint of step {saved} is kept" in err[0]
    weights = ckpt.load_weights(ckpt.weights_file(out, ckpt.LATEST))[0]
    assert all(torch.isfinite(w).all() for w in weights.values())  # nothing non-finite was saved
    assert lm.open_run(out).model is not None  # the run opens...
    # ... and resumes; with --on-nonfinite skip the bad steps are skipped and counted
    assert main(["train", "charlm", "--resume", str(out), "--max-steps", "6", "--on-nonfinite", "skip",
                 "--log-every", "1", "--no-progress", "--sample-length", "0"]) == 0  # fmt: skip
    skipped = _records(out, "nonfinite")
    assert skipped and [r["skipped"] for r in skipped] == list(range(1, len(skipped) + 1))
    state = ckpt.trainer_state(out)
    assert state["step"] == saved + 6 and state["skipped"] == len(skipped)
    assert _records(out, "train")[-1]["skipped"] == len(skipped)
    weights = ckpt.load_weights(ckpt.weights_file(out, ckpt.LATEST))[0]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_skip_gives_up_after_too_many_non_finite_steps_in_a_row(
    tiny_text_file, tmp_path, capsys, monkeypatch
):
    from unrolled.training import loop

    real_loss = lm.lm_loss

    def nan_loss(model, x, y, state):  # a model that only ever produces NaN
        loss, state, tokens = real_loss(model, x, y, state)
        return loss * float("nan"), state, tokens

    monkeypatch.setattr(lm, "lm_loss", nan_loss)
    monkeypatch.setattr(loop, "MAX_SKIPS_IN_A_ROW", 3)
    out = tmp_path / "run"
    code = _train(tiny_text_file, out, "--max-steps", "200", "--on-nonfinite", "skip")
    assert code == 3 and "training diverged at step 4: the loss is nan" in capsys.readouterr().err
    assert [r["step"] for r in _records(out, "nonfinite")] == [1, 2, 3]
    assert ckpt.trainer_state(out)["step"] == 0


def _start_training(text, out, *extra):
    """A training process that runs until it is stopped; returns once it has committed a checkpoint."""
    argv = [sys.executable, "-m", "unrolled", "train", "charlm", "--text", str(text), "--out", str(out)]
    proc = subprocess.Popen([*argv, *SMALL, "--max-minutes", "5", "--eval-every", "1", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 60
    while not (out / ckpt.POINTER).exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "the training process did not start"
        time.sleep(0.05)
    return proc


def test_one_writer_per_run_directory_and_a_killed_writer_leaves_no_lock(tiny_text_file, tmp_path, capsys):
    out = tmp_path / "run"
    proc = _start_training(tiny_text_file, out)
    try:
        resume = [
            "train",
            "charlm",
            "--resume",
            str(out),
            "--max-steps",
            "2",
            "--no-progress",
            "--sample-length",
            "0",
        ]
        assert main(resume) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is in use by another training process" in err[0], err
        assert f"pid {proc.pid}" in err[0]
        new = ["train", "charlm", "--text", str(tiny_text_file), "--out", str(out), *SMALL]
        assert main(new) == 2 and "already exists" in capsys.readouterr().err
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    before = ckpt.trainer_state(out)["step"]
    assert main(resume) == 0  # the kernel dropped the killed process's lock
    assert ckpt.trainer_state(out)["step"] == before + 2


def test_a_closed_pipe_ends_sample_quietly(tiny_text_file, tmp_path) -> None:
    out = tmp_path / "run"
    assert _train(tiny_text_file, out, "--max-steps", "2") == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "unrolled", "sample", str(out), "--length", "300000", "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert len(proc.stdout.read(100)) == 100  # `| head -c 100`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0, err
    assert err == ""


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs unrolled[tensorboard]")
def test_tensorboard_gets_the_training_and_validation_scalars(tiny_text_file, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert _train(tiny_text_file, out, "--max-steps", "6", "--log-every", "2", "--eval-every", "3",
                  "--tensorboard") == 0  # fmt: skip
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "val/loss", "val/bpc"} <= tags
    assert [e.step for e in events.Scalars("train/grad_norm")] == [2, 4, 6]
    vals = _records(out, "val")
    assert [e.value for e in events.Scalars("val/loss")] == pytest.approx([r["val_loss"] for r in vals])


def test_tensorboard_without_the_package_is_one_line(tiny_text_file, tmp_path, capsys, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a)
    )
    out = tmp_path / "run"
    assert _train(tiny_text_file, out, "--tensorboard") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "unrolled: error: --tensorboard needs the tensorboard package: pip install 'unrolled[tensorboard]'"
    ]
    assert not out.exists()


def test_non_finite_weights_or_validation_loss_never_reach_a_checkpoint(tmp_path) -> None:
    from unrolled.training import Diverged, LoopConfig, OptimConfig, Trainer

    model = torch.nn.Linear(2, 1)
    data = [(torch.ones(3, 2), torch.zeros(3, 1))]

    def loss_fn(m, x, y, state):
        return ((m(x) - y) ** 2).mean(), None, len(x)

    val = {"val_loss": 1.0}
    trainer = Trainer(
        model,
        data,
        loss_fn,
        lambda m: dict(val),
        OptimConfig(),
        LoopConfig(max_steps=2, log_every=1),
        tmp_path,
    )
    trainer.save()
    with torch.no_grad():
        model.weight[0, 0] = float("inf")  # an update that overflowed
    with pytest.raises(
        Diverged, match="at step 0: the weights are no longer finite; the checkpoint of step 0"
    ):
        trainer.save()
    with torch.no_grad():
        model.weight[0, 0] = 1.0
    val["val_loss"] = float("nan")
    with pytest.raises(Diverged, match="the validation loss is nan"):
        trainer.run()
    assert ckpt.trainer_state(tmp_path)["step"] == 0  # only the first, good, checkpoint was committed
    records = (tmp_path / ckpt.METRICS).read_text()
    assert "NaN" not in records and "Infinity" not in records  # strict JSON
