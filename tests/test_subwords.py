"""Subword units (sentencepiece BPE and unigram): exact round trips, one-line errors, and translator,
language-model and classifier runs over subwords that train, resume, evaluate, load and export."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import unrolled
from unrolled.cli import main
from unrolled.data.pairs import Codec
from unrolled.data.subwords import NEWLINE, PieceJoiner, Subwords
from unrolled.tasks.lm import subword_parts
from unrolled.training import checkpoint as ckpt

TEXT = [
    "the river runs where the old mill stood",
    "every stone remembers rain, and the rain remembers every stone",
    "an old miller's daughter counts forty-two sacks of flour",
] * 10
ALPHABET = sorted(set("".join(TEXT)) - {" "})


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def model(request) -> Subwords:
    return Subwords.train(TEXT, request.param, 40)


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=12), min_size=1, max_size=8))
def test_pieces_round_trip_exactly(words) -> None:
    for kind in ("bpe", "unigram"):
        sw = _models[kind]
        text = " ".join(words)
        assert sw.text(sw.pieces(text)) == text
        assert sw.text(sw.pieces("  " + "   ".join(words) + " ")) == text  # white space normalised


_models = {kind: Subwords.train(TEXT, kind, 40) for kind in ("bpe", "unigram")}

LINE = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=8), max_size=5).map(" ".join)


@settings(max_examples=50, deadline=None)
@given(lines=st.lists(LINE, min_size=1, max_size=4))
def test_a_stream_of_lines_joins_back_piece_by_piece(lines) -> None:
    text = "\n".join(lines)
    for sw in _models.values():
        stream = sw.stream(text)
        assert stream.count(NEWLINE) == len(lines) - 1
        for pieces in (stream, sw.stream(" " + text.replace(" ", "  "))):  # white space normalised
            joiner = PieceJoiner()  # one piece at a time, as a sample is written
            assert "".join(joiner.push(p) for p in pieces) == text


def test_a_subword_lm_splits_its_text_at_line_breaks() -> None:
    text = "".join(f"line {i:02d}\n" for i in range(10))  # 80 characters, 8 per line
    train, val, test = subword_parts(text, 0.25, 0.15)
    assert train + val + test == text and all(p.endswith("\n") for p in (train, val, test))
    assert (len(train), len(val), len(test)) == (48, 16, 16)  # 80 - 20 - 12 = 48, then 80 - 12 = 68 -> 64
    assert subword_parts("one line, no break", 0.5, 0.0) == ("one line,", " no break", "")


def test_a_model_is_the_same_from_the_same_text_and_reads_back_from_its_bytes(model) -> None:
    again = Subwords.train(TEXT, model.kind, 40)
    assert again.model == model.model and len(model) == 40
    copy = Subwords(model.model)
    assert copy.pieces("the stone") == model.pieces("the stone") and copy.kind == model.kind
    assert "<unk>" not in model.vocabulary() and len(model.vocabulary()) == 39


def test_sizes_the_text_cannot_give_say_the_bounds() -> None:
    with pytest.raises(
        ValueError, match=r"--vocab-size 5 is too small: the training text has \d+ distinct"
    ) as e:
        Subwords.train(TEXT, "bpe", 5)
    least = int(str(e.value).rsplit(" ", 1)[1])
    assert len(Subwords.train(TEXT, "bpe", least)) == least  # the minimum it names is enough
    with pytest.raises(ValueError, match=r"--vocab-size 100000 is more than the training text supports") as e:
        Subwords.train(TEXT, "unigram", 100_000)
    most = int(str(e.value).rsplit(" ", 1)[1])
    assert len(Subwords.train(TEXT, "unigram", most)) == most  # and so is the maximum
    with pytest.raises(ValueError, match="not a sentencepiece model"):
        Subwords(b"not a model")


def test_the_codec_scores_subword_outputs_against_the_raw_reference() -> None:
    sw = _models["bpe"]
    codec = Codec("bpe", False, sw, sw)
    assert codec.source("The River  runs") == sw.pieces("the river runs")
    assert codec.join(codec.target("The old mill")) == "the old mill"
    assert codec.reference("  The old   Mill ") == "the old mill"
    assert Codec("bpe", True, sw, sw).reference("The old Mill") == "The old Mill"
    with pytest.raises(ValueError, match="needs subword models"):
        Codec("bpe")
    assert Codec("word").reference("J'ai perdu.") == "j'ai perdu ."  # the word-level scoring stays


# ---- translator runs over subwords ----------------------------------------------------------
SMALL = [
    "--train-numbers",
    "400",
    "--held-out",
    "20",
    "--hidden",
    "16",
    "--batch-size",
    "16",
    "--no-progress",
]


@pytest.mark.parametrize("separate", [False, True])
def test_a_subword_translator_trains_resumes_evaluates_loads_and_exports(tmp_path, capsys, separate) -> None:
    out = tmp_path / "run"
    argv = ["train", "translate", *SMALL, "--tokens", "bpe", "--vocab-size", "80", "--out", str(out)]
    argv += ["--separate-subwords"] if separate else []
    assert main([*argv, "--max-steps", "4", "--eval-every", "2"]) == 0
    assert (out / "spm.model").is_file() and (out / "spm.target.model").is_file() == separate
    sides = (
        json.loads((out / "source_vocab.json").read_text()),
        json.loads((out / "target_vocab.json").read_text()),
    )
    assert all(len(v["tokens"]) == 4 + 79 for v in sides)  # the specials and every piece but <unk>
    assert main(["train", "translate", "--resume", str(out), "--max-steps", "2", "--no-progress"]) == 0
    assert ckpt.trainer_state(out)["step"] == 6
    p = unrolled.load(out)
    pieces = p.tokenize("Twenty one")
    assert pieces == Subwords.load(out / "spm.model").pieces("twenty one")
    (line,) = p.translate(["twenty one"])
    capsys.readouterr()
    assert main(["translate", str(out), "--text", "twenty one", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["translation"] == line
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("twenty one\tvingt et un\nseven\tsept\n", encoding="utf-8")
    assert main(["eval", str(out), "--data", str(pairs), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 2
    meta = p.export_meta()
    target = Subwords(base64.b64decode(meta["target_sentencepiece"]))
    assert target.model == p.codec.target_model.model and "joiner" not in meta


def test_a_vocab_size_the_pairs_cannot_give_is_one_line_and_writes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert (
        main(["train", "translate", *SMALL, "--tokens", "unigram", "--vocab-size", "3", "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--vocab-size 3 is too small" in err and "give at least" in err
    assert not out.exists()


# ---- language models and classifiers over subwords -----------------------------------------
def test_a_subword_lm_trains_resumes_evaluates_samples_loads_and_exports(tmp_path, capsys) -> None:
    text = tmp_path / "text.txt"
    text.write_text("\n".join(TEXT), encoding="utf-8")
    out = tmp_path / "lm"
    small = ["--hidden", "16", "--batch-size", "4", "--seq-len", "8", "--no-progress", "--sample-length", "0"]
    argv = ["train", "lm", "--unit", "subword", "--tokens", "unigram", "--vocab-size", "40", "--lower"]
    assert main([*argv, "--text", str(text), "--out", str(out), *small, "--max-steps", "4"]) == 0
    sw = Subwords.load(out / "spm.model")
    assert sw.kind == "unigram" and len(sw) == 40
    train, _, _ = subword_parts("\n".join(TEXT), 0.1, 0.1)  # learnt from the training part alone
    assert sw.model == Subwords.train(train.split("\n"), "unigram", 40).model
    vocab = json.loads((out / ckpt.VOCAB).read_text())["tokens"]
    assert vocab == ["<pad>", "<unk>", NEWLINE, *sw.vocabulary()]
    assert main(["train", "lm", "--resume", str(out), "--max-steps", "2", "--no-progress"]) == 0
    assert ckpt.trainer_state(out)["step"] == 6
    capsys.readouterr()
    assert main(["eval", str(out), "--text", str(text)]) == 0
    assert "nats/piece" in capsys.readouterr().out
    p = unrolled.load(out)
    assert p.unit == "subword" and p.tokens("The River\nruns") == sw.stream("the river\nruns")
    result = p.score("the river runs where the old mill stood")
    assert result["tokens"] == len(sw.pieces("the river runs where the old mill stood"))
    sample = p.sample("the old", length=30, seed=3)
    assert sample == p.sample("the old", length=30, seed=3) and set(sample) <= set("".join(TEXT)) | {"\n"}
    assert main(["sample", str(out), "--prime", "the old", "--length", "30", "--seed", "3"]) == 0
    assert capsys.readouterr().out == "the old" + sample + "\n"
    meta = p.export_meta()
    assert base64.b64decode(meta["sentencepiece"]) == sw.model and meta["unit"] == "subword"
    with pytest.raises(ValueError, match="has fewer than 2 pieces: nothing to score"):
        p.score("")
    with pytest.raises(ValueError, match="has no pieces"):
        p.sample(" ", length=3)


def test_a_subword_classifier_trains_resumes_evaluates_and_loads(tmp_path, capsys) -> None:
    data = tmp_path / "moods.csv"
    data.write_text("label,text\n" + "".join(f"{k % 2},{t}\n" for k, t in enumerate(TEXT)), encoding="utf-8")
    out = tmp_path / "run"
    argv = ["train", "classify", "--data", str(data), "--tokens", "bpe", "--vocab-size", "40"]
    argv += ["--arch", "gru"]
    small = ["--hidden", "16", "--batch-size", "4", "--no-progress"]
    assert main([*argv, *small, "--out", str(out), "--max-steps", "3"]) == 0
    sw = Subwords.load(out / "spm.model")
    assert json.loads((out / ckpt.VOCAB).read_text())["tokens"] == ["<pad>", "<unk>", *sw.vocabulary()]
    assert main(["train", "classify", "--resume", str(out), "--max-steps", "2", "--no-progress"]) == 0
    assert ckpt.trainer_state(out)["step"] == 5
    p = unrolled.load(out)
    assert p.encode("The Old mill")[0].tolist() == p.vocab.encode(sw.pieces("the old mill")).tolist()
    ((label, _),) = p.predict(["the old mill"])
    assert label in ("0", "1") and base64.b64decode(p.export_meta()["sentencepiece"]) == sw.model
    assert main(["eval", str(out), "--data", str(data)]) == 0


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--tokens", "bpe", "--min-count", "2"], "--min-count apply to --tokens word"),
        (["--tokens", "word", "--vocab-size", "100"], "--vocab-size applies to --tokens bpe or unigram"),
        (["--tokens", "unigram", "--vocab-size", "3"], "--vocab-size 3 is too small"),
    ],
)
def test_bad_subword_flags_of_a_classifier_are_one_line_and_write_nothing(
    tmp_path, capsys, extra, says
) -> None:
    data = tmp_path / "moods.csv"
    data.write_text("label,text\n" + "".join(f"{k % 2},{t}\n" for k, t in enumerate(TEXT)), encoding="utf-8")
    out = tmp_path / "run"
    assert (
        main(["train", "classify", "--data", str(data), *extra, "--out", str(out), "--max-steps", "1"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and says in err, err
    assert not out.exists()
