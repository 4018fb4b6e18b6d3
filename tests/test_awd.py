"""AWD-LSTM's regularisers around a recurrent layer: weight drop, locked dropout, word
(embedding) dropout, AR and TAR (unrolled/layers/dropout.py, Recurrent, LanguageModel)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest
import torch
from conftest import NEEDS_COMPILED

import unrolled
from unrolled.models.language_model import LanguageModel
from unrolled.tasks.lm import lm_loss

H = 16


class RecordingRNNCell(unrolled.RNNCell):
    """An Elman cell that notes the recurrent matrix and the input it sees at every step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen_weights: list[torch.Tensor] = []
        self.seen_inputs: list[torch.Tensor] = []

    def forward(self, x, h):
        self.seen_weights.append(self.weight_hh.detach().clone())
        self.seen_inputs.append(x.detach().clone())
        return super().forward(x, h)


def recording_layer(**options) -> unrolled.Recurrent:
    return unrolled.Recurrent(
        functools.partial(RecordingRNNCell, hidden_size=H), 4, num_layers=2, impl="reference", **options
    )


def test_a_weight_drop_mask_is_the_same_at_every_step_and_new_per_batch() -> None:
    layer = recording_layer(weight_drop=0.5)
    cell = layer.cells[0]
    weight = cell.weight_hh.detach().clone()
    x = torch.randn(6, 3, 4)
    layer(x)
    first = cell.seen_weights
    assert len(first) == 6 and all(torch.equal(w, first[0]) for w in first)
    zeros = first[0] == 0
    assert 0.35 < zeros.float().mean() < 0.65  # p = 0.5 over 256 entries
    torch.testing.assert_close(first[0][~zeros], weight[~zeros] * 2)  # the rest scaled by 1 / (1 - p)
    assert isinstance(cell.weight_hh, torch.nn.Parameter)  # the parameter is back after the call
    cell.seen_weights = []
    layer(x)
    assert not torch.equal(cell.seen_weights[0] == 0, zeros)  # a new mask for the next batch
    cell.seen_weights = []
    layer.eval()
    layer(x)
    assert all(torch.equal(w, weight) for w in cell.seen_weights)  # evaluation: the weights as they are


def test_the_parameters_come_back_when_the_forward_fails() -> None:
    layer = recording_layer(weight_drop=0.3)
    with pytest.raises(ValueError):
        layer(torch.randn(5, 3, 7))  # a wrong input size
    with pytest.raises(RuntimeError):
        layer(torch.randn(5, 3, 4), torch.randn(2, 3, H, dtype=torch.float64))
    assert all(isinstance(c.weight_hh, torch.nn.Parameter) for c in layer.cells)


@pytest.mark.parametrize("locked", [True, False])
def test_locked_dropout_between_layers_keeps_its_mask_over_time(locked) -> None:
    layer = recording_layer(dropout=0.5, locked_dropout=locked)
    layer(torch.randn(8, 5, 4))
    inputs = torch.stack(layer.cells[1].seen_inputs)  # (T, B, H): the dropped output of layer 0
    dropped = inputs == 0
    assert 0.3 < dropped.float().mean() < 0.7
    same_over_time = all(torch.equal(dropped[t], dropped[0]) for t in range(1, 8))
    assert same_over_time == locked


def test_locked_dropout_is_constant_over_time_and_keeps_the_expectation() -> None:
    drop = unrolled.LockedDropout(0.3)
    ones = torch.ones(2000, 7, 10)
    out = drop(ones)
    assert torch.equal(out, out[:, :1].expand_as(out))  # one mask per sequence, every step
    torch.testing.assert_close(out.unique(), torch.tensor([0.0, 1 / 0.7]))
    assert abs(out.mean().item() - 1.0) < 0.02
    time_major = unrolled.LockedDropout(0.3, batch_first=False)(ones)  # (T, B, F): the mask over dim 0
    assert torch.equal(time_major, time_major[:1].expand_as(time_major))
    drop.eval()
    assert drop(ones) is ones


