"""The text classifier end to end: reading labelled files, splits, batches, models, CLI."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import unrolled
from unrolled import GRUCell, LSTMCell, Recurrent
from unrolled.cli import main
from unrolled.data import (
    PAD,
    UNK,
    ClassBatches,
    WordVocab,
    check_classes,
    pad_batch,
    read_labelled,
    split_indices,
    tokenize,
)
from unrolled.models import RecurrentClassifier, TextCNN
from unrolled.tasks import classify
from unrolled.training import checkpoint as ckpt
from unrolled.training.task import RESULTS

# Small original sentences (written for these tests): the label is the mood of the adjective.
_GOOD = ["lovely", "great", "charming", "bright", "gentle", "clever"]
_BAD = ["dull", "awful", "clumsy", "grim", "noisy", "tedious"]
_NOUNS = ["film", "story", "garden", "song", "dinner", "journey", "lecture"]


def _rows(n: int = 160, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        adj = rng.choice(_GOOD if label == "pos" else _BAD)
        noun = rng.choice(_NOUNS)
        filler = " ".join(rng.choice(_NOUNS) for _ in range(rng.randint(0, 6)))
        rows.append((label, f"the {noun} was {adj}, {filler} and we talked about it."))
    return rows


def _write_csv(path, rows, header=("label", "text"), delimiter=","):
    import csv

    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def labelled_csv(tmp_path):
    return _write_csv(tmp_path / "moods.csv", _rows())


# ---- reading ---------------------------------------------------------------------------------
def test_tokenize_lowercases_and_splits_punctuation() -> None:
    assert tokenize("It's a GREAT film, isn't it?") == ["it's", "a", "great", "film", ",", "isn't", "it", "?"]


def test_read_labelled_with_header_tsv_and_columns(tmp_path) -> None:
    rows = [("pos", "good day"), ("neg", "bad day")]
    data = read_labelled(_write_csv(tmp_path / "a.csv", rows))
    assert data.labels == ["pos", "neg"] and data.texts == ["good day", "bad day"]
    tsv = _write_csv(
        tmp_path / "a.tsv", [(t, lab) for lab, t in rows], header=("review", "mood"), delimiter="\t"
    )
    data = read_labelled(tsv, text_column="review", label_column="mood")
    assert data.labels == ["pos", "neg"] and data.texts == ["good day", "bad day"]
    no_header = _write_csv(tmp_path / "b.csv", rows * 2, header=None)
    assert read_labelled(no_header).labels == ["pos", "neg"] * 2  # (label, text) by default
    swapped = _write_csv(tmp_path / "c.csv", [(t, lab) for lab, t in rows], header=None)
    assert read_labelled(swapped, text_column="0", label_column="1").texts == ["good day", "bad day"]


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        ("label,text\npos,good\n", {"text_column": "review"}, "no text column 'review'"),
        ("mood,review\npos,good\nneg,bad\n", {}, "looks like a header"),
        ("label,text\npos,good\n,bad\n", {}, "row 3 of .* has an empty label"),
        ("label,text\npos,good\nneg,\n", {}, "row 3 of .* has an empty text"),
        ("label,text\npos\n", {}, "row 2 of .* has 1 field"),
        ("label,text\n", {}, "header row but no data rows"),
        ("\n\n", {}, "no rows"),
        ('label,text\npos,"good\nneg,bad\n', {}, "not valid CSV/TSV near line 3: unexpected end"),
    ],
)
def test_read_labelled_errors(tmp_path, content, kwargs, message) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_labelled(path, **kwargs)


def test_long_texts_are_read_whole(tmp_path) -> None:
    long = "word " * 60_000  # 300 KB in one field: above the csv module's default limit
    data = read_labelled(_write_csv(tmp_path / "long.csv", [("pos", long), ("neg", "short")]))
    assert data.texts == [long.strip(), "short"]


def test_single_class_and_empty_file_are_rejected(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"single class \('pos'\)"):
        check_classes(read_labelled(_write_csv(tmp_path / "one.csv", [("pos", "a"), ("pos", "b")])))
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_labelled(empty)


def test_split_is_stratified_disjoint_and_seeded() -> None:
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    val, test, train = split_indices(labels, [0.1, 0.2], seed=3)
    assert sorted(val + test + train) == list(range(100))
    assert [sum(labels[i] == c for i in val) for c in "abc"] == [5, 3, 2]
    assert [sum(labels[i] == c for i in test) for c in "abc"] == [10, 6, 4]
    assert split_indices(labels, [0.1, 0.2], seed=3) == (val, test, train)
    assert split_indices(labels, [0.1, 0.2], seed=4) != (val, test, train)
    tiny_val, tiny_train = split_indices(["a", "b", "a"], [0.1], seed=0)  # 0.1 of 3 rounds to 0: one row
    assert len(tiny_val) == 1 and len(tiny_train) == 2


def test_word_vocab_orders_by_frequency_and_maps_unknowns() -> None:
    v = WordVocab.from_tokens([["b", "a", "b"], ["c", "a", "b"]], min_count=2)
    assert v.tokens == ["<pad>", "<unk>", "b", "a"] and (PAD, UNK) == (0, 1)
    assert v.encode(["a", "zzz", "b"]).tolist() == [3, UNK, 2]
    assert WordVocab.from_json(json.loads(json.dumps(v.to_json()))).tokens == v.tokens
    assert len(WordVocab.from_tokens([["a", "b", "c"]], max_size=1)) == 3


def test_batches_cover_every_row_once_per_epoch_in_a_seeded_order() -> None:
    ids = [torch.arange(1, n + 2) for n in range(23)]  # lengths 1..23
    labels = torch.arange(23)
    batches = ClassBatches(ids, labels, batch_size=5, seed=1, pool=2)
    seen = []
    for (tokens, lengths), y in batches:
        assert tokens.shape == (len(y), int(lengths.max()))
        for row, n, label in zip(tokens, lengths, y, strict=True):
            assert torch.equal(row[:n], ids[label]) and (row[n:] == PAD).all()
        seen += y.tolist()
    assert sorted(seen) == list(range(23)) and len(batches) == 5
    first = [b.tolist() for _, b in batches]
    batches.set_epoch(1)
    assert [b.tolist() for _, b in batches] != first and len(batches) == 5
    batches.set_epoch(0)
    assert [b.tolist() for _, b in batches] == first


def test_scores_macro_f1_by_hand() -> None:
    y_true = torch.tensor([0, 0, 0, 1, 1, 2])
    y_pred = torch.tensor([0, 0, 1, 1, 2, 2])
    r = classify.scores(y_true, y_pred, 4)  # class 3 occurs nowhere: not averaged
    f1 = [2 * 2 / (2 * 2 + 0 + 1), 2 * 1 / (2 * 1 + 1 + 1), 2 * 1 / (2 * 1 + 1 + 0)]
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert r["confusion"][0] == [2, 1, 0, 0] and r["n"] == 6


# ---- models: the pads are never read ---------------------------------------------------------
def _models(V: int = 30, K: int = 3, E: int = 8):
    yield TextCNN(V, K, embedding_dim=E, widths=(2, 3), channels=5)
    for cell, bi in ((LSTMCell, True), (GRUCell, False)):
        for pool in ("max", "mean", "last"):
            rnn = Recurrent(lambda i, c=cell: c(i, 6), E, num_layers=2, bidirectional=bi, batch_first=True)
            yield RecurrentClassifier(V, K, rnn, embedding_dim=E, pool=pool)


@pytest.mark.parametrize("model", list(_models()), ids=lambda m: type(m).__name__ + getattr(m, "pool", ""))
def test_prediction_does_not_depend_on_the_padding(model) -> None:
    model.eval()
    texts = [torch.randint(2, 30, (n,)) for n in (1, 4, 9, 2)]
    together = model(*pad_batch(texts, model.min_len))
    for k, t in enumerate(texts):
        alone = model(*pad_batch([t], model.min_len))
        assert torch.allclose(together[k], alone[0], atol=1e-6), k
    tokens, lengths = pad_batch(texts, model.min_len)
    more_pads = torch.cat([tokens, torch.zeros(4, 7, dtype=torch.long)], dim=1)
    assert torch.allclose(model(more_pads, lengths), together, atol=1e-6)


def test_last_pool_is_the_state_after_each_texts_own_end() -> None:
    E = 8
    rnn = Recurrent(lambda i: LSTMCell(i, 6), E, bidirectional=True, batch_first=True)
    model = RecurrentClassifier(30, 2, rnn, embedding_dim=E, pool="last").eval()
    text = torch.randint(2, 30, (5,))
    out, _ = rnn(model.embed(text).unsqueeze(0))  # (1, 5, 12): forward at t=4, backward at t=0
    feats = torch.cat([out[0, -1, :6], out[0, 0, 6:]])
    assert torch.allclose(
        model(*pad_batch([text, torch.randint(2, 30, (9,))]))[0], model.out(feats), atol=1e-6
    )


# ---- the task on the command line ------------------------------------------------------------
SMALL = ["--embedding-dim", "16", "--hidden", "12", "--channels", "8", "--batch-size", "16", "--no-progress"]


def _train(data, out, *extra):
    return main(["train", "classify", "--data", str(data), "--out", str(out), *SMALL, *extra])


@pytest.mark.parametrize("arch", [a for a in classify.ARCHS if a != "lm"])  # lm: test_transfer.py
def test_every_arch_trains_a_few_steps_and_predicts(arch, labelled_csv, tmp_path, capsys) -> None:
    out = tmp_path / arch
    assert _train(labelled_csv, out, "--arch", arch, "--max-steps", "6", "--eval-every", "3") == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [".lock", ckpt.CONFIG, ckpt.VOCAB, classify.LABELS, ckpt.POINTER, ckpt.CHECKPOINTS, ckpt.METRICS]
        + [RESULTS]
    )
    results = json.loads((out / RESULTS).read_text())
    assert results["classes"] == ["neg", "pos"] and results["test"]["n"] == 16 and results["val"]["n"] == 16
    assert 0.0 <= results["test"]["accuracy"] <= 1.0
    printed = capsys.readouterr().out
    assert f"test: accuracy {results['test']['accuracy']:.4f}" in printed
    assert main(["predict", str(out), "--text", "the song was lovely", "--text", "a grim dinner"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line in lines:
        label, prob = line.split("\t")
        assert label in ("neg", "pos") and 0.5 <= float(prob) <= 1.0


def test_training_learns_the_moods_and_predict_agrees(labelled_csv, tmp_path, capsys) -> None:
    out = tmp_path / "cnn"
    assert _train(labelled_csv, out, "--max-epochs", "20", "--eval-every", "40", "--lr", "3e-3") == 0
    results = json.loads((out / RESULTS).read_text())
    assert results["test"]["accuracy"] >= 0.9 and results["val"]["accuracy"] >= 0.9
    capsys.readouterr()
    texts = tmp_path / "texts.txt"
    texts.write_text("the garden was charming\nthe lecture was tedious\n", encoding="utf-8")
    assert main(["predict", str(out), "--file", str(texts), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in records] == ["pos", "neg"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-6 for r in records)
    # the command's numbers are the predictor's
    classifier = unrolled.load(out)
    assert classifier.labels == ["neg", "pos"] and classifier.task == "classify"
    probs = classifier.predict_proba(["the garden was charming", "the lecture was tedious"])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    for r, row in zip(records, probs, strict=True):
        assert [r["probabilities"][c] for c in classifier.labels] == row.tolist()
        assert r["probability"] == row.max()
    assert classifier.predict(["the garden was charming"]) == [("pos", pytest.approx(probs[0, 1], abs=1e-6))]
    assert classifier.predict("the lecture was tedious") == [("neg", pytest.approx(probs[1, 0], abs=1e-6))]


def test_predictor_reads_texts_as_training_did(labelled_csv, tmp_path) -> None:
    out = tmp_path / "run"
    assert _train(labelled_csv, out, "--arch", "gru", "--max-steps", "2", "--max-tokens", "4") == 0
    classifier = unrolled.load(out)
    assert classifier.predict_proba([]).shape == (0, 2) and classifier.predict([]) == []
    alone = classifier.predict_proba(["the song was lovely"])
    batch = classifier.predict_proba(["a grim dinner", "THE SONG WAS LOVELY!", "the song was lovely too"])
    # lower-cased, cut to --max-tokens 4: all three spellings are the same four tokens
    assert np.allclose(batch[1:], alone, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="text 2 has no words to classify: '  '"):
        classifier.predict(["good", "  "])
    with pytest.raises(TypeError, match="text 1 is a list"):
        classifier.predict([["the", "song"]])
    with pytest.raises(AttributeError, match=r"a classify run has no \.tag\(\): its verbs are \.predict\(\)"):
        classifier.tag(["the song"])


# ---- export: one graph over a batch, run by onnxruntime with the sidecar alone ---------------------
def _consumer_inputs(meta: dict, texts: list[str]) -> dict[str, np.ndarray]:
    """The graph's inputs made from the sidecar alone, as its "tokenizer" line says (no unrolled)."""
    import re

    index = {w: i for i, w in enumerate(meta["vocab"]["tokens"])}
    words = [re.findall(meta["token_pattern"], t.lower())[: meta["max_tokens"]] for t in texts]
    rows = [[index.get(w, meta["unk_id"]) for w in ws] for ws in words]
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    tokens = np.full((len(rows), lengths.max()), meta["pad_id"], dtype=np.int64)
    for b, r in enumerate(rows):
        tokens[b, : len(r)] = r
    return {"tokens": tokens, "lengths": lengths}


