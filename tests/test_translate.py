"""Translation end to end: pairs, the encoder-decoder, masked loss, decoding, BLEU, the CLI."""

from __future__ import annotations

import itertools
import json
import math
import random
import re

import numpy as np
import pytest
import torch
from conftest import doc_function

from unrolled.cli import main
from unrolled.data import PAD, pad_batch
from unrolled.data.numbers import number_splits
from unrolled.data.pairs import PairBatches, char_tokens, read_pairs, word_tokens
from unrolled.layers.attention import AdditiveAttention, GeneralAttention
from unrolled.metrics import corpus_scores, sentence_bleu
from unrolled.models.decoding import beam_search, greedy, length_penalty
from unrolled.tasks import translate
from unrolled.training import checkpoint as ckpt

TINY = ["--train-numbers", "300", "--held-out", "20", "--hidden", "32", "--embedding-dim", "16"]

# A made-up toy language (written for these tests): each word has its own translation and the
# target reverses the order, so the model must read the whole source first.
_WORDS = {"red": "rot", "blue": "blau", "cat": "katze", "dog": "hund", "runs": "rennt", "sleeps": "schlaeft"}


def _toy_pairs(n: int = 120, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(list(_WORDS)) for _ in range(rng.randint(1, 5))]
        rows.append((" ".join(words) + " .", " ".join(_WORDS[w] for w in reversed(words)) + " ."))
    return rows


@pytest.fixture
def toy_tsv(tmp_path):
    path = tmp_path / "toy.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in _toy_pairs()), encoding="utf-8")
    return path


def _model(attention: str, bidirectional: bool = False, cell: str = "gru", layers: int = 1):
    cfg = translate.ModelConfig(
        cell=cell, hidden=12, layers=layers, embedding_dim=6, attention=attention, bidirectional=bidirectional
    )
    torch.manual_seed(0)
    return translate.build_model(cfg, 11, 9).eval()


def _sources(n: int = 7, vocab: int = 11, eos: int = 3, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(1, 6, (1,), generator=g))
        rows.append(torch.cat([torch.randint(4, vocab, (length,), generator=g), torch.tensor([eos])]))
    return rows


# ---- data ----------------------------------------------------------------------------------
def test_word_and_char_tokens() -> None:
    assert word_tokens("Il a dit : « Quatre-vingt-dix ! »") == [
        "il",
        "a",
        "dit",
        ":",
        "«",
        "quatre-vingt-dix",
        "!",
        "»",
    ]
    assert word_tokens("I'm home.", keep_case=True) == ["I'm", "home", "."]
    assert word_tokens("...") == [".", ".", "."]
    assert char_tokens(" Va\t! ") == ["v", "a", " ", "!"]


def test_read_pairs_tsv_csv_and_columns(tmp_path) -> None:
    tsv = tmp_path / "p.tsv"
    tsv.write_text("go .\tva !\tCC-BY attribution\n\ni lost .\tj'ai perdu .\n", encoding="utf-8")
    p = read_pairs(tsv)
    assert (p.sources, p.targets) == (["go .", "i lost ."], ["va !", "j'ai perdu ."])
    csv = tmp_path / "p.csv"
    csv.write_text('id,fr,en\n1,"va, vite !",go\n2,salut,hi\n', encoding="utf-8")
    p = read_pairs(csv, source_column="en", target_column="fr")
    assert (p.sources, p.targets) == (["go", "hi"], ["va, vite !", "salut"])
    swapped = read_pairs(tsv, source_column="1", target_column="0")
    assert swapped.sources == ["va !", "j'ai perdu ."]
    headed = tmp_path / "h.tsv"
    headed.write_text("Source\tTarget\ngo .\tva !\n", encoding="utf-8")
    assert read_pairs(headed).sources == ["go ."]


def test_char_tokens_train_and_translate(toy_tsv, tmp_path) -> None:
    cfg = translate.TranslateConfig()
    cfg.data.data, cfg.data.tokens, cfg.data.batch_size = str(toy_tsv), "char", 8
    cfg.model.hidden, cfg.model.embedding_dim = 16, 8
    run, _, results = translate.train(cfg, tmp_path / "run", loop_overrides={"max_steps": 3})
    assert run.src_vocab.id(" ") > 3 and results["val"]["pairs"] == 6
    (t,) = translate.translate(run, ["Red cat."], max_len=12)
    assert t.source_tokens == list("red cat.") and t.translation == "".join(t.output_tokens)