def test_word_dropout_drops_whole_words_and_keeps_the_expectation() -> None:
    weight = torch.randn(50, 8)
    dropped = unrolled.embedding_dropout(weight, 0.25, training=True)
    rows = (dropped == 0).all(dim=1)
    assert torch.equal((dropped == 0).any(dim=1), rows)  # a row is dropped whole or not at all
    torch.testing.assert_close(dropped[~rows], weight[~rows] / 0.75)
    mean = torch.stack([unrolled.embedding_dropout(weight, 0.25, training=True) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(mean, weight, atol=0.08, rtol=0.0)
    assert unrolled.embedding_dropout(weight, 0.25, training=False) is weight


def test_weight_drop_keeps_the_expectation() -> None:
    layer = unrolled.RNN(3, 12, weight_drop=0.4)
    cell = layer.cells[0]
    from unrolled.layers.dropout import dropped_weights

    mean = torch.stack([dropped_weights(layer.cells, 0.4)[0] for _ in range(4000)]).mean(0)
    torch.testing.assert_close(mean, cell.weight_hh.detach(), atol=0.03, rtol=0.0)


def _lm(**options) -> LanguageModel:
    rnn = unrolled.Recurrent(
        functools.partial(unrolled.LSTMCell, hidden_size=H),
        12,
        num_layers=2,
        dropout=options.pop("dropout", 0.0),
        batch_first=True,
        locked_dropout=options.pop("locked_dropout", False),
        weight_drop=options.pop("weight_drop", 0.0),
    )
    return LanguageModel(30, rnn, embedding_dim=12, **options)


def test_every_regulariser_is_off_in_evaluation() -> None:
    plain = _lm()
    regularised = _lm(
        dropout=0.4,
        locked_dropout=True,
        weight_drop=0.5,
        word_dropout=0.2,
        embedding_dropout=0.3,
        ar=2.0,
        tar=1.0,
    )
    regularised.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, 30, (4, 9))
    regularised.eval()
    plain.eval()
    torch.testing.assert_close(regularised(tokens)[0], plain(tokens)[0], atol=0, rtol=0)
    assert regularised.penalty is None
    regularised.train()
    assert not torch.allclose(regularised(tokens)[0], plain(tokens)[0])


def test_ar_and_tar_are_added_to_the_training_loss() -> None:
    model = _lm(ar=2.0, tar=1.0)
    tokens, targets = torch.randint(0, 30, (4, 9)), torch.randint(0, 30, (4, 9))
    torch.manual_seed(3)
    loss, _, _ = lm_loss(model, tokens, targets, None)
    out, _ = model.rnn(model.embed(tokens))
    expected_penalty = 2.0 * out.pow(2).mean() + 1.0 * (out[:, 1:] - out[:, :-1]).pow(2).mean()
    torch.testing.assert_close(model.penalty, expected_penalty)
    logits, _ = model(tokens)
    plain = torch.nn.functional.cross_entropy(logits.reshape(-1, 30), targets.reshape(-1))
    torch.testing.assert_close(loss, plain + expected_penalty)
    loss.backward()  # the penalty is part of the graph
    assert model.rnn.cells[1].weight_hh.grad is not None


def test_the_activation_penalty_formula() -> None:
    h, dropped = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    penalty = unrolled.activation_penalty(h, dropped, ar=0.5, tar=0.0)
    torch.testing.assert_close(penalty, 0.5 * dropped.pow(2).mean())
    penalty = unrolled.activation_penalty(h, dropped, ar=0.0, tar=3.0)
    torch.testing.assert_close(penalty, 3.0 * torch.diff(h, dim=1).pow(2).mean())


ENGINES = ["reference", "fused", pytest.param("compiled", marks=NEEDS_COMPILED), "native"]


@pytest.mark.parametrize("layer_class", [unrolled.LSTM, unrolled.GRU, unrolled.RNN])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_same_seed_gives_the_same_result_on_every_engine(layer_class, bidirectional) -> None:
    """Masks are drawn by the layer, before the engine runs: every engine sees the same ones."""
    base = layer_class(5, 7, num_layers=3, dropout=0.3, bidirectional=bidirectional)
    results = {}
    for impl in ["reference", "fused", "compiled", "native"]:
        if impl == "compiled" and not unrolled.engines.compiled.available():
            continue
        layer = layer_class(
            5, 7, num_layers=3, dropout=0.3, bidirectional=bidirectional, impl=impl,
            locked_dropout=True, weight_drop=0.4,
        )  # fmt: skip
        layer.load_state_dict(base.state_dict())
        x = torch.randn(6, 4, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
        h0 = torch.randn(6 if bidirectional else 3, 4, 7, generator=torch.Generator().manual_seed(2))
        hx = (h0, h0.flip(0)) if layer_class is unrolled.LSTM else h0
        torch.manual_seed(7)
        out, h_n = layer(x, hx)
        (out.sum() + sum(t.sum() for t in (h_n if isinstance(h_n, tuple) else (h_n,)))).backward()
        results[impl] = [out, *(h_n if isinstance(h_n, tuple) else (h_n,)), x.grad, layer.weight_hh_l1.grad]
    reference = results.pop("reference")
    for impl, tensors in results.items():
        for got, expected in zip(tensors, reference, strict=True):
            torch.testing.assert_close(
                got, expected, atol=2e-5, rtol=0, msg=lambda m, impl=impl: f"{impl}: {m}"
            )


def test_the_flags_train_a_language_model_and_bad_values_are_one_line(tmp_path, tiny_text_file) -> None:
    run = tmp_path / "run"
    common = [
        sys.executable,
        "-m",
        "unrolled",
        "train",
        "lm",
        "--unit",
        "word",
        "--text",
        str(tiny_text_file),
    ]
    regularisers = [
        "--locked-dropout",
        "--weight-drop",
        "0.5",
        "--word-dropout",
        "0.1",
        "--ar",
        "2",
        "--tar",
        "1",
    ]
    small = ["--hidden", "16", "--layers", "2", "--max-steps", "4", "--eval-every", "2", "--batch-size", "4"]
    done = subprocess.run([*common, *regularisers, *small, "--out", str(run)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model = json.loads((run / "config.json").read_text())["model"]
    assert model["locked_dropout"] and model["weight_drop"] == 0.5 and model["word_dropout"] == 0.1
    assert (model["ar"], model["tar"]) == (2.0, 1.0)
    bad = tmp_path / "bad"
    for flags, says in [
        (["--weight-drop", "1"], "--weight-drop must be in [0, 1), got 1.0"),
        (["--tar", "-2"], "--tar is a penalty weight: it must be >= 0, got -2.0"),
        (["--word-dropout", "1.5"], "--word-dropout must be in [0, 1), got 1.5"),
    ]:
        done = subprocess.run([*common, *flags, *small, "--out", str(bad)], capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.strip() == f"unrolled: error: {says}", done.stderr
        assert not bad.exists()


def _averaging_trainer(tmp_path, val_losses, max_steps, **optim):
    from unrolled.training import LoopConfig, OptimConfig, Trainer

    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    data = [(torch.randn(4, 3), torch.randn(4, 2)) for _ in range(3)]
    losses = iter(val_losses)
    after_step: dict[int, list[torch.Tensor]] = {}

    def on_event(kind, record):
        if kind == "train":  # log_every=1: the weights after every step
            after_step[record["step"]] = [p.detach().clone() for p in model.parameters()]

    trainer = Trainer(
        model,
        data,
        lambda m, x, y, s: (((m(x) - y) ** 2).mean(), None, len(x)),
        lambda m: {"val_loss": next(losses)},
        OptimConfig(optimizer="sgd", lr=0.1, schedule="constant", average="nt", **optim),
        LoopConfig(max_steps=max_steps, log_every=1, eval_every=2),
        tmp_path,
        on_event=on_event,
    )
    return trainer, model, after_step


def test_nt_averaging_starts_at_a_non_monotone_validation_and_saves_the_average(tmp_path) -> None:
    """Validations every 2 steps; with a window of 2 the fifth (4.5 > min(5, 4)) starts the average
    at step 10; from then the saved weights are the mean of the weights after steps 10..16, while
    training goes on from the raw weights."""
    from unrolled.training import checkpoint as ckpt

    trainer, model, after_step = _averaging_trainer(
        tmp_path, [5.0, 4.0, 3.0, 2.9, 4.5, 4.4, 4.3, 4.2], max_steps=16, average_window=2
    )
    state = trainer.run()
    assert [
        json.loads(line)["step"]
        for line in (tmp_path / ckpt.METRICS).read_text().splitlines()
        if '"average"' in line
    ] == [10]
    assert state.averaged_steps == 7  # steps 10 .. 16
    expected = [torch.stack([after_step[s][k] for s in range(10, 17)]).mean(0) for k in range(2)]
    weights, extra, _ = ckpt.load_checkpoint(tmp_path)
    torch.testing.assert_close(weights["weight"], expected[0])
    torch.testing.assert_close(weights["bias"], expected[1])
    torch.testing.assert_close(model.weight.detach(), after_step[16][0])  # training weights: the raw ones
    torch.testing.assert_close(extra["raw_weights"][0], after_step[16][0])


@pytest.mark.parametrize("split", [10, 12])  # at the validation that starts the average, and after it
def test_nt_averaging_resumes_with_its_average(tmp_path, split) -> None:
    """Stopped after step ``split`` and resumed to 16: the same average and raw weights as one run."""
    from unrolled.training import checkpoint as ckpt

    vals = [5.0, 4.0, 3.0, 2.9, 4.5, 4.4, 4.3, 4.2]
    whole, _, _ = _averaging_trainer(tmp_path / "whole", vals, max_steps=16, average_window=2)
    whole.run()
    first, _, _ = _averaging_trainer(
        tmp_path / "split", vals[: split // 2], max_steps=split, average_window=2
    )
    first.run()
    second, model, _ = _averaging_trainer(
        tmp_path / "split", vals[split // 2 :], max_steps=16 - split, average_window=2
    )
    second.load()
    state = second.run()
    assert state.step == 16 and state.averaged_steps == 7
    for name in ("weight", "bias"):
        torch.testing.assert_close(
            ckpt.load_checkpoint(tmp_path / "split")[0][name],
            ckpt.load_checkpoint(tmp_path / "whole")[0][name],
        )
    torch.testing.assert_close(model.weight.detach(), whole.model.weight.detach())


def test_without_a_stall_nothing_is_averaged(tmp_path) -> None:
    from unrolled.training import checkpoint as ckpt

    trainer, model, _ = _averaging_trainer(
        tmp_path, [5.0, 4.0, 3.0, 2.0, 1.0], max_steps=10, average_window=1
    )
    assert trainer.run().averaged_steps == 0
    assert "raw_weights" not in ckpt.load_checkpoint(tmp_path)[1]
    torch.testing.assert_close(ckpt.load_checkpoint(tmp_path)[0]["weight"], model.weight.detach())


def test_bad_options_of_the_layer_and_the_model_are_one_line() -> None:
    with pytest.raises(ValueError, match=r"weight_drop must be a dropout rate in \[0, 1\), got 1.0"):
        unrolled.LSTM(3, 4, weight_drop=1.0)
    with pytest.raises(ValueError, match=r"locked dropout must be a dropout rate in \[0, 1\), got -0.5"):
        unrolled.LockedDropout(-0.5)
    with pytest.raises(
        ValueError, match="ar and tar are penalty weights: they must be >= 0, got -1.0 and 0.0"
    ):
        _lm(ar=-1.0)
    rnn = unrolled.Recurrent(functools.partial(unrolled.GRUCell, hidden_size=4), 30, batch_first=True)
    with pytest.raises(
        ValueError, match="word_dropout drops rows of the embedding: it needs embedding_dim > 0"
    ):
        LanguageModel(30, rnn, embedding_dim=0, word_dropout=0.1)
    with pytest.raises(ValueError, match="an adaptive softmax has no one decoder matrix to tie"):
        _lm(cutoffs=[5, 10], tie_weights=True)
