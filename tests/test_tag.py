"""Sequence tagging: the three formats, the CRF against brute force, padding, characters for
unseen words, the baseline and metrics, the commands, resume and every bad input."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest
import torch
from conftest import doc_function

import unrolled
from unrolled.cli import main
from unrolled.data.tagged import guess_format, read_tagged, split_slash
from unrolled.layers.crf import LinearChainCRF
from unrolled.metrics.tagging import scores, wilson
from unrolled.tasks.base import RecurrentConfig
from unrolled.tasks.tag import MostFrequentTag, Sentence, tokenize

SMALL = ["--hidden", "16", "--embedding-dim", "16", "--batch-size", "8", "--no-progress"]


# ---- formats ------------------------------------------------------------------------------------
def test_slash_format_splits_at_the_last_slash(tmp_path) -> None:
    assert split_slash("1/2/CD") == ("1/2", "CD")
    assert split_slash(",/,") == (",", ",") and split_slash("//:") == ("/", ":")
    assert split_slash("and/or/CC") == ("and/or", "CC")
    path = tmp_path / "s.txt"
    path.write_text(
        "The/DT dog/NN ate/VBD 1/2/CD of/IN it/PRP ./.\n\nA/DT cat/NN ,/, too/RB !/.\n", encoding="utf-8"
    )
    sentences = read_tagged(path, "slash").sentences
    assert [s.words for s in sentences] == [
        ["The", "dog", "ate", "1/2", "of", "it", "."],
        ["A", "cat", ",", "too", "!"],
    ]
    assert sentences[1].tags == ["DT", "NN", ",", "RB", "."]
    path.write_text("The/DT dog/NN\nran fast/RB\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2 of .*: the token 'ran' has no tag"):
        read_tagged(path, "slash")
    path.write_text("The/DT dog/\n", encoding="utf-8")
    with pytest.raises(ValueError, match="the token 'dog/' has no tag"):
        read_tagged(path, "slash")


CONLLU = """# sent_id = 1
# text = Je vais du marché.
1	Je	je	PRON	PRP	_	2	nsubj	_	_
2	vais	aller	VERB	VBP	_	0	root	_	_
3-4	du	_	_	_	_	_	_	_	_
3	de	de	ADP	IN	_	5	case	_	_
4	le	le	DET	DT	_	5	det	_	_
5	marché	marché	NOUN	NN	_	2	obl	_	SpaceAfter=No
6	.	.	PUNCT	.	_	2	punct	_	_

# sent_id = 2
1	Oui	oui	INTJ	UH	_	0	root	_	_
1.1	dit	dire	VERB	VBD	_	_	_	0:root	_
2	!	!	PUNCT	.	_	1	punct	_	_

