"""Generation's one-step path (Recurrent.stepper, LanguageModel.stepper): the same results as
calling the layer or model one step at a time, for every engine auto picks for a step."""

from __future__ import annotations

import functools

import pytest
import torch

import unrolled
from unrolled.models.language_model import LanguageModel

V = 13


def _model(cell: str, embedding_dim: int, tie: bool = False, layers: int = 2) -> LanguageModel:
    torch.manual_seed(0)
    H = 8
    make = {
        "gru": functools.partial(unrolled.GRUCell, hidden_size=H),
        "lstm": functools.partial(unrolled.LSTMCell, hidden_size=H),
        "rnn": functools.partial(unrolled.RNNCell, hidden_size=H),
        "lstm-cifg": functools.partial(unrolled.LSTMCell, hidden_size=H, variant="CIFG"),
    }[cell]
    rnn = unrolled.Recurrent(make, embedding_dim or V, num_layers=layers, dropout=0.2, batch_first=True)
    return LanguageModel(V, rnn, embedding_dim, dropout=0.3, tie_weights=tie).eval()


@pytest.mark.parametrize(
    ("cell", "embedding_dim", "tie"),
    [("gru", 6, False), ("lstm", 8, True), ("rnn", 0, False), ("lstm-cifg", 5, False)],
)
def test_the_stepper_gives_what_the_model_gives(cell, embedding_dim, tie) -> None:
    model = _model(cell, embedding_dim, tie)
    tokens = torch.randint(0, V, (3, 6))
    step = model.stepper()
    with torch.inference_mode():
        _, state = model(tokens[:, :2])  # warmed on a prime, as generation is
        s_model, s_step = state, state
        for t in range(2, tokens.size(1)):
            want, s_model = model(tokens[:, t : t + 1], s_model)
            got, s_step = step(tokens[:, t : t + 1], s_step)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        first, _ = step(tokens[:, :1], None)  # from no state
        torch.testing.assert_close(first, model(tokens[:, :1])[0], rtol=0, atol=1e-6)


def test_in_training_mode_the_stepper_is_the_model_itself() -> None:
    model = _model("gru", 6).train()
    assert model.stepper() == model.__call__
    assert model.rnn.stepper() == model.rnn.__call__


def test_the_gru_steps_on_torchs_kernel_on_a_cpu() -> None:
    model = _model("gru", 6)
    assert model.rnn.engine_for("cpu", training=False, step=True) == "native"
    assert model.rnn.stepper() != model.rnn.__call__
