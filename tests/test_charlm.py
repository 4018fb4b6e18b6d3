"""The char-LM task end to end on a tiny corpus: train, checkpoints, resume, sample, eval."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import STEP_ENGINE

from unrolled.cells.lstm import VARIANTS
from unrolled.cli import main
from unrolled.data import BPTTChunks
from unrolled.tasks import lm
from unrolled.tasks.base import CELLS
from unrolled.training import checkpoint as ckpt

SMALL = [
    "--hidden",
    "16",
    "--layers",
    "2",
    "--embedding-dim",
    "8",
    "--batch-size",
    "4",
    "--seq-len",
    "16",
    "--no-progress",
    "--sample-length",
    "0",
]


def _train(text, out, *extra):
    return main(["train", "charlm", "--text", str(text), "--out", str(out), *SMALL, *extra])


def _weights(run_dir):
    return ckpt.load_weights(ckpt.weights_file(run_dir, ckpt.LATEST))[0]


def test_train_writes_a_complete_run_directory(tiny_text_file, tmp_path) -> None:
    out = tmp_path / "run"
    assert _train(tiny_text_file, out, "--max-steps", "12", "--eval-every", "5", "--dropout", "0.1") == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([".lock", ckpt.CONFIG, ckpt.VOCAB, ckpt.POINTER, ckpt.CHECKPOINTS, ckpt.METRICS])
    state = ckpt.trainer_state(out)
    assert state["step"] == 12 and state["best_val"] is not None
    # the latest, which is also the best, and the previous latest (kept until the next save)
    previous, folder = sorted((out / ckpt.CHECKPOINTS).iterdir())
    assert (previous.name, folder.name) == ("step-00000010", "step-00000012")
    assert sorted(p.name for p in folder.iterdir()) == sorted([ckpt.WEIGHTS, ckpt.RESUME, ckpt.STATE])
    assert ckpt.weights_file(out, ckpt.BEST) == ckpt.weights_file(out, ckpt.LATEST) == folder / ckpt.WEIGHTS
    records = [json.loads(line) for line in (out / ckpt.METRICS).read_text().splitlines()]
    vals = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in vals] == [5, 10, 12]  # every eval_every, and at the end
    assert all(abs(r["val_bpc"] - r["val_loss"] / 0.6931471805599453) < 1e-9 for r in vals)
    config = json.loads((out / ckpt.CONFIG).read_text())
    assert config["model"]["hidden"] == 16 and config["info"]["vocab_size"] == len(
        set(tiny_text_file.read_text())
    )


def test_training_learns_the_tiny_corpus(tiny_text_file, tmp_path) -> None:
    out = tmp_path / "run"
    _train(tiny_text_file, out, "--max-steps", "150", "--eval-every", "150", "--lr", "1e-2", "--hidden", "64")
    vals = [json.loads(x) for x in (out / ckpt.METRICS).read_text().splitlines()]
    first_train = next(r for r in vals if r["kind"] == "train")
    final_val = [r for r in vals if r["kind"] == "val"][-1]["val_loss"]
    assert final_val < 0.6 * first_train["loss"]  # far below the ~ln(V) loss of an untrained model


def _resume(run_dir, *extra: str) -> int:
    quiet = ["--no-progress", "--sample-length", "0"]
    return main(["train", "charlm", "--resume", str(run_dir), *quiet, *extra])


def _assert_split_run_equals_whole(text, tmp_path, total: int, first: int, args: list[str]) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert _train(text, whole, "--max-steps", str(total), *args) == 0
    assert _train(text, split, "--max-steps", str(first), *args) == 0
    assert _resume(split, "--max-steps", str(total - first)) == 0
    a, b = _weights(whole), _weights(split)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=lambda m, k=k: f"{k}: {m}")
    assert ckpt.trainer_state(split)["step"] == total


def test_resume_equals_an_unbroken_run(tiny_text_file, tmp_path) -> None:
    """A run split in two by --resume ends with the same weights as one unbroken run.

    Dropout is on, so this also checks that the RNG state, the optimizer state, the carried
    hidden state and the position in the data survive the checkpoint. The learning rate is
    constant: a cosine schedule spans the steps planned by each invocation, so a run that
    first plans 6 steps cannot follow the schedule of one that planned 10.
    """
    args = ["--dropout", "0.2", "--lr-schedule", "constant", "--eval-every", "4"]
    _assert_split_run_equals_whole(tiny_text_file, tmp_path, 10, 6, args)


def test_resume_crosses_an_epoch_boundary(tiny_text_file, tmp_path) -> None:
    corpus = lm.load_corpus(lm.DataConfig(str(tiny_text_file), batch_size=4, seq_len=16))
    n = len(BPTTChunks(corpus.train, 4, 16))
    args = ["--lr-schedule", "constant", "--eval-every", "1000"]
    _assert_split_run_equals_whole(tiny_text_file, tmp_path, n + 3, n - 2, args)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from tests.conftest import TINY_TEXT

    root = tmp_path_factory.mktemp("charlm")
    text = root / "tiny.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    out = root / "run"
    assert _train(text, out, "--max-steps", "60", "--eval-every", "20", "--lr", "1e-2", "--hidden", "64") == 0
    return out, text


def test_sampling_is_deterministic_for_a_seed(trained_run, capsys) -> None:
    out, _ = trained_run
    outputs = []
    for seed in (1, 1, 2):
        assert main(["sample", str(out), "--prime", "ALICE:", "--length", "200", "--seed", str(seed)]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] != outputs[2]
    assert outputs[0].startswith("ALICE:") and len(outputs[0]) == len("ALICE:") + 200 + 1


def test_greedy_sampling_ignores_the_seed(trained_run) -> None:
    out, _ = trained_run
    run = lm.open_run(out)
    a = "".join(lm.generate(run.model, run.vocab, "BO", 50, temperature=0, seed=1))
    b = "".join(lm.generate(run.model, run.vocab, "BO", 50, temperature=0, seed=2))
    logits, _ = run.model(run.vocab.encode("BO").unsqueeze(0))
    assert a == b and a[0] == run.vocab.chars[int(logits[0, -1].argmax())]


def test_top_k_one_is_greedy(trained_run) -> None:
    out, _ = trained_run
    run = lm.open_run(out)
    greedy = "".join(lm.generate(run.model, run.vocab, "A", 60, temperature=0))
    top1 = "".join(lm.generate(run.model, run.vocab, "A", 60, temperature=1.3, top_k=1, seed=5))
    assert greedy == top1


def test_eval_matches_the_models_loss(trained_run, capsys) -> None:
    out, text = trained_run
    assert main(["eval", str(out), "--text", str(text), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    run = lm.open_run(out)
    ids = run.vocab.encode(text.read_text())
    # the same figure computed directly, one stream at a time, with a batch of one row
    expected = lm.stream_loss(run.model, ids, 1, 1000)
    assert result["chars"] == len(ids)
    assert abs(result["bits_per_char"] * 0.6931471805599453 - result["nats_per_char"]) < 1e-9
    assert result["nats_per_char"] < 3.0 and abs(result["nats_per_char"] - expected) < 0.15
    assert main(["eval", str(out), "--text", str(text)]) == 0
    assert "nats/char" in capsys.readouterr().out


def test_best_weights_are_those_of_the_best_validation(trained_run) -> None:
    out, _ = trained_run
    state = ckpt.trainer_state(out)
    _, meta = ckpt.load_weights(ckpt.weights_file(out, ckpt.BEST))
    assert int(meta["step"]) == state["best_step"]


def test_resume_limits_are_those_of_the_new_invocation(tiny_text_file, tmp_path) -> None:
    out = tmp_path / "run"
    assert _train(tiny_text_file, out, "--max-minutes", "0.0001") == 0  # stops almost at once
    first = ckpt.trainer_state(out)["step"]
    assert _resume(out, "--max-steps", "7") == 0
    assert ckpt.trainer_state(out)["step"] == first + 7


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_lstm_variant_trains_and_samples_from_the_command_line(
    tiny_text_file, tmp_path, capsys, variant
):
    out = tmp_path / "run"
    extra = ["--cell", "lstm", "--variant", variant, "--max-steps", "3"]
    if variant not in ("CIFG", "NFG"):
        extra += ["--forget-bias", "1"]
    if variant in ("vanilla", "NOAF"):
        extra += ["--layer-norm"]
    assert _train(tiny_text_file, out, *extra) == 0
    config = json.loads((out / ckpt.CONFIG).read_text())
    assert config["model"]["variant"] == variant
    run = lm.open_run(out)  # rebuilt from config.json: the variant's parameters must fit
    assert run.model.rnn.cells[0].variant == variant
    assert run.model.rnn.cells[0].layer_norm == (variant in ("vanilla", "NOAF"))
    capsys.readouterr()
    assert main(["sample", str(out), "--length", "20", "--seed", "1"]) == 0
    assert len(capsys.readouterr().out) == 21
    assert _resume(out, "--max-steps", "2") == 0


@pytest.mark.parametrize("cell", list(CELLS))
def test_every_cell_trains_and_resumes_from_the_command_line(tiny_text_file, tmp_path, cell):
    out = tmp_path / "run"
    extra = {
        "gru": ["--layer-norm", "--zoneout", "0.1", "--init", "orthogonal", "--reset-before"],
        "lstm": ["--recurrent-dropout", "0.2", "--init", "xavier", "--forget-bias", "1"],
    }.get(cell, [])
    assert _train(tiny_text_file, out, "--cell", cell, "--max-steps", "3", *extra) == 0
    run = lm.open_run(out)
    assert run.config.model.cell == cell
    # every cell of the package: compiled (or fused); the Mogrifier LSTM has no compiled loop: fused
    assert run.model.rnn.engine == ("fused" if cell == "mogrifier" else STEP_ENGINE)
    if cell == "gru":
        assert not lm.open_run(out).model.rnn.cells[0].reset_after
    assert _resume(out, "--max-steps", "2") == 0
    assert ckpt.trainer_state(out)["step"] == 5
