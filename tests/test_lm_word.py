"""The word-level language model: tokeniser, perplexity, tied weights, runs end to end, bad input,
and char runs written before words came."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from unrolled.cli import main
from unrolled.data.words import NEWLINE, detokenize, tokenize
from unrolled.tasks import lm
from unrolled.training import checkpoint as ckpt

SMALL = ["--hidden", "16", "--layers", "2", "--batch-size", "4", "--seq-len", "8", "--no-progress"]
QUIET = ["--sample-length", "0"]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "charlm-75d70b4"


def _train(text, out, *extra):
    return main(
        ["train", "lm", "--unit", "word", "--text", str(text), "--out", str(out), *SMALL, *QUIET, *extra]
    )


def _fails(capsys, argv, pattern):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and pattern in err[0], err
    return err[0]


# ---- the tokeniser -------------------------------------------------------------------------
def test_tokenize_splits_marks_off_words_and_keeps_line_breaks() -> None:
    text = 'KING:\nIs\'t so?  "Go (now)", he said -- well-known 3.5%.\n\nEnd'
    assert tokenize(text) == [
        "KING", ":", NEWLINE,
        "Is't", "so", "?", '"', "Go", "(", "now", ")", '"', ",", "he", "said", "-", "-", "well-known",
        "3.5", "%", ".", NEWLINE, NEWLINE, "End",
    ]  # fmt: skip
    assert tokenize("The KING\n", lower=True) == ["the", "king", NEWLINE]
    assert detokenize(tokenize("'Tis so, th' old man.\n('Twas)")) == "'Tis so, th' old man.\n('Twas)"
    assert detokenize(tokenize(text)) == 'KING:\nIs\'t so? "Go (now)", he said - - well-known 3.5%.\n\nEnd'


def test_detokenize_of_tokenize_keeps_the_words_and_the_line_breaks() -> None:
    """On random texts of words, marks, spaces and line breaks: the round trip gives back the same
    tokens (no two words glued, no word split) and the same line breaks."""
    rng = random.Random(0)
    pieces = ["word", "Ab", "don't", "x-y", "3.5", "é", ".", ",", "!", "?", ":", ";", "(", ")", "[", "]",
              '"', "'", "«", "»", "-", "—", "$", "%", "&", "…", " ", " ", " ", "  ", "\t", "\n", "\n",
              "\r\n"]  # fmt: skip
    for _ in range(500):
        text = "".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(rng.randint(0, 30)))
        tokens = tokenize(text)
        back = detokenize(tokens)
        assert tokenize(back) == tokens, (text, back)
        assert back.count("\n") == text.count("\n") == tokens.count(NEWLINE)
        words = [t for t in text.split() if any(ch.isalnum() for ch in t)]
        assert sum(any(ch.isalnum() for ch in t) for t in tokens) >= len(words)


# ---- perplexity ----------------------------------------------------------------------------
class FixedModel(nn.Module):
    """Predicts the same distribution ``p`` after every token: known probabilities."""

    def __init__(self, p: torch.Tensor) -> None:
        super().__init__()
        self.logp = nn.Parameter(p.log())

    def forward(self, x, state=None):
        return self.logp.expand(*x.shape, -1), state


def test_perplexity_is_exp_of_the_mean_nats_per_token() -> None:
    p = torch.tensor([0.5, 0.25, 0.125, 0.125], dtype=torch.float64)
    ids = torch.tensor([0, 1, 2, 3, 0, 0, 1, 3, 2, 1, 0])
    nats = lm.stream_loss(FixedModel(p), ids, batch_size=1, seq_len=4)
    expected = -p[ids[1:]].log().mean().item()  # every token but the first, predicted once
    assert nats == pytest.approx(expected, rel=1e-12)
    assert lm.metrics(nats, "word")["ppl"] == pytest.approx(math.exp(expected), rel=1e-12)
    uniform = lm.stream_loss(FixedModel(torch.full((4,), 0.25, dtype=torch.float64)), ids, 1, 4)
    assert lm.metrics(uniform, "word")["ppl"] == pytest.approx(4.0, rel=1e-12)  # uniform over V: V


# ---- tied weights --------------------------------------------------------------------------
def test_tied_weights_are_one_tensor_trained_from_both_ends_and_saved_once() -> None:
    cfg = lm.ModelConfig(cell="lstm", hidden=12, layers=1, tie_weights=True)
    size = lm.DataSize(1000, 30)
    model = lm.build_model(cfg, 30, "word", size)
    untied = lm.build_model(
        lm.ModelConfig(cell="lstm", hidden=12, layers=1, tie_weights=False), 30, "word", size
    )
    assert model.embed is not None and model.embed.weight.shape == (30, 12)
    assert model.decoder.weight is model.embed.weight
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in model.parameters()) == 30 * 12
    keys = set(model.state_dict())
    assert "embed.weight" in keys and "decoder.weight" not in keys and "decoder.bias" in keys
    # the output end alone trains it: a gradient from the decoder reaches the embedding matrix
    x = torch.randint(0, 30, (2, 5))
    logits, _ = model(x)
    (grad,) = torch.autograd.grad(logits[..., 7].sum(), model.embed.weight)
    assert grad[7].abs().sum() > 0  # row 7 is only read by the embedding when token 7 is in x
    assert logits.shape == (2, 5, 30)


def test_a_tied_run_saves_the_matrix_once_and_reopens_and_resumes(tiny_text_file, tmp_path) -> None:
    out = tmp_path / "tied"
    assert _train(tiny_text_file, out, "--tie-weights", "--max-steps", "4", "--eval-every", "2") == 0
    tensors = ckpt.load_weights(ckpt.weights_file(out, ckpt.LATEST))[0]
    vocab = len(json.loads((out / ckpt.VOCAB).read_text())["tokens"])
    assert [k for k, t in tensors.items() if t.shape == (vocab, 16)] == ["embed.weight"]
    run = lm.open_run(out, weights=ckpt.LATEST)
    assert run.model.decoder.weight is run.model.embed.weight
    assert torch.equal(run.model.embed.weight, tensors["embed.weight"])
    assert main(["train", "lm", "--resume", str(out), "--max-steps", "2", "--no-progress", *QUIET]) == 0
    assert ckpt.trainer_state(out)["step"] == 6
    run = lm.open_run(out, weights=ckpt.LATEST)
    assert run.model.decoder.weight is run.model.embed.weight


# ---- a word run end to end -----------------------------------------------------------------
@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    from tests.conftest import TINY_TEXT

    root = tmp_path_factory.mktemp("wordlm")
    text = root / "tiny.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    out = root / "run"
    steps = ["--max-steps", "250", "--eval-every", "50"]
    model = ["--cell", "gru", "--dropout", "0", "--embedding-dropout", "0"]
    assert _train(text, out, *steps, *model, "--optimizer", "adam", "--lr", "1e-2") == 0
    return out, text


def test_a_word_run_reports_perplexity_unk_shares_and_test_scores(word_run, capsys) -> None:
    out, text = word_run
    config = json.loads((out / ckpt.CONFIG).read_text())
    assert config["task"] == "lm" and config["data"]["unit"] == "word"
    assert (
        config["data"]["test_frac"] == 0.1 and config["data"]["seq_len"] == 8
    )  # the unit's default, and a flag
    assert config["model"]["embedding_dim"] == 16  # words: --hidden
    vocab = json.loads((out / ckpt.VOCAB).read_text())
    assert vocab["kind"] == "word" and NEWLINE in vocab["tokens"] and "river" in vocab["tokens"]
    assert set(config["info"]["unk_share"]) == {"train", "val", "test"}
    records = [json.loads(line) for line in (out / ckpt.METRICS).read_text().splitlines()]
    vals = [r for r in records if r["kind"] == "val"]
    assert vals and all(r["val_ppl"] == pytest.approx(math.exp(r["val_loss"])) for r in vals)
    results = json.loads((out / "results.json").read_text())
    for part in ("val", "test"):
        r = results[part]
        assert r["perplexity"] == pytest.approx(math.exp(r["nats_per_word"]))
        assert r["unk_share"] == 0.0  # the text repeats: every word is seen in the training part
    assert results["val"]["nats_per_word"] == pytest.approx(min(r["val_loss"] for r in vals))
    assert results["val"]["perplexity"] < 0.5 * len(vocab["tokens"])  # it learned something
    assert main(["eval", str(out), "--text", str(text), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["perplexity"] == pytest.approx(math.exp(scored["nats_per_word"]))
    assert scored["tokens"] == len(tokenize(text.read_text())) and scored["unk_share"] == 0.0


def test_eval_counts_unknown_words_as_unk(word_run, tmp_path, capsys) -> None:
    out, _ = word_run
    other = tmp_path / "other.txt"
    other.write_text("The river runs to the sea, zanzibar quokka.", encoding="utf-8")
    assert main(["eval", str(out), "--text", str(other)]) == 0
    line = capsys.readouterr().out
    assert "nats/word, perplexity" in line and "(20.0% <unk>)" in line  # 2 of 10 tokens


def test_sampling_words_keeps_lines_and_is_reproducible(word_run, capsys) -> None:
    out, _ = word_run
    args = ["sample", str(out), "--prime", "The river", "--length", "40", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first
    assert first.startswith("The river ") and "\n" in first.strip() and "<pad>" not in first
    vocab = set(json.loads((out / ckpt.VOCAB).read_text())["tokens"])
    assert set(tokenize(first.replace("<unk>", ""))) <= vocab  # words of the vocabulary, joined as text
    run = lm.open_run(out)
    greedy = "".join(lm.generate(run.model, run.vocab, "and", 30, temperature=0))
    top1 = "".join(lm.generate(run.model, run.vocab, "and", 30, temperature=1.5, top_k=1, seed=9))
    assert greedy == top1


def test_a_prime_with_some_unknown_words_reads_them_as_unk(word_run, capsys) -> None:
    out, _ = word_run
    assert main(["sample", str(out), "--prime", "the quokka river", "--length", "5", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert "read as <unk>: 'quokka'" in captured.err and captured.out.startswith("the quokka river")


# ---- bad input -----------------------------------------------------------------------------
def test_a_prime_of_only_unknown_words_is_refused_naming_them(word_run, capsys) -> None:
    out, _ = word_run
    line = _fails(
        capsys, ["sample", str(out), "--prime", "quokka zanzibar quokka"], "none of the prime's words"
    )
    assert "'quokka', 'zanzibar'" in line
    _fails(capsys, ["sample", str(out), "--prime", "   "], "has no words")


def test_a_vocabulary_that_leaves_most_validation_words_unk_is_refused(tmp_path, capsys) -> None:
    text = tmp_path / "t.txt"
    words = [f"w{i}" for i in range(3000)]  # every word once: none is seen twice in training
    text.write_text(" ".join(words) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    line = _fails(capsys, ["train", "lm", "--unit", "word", "--text", str(text), "--out", str(out), *SMALL],
                  "of the validation tokens are <unk>")  # fmt: skip
    assert "--min-count" in line and not out.exists()


@pytest.mark.parametrize(
    "flags, pattern",
    [
        (["--unit", "word", "--tie-weights", "--embedding-dim", "8"], "set --embedding-dim 16"),
        (["--unit", "word", "--tie-weights", "--embedding-dim", "0"], "set --embedding-dim 16"),
        (["--unit", "char", "--tie-weights"], "need --embedding-dim equal to --hidden"),
        (["--unit", "word", "--min-count", "0"], "--min-count must be positive"),
        (["--unit", "word", "--test-frac", "0.95"], "--test-frac (0.95)"),
        (["--unit", "sentence"], "invalid choice: 'sentence'"),
        (["--lower", "--max-vocab", "100"], "--lower applies to --unit word or subword, not to --unit char"),
        (["--unit", "subword", "--max-vocab", "100"], "--max-vocab applies to --unit word, not"),
        (["--unit", "word", "--vocab-size", "100"], "--vocab-size applies to --unit subword, not"),
        (["--unit", "subword", "--vocab-size", "0"], "--vocab-size must be positive"),
    ],
)
def test_bad_model_and_data_flags(tiny_text_file, tmp_path, capsys, flags, pattern) -> None:
    out = tmp_path / "run"
    _fails(capsys, ["train", "lm", "--text", str(tiny_text_file), "--out", str(out), *SMALL, *flags], pattern)
    assert not out.exists()


def test_charlm_is_the_char_case_only(tiny_text_file, tmp_path, capsys) -> None:
    argv = ["train", "charlm", "--unit", "word", "--text", str(tiny_text_file), "--out", str(tmp_path / "r")]
    _fails(capsys, argv, "use unrolled train lm --unit word")


@pytest.mark.parametrize(
    "content, pattern",
    [
        (None, "text file not found"),
        (b"", "text file is empty"),
        (b"caf\xe9 au lait", "is not UTF-8 text"),
        (b"too short for a batch\n", "text is too short for one batch"),
    ],
)
def test_file_errors_as_for_the_char_lm(tmp_path, capsys, content, pattern) -> None:
    path = tmp_path / "t.txt"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "run"
    _fails(capsys, ["train", "lm", "--unit", "word", "--text", str(path), "--out", str(out), *SMALL], pattern)
    assert not out.exists()


def test_word_runs_are_refused_by_the_char_only_analyses(word_run, tmp_path, capsys) -> None:
    out, text = word_run
    _fails(capsys, ["analyze", "jacobian", str(out), "--text", "the river", "--out", str(tmp_path / "j.png")],
           "models words, not characters")  # fmt: skip


# ---- char runs from before this change -----------------------------------------------------
@pytest.fixture
def old_char_run(tmp_path, monkeypatch):
    root = tmp_path / "old"
    shutil.copytree(FIXTURE, root)
    monkeypatch.chdir(root)  # its config names its text relatively
    return root


def test_a_char_run_from_before_words_opens_samples_scores_and_resumes(old_char_run, capsys) -> None:
    assert main(["sample", "charlm-run", "--prime", "AL", "--length", "40", "--seed", "3"]) == 0
    assert capsys.readouterr().out == (old_char_run / "sample-AL-40-seed3.txt").read_text(encoding="utf-8")
    assert main(["eval", "charlm-run", "--text", "tiny.txt", "--json"]) == 0
    # float32: the engine auto picks may round differently from the one that wrote the fixture
    assert json.loads(capsys.readouterr().out)["nats_per_char"] == pytest.approx(3.6184921525360894, abs=1e-6)
    run = lm.open_run("charlm-run")
    assert run.config.TASK == "charlm" and run.config.data.unit == "char" and run.config.data.test_frac == 0.0
    assert run.config.model.embedding_dropout == 0.0 and not run.config.model.tie_weights
    assert (
        main(["train", "charlm", "--resume", "charlm-run", "--max-steps", "2", "--no-progress", *QUIET]) == 0
    )
    assert ckpt.trainer_state("charlm-run")["step"] == 8
    config = json.loads((old_char_run / "charlm-run" / ckpt.CONFIG).read_text())
    assert (
        config["task"] == "charlm" and config["data"]["unit"] == "char" and config["data"]["test_frac"] == 0.0
    )
    assert not (old_char_run / "charlm-run" / "results.json").exists()  # no test part: as before


def test_train_lm_unit_char_is_train_charlm(tiny_text_file, tmp_path) -> None:
    """The same flags give the same weights under either name; only config.json's task differs."""
    flags = ["--text", str(tiny_text_file), *SMALL, *QUIET, "--embedding-dim", "8", "--max-steps", "3"]
    assert main(["train", "lm", "--out", str(tmp_path / "a"), *flags]) == 0
    assert main(["train", "charlm", "--out", str(tmp_path / "b"), *flags]) == 0
    a, b = (ckpt.load_weights(ckpt.weights_file(tmp_path / n, ckpt.LATEST))[0] for n in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca, cb = (json.loads((tmp_path / n / ckpt.CONFIG).read_text()) for n in "ab")
    assert (ca.pop("task"), cb.pop("task")) == ("lm", "charlm") and ca == cb


def test_sgd_takes_plain_steps_of_the_clipped_gradient() -> None:
    """--optimizer sgd: p <- p - lr * g, with g clipped to --clip in global norm by the trainer."""
    from unrolled.training.config import OptimConfig
    from unrolled.training.loop import make_optimizer

    model = nn.Linear(3, 2)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = make_optimizer(model, OptimConfig(optimizer="sgd", lr=20.0))
    assert type(optimizer) is torch.optim.SGD
    model(torch.randn(4, 3)).pow(2).sum().backward()
    nn.utils.clip_grad_norm_(model.parameters(), 0.25)
    grads = [p.grad.clone() for p in model.parameters()]
    optimizer.step()
    for p, b, g in zip(model.parameters(), before, grads, strict=True):
        assert torch.allclose(p, b - 20.0 * g, atol=1e-6)
    assert type(make_optimizer(model, OptimConfig())) is torch.optim.AdamW