"""


def test_conllu_through_the_conllu_package(tmp_path) -> None:
    path = tmp_path / "fr.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    assert guess_format(path) == "conllu"
    first, second = read_tagged(path, "conllu").sentences
    assert first.words == ["Je", "vais", "de", "le", "marché", "."]  # the range 3-4 left out, its words kept
    assert first.tags == ["PRON", "VERB", "ADP", "DET", "NOUN", "PUNCT"]
    assert second.words == ["Oui", "!"]  # the empty node 1.1 left out
    assert read_tagged(path, "conllu", "xpos").sentences[0].tags == ["PRP", "VBP", "IN", "DT", "NN", "."]
    path.write_text(CONLLU.replace("2\tvais\taller", "2\tvais aller"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 4 of .* is not CoNLL-U: expected 10 tab-separated fields"):
        read_tagged(path, "conllu")


def test_an_empty_conllu_sentence_is_named(tmp_path) -> None:
    path = tmp_path / "empty.conllu"
    path.write_text(CONLLU + "# sent_id = 3\n1-2\tdu\t_\t_\t_\t_\t_\t_\t_\t_\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"sentence 3 of .* is empty"):
        read_tagged(path, "conllu")


def test_two_column_conll(tmp_path) -> None:
    path = tmp_path / "t.conll"
    path.write_text("The\tDT\ndog\tNN\n\n\nIt\tPRP\nran\tVBD\textra\n", encoding="utf-8")
    assert guess_format(path) == "conll"
    sentences = read_tagged(path, "conll").sentences
    assert [s.words for s in sentences] == [["The", "dog"], ["It", "ran"]] and sentences[1].tags == [
        "PRP",
        "VBD",
    ]
    path.write_text("The\tDT\ndog\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2 of .*: expected word<TAB>tag, got 'dog'"):
        read_tagged(path, "conll")


def test_tokenize_keeps_abbreviations_and_splits_punctuation() -> None:
    assert tokenize("Mr. Smith's well-known dog, in the U.S., ate 3.5 apples.") == [
        "Mr.", "Smith's", "well-known", "dog", ",", "in", "the", "U.S.", ",", "ate", "3.5", "apples", ".",
    ]  # fmt: skip
    assert tokenize("He met Dr. Who.") == ["He", "met", "Dr.", "Who", "."]  # the last period ends the text


# ---- the CRF ----------------------------------------------------------------------------------
def _crf(K: int = 3) -> LinearChainCRF:
    torch.manual_seed(0)
    crf = LinearChainCRF(K).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5])
def test_crf_partition_and_viterbi_equal_brute_force(T: int) -> None:
    crf, K = _crf(), 3
    g = torch.Generator().manual_seed(T)
    emissions = torch.randn(1, T, K, generator=g, dtype=torch.float64)
    mask = torch.ones(1, T, dtype=torch.bool)
    with torch.no_grad():
        every = {
            y: float(crf.score(emissions, torch.tensor([y]), mask))
            for y in itertools.product(range(K), repeat=T)
        }
    brute = torch.logsumexp(torch.tensor(list(every.values()), dtype=torch.float64), 0)
    torch.testing.assert_close(crf.log_partition(emissions, mask)[0].detach(), brute, rtol=0, atol=1e-12)
    assert tuple(crf.decode(emissions, mask)[0].tolist()) == max(every, key=every.get)


def test_crf_on_a_padded_batch_equals_each_sentence_alone() -> None:
    crf, K = _crf(), 3
    g = torch.Generator().manual_seed(7)
    alone = [torch.randn(1, T, K, generator=g, dtype=torch.float64) for T in (2, 5, 1, 4)]
    batch = torch.randn(4, 5, K, generator=g, dtype=torch.float64)  # random scores on the pads too
    mask = torch.zeros(4, 5, dtype=torch.bool)
    for i, e in enumerate(alone):
        batch[i, : e.size(1)] = e[0]
        mask[i, : e.size(1)] = True
    tags = torch.randint(0, K, (4, 5), generator=g)
    for i, e in enumerate(alone):
        m = torch.ones(1, e.size(1), dtype=torch.bool)
        torch.testing.assert_close(crf.log_partition(batch, mask)[i], crf.log_partition(e, m)[0])
        torch.testing.assert_close(
            crf.score(batch, tags, mask)[i], crf.score(e, tags[i : i + 1, : e.size(1)], m)[0]
        )
        assert crf.decode(batch, mask)[i, : e.size(1)].tolist() == crf.decode(e, m)[0].tolist()


# ---- the model -------------------------------------------------------------------------------------
def _tagger(decoder: str, char_encoder: str = "lstm"):
    from unrolled.models.tagger import Tagger

    torch.manual_seed(0)
    rnn = RecurrentConfig(cell="lstm", hidden=8, layers=1).build_recurrent(
        12 + (0 if char_encoder == "none" else 50), bidirectional=True
    )
    return Tagger(30, 20, 5, rnn, 12, char_encoder, decoder).eval()


@pytest.mark.parametrize("decoder, chars", [("softmax", "lstm"), ("crf", "cnn"), ("crf", "none")])
def test_padding_never_changes_a_sentences_tags(decoder: str, chars: str) -> None:
    from unrolled.data.tagged import EncodedSentence, pad_sentences

    model = _tagger(decoder, chars)
    g = torch.Generator().manual_seed(0)

    def sentence(n: int) -> EncodedSentence:
        words = torch.randint(2, 30, (n,), generator=g)
        chars_ = [
            torch.randint(2, 20, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g)
            for _ in range(n)
        ]
        return EncodedSentence(words, chars_, torch.zeros(n, dtype=torch.long))

    sentences = [sentence(n) for n in (3, 9, 1, 6)]
    (words, chars_, lengths), _ = pad_sentences(sentences)
    batch = model.decode(model(words, chars_, lengths), lengths)
    emissions = model(words, chars_, lengths)
    for i, s in enumerate(sentences):
        (w, c, n), _ = pad_sentences([s])
        alone = model(w, c, n)
        torch.testing.assert_close(emissions[i, : s.words.numel()], alone[0], atol=1e-5, rtol=1e-5)
        assert batch[i, : s.words.numel()].tolist() == model.decode(alone, n)[0].tolist()


def _suffix_corpus(n: int, seed: int) -> list[str]:
    """Sentences of made-up words whose tag only their suffix tells: -ly ADV, -ing VERB, -ous ADJ."""
    rng = random.Random(seed)
    stems = [
        "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(2)) for _ in range(400)
    ]
    suffix = {"ADV": "ly", "VERB": "ing", "ADJ": "ous"}
    lines = []
    for _ in range(n):
        tokens = []
        for _ in range(rng.randint(3, 7)):
            tag = rng.choice(list(suffix))
            tokens.append(f"{rng.choice(stems)}{suffix[tag]}/{tag}")
        lines.append(" ".join(tokens))
    return lines


def test_an_unseen_word_gets_its_tag_from_its_characters(tmp_path, capsys) -> None:
    (tmp_path / "toy.txt").write_text("\n".join(_suffix_corpus(300, 0)) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "toy.txt"), *SMALL, "--max-steps", "150", "--eval-every", "50"]
    assert main(["train", "tag", *args, "--out", str(out)]) == 0
    capsys.readouterr()
    words = ["zuxoqily", "wyjopaing", "qexurous"]  # letters never in a training stem
    assert main(["tag", str(out), "--text", " ".join(words)]) == 0
    assert capsys.readouterr().out.split() == ["zuxoqily/ADV", "wyjopaing/VERB", "qexurous/ADJ"]
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["model"]["oov_accuracy"] > 0.95
    assert results["test"]["baseline"]["oov_accuracy"] < 0.5  # one tag for every unseen word


# ---- baseline and metrics ------------------------------------------------------------------------------
def test_baseline_and_scores_by_hand() -> None:
    train = [Sentence(["the", "dog", "runs"], ["DT", "NN", "VBZ"]), Sentence(["the", "runs"], ["DT", "NNS"]),
             Sentence(["a", "runs"], ["DT", "NNS"])]  # fmt: skip
    base = MostFrequentTag(train, lower=False)
    assert base.tag(["the", "runs", "cat"]) == ["DT", "NNS", "DT"]  # unseen: the most frequent tag
    gold = [Sentence(["the", "cat", "runs"], ["DT", "NN", "VBZ"])]
    s = scores(gold, [["DT", "DT", "NNS"]], known={"the", "runs"}, lower=False)
    assert s["accuracy"] == pytest.approx(1 / 3) and s["oov_accuracy"] == 0.0 and s["oov_tokens"] == 1
    assert s["per_tag"]["DT"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert s["per_tag"]["NN"]["recall"] == 0.0 and s["per_tag"]["NNS"]["precision"] == 0.0
    assert {(c["gold"], c["predicted"]) for c in s["confusions"]} == {("NN", "DT"), ("VBZ", "NNS")}
    lo, hi = wilson(90, 100)
    assert lo == pytest.approx(0.8256, abs=1e-4) and hi == pytest.approx(0.9448, abs=1e-4)


# ---- commands, resume, bad input -------------------------------------------------------------------------
def test_train_eval_resume_and_conll_output(tmp_path, capsys) -> None:
    (tmp_path / "toy.txt").write_text("\n".join(_suffix_corpus(120, 1)) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "toy.txt"), *SMALL, "--decoder", "crf", "--char-encoder", "cnn"]
    assert main(["train", "tag", *args, "--max-steps", "10", "--out", str(out)]) == 0
    assert "test model" in capsys.readouterr().out
    assert main(["train", "tag", "--resume", str(out), "--max-steps", "5", "--no-progress"]) == 0
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 15
    capsys.readouterr()
    more = _suffix_corpus(5, 2) + ["bakoly/ADV fuzzy/NEW"]  # a tag training never saw: an error, said
    (tmp_path / "more.txt").write_text("\n".join(more) + "\n", encoding="utf-8")
    assert main(["eval", str(out), "--data", str(tmp_path / "more.txt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens_with_unseen_tags"] == 1 and result["tokens"] > 1
    assert result["per_tag"]["NEW"]["recall"] == 0.0
    assert main(["tag", str(out), "--text", "bakoly", "--format", "conll"]) == 0
    assert capsys.readouterr().out.split("\t")[0] == "bakoly"


def test_bad_input(tmp_path, capsys) -> None:
    good = tmp_path / "toy.txt"
    good.write_text("\n".join(_suffix_corpus(40, 3)) + "\n", encoding="utf-8")
    test_file = tmp_path / "test.txt"
    test_file.write_text("bakoly/X zizing/NOUN\n", encoding="utf-8")
    few = tmp_path / "few.txt"
    few.write_text("a/DT b/NN\n", encoding="utf-8")
    cases = [
        (["--data", str(test_file), "--test-data", str(test_file)], "fewer than one batch"),
        (
            ["--data", str(good), "--test-data", str(test_file)],
            "2 of the 2 tokens of the test part carry tags that training never saw ('NOUN', 'X')",
        ),
        (["--data", str(few)], "fewer than one batch"),
        (["--data", str(tmp_path / "none.txt")], "text file not found"),
    ]
    for extra, message in cases:
        assert main(["train", "tag", *SMALL, *extra, "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "run").exists()
    (tmp_path / "lm.txt").write_text("abc abc abc\n" * 300, encoding="utf-8")
    lm = [
        "train",
        "charlm",
        "--text",
        str(tmp_path / "lm.txt"),
        "--hidden",
        "8",
        "--layers",
        "1",
        "--seq-len",
        "8",
    ]
    assert (
        main([*lm, "--batch-size", "4", "--max-steps", "1", "--no-progress", "--out", str(tmp_path / "lm")])
        == 0
    )
    capsys.readouterr()
    assert main(["tag", str(tmp_path / "lm"), "--text", "a b"]) == 2
    assert "config.json is not that of a tag run" in capsys.readouterr().err
    assert main(["tag", str(tmp_path / "lm"), "--text", "  "]) == 2
    assert "has no words to tag" in capsys.readouterr().err


# ---- the predictor, and the emission network in onnxruntime ------------------------------------------
def test_predictor_tags_strings_and_word_lists_as_the_command_does(tmp_path, capsys) -> None:
    (tmp_path / "toy.txt").write_text("\n".join(_suffix_corpus(60, 4)) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "tag",
                "--data",
                str(tmp_path / "toy.txt"),
                *SMALL,
                "--max-steps",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    tagger = unrolled.load(out)
    assert tagger.task == "tag" and sorted(tagger.tags) == ["ADJ", "ADV", "VERB"]
    text = "Mr. Smith saw the U.S. fleet, didn't he?"
    [pairs] = tagger.tag([text])
    assert (
        [w for w, _ in pairs]
        == tokenize(text)
        == ["Mr.", "Smith", "saw", "the", "U.S.", "fleet", ",", "didn't", "he", "?"]
    )
    assert all(t in tagger.tags for _, t in pairs)
    assert tagger.tag(text) == [pairs]  # a single str is one sentence
    assert tagger.tag([tokenize(text), "bakoly"]) == [pairs, tagger.tag(["bakoly"])[0]]
    assert tagger.tag([]) == []
    capsys.readouterr()
    assert main(["tag", str(out), "--text", text]) == 0
    assert capsys.readouterr().out.strip() == " ".join(f"{w}/{t}" for w, t in pairs)
    with pytest.raises(ValueError, match="sentence 2 has no words to tag"):
        tagger.tag(["a b", " "])
    with pytest.raises(ValueError, match="sentence 1 has an empty word"):
        tagger.tag([["a", ""]])
    with pytest.raises(TypeError, match="sentence 1 must be a str or a list of str, got int"):
        tagger.tag([3])


viterbi = doc_function("python_api.md", "viterbi")  # the numpy Viterbi of the docs, as it stands there


def _tagger_inputs(meta: dict, sentences: list[list[str]]) -> dict[str, np.ndarray]:
    """The graph's inputs from the sidecar alone (no unrolled): word ids, character ids, lengths."""
    words = {w: i for i, w in enumerate(meta["vocab"]["tokens"])}
    B, T = len(sentences), max(len(s) for s in sentences)
    ids = np.zeros((B, T), dtype=np.int64)  # <pad> is 0
    for b, s in enumerate(sentences):
        ids[b, : len(s)] = [words.get(w.lower() if meta["lower"] else w, meta["unk_id"]) for w in s]
    inputs = {"words": ids, "lengths": np.array([len(s) for s in sentences], dtype=np.int64)}
    if meta["chars"] is not None:
        chars = {c: i for i, c in enumerate(meta["chars"]["tokens"])}
        W = max(len(w) for s in sentences for w in s)
        inputs["chars"] = np.zeros((B, T, W), dtype=np.int64)
        for b, s in enumerate(sentences):
            for t, w in enumerate(s):
                inputs["chars"][b, t, : len(w)] = [chars.get(c, meta["unk_id"]) for c in w]
    return inputs