@pytest.mark.parametrize(
    "content, message",
    [
        ("go .\tva !\nno tab here\n", "line 2 of"),
        ("go .\tva !\n\t salut\n", "line 2 of .* empty source"),
        ("go .\tva !\nhi .\t \n", "line 2 of .* empty target"),
    ],
)
def test_read_pairs_errors_name_the_line(tmp_path, content, message) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_pairs(path)


def test_number_splits_are_disjoint_and_fixed() -> None:
    train, val, test = number_splits(500, 50, 50)
    assert not set(train.sources) & set(test.sources) and not set(train.sources) & set(val.sources)
    assert number_splits(500, 50, 50)[2].targets == test.targets
    assert "mille" in " ".join(train.targets)


def test_max_len_drops_or_truncates_and_says_how_many(toy_tsv) -> None:
    cfg = translate.DataConfig(data=str(toy_tsv), max_len=3, batch_size=4)
    dropped = translate.load_data(cfg, seed=0)
    cfg.truncate = True
    cut = translate.load_data(cfg, seed=0)
    assert dropped.info["long_pairs"]["dropped"] > 0 and dropped.info["long_pairs"]["truncated"] == 0
    assert cut.info["long_pairs"]["truncated"] == dropped.info["long_pairs"]["dropped"]
    assert max(len(t) for t in dropped.train.tgt) <= 3 and max(len(t) for t in cut.train.tgt) <= 3
    assert len(cut.train) == len(dropped.train) + dropped.info["long_pairs"]["dropped"]


def test_batches_carry_bos_eos_pads_and_lengths() -> None:
    src = [torch.tensor([5, 6, 3]), torch.tensor([7, 3])]
    tgt = [torch.tensor([8]), torch.tensor([9, 10, 11])]
    (s, lengths, tgt_in), tgt_out = PairBatches(src, tgt, 2, bos=2, eos=3, shuffle=False)[0]
    assert s.tolist() == [[5, 6, 3], [7, 3, PAD]] and lengths.tolist() == [3, 2]
    assert tgt_in.tolist() == [[2, 8, PAD, PAD], [2, 9, 10, 11]]
    assert tgt_out.tolist() == [[8, 3, PAD, PAD], [9, 10, 11, 3]]


# ---- model and loss ------------------------------------------------------------------------
def test_masked_loss_is_the_mean_over_real_tokens_by_hand() -> None:
    torch.manual_seed(3)
    logits = torch.randn(2, 4, 5, dtype=torch.float64)
    target = torch.tensor([[1, 2, PAD, PAD], [3, 4, 2, 1]])
    terms = [
        -torch.log_softmax(logits[b, t], -1)[target[b, t]]
        for b in range(2)
        for t in range(4)
        if target[b, t] != PAD
    ]
    assert len(terms) == 6
    assert float(translate.masked_loss(logits, target)) == pytest.approx(float(sum(terms) / 6), rel=1e-6)
    # label smoothing: (1 - eps) * NLL + eps * mean over the vocabulary of -log p, per real token
    eps = 0.1
    smooth = [
        (1 - eps) * t + eps * -torch.log_softmax(logits[b, s], -1).mean()
        for (b, s), t in zip(
            [(b, s) for b in range(2) for s in range(4) if target[b, s] != PAD], terms, strict=True
        )
    ]
    assert float(translate.masked_loss(logits, target, eps)) == pytest.approx(
        float(sum(smooth) / 6), rel=1e-6
    )


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong"])
def test_teacher_forced_forward_equals_stepping_with_gold_tokens(attention) -> None:
    model = _model(attention, bidirectional=True, layers=2)
    src, lengths = pad_batch(_sources(4))
    tgt_in = torch.randint(4, 9, (4, 5))
    tgt_in[:, 0] = 2
    logits = model(src, lengths, tgt_in)
    memory, state = model.encode(src, lengths)
    steps = []
    for t in range(5):
        step_logits, state, _ = model.step(memory, tgt_in[:, t], state)
        steps.append(step_logits)
    torch.testing.assert_close(logits, torch.stack(steps, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_attention_weights_sum_to_one_and_are_zero_on_pads(attention) -> None:
    model = _model(attention)
    src, lengths = pad_batch(_sources(5))
    memory, state = model.encode(src, lengths)
    _, weights = model.decode(memory, state, torch.full((5, 3), 2))
    assert weights is not None and weights.shape == (5, 3, src.size(1))
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, 3))
    pads = torch.arange(src.size(1)) >= lengths[:, None]  # (B, S)
    assert pads.any() and bool((weights.masked_select(pads[:, None, :].expand_as(weights)) == 0).all())


