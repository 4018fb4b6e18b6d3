"""Divergence is one clear outcome for every task: exit code 3, one line naming the step, the value and
the rule, the last good checkpoint kept (it samples, and resumes with a lower --lr); settings that
overflow float32 are refused before anything is written."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import task_data

from unrolled.cli import main
from unrolled.training import checkpoint as ckpt

SMALL = ["--hidden", "24", "--batch-size", "4", "--seq-len", "16", "--no-progress", "--sample-length", "20"]


def _train(text, out, *extra: str) -> list[str]:
    return ["train", "charlm", "--text", str(text), "--out", str(out), *SMALL, *extra]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("unrolled: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("lr", ["1e6", "1e12", "1e20"])
def test_an_absurd_learning_rate_stops_the_run_which_then_samples_and_resumes(
    tiny_text_file, tmp_path, capsys, cell, lr
) -> None:
    out = tmp_path / "run"
    argv = _train(tiny_text_file, out, "--cell", cell, "--lr", lr, "--clip", "0", "--eval-every", "10")
    assert main([*argv, "--max-steps", "40"]) == 3
    line = _one_line(capsys)
    assert "training diverged at step 10: the validation loss is " in line
    assert "(a uniform guess over the 36 characters)" in line and "worse than knowing nothing" in line
    assert "the checkpoint of step 0 is kept" in line and "--lr" in line
    assert ckpt.trainer_state(out)["step"] == 0  # nothing of the diverged steps was saved
    last = json.loads((out / ckpt.METRICS).read_text().splitlines()[-1])  # and the record says why
    assert last["kind"] == "diverged" and last["step"] == 10 and last["last_saved"] == 0
    assert last["problem"].startswith("the validation loss is ")
    # the last good checkpoint samples, and the run goes on with a lower rate
    assert main(["sample", str(out), "--length", "30", "--seed", "1"]) == 0
    resume = ["train", "charlm", "--resume", str(out), "--lr", "3e-3", "--max-steps", "10", "--no-progress"]
    assert main(resume) == 0
    assert json.loads((out / ckpt.CONFIG).read_text())["optim"]["lr"] == 3e-3
    assert ckpt.trainer_state(out)["step"] == 10


def test_on_nonfinite_skip_never_skips_a_bound(tiny_text_file, tmp_path, capsys) -> None:
    argv = _train(tiny_text_file, tmp_path / "run", "--lr", "1e6", "--clip", "0", "--eval-every", "10")
    assert main([*argv, "--max-steps", "20", "--on-nonfinite", "skip"]) == 3
    assert "worse than knowing nothing" in _one_line(capsys)


def test_the_factor_is_a_flag(tiny_text_file, tmp_path, capsys) -> None:
    argv = _train(tiny_text_file, tmp_path / "run", "--eval-every", "5", "--max-steps", "5")
    assert main([*argv, "--diverge-factor", "1"]) == 2
    assert "--diverge-factor must be above 1" in _one_line(capsys)
    assert not (tmp_path / "run").exists()
    # a bound so tight that an untrained model passes it: the first validation stops the run
    assert main([*argv, "--diverge-factor", "1.0001", "--lr", "1e-9"]) == 3
    assert "above 1.0001 x ln 36" in _one_line(capsys)


@pytest.mark.parametrize("lr", ["1e38", "4e37"])
def test_a_learning_rate_that_overflows_float32_is_refused_before_anything_is_written(
    tiny_text_file, tmp_path, capsys, lr
) -> None:
    assert main([*_train(tiny_text_file, tmp_path / "run", "--lr", lr), "--max-steps", "5"]) == 2
    assert "overflows float32 where the optimizer uses it: keep it below 3.4e+37" in _one_line(capsys)
    assert list(tmp_path.iterdir()) == [tiny_text_file]


def test_a_failing_optimizer_step_is_a_divergence_line(tiny_text_file, tmp_path, capsys, monkeypatch) -> None:
    def step(self, closure=None):
        raise RuntimeError("value cannot be converted to type float without overflow")

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    assert main([*_train(tiny_text_file, tmp_path / "run"), "--max-steps", "5"]) == 3
    line = _one_line(capsys)
    assert "diverged at step 1: the optimizer's step failed (value cannot be converted" in line
    assert "the checkpoint of step 0 is kept" in line


def test_weights_that_overflow_in_the_update_stop_at_that_step(tiny_text_file, tmp_path, capsys, monkeypatch):
    real = torch.optim.AdamW.step

    def step(self, closure=None):
        real(self, closure)
        if self.state[self.param_groups[0]["params"][0]]["step"] >= 3:  # the third update overflows
            with torch.no_grad():
                self.param_groups[0]["params"][0].mul_(float("inf"))

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    assert main([*_train(tiny_text_file, tmp_path / "run", "--eval-every", "2"), "--max-steps", "6"]) == 3
    line = _one_line(capsys)
    assert "diverged at step 3: the weights are no longer finite after the update" in line
    assert "the checkpoint of step 2 is kept" in line


def test_non_finite_logits_in_sampling_are_one_line(tiny_text_file, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main([*_train(tiny_text_file, out), "--max-steps", "3"]) == 0
    file = ckpt.weights_file(out)
    weights, meta = ckpt.load_weights(file)
    weights["decoder.bias"][3] = float("nan")  # weights that a broken tool wrote
    ckpt.save_weights(file, weights, meta)
    capsys.readouterr()
    assert main(["sample", str(out), "--length", "10"]) == 3
    assert "the model's logits are not finite: its weights have diverged" in _one_line(capsys)


def test_a_translator_and_a_forecaster_at_an_absurd_rate(tmp_path, capsys) -> None:
    out = tmp_path / "translate"
    common = ["--lr", "1e6", "--clip", "0", "--max-steps", "20", "--eval-every", "10", "--no-progress"]
    tiny = ["--train-numbers", "300", "--held-out", "20", "--hidden", "16"]
    assert main(["train", "translate", *tiny, "--out", str(out), *common]) == 3
    line = _one_line(capsys)
    assert "the validation loss is" in line and "above 3 x ln" in line and "target tokens" in line
    assert main(["translate", str(out), "--text", "twenty one"]) == 0  # the kept checkpoint translates
    fc = tmp_path / "forecast"
    assert main(["train", "forecast", "--series", "sine", "--hidden", "16", "--out", str(fc), *common]) == 3
    line = _one_line(capsys)
    assert "the validation mase is" in line and "10 x the naive forecast's MASE (1)" in line
    assert main(["forecast", str(fc), "--json"]) == 0


@pytest.mark.parametrize("decoder", ["softmax", "crf"])
def test_a_tagger_at_an_absurd_rate(tmp_path, capsys, decoder) -> None:
    """The tagger's bound: its loss per word on the validation sentences, 10 x ln K."""
    tagged = task_data(tmp_path)["tag"]
    common = ["--lr", "1e6", "--clip", "0", "--max-steps", "20", "--eval-every", "10", "--no-progress"]
    out = tmp_path / "run"
    assert main(["train", *tagged, "--decoder", decoder, "--out", str(out), *common]) == 3
    line = _one_line(capsys)
    assert "the validation nll is" in line and "10 x ln 4 (a uniform guess over the 4 tags)" in line, line
    assert main(["tag", str(out), "--text", "the old mill"]) == 0
    resume = ["train", "tag", "--resume", str(out), "--lr", "1e-3"]
    assert main([*resume, "--max-steps", "5", "--no-progress"]) == 0