@pytest.mark.parametrize("decoder, chars", [("crf", "lstm"), ("softmax", "none")])
def test_exported_emissions_decode_to_the_predictors_tags(tmp_path, capsys, decoder, chars) -> None:
    ort = pytest.importorskip("onnxruntime")
    (tmp_path / "toy.txt").write_text("\n".join(_suffix_corpus(60, 5)) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "toy.txt"), *SMALL, "--decoder", decoder, "--char-encoder", chars]
    assert main(["train", "tag", *args, "--max-steps", "3", "--out", str(out)]) == 0
    tagger = unrolled.load(out)
    model = tagger.model
    with torch.no_grad():  # far from 3 steps' weights: tags that vary, transitions that matter
        g = torch.Generator().manual_seed(0)
        for p in [model.out.weight, *(model.crf.parameters() if model.crf is not None else [])]:
            p.copy_(torch.randn(p.shape, generator=g) * 4)
        model.out.bias.zero_()
    meta = tagger.export(tmp_path / "tagger.onnx")
    assert meta == json.loads((tmp_path / "tagger.onnx.json").read_text(encoding="utf-8"))
    assert meta["tags"] == tagger.tags and meta["decoder"] == decoder and meta["pad_id"] == 0
    names = [i["name"] for i in meta["graphs"]["tagger"]["inputs"]]
    assert names == (["words", "chars", "lengths"] if chars != "none" else ["words", "lengths"])
    seen = " ".join(meta["vocab"]["tokens"][2:8])  # words of the training part
    text = [f"zuxoqily {seen} qexurous", "Mr. Smith, the U.S. well-known fuzzing!", "qexurous"]
    sentences = [tokenize(t) for t in text]
    session = ort.InferenceSession(str(tmp_path / "tagger.onnx"), providers=["CPUExecutionProvider"])
    (emissions,) = session.run(None, _tagger_inputs(meta, sentences))
    assert emissions.shape == (3, max(map(len, sentences)), len(meta["tags"]))
    predicted = tagger.tag(text)
    assert len({t for pairs in predicted for _, t in pairs}) > 1
    differs = False  # a CRF's Viterbi path is not each word's likeliest tag everywhere
    for b, pairs in enumerate(predicted):
        rows = emissions[b, : len(sentences[b])]
        if decoder == "crf":
            crf = {k: np.array(v) for k, v in meta["crf"].items()}
            ids = viterbi(rows, crf["transitions"], crf["start"], crf["end"])
            differs |= ids != rows.argmax(axis=1).tolist()
        else:
            ids = rows.argmax(axis=1).tolist()
        assert [meta["tags"][k] for k in ids] == [t for _, t in pairs]
    assert differs == (decoder == "crf")
