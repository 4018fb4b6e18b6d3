"""unrolled.load(RUN): a run directory as its task's predictor; the language model's verbs against its
commands; bad runs; the char-LM's export and the onnxruntime generation loop of docs/python_api.md."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import doc_block

import unrolled
from unrolled.cli import main
from unrolled.training import checkpoint as ckpt

# A small original text (written for these tests), with the prime of docs/python_api.md in it.
TEXT = (
    "ROMEO:\nThe lamps are lit along the quay,\nand boats come home with silver fish.\n\n"
    "NELL:\nThen sing, and mend the nets by noon,\nthe tide will turn before we sleep.\n\n"
) * 30
SMALL = ["--hidden", "16", "--embedding-dim", "8", "--batch-size", "4", "--seq-len", "16", "--no-progress"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def char_run(text_file) -> Path:
    out = text_file.parent / "char"
    argv = ["train", "charlm", "--text", str(text_file), "--out", str(out), *SMALL, "--sample-length", "0"]
    assert main([*argv, "--max-steps", "30", "--eval-every", "10", "--lr-schedule", "constant"]) == 0
    return out


@pytest.fixture(scope="module")
def word_run(text_file) -> Path:
    out = text_file.parent / "word"
    argv = ["train", "lm", "--unit", "word", "--text", str(text_file), "--out", str(out), *SMALL]
    argv[argv.index("--embedding-dim") + 1] = "16"  # tied weights need --embedding-dim = --hidden
    assert main([*argv, "--max-steps", "20", "--eval-every", "10", "--sample-length", "0"]) == 0
    return out


def _stdout(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "kwargs"),
    [
        (["--seed", "3"], {"seed": 3}),
        (["--temperature", "0"], {"temperature": 0}),
        (["--seed", "5", "--top-k", "3"], {"seed": 5, "top_k": 3}),
    ],
)
def test_sample_is_the_command_s_text(char_run, capsys, options, kwargs) -> None:
    printed = _stdout(capsys, ["sample", str(char_run), "--prime", "ROMEO:", "--length", "80", *options])
    lm = unrolled.load(char_run)
    text = lm.sample("ROMEO:", 80, **kwargs)
    assert printed == "ROMEO:" + text + "\n"
    assert "".join(lm.stream("ROMEO:", 80, **kwargs)) == text


def test_score_is_the_eval_command_s(char_run, word_run, text_file, capsys) -> None:
    for run in (char_run, word_run):
        printed = json.loads(_stdout(capsys, ["eval", str(run), "--text", str(text_file), "--json"]))
        scored = unrolled.load(run).score(TEXT)
        assert scored == {k: v for k, v in printed.items() if k not in ("run", "text")}
    assert set(scored) == {"nats_per_word", "perplexity", "tokens", "unk_share"}  # the word run's
    char = unrolled.load(char_run).score(TEXT)
    assert char["perplexity"] == pytest.approx(torch.tensor(char["nats_per_char"]).exp().item())


def test_a_word_model_samples_like_its_command(word_run, capsys) -> None:
    argv = ["sample", str(word_run), "--prime", "the tide", "--length", "12", "--seed", "1"]
    printed = _stdout(capsys, argv)
    assert printed == "the tide" + unrolled.load(word_run).sample("the tide", 12, seed=1) + "\n"


def test_what_every_predictor_has(char_run) -> None:
    lm = unrolled.load(char_run)
    state = ckpt.trainer_state(char_run)
    assert lm.task == "charlm" and lm.unit == "char" and lm.path == char_run
    assert lm.config.model.hidden == 16 and lm.config.data.seq_len == 16
    assert lm.step == state["best_step"]
    assert unrolled.load(char_run, which="latest").step == state["step"] == 30
    assert not lm.model.training and lm.device == torch.device("cpu")
    assert lm.to("cpu") is lm
    assert lm.vocab.chars == sorted(set(TEXT))
    assert "verbs: sample, stream, score" in repr(lm)


def test_a_verb_the_task_has_not_names_the_verbs(char_run) -> None:
    verbs = r"a charlm run has no \.translate\(\): its verbs are \.sample\(\), \.stream\(\), \.score\(\)"
    with pytest.raises(AttributeError, match=verbs):
        unrolled.load(char_run).translate(["hello"])


def test_bad_runs_are_one_clear_error(char_run, tmp_path) -> None:
    with pytest.raises(ValueError, match="not a run directory \\(no such directory\\)"):
        unrolled.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a run directory \\(no config.json\\)"):
        unrolled.load(tmp_path)
    with pytest.raises(ValueError, match="which weights: expected 'best' or 'latest', got 'middle'"):
        unrolled.load(char_run, which="middle")
    damaged = tmp_path / "damaged"
    shutil.copytree(char_run, damaged)
    weights = ckpt.weights_file(damaged)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="is truncated or corrupted"):
        unrolled.load(damaged)
    config = json.loads((damaged / ckpt.CONFIG).read_text())
    (damaged / ckpt.CONFIG).write_text(json.dumps({**config, "task": "weather"}))
    with pytest.raises(ValueError, match="names an unknown task 'weather': expected one of lm, charlm"):
        unrolled.load(damaged)
    (damaged / ckpt.CONFIG).write_text("{")
    with pytest.raises(ValueError, match="config.json is corrupted"):
        unrolled.load(damaged)


def test_bad_sampling_options_raise_before_any_text(char_run) -> None:
    lm = unrolled.load(char_run)
    with pytest.raises(ValueError, match="--temperature must be >= 0"):
        lm.sample("ROMEO:", temperature=-1)
    with pytest.raises(ValueError, match="characters not in the model's vocabulary: 'Z'"):
        lm.sample("Z")


# ---- export, and the docs' generation loop in onnxruntime --------------------------------------------
def test_the_docs_onnxruntime_loop_gives_the_command_s_greedy_text(char_run, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    block = doc_block("python_api.md", 'model, prime, length = "charlm.onnx"')
    assert block.count("\n") <= 22  # a loop a reader can paste: about 20 lines
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(char_run), "--out", "charlm.onnx"]) == 0
    err = capsys.readouterr().err
    assert "lm_step: (tokens, h0) -> (logits, h_n); onnxruntime matches PyTorch within" in err
    sidecar = json.loads(Path("charlm.onnx.json").read_text())
    assert sidecar["task"] == "charlm" and sidecar["step"] == unrolled.load(char_run).step
    assert sidecar["graphs"]["lm_step"]["max_abs_diff_vs_pytorch"] <= 1e-4
    greedy = ["--prime", "ROMEO:", "--length", "200", "--temperature", "0"]
    command = _stdout(capsys, ["sample", str(char_run), *greedy])
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(block, "docs/python_api.md", "exec"), {"__name__": "__docs__"})
    assert buffer.getvalue() == command