def test_a_source_is_encoded_the_same_whatever_its_padding() -> None:
    model = _model("bahdanau", bidirectional=True)
    rows = _sources(5)
    src, lengths = pad_batch(rows)
    memory, _ = model.encode(src, lengths)
    for b, row in enumerate(rows):
        alone, _ = model.encode(row[None], torch.tensor([len(row)]))
        torch.testing.assert_close(memory.outputs[b, : len(row)], alone.outputs[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [AdditiveAttention, GeneralAttention])
def test_attention_gradcheck_float64(cls) -> None:
    torch.manual_seed(0)
    layer = (cls(4, 6, 5) if cls is AdditiveAttention else cls(4, 6)).double()
    q = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    assert torch.autograd.gradcheck(lambda q, k: layer(q, layer.prepare(k), k, mask), (q, k))


# ---- decoding ------------------------------------------------------------------------------
def _decode_fns(model):
    def step(tokens, st):
        logits, dstate, attn = model.step(st[0], tokens, st[1])
        return logits, (st[0], dstate), attn

    return step, lambda st, rows: model.select(st[0], st[1], rows)


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong"])
def test_beam_one_is_greedy(attention) -> None:
    model = _model(attention, bidirectional=attention == "luong")
    step, select = _decode_fns(model)
    src, lengths = pad_batch(_sources(6))
    g = greedy(step, model.encode(src, lengths), 6, 2, 3, 8)
    b = beam_search(step, select, model.encode(src, lengths), 6, 2, 3, 8, beam=1)
    assert [h.tokens for h in g] == [h.tokens for h in b]
    # the same tokens, and the scores to float32's rounding: decoding runs one step per call, on
    # torch's GRU kernel on a CPU, whose last bits may differ between a state carried as it came
    # and one gathered by the beam's row selection
    for x, y in zip(g, b, strict=True):
        assert x.log_prob == pytest.approx(y.log_prob, abs=1e-6) and x.finished == y.finished


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong"])
def test_a_batch_translates_each_sentence_as_alone(attention, beam) -> None:
    model = _model(attention, cell="lstm")
    from unrolled.data import WordVocab
    from unrolled.data.pairs import SPECIALS

    vocab = WordVocab([*SPECIALS, *"abcde"], SPECIALS)
    rows = _sources(7)
    together = translate.decode(model, rows, vocab, beam=beam, alpha=0.6, max_len=7)
    assert not {PAD, vocab.id("<bos>")} & {t for h in together for t in h.tokens}  # never output
    for row, hyp in zip(rows, together, strict=True):
        alone = translate.decode(model, [row], vocab, beam=beam, alpha=0.6, max_len=7)[0]
        assert alone.tokens == hyp.tokens and alone.log_prob == pytest.approx(hyp.log_prob, abs=1e-4)
        if attention != "none":
            torch.testing.assert_close(alone.attention, hyp.attention, rtol=1e-4, atol=1e-5)


class _TableModel:
    """A toy decoder whose next-token distribution is a fixed random function of the prefix."""

    def __init__(self, vocab: int, seed: int) -> None:
        self.vocab, self.seed = vocab, seed

    def logits(self, sentence: int, prefix: tuple[int, ...]) -> torch.Tensor:
        g = torch.Generator().manual_seed(hash((self.seed, sentence, prefix)) % 2**31)
        return 3 * torch.randn(self.vocab, generator=g, dtype=torch.float64)

    def step(self, tokens, state):  # state: list of (sentence, prefix)
        new = [(n, (*p, int(t))) for (n, p), t in zip(state, tokens.tolist(), strict=True)]
        return torch.stack([self.logits(n, p[1:]) for n, p in new]), new, None

    @staticmethod
    def select(state, rows):
        return [state[i] for i in rows.tolist()]

    def brute_force(self, sentence: int, eos: int, max_len: int, alpha: float) -> tuple[list[int], float]:
        best = ([], -math.inf)
        for n in range(1, max_len + 1):
            for seq in itertools.product(range(self.vocab), repeat=n):
                if eos in seq[:-1]:
                    continue  # generation stops at the first <eos>
                if n < max_len and seq[-1] != eos:
                    continue  # shorter than max_len without <eos>: not a complete output
                logp = sum(
                    float(torch.log_softmax(self.logits(sentence, seq[:i]), -1)[seq[i]]) for i in range(n)
                )
                s = logp / length_penalty(n, alpha)
                if s > best[1]:
                    best = (list(seq[:-1]) if seq[-1] == eos else list(seq), s)
        return best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_finds_the_brute_force_best_when_the_beam_holds_every_prefix(alpha) -> None:
    V, eos, max_len = 3, 0, 4
    toy = _TableModel(V, seed=7)
    start = [(n, ()) for n in range(3)]  # 3 sentences; the first token fed is <bos> = 1
    hyps = beam_search(toy.step, toy.select, start, 3, 1, eos, max_len, beam=V**max_len, alpha=alpha)
    for n, h in enumerate(hyps):
        tokens, best = toy.brute_force(n, eos, max_len, alpha)
        assert h.tokens == tokens and h.score == pytest.approx(best, abs=1e-9)


def test_a_small_beam_beats_greedy_where_greedy_is_short_sighted() -> None:
    # step 1: 'a' 0.6, 'b' 0.4; after 'a' every token is equally likely (0.25), after 'b' <eos> is 0.9
    def step(tokens, state):
        rows = []
        for prefix, t in zip(state, tokens.tolist(), strict=True):
            p = (*prefix, t)
            if len(p) == 1:
                probs = [0.0, 0.0, 0.6, 0.4]
            elif p[1] == 2:
                probs = [0.25] * 4
            else:
                probs = [0.9, 0.0, 0.05, 0.05]
            rows.append((p, torch.tensor(probs, dtype=torch.float64).clamp_min(1e-12).log()))
        return torch.stack([r for _, r in rows]), [p for p, _ in rows], None

    select = lambda st, rows: [st[i] for i in rows.tolist()]  # noqa: E731
    g = greedy(step, [()], 1, 1, 0, 3)[0]
    b = beam_search(step, select, [()], 1, 1, 0, 3, beam=2)[0]
    assert g.tokens[0] == 2 and b.tokens == [3]  # greedy commits to 'a'; the beam keeps 'b' <eos>: 0.36
    assert b.log_prob == pytest.approx(math.log(0.36)) and b.log_prob > g.log_prob


# ---- BLEU ----------------------------------------------------------------------------------
def test_lecture_sentence_bleu_by_hand() -> None:
    assert sentence_bleu("a b c d".split(), "a b c d".split()) == 1.0
    # shorter than the label: exp(1 - 4/2); p1 = p2 = 1
    assert sentence_bleu("a b".split(), "a b c d".split(), k=2) == pytest.approx(math.exp(-1))
    # p1 = 3/4, p2 = 1/3 (only 'il est' of 3 bigrams), same length
    assert sentence_bleu("il est riche .".split(), "il est calme .".split(), k=2) == pytest.approx(
        (3 / 4) ** 0.5 * (1 / 3) ** 0.25
    )
    # clipped counts: 'the' matches only as often as the label has it (2 of 4 unigrams)
    assert sentence_bleu("the the the the".split(), "the cat the mat".split(), k=1) == pytest.approx(0.5**0.5)
    assert sentence_bleu([], ["a"]) == 0.0


def test_corpus_scores_use_sacrebleu() -> None:
    import sacrebleu

    hyps, refs = ["le chat dort sur le tapis .", "il pleut"], ["le chat dort sur le tapis .", "il neige"]
    s = corpus_scores(hyps, refs)
    assert s["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert s["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert s["exact_match"] == 0.5 and "tok:13a" in s["sacrebleu"]["bleu"]


# ---- training and the command line ---------------------------------------------------------
@pytest.mark.parametrize("teacher_forcing", ["0", "1"])
def test_teacher_forcing_zero_and_one_both_train(toy_tsv, tmp_path, teacher_forcing) -> None:
    out = tmp_path / "run"
    args = ["train", "translate", "--data", str(toy_tsv), "--hidden", "32", "--embedding-dim", "16"]
    args += ["--batch-size", "16", "--max-steps", "40", "--eval-every", "40", "--lr", "0.01", "--no-progress"]
    assert main([*args, "--teacher-forcing", teacher_forcing, "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / ckpt.METRICS).read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert losses[-1] < 0.8 * losses[0]


def test_train_translate_eval_plot_and_resume(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    base = ["train", "translate", *TINY, "--lr-schedule", "constant", "--max-steps", "6", "--eval-every", "3"]
    base.append("--no-progress")
    assert main([*base, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test: BLEU" in printed and "->" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["test"]) >= {"bleu", "chrf", "exact_match", "token_accuracy", "loss"}
    state = ckpt.trainer_state(out)
    assert state["best_val"] == max(
        json.loads(r)["val_bleu"] for r in (out / ckpt.METRICS).read_text().splitlines() if '"val"' in r
    )
    # resume: 6 more steps equal an unbroken run of 12
    assert main(["train", "translate", "--resume", str(out), "--max-steps", "6", "--no-progress"]) == 0
    whole = tmp_path / "whole"
    assert (
        main([*base[:-5], "--max-steps", "12", "--eval-every", "3", "--no-progress", "--out", str(whole)])
        == 0
    )
    a, b = translate.open_run(out, weights="latest"), translate.open_run(whole, weights="latest")
    for (k, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, msg=k)
    capsys.readouterr()
    # translate: one line per text, the attention plot, JSON, beam
    plot = tmp_path / "attn.png"
    assert (
        main(
            [
                "translate",
                str(out),
                "--text",
                "twenty-one",
                "--text",
                "zorglub",
                "--attention-plot",
                str(plot),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2 and "zorglub" in captured.err and "<unk>" in captured.err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["translate", str(out), "--text", "seven", "--beam", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "seven"
    # eval on a file of pairs equals the test scores of results.json for the same pairs
    pairs = tmp_path / "held.tsv"
    ex = results["examples"]
    pairs.write_text("".join(f"{e['source']}\t{e['reference']}\n" for e in ex), encoding="utf-8")
    assert main(["eval", str(out), "--data", str(pairs), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    expected = sum(e["translation"] == e["reference"] for e in ex) / len(ex)
    assert scored["pairs"] == len(ex) and scored["exact_match"] == expected


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "{notab}"], "line 2 of .* no tab"),
        (["--data", "{empty}"], "line 1 of .* empty target"),
        (["--data", "{toy}", "--batch-size", "500"], "fewer than one batch"),
        (["--data", "{toy}", "--min-freq", "1000"], "leaves the source vocabulary empty"),
        (["--teacher-forcing", "1.5"], "--teacher-forcing must be in \\[0, 1\\]"),
        (["--attention", "dot"], "invalid choice: 'dot'"),
        (["--bidirectional", "--hidden", "33"], "even"),
    ],
)
def test_train_errors_are_one_line_and_write_nothing(tmp_path, capsys, toy_tsv, extra, message) -> None:
    (tmp_path / "notab.tsv").write_text("go .\tva !\ngo away\n", encoding="utf-8")
    (tmp_path / "empty.tsv").write_text("go .\t\t\n", encoding="utf-8")
    files = {"notab": tmp_path / "notab.tsv", "empty": tmp_path / "empty.tsv", "toy": toy_tsv}
    extra = [e.format(**files) for e in extra]
    out = tmp_path / "run"
    assert _exit_code(["train", "translate", *extra, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not out.exists()


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # a usage error found by argparse
        return int(e.code)


def test_translate_errors(tmp_path, capsys, tiny_text_file) -> None:
    out = tmp_path / "run"
    assert main(["train", "translate", *TINY, "--max-steps", "1", "--no-progress", "--out", str(out)]) == 0
    lm = tmp_path / "lm"
    small = ["--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "4", "--max-steps", "1"]
    assert (
        main(["train", "charlm", "--text", str(tiny_text_file), *small, "--no-progress", "--out", str(lm)])
        == 0
    )
    capsys.readouterr()
    blank = tmp_path / "blank.txt"
    blank.write_text("one\n\ntwo\n", encoding="utf-8")
    cases = [
        (["translate", str(out), "--text", "one", "--beam", "0"], "--beam must be >= 1"),
        (["translate", str(out), "--text", "  "], "text 1 is empty"),
        (["translate", str(out), "--file", str(blank)], "line 2 of .* is empty"),
        (["translate", str(lm), "--text", "one"], "not that of a translate run"),
        (["translate", str(out)], "--text TEXT .* or --file FILE"),
        (
            ["translate", str(out), "--text", "one", "--attention-plot", str(tmp_path / "a.jpg")],
            "ending in .png",
        ),
        (["eval", str(out), "--data", str(tmp_path / "missing.tsv")], "not found"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(message, err), (argv, err)
    none = tmp_path / "none"
    assert main(["train", "translate", *TINY, "--attention", "none", "--max-steps", "1", "--no-progress",
                 "--out", str(none)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["translate", str(none), "--text", "one", "--attention-plot", str(tmp_path / "p.png")]) == 2
    assert "--attention none" in capsys.readouterr().err and not (tmp_path / "p.png").exists()


# ---- unrolled.load(RUN) and unrolled export ------------------------------------------------
@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A tiny bidirectional LSTM translator with Bahdanau attention, trained a few steps on the toy pairs."""
    root = tmp_path_factory.mktemp("toy")
    data = root / "toy.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in _toy_pairs()), encoding="utf-8")
    out = root / "run"
    args = ["train", "translate", "--data", str(data), "--cell", "lstm", "--bidirectional", "--hidden", "16"]
    args += ["--embedding-dim", "8", "--batch-size", "16", "--max-steps", "40", "--eval-every", "40"]
    assert main([*args, "--lr", "0.02", "--no-progress", "--out", str(out)]) == 0  # outputs vary by now
    return out


TEXTS = ["red cat runs .", "Blue dog sleeps!", "zorglub cat", "the red dog sleeps and runs ."]


@pytest.mark.parametrize("beam", [1, 3])
def test_load_translates_as_the_command_does(toy_run, capsys, beam) -> None:
    import unrolled

    capsys.readouterr()
    argv = ["translate", str(toy_run), *itertools.chain(*(["--text", t] for t in TEXTS)), "--beam", str(beam)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    translator = unrolled.load(toy_run)
    got = translator.translate(TEXTS, beam=beam)
    assert printed.out.splitlines() == got and all(isinstance(t, str) for t in got)
    assert "'zorglub'" in printed.err  # the command's note; the verb itself prints nothing
    assert capsys.readouterr() == ("", "")
    assert translator.translate(TEXTS[1], beam=beam) == got[1:2]
    verbs = r"translate run has no \.tag\(\): its verbs are \.translate\(\), \.export\(\)"
    with pytest.raises(AttributeError, match=verbs):
        translator.tag(TEXTS)


def test_attention_weights_on_request(toy_run) -> None:
    import unrolled

    translator = unrolled.load(toy_run)
    assert translator.attention_kind == "bahdanau" and translator.source_vocab.id("<eos>") == 3
    for beam in (1, 3):
        plain = translator.translate(TEXTS, beam)
        records = translator.translate(TEXTS, beam, attention=True)
        assert [r.translation for r in records] == plain
        assert records[2].unknown == ["zorglub"]
        assert records[1].source_tokens == ["blue", "dog", "sleeps", "!"]
        for r in records:
            a = r.attention
            assert a is not None and a.shape == (len(r.output_tokens) + r.finished, len(r.source_tokens) + 1)
            assert (a >= 0).all() and np.allclose(a.sum(1), 1.0, atol=1e-5)


onnx_translate = doc_function("python_api.md", "onnx_translate")  # the docs' greedy loop, as it stands there


def test_export_cli_and_a_greedy_loop_in_onnxruntime(toy_run, tmp_path, capsys) -> None:
    import zipfile

    import unrolled

    out = tmp_path / "translator.onnx"
    assert main(["export", str(toy_run), "--out", str(out)]) == 0
    assert "decoder_step: (tokens, memory, keys, lengths, h0, c0)" in capsys.readouterr().err
    side = json.loads((tmp_path / "translator.onnx.json").read_text())
    assert set(zipfile.ZipFile(out).namelist()) == {"encoder.onnx", "decoder_step.onnx", "export.json"}
    names = {g: [o["name"] for o in side["graphs"][g]["outputs"]] for g in ("encoder", "decoder_step")}
    assert names == {
        "encoder": ["memory", "keys", "h0", "c0"],
        "decoder_step": ["logits", "h_n", "c_n", "attention"],
    }
    assert side["special_ids"] == {"<pad>": 0, "<unk>": 1, "<bos>": 2, "<eos>": 3} and side["joiner"] == " "
    translator = unrolled.load(toy_run)
    # another batch size and source length than the export's example (2 sources of 3 tokens)
    assert onnx_translate(out, TEXTS) == translator.translate(TEXTS)
