"""Transfer from a language model (ULMFiT): ``unrolled train classify --init-from LM_RUN`` starts the
classifier from the LM's embedding and encoder (words or subwords), exactly; frozen layer groups do
not move; the run resumes, evaluates and loads; bad combinations are one line."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import task_data

import unrolled
from unrolled.cli import main
from unrolled.training import checkpoint as ckpt


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transfer")
    argv = task_data(folder)["word-lm"]
    out = folder / "lm"
    assert (
        main(["train", *argv, "--cell", "lstm", "--layers", "2", "--out", str(out), "--max-steps", "20"]) == 0
    )
    return folder, out


def _classify(folder, lm, out, *extra: str) -> list[str]:
    data = ["--data", str(folder / "moods.csv"), "--batch-size", "4", "--no-progress"]
    return ["train", "classify", *data, "--init-from", str(lm), "--out", str(out), *extra]


def _weights(run, which=ckpt.LATEST) -> dict[str, torch.Tensor]:
    return ckpt.load_weights(ckpt.weights_file(run, which))[0]


def test_init_from_copies_the_lm_exactly_and_frozen_groups_never_move(lm_run, tmp_path) -> None:
    folder, lm = lm_run
    frozen, thawed = tmp_path / "frozen", tmp_path / "thawed"
    # --freeze-epochs 2: epoch 0 trains the output layer alone, epoch 1 also the top LSTM layer
    assert main([*_classify(folder, lm, frozen, "--freeze-epochs", "2", "--max-epochs", "2")]) == 0
    assert main([*_classify(folder, lm, thawed, "--max-epochs", "2")]) == 0
    source, kept, moved = _weights(lm, ckpt.BEST), _weights(frozen), _weights(thawed)
    lm_keys = {"embed.weight"} | {k for k in source if k.startswith("rnn.")}
    assert len(lm_keys) == 1 + 2 * 4  # the embedding, and 2 layers x (w_ih, w_hh, b_ih, b_hh)
    still = {k for k in lm_keys if not k.endswith("_l1")}  # the groups frozen for both epochs
    for key in still:  # the frozen epochs left the LM's weights as they were, bit for bit
        assert torch.equal(kept[key], source[key]), key
    assert all(not torch.equal(kept[k], source[k]) for k in lm_keys - still)  # the top layer trained
    assert all(not torch.equal(moved[k], source[k]) for k in lm_keys)  # unfrozen, every group trains
    config = json.loads((frozen / ckpt.CONFIG).read_text())
    assert config["model"]["arch"] == "lm" and config["model"]["encoder"]["cell"] == "lstm"
    assert json.loads((frozen / ckpt.VOCAB).read_text()) == json.loads((lm / ckpt.VOCAB).read_text())


def test_a_transferred_classifier_resumes_evaluates_and_loads(lm_run, tmp_path, capsys) -> None:
    folder, lm = lm_run
    out = tmp_path / "run"
    argv = _classify(
        folder,
        lm,
        out,
        "--freeze-epochs",
        "1",
        "--lr-decay-per-layer",
        "0.38",
        "--pool",
        "concat",
        "--arch",
        "lm",  # naming the architecture the LM gives is allowed, not required
    )
    assert main([*argv, "--max-steps", "10"]) == 0
    assert main(["train", "classify", "--resume", str(out), "--max-steps", "5", "--no-progress"]) == 0
    assert ckpt.trainer_state(out)["step"] == 15
    p = unrolled.load(out)
    ((label, prob),) = p.predict(["The old mill calmish."])
    assert label in ("calm", "storm") and 0.5 <= prob <= 1.0
    capsys.readouterr()
    assert main(["predict", str(out), "--text", "The old mill calmish.", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["label"] == label
    assert main(["eval", str(out), "--data", str(folder / "moods.csv")]) == 0


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--hidden", "64"], "--hidden 64 differs from the language model's (16): drop --hidden"),
        (["--arch", "gru"], "--arch gru differs from the language model's (a lstm encoder)"),
        (["--freeze-epochs", "-1"], "--freeze-epochs must be >= 0"),
        (["--lr-decay-per-layer", "0"], "--lr-decay-per-layer must be in (0, 1]"),
    ],
)
def test_bad_transfers_are_one_line_and_write_nothing(lm_run, tmp_path, capsys, extra, says) -> None:
    folder, lm = lm_run
    out = tmp_path / "run"
    assert main([*_classify(folder, lm, out, *extra), "--max-steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and says in err, err
    assert not out.exists()


def test_init_from_a_run_that_is_no_word_lm(lm_run, tmp_path, capsys) -> None:
    folder, _ = lm_run
    chars = tmp_path / "chars"
    small = ["--hidden", "16", "--max-steps", "2", "--no-progress", "--sample-length", "0"]
    assert main(["train", "lm", "--text", str(folder / "text.txt"), "--out", str(chars), *small]) == 0
    capsys.readouterr()
    assert main([*_classify(folder, chars, tmp_path / "run"), "--max-steps", "2"]) == 2
    assert (
        "is a language model over chars: it must be a language model over words or subwords"
        in capsys.readouterr().err
    )
    data = ["--data", str(folder / "moods.csv"), "--no-progress", "--max-steps", "2"]
    assert main(["train", "classify", *data, "--arch", "lm", "--out", str(tmp_path / "x")]) == 2
    assert "--arch lm is the encoder of a language model: give --init-from LM_RUN" in capsys.readouterr().err


def test_a_classifier_starts_from_a_subword_lm_and_reads_text_as_it_does(lm_run, tmp_path, capsys) -> None:
    folder, _ = lm_run
    lm, out = tmp_path / "lm", tmp_path / "run"
    small = ["--hidden", "16", "--batch-size", "4", "--seq-len", "8", "--no-progress", "--sample-length", "0"]
    argv = ["train", "lm", "--unit", "subword", "--vocab-size", "30", "--text", str(folder / "text.txt")]
    assert main([*argv, *small, "--out", str(lm), "--max-steps", "3"]) == 0
    # one epoch, frozen below the output layer: the LM's weights come through bit for bit
    assert main([*_classify(folder, lm, out, "--freeze-epochs", "1", "--max-epochs", "1")]) == 0
    source, kept = _weights(lm, ckpt.BEST), _weights(out)
    lm_keys = {"embed.weight"} | {k for k in source if k.startswith("rnn.")}
    assert all(torch.equal(kept[k], source[k]) for k in lm_keys)
    assert (out / "spm.model").read_bytes() == (lm / "spm.model").read_bytes()
    assert (out / ckpt.VOCAB).read_text() == (lm / ckpt.VOCAB).read_text()
    p = unrolled.load(out)
    assert p.config.data.tokens == "bpe"
    pieces = p.run.subwords.pieces("The old mill")  # the LM kept the case, and so does the classifier
    assert p.encode("The old mill")[0].tolist() == p.vocab.encode(pieces).tolist()
    assert "sentencepiece" in p.export_meta()
    capsys.readouterr()
    assert main([*_classify(folder, lm, tmp_path / "x", "--tokens", "word"), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--tokens word differs from the language model's tokens (bpe)" in err


def test_a_tagger_starts_from_a_word_lm(lm_run, tmp_path, capsys) -> None:
    from unrolled.tasks import tag

    folder, lm = lm_run
    config = tag.TagConfig()
    config.data.data, config.model.init_from = str(folder / "tags.txt"), str(lm)
    config.data.batch_size = 4
    prepared = tag.TASK.prepare(config, None)
    model = tag.TASK.build_model(config, prepared.assets)
    tag.TASK.fit(config, model, prepared)  # a new run starts from the LM's weights here
    source = _weights(lm, ckpt.BEST)
    ours = {f"embed.{k}": v for k, v in model.embed.state_dict().items()}
    ours |= {f"rnn.{k}": v for k, v in model.rnn.state_dict().items()}
    assert ours.keys() == {"embed.weight"} | {k for k in source if k.startswith("rnn.")}
    assert all(torch.equal(ours[k], source[k]) for k in ours)
    m = config.model  # the architecture follows the LM: left to right, its embedding alone
    assert (m.cell, m.hidden, m.layers, m.bidirectional, m.char_encoder) == ("lstm", 16, 2, False, "none")
    assert prepared.assets["vocab"].tokens == unrolled.load(lm).vocab.tokens

    out = tmp_path / "tagger"
    argv = ["train", "tag", "--data", str(folder / "tags.txt"), "--batch-size", "4", "--no-progress"]
    assert main([*argv, "--init-from", str(lm), "--out", str(out), "--max-steps", "3"]) == 0
    assert main(["train", "tag", "--resume", str(out), "--max-steps", "2", "--no-progress"]) == 0
    assert ckpt.trainer_state(out)["step"] == 5
    assert len(unrolled.load(out).tag(["the old mill"])[0]) == 3
    capsys.readouterr()
    assert main([*argv, "--init-from", str(lm), "--char-encoder", "cnn", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--char-encoder cnn differs from the language model's (none)" in err and err.count("\n") == 0