@pytest.mark.parametrize("arch", ["cnn", "bilstm"])
def test_export_runs_in_onnxruntime_as_the_predictor(arch, labelled_csv, tmp_path, capsys) -> None:
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "run"
    assert _train(labelled_csv, out, "--arch", arch, "--max-steps", "4", "--max-tokens", "6") == 0
    classifier = unrolled.load(out)
    capsys.readouterr()
    assert main(["export", str(out), "--out", str(tmp_path / "c.onnx"), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta == json.loads((tmp_path / "c.onnx.json").read_text(encoding="utf-8"))
    assert meta["labels"] == classifier.labels and meta["vocab"] == classifier.vocab.to_json()
    assert meta["pad_id"] == PAD and meta["max_tokens"] == 6 and "lower-case" in meta["tokenizer"]
    graph = meta["graphs"]["classifier"]
    assert [i["shape"] for i in graph["inputs"]] == [["batch", "time"], ["batch"]]
    assert [o["name"] for o in graph["outputs"]] == ["logits", "probabilities"]
    # a batch of any size and length: one word (narrower than the CNN's widest kernel, 5), a text
    # cut to --max-tokens, a word never seen in training, punctuation and capitals
    texts = ["Lovely!", "the dinner was grim, the song was dull and the garden noisy", "a zyxwv film"]
    session = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    for batch in (texts, texts[:1]):
        logits, probs = session.run(None, _consumer_inputs(meta, batch))
        expected = classifier.predict_proba(batch)
        assert probs.shape == logits.shape == (len(batch), 2)
        np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5)
        labels = [label for label, _ in classifier.predict(batch)]
        assert [meta["labels"][k] for k in probs.argmax(1)] == labels


def test_resume_continues_the_run(labelled_csv, tmp_path) -> None:
    out = tmp_path / "run"
    assert _train(labelled_csv, out, "--arch", "gru", "--max-steps", "4", "--eval-every", "2") == 0
    assert main(["train", "classify", "--resume", str(out), "--max-steps", "3", "--no-progress"]) == 0
    assert ckpt.trainer_state(out)["step"] == 7


def test_separate_test_file(labelled_csv, tmp_path) -> None:
    test = _write_csv(tmp_path / "test.csv", _rows(20, seed=9))
    out = tmp_path / "run"
    assert _train(labelled_csv, out, "--test-data", str(test), "--max-steps", "2") == 0
    results = json.loads((out / RESULTS).read_text())
    assert (
        results["test"]["n"] == 20
        and json.loads((out / ckpt.CONFIG).read_text())["info"]["rows"]["train"] == 144
    )


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("label,text\npos,good\nneg,bad\n", ["--text-column", "review"], "no text column 'review'"),
        ("label,text\npos,good\n,bad\n", [], "empty label"),
        ("label,text\npos,good\npos,bad\n", [], "single class"),
        ("", [], "empty"),
        ("label,text\npos,good\nneg,bad\n", ["--arch", "tcn"], "invalid choice"),
        ("label,text\npos,good\nneg,bad\n", ["--widths", "3,x"], "positive integers"),
    ],
)
def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys, content, extra, message) -> None:
    data = tmp_path / "data.csv"
    data.write_text(content, encoding="utf-8")
    out = tmp_path / "run"
    try:
        code = _train(data, out, "--max-steps", "1", *extra)
    except SystemExit as e:  # argparse's own errors exit from within parse_args
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_predict_errors(labelled_csv, tmp_path, capsys, tiny_text_file) -> None:
    out = tmp_path / "run"
    assert _train(labelled_csv, out, "--max-steps", "1") == 0
    capsys.readouterr()
    blank = tmp_path / "blank.txt"
    blank.write_text("good\n\nbad\n", encoding="utf-8")
    for argv, message in [
        (["predict", str(out)], "--text TEXT"),
        (["predict", str(out), "--text", "a", "--file", str(blank)], "not both"),
        (["predict", str(out), "--file", str(blank)], "line 2"),
        (["predict", str(out), "--text", "   "], "no words"),
        (["predict", str(tmp_path / "nope"), "--text", "a"], "not a run directory"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_eval_scores_a_labelled_file_and_matches_results(
    labelled_csv, tmp_path, capsys, tiny_text_file
) -> None:
    out = tmp_path / "run"
    test = _write_csv(tmp_path / "test.csv", _rows(30, seed=5))
    assert _train(labelled_csv, out, "--test-data", str(test), "--max-steps", "3") == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(test), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    results = json.loads((out / RESULTS).read_text())["test"]
    assert scored["n"] == 30 and scored["accuracy"] == results["accuracy"]
    assert scored["loss"] == pytest.approx(results["loss"]) and scored["confusion"] == results["confusion"]
    other = _write_csv(tmp_path / "other.csv", [("pos", "good"), ("meh", "so so"), ("neg", "bad")])
    for argv, message in [
        (["eval", str(out), "--data", str(other)], "'meh'"),
        (["eval", str(out), "--text", str(tiny_text_file)], "give --data FILE"),
    ]:
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_patience_stops_after_validations_without_a_new_best(labelled_csv, tmp_path) -> None:
    out = tmp_path / "run"
    # a learning rate this large diverges at once: the best validation loss is the first one (the
    # bound that would stop such a run as diverged is lifted: patience is what is tested here)
    bad = ["--lr", "30", "--diverge-factor", "1e12"]
    assert _train(labelled_csv, out, *bad, "--eval-every", "2", "--patience", "2", "--max-steps", "40") == 0
    state = ckpt.trainer_state(out)
    vals = [json.loads(line) for line in (out / ckpt.METRICS).read_text().splitlines() if '"val"' in line]
    assert state["step"] == state["best_step"] + 4 < 40  # stopped 2 validations (of 2 steps) after the best
    assert not any(v["best"] for v in vals[-2:])
    # resumed after its patience ran out, the run takes no further step (a kill after the last
    # validation, before the process ended, would otherwise train one step more than an unbroken run)
    assert main(["train", "classify", "--resume", str(out), "--max-steps", "10", "--no-progress"]) == 0
    assert ckpt.trainer_state(out)["step"] == state["step"]


@pytest.mark.parametrize("select", ["accuracy", "loss"])
def test_the_best_weights_are_those_of_the_selected_figure(select, labelled_csv, tmp_path) -> None:
    out = tmp_path / select
    argv = ["--max-steps", "40", "--eval-every", "2", "--patience", "100", "--select", select]
    assert _train(labelled_csv, out, *argv) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in records if r["kind"] == "val"]
    if select == "accuracy":  # the highest accuracy; of equals, the lowest loss; of those, the first
        best = min(vals, key=lambda r: (-r["val_accuracy"], r["val_loss"], r["step"]))
    else:
        best = min(vals, key=lambda r: (r["val_loss"], r["step"]))
    assert ckpt.trainer_state(out)["best_step"] == best["step"]
    assert [r["step"] for r in vals if r["best"]][-1] == best["step"]
    if select == "accuracy":  # the tie-break decided: the first of the most accurate is not the best
        first = next(r for r in vals if r["val_accuracy"] == best["val_accuracy"])
        assert first["step"] != best["step"]
