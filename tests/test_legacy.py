"""Run directories written by unrolled 0.1 (before issue 11) still open, sample, score and resume.

The fixtures in tests/fixtures/legacy-0.1/ were written by the code of commit bcff821 (see the
README there): model/best weights, resume.pt and trainer_state.json at the top of the run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from unrolled.cli import main
from unrolled.tasks import classify, lm
from unrolled.training import checkpoint as ckpt

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "legacy-0.1"


@pytest.fixture
def legacy(tmp_path, monkeypatch):
    """A copy of the fixtures, as the working folder (the runs' configs name their data relatively)."""
    root = tmp_path / "legacy"
    shutil.copytree(FIXTURES, root)
    monkeypatch.chdir(root)
    return root


def test_a_legacy_char_lm_run_samples_the_same_text_as_before(legacy, capsys) -> None:
    assert main(["sample", "charlm-run", "--prime", "AL", "--length", "40", "--seed", "3"]) == 0
    assert capsys.readouterr().out == (legacy / "sample-AL-40-seed3.txt").read_text(encoding="utf-8")
    assert main(["eval", "charlm-run", "--text", "tiny.txt", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nats_per_char"] == pytest.approx(3.6184921525360894, abs=1e-6)
    assert ckpt.weights_file("charlm-run", ckpt.BEST) == Path("charlm-run") / ckpt.LEGACY_BEST


def test_a_legacy_classifier_run_predicts_and_scores_as_before(legacy, capsys) -> None:
    assert main(["predict", "classify-run", "--text", "the film was dull", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["probability"] == pytest.approx(0.6864091157913208, abs=1e-6)
    assert main(["eval", "classify-run", "--data", "moods.csv", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["loss"] == pytest.approx(0.7695039113362631, abs=1e-6) and result["n"] == 60


@pytest.mark.parametrize("task, run", [("charlm", "charlm-run"), ("classify", "classify-run")])
def test_resuming_a_legacy_run_moves_it_to_the_new_layout(legacy, task, run) -> None:
    module = {"charlm": lm, "classify": classify}[task]
    quiet = ["--no-progress"] + (["--sample-length", "0"] if task == "charlm" else [])
    best_before = ckpt.load_weights(legacy / run / ckpt.LEGACY_BEST)[0]
    assert ckpt.trainer_state(run)["step"] == 6
    # more steps, no validation before the end, and patience off: the old best may stay the best
    assert main(["train", task, "--resume", run, "--max-steps", "2", "--eval-every", "1000", *quiet]) == 0
    assert ckpt.trainer_state(run)["step"] == 8
    names = {p.name for p in (legacy / run).iterdir()}
    assert not names & {ckpt.WEIGHTS, ckpt.LEGACY_BEST, ckpt.RESUME, ckpt.STATE}  # moved into checkpoints/
    assert {ckpt.POINTER, ckpt.CHECKPOINTS} <= names
    best_after, meta = ckpt.load_weights(ckpt.weights_file(run, ckpt.BEST))
    state = ckpt.trainer_state(run)
    assert int(meta["step"]) == state["best_step"]
    if state["best_step"] == 6:  # the legacy best weights were kept, byte for byte
        assert all((best_after[k] == best_before[k]).all() for k in best_before)
    module.open_run(run)
    assert main(["train", task, "--resume", run, "--max-steps", "1", *quiet]) == 0


def test_the_first_save_of_a_legacy_run_keeps_its_best_weights(legacy) -> None:
    run = legacy / "charlm-run"
    best = ckpt.load_weights(run / ckpt.LEGACY_BEST)
    weights, resume, state = ckpt.load_checkpoint(run)
    state = {**state, "step": 7}
    ckpt.commit(run, 7, weights, {k: v for k, v in resume.items() if k != "step"}, state, best=False)
    assert ckpt.trainer_state(run)["step"] == 7
    adopted = ckpt.load_weights(ckpt.weights_file(run, ckpt.BEST))
    assert adopted[1] == best[1] and all((adopted[0][k] == best[0][k]).all() for k in best[0])
    assert not (run / ckpt.LEGACY_BEST).exists()
