"""The adaptive softmax of the language model (Grave et al. 2017, torch's AdaptiveLogSoftmaxWithLoss):
proper distributions, the loss it trains with, cut-offs from word frequencies, the command line."""

from __future__ import annotations

import functools
import json

import pytest
import torch

import unrolled
from unrolled.cli import main
from unrolled.models.language_model import LanguageModel
from unrolled.tasks.lm import frequency_cutoffs

V, H = 40, 12


def _model(cutoffs=(8, 20)) -> LanguageModel:
    rnn = unrolled.Recurrent(functools.partial(unrolled.LSTMCell, hidden_size=H), 10, batch_first=True)
    return LanguageModel(V, rnn, embedding_dim=10, cutoffs=cutoffs)


def test_the_log_probabilities_sum_to_one_over_the_vocabulary() -> None:
    model = _model().eval()
    scores, _ = model(torch.randint(0, V, (3, 5)))
    assert scores.shape == (3, 5, V)
    torch.testing.assert_close(scores.exp().sum(-1), torch.ones(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(scores.log_softmax(-1), scores, atol=1e-5, rtol=0)  # logits as they are


def test_the_training_loss_is_the_mean_negative_log_likelihood_of_the_targets() -> None:
    model = _model().eval()
    tokens, targets = torch.randint(0, V, (3, 5)), torch.randint(0, V, (3, 5))
    loss, _ = model(tokens, targets=targets)
    scores, _ = model(tokens)
    expected = -scores.gather(-1, targets.unsqueeze(-1)).mean()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)
    full = _model(cutoffs=None).eval()  # the full softmax: cross-entropy of the logits
    loss, _ = full(tokens, targets=targets)
    logits, _ = full(tokens)
    torch.testing.assert_close(
        loss, torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    )


def test_cutoffs_cover_the_given_shares_of_the_training_tokens() -> None:
    # id k appears 2^(10-k) times for k < 10: ids 0..2 hold 7/8 of the tokens, ids 0..5 63/64
    train = torch.cat([torch.full((2 ** (10 - k),), k) for k in range(10)])
    assert frequency_cutoffs(train, 30, coverage=(0.8, 0.98)) == [3, 6]
    assert frequency_cutoffs(train, 30, coverage=(0.5,)) == [1]
    assert frequency_cutoffs(train, 4, coverage=(0.9, 0.99)) == [3]  # never past V - 1, never twice


@pytest.mark.parametrize(
    "cutoffs, vocab", [((5, 3), 40), ((0, 10), 40), ((10, 40), 40), ((), 40), ((2.5,), 40)]
)
def test_bad_cutoffs_are_one_line(cutoffs, vocab) -> None:
    with pytest.raises(
        ValueError, match=r"adaptive softmax cut-offs must be increasing integers from 1 to the "
    ):
        unrolled.models.LanguageModel(
            vocab,
            unrolled.Recurrent(functools.partial(unrolled.LSTMCell, hidden_size=H), 10, batch_first=True),
            embedding_dim=10,
            cutoffs=cutoffs,
        )


def test_a_word_lm_trains_samples_and_evaluates_with_it(tmp_path, tiny_text_file, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "lm", "--unit", "word", "--text", str(tiny_text_file), "--out", str(out)]
    small = [
        "--hidden",
        "16",
        "--max-steps",
        "3",
        "--eval-every",
        "3",
        "--batch-size",
        "4",
        "--min-count",
        "1",
    ]
    assert main([*args, *small, "--softmax", "adaptive"]) == 0
    model = json.loads((out / "config.json").read_text())["model"]
    assert model["softmax"] == "adaptive" and model["tie_weights"] is False
    assert model["cutoffs"] == sorted(set(model["cutoffs"])) and model["cutoffs"][0] >= 1
    capsys.readouterr()
    assert main(["sample", str(out), "--length", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["eval", str(out), "--text", str(tiny_text_file)]) == 0
    assert "perplexity" in capsys.readouterr().out
