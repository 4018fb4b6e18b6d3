"""Analysis: the spectrum of W_hh per gate block and the lecture's power iteration, and its command."""

from __future__ import annotations

import json

import pytest
import torch

from unrolled import GRUCell, LSTMCell, MinGRUCell, MUTCell, RNNCell
from unrolled.analysis import power_iteration, recurrent_blocks, spectrum
from unrolled.analysis.gradients import gradient_flow
from unrolled.cli import main


def test_power_iteration_equals_eigvals_on_a_real_dominant_eigenvalue() -> None:
    torch.manual_seed(0)
    for n in (5, 32, 64):
        A = torch.randn(n, n, dtype=torch.float64) / n**0.5  # not symmetric: complex eigenvalues too
        u = torch.randn(n, dtype=torch.float64)
        W = A + 3 * torch.outer(u, u) / u.dot(u)  # a spike: one real eigenvalue near 3 stands out
        eig = torch.linalg.eigvals(W)
        top = eig[eig.abs().argmax()]
        assert abs(top.imag) < 1e-9
        p = power_iteration(W)
        assert p.converged and p.value == pytest.approx(float(top.real), abs=1e-4)
        torch.testing.assert_close(W @ p.vector, p.value * p.vector, atol=1e-6, rtol=0)


def test_spectrum_of_a_block_with_known_eigenvalues() -> None:
    Q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    W = Q @ torch.diag(torch.tensor([-1.5, 0.9, 0.5, 0.3, -0.2, 0.1], dtype=torch.float64)) @ Q.T
    s = spectrum(W)
    assert s["spectral_radius"] == pytest.approx(1.5) and s["dominant"]["is_real"]
    assert s["ratio"] == pytest.approx(0.6) and s["power"]["converged"]
    assert s["power"]["estimate"] == pytest.approx(-1.5, abs=1e-4) and s["power"]["error"] < 1e-4
    assert s["max_singular_value"] == pytest.approx(1.5)  # symmetric: singular values = |eigenvalues|


def test_a_complex_pair_on_top_is_reported_not_guessed() -> None:
    c, s_ = torch.cos(torch.tensor(0.7)), torch.sin(torch.tensor(0.7))
    W = torch.zeros(3, 3, dtype=torch.float64)
    W[:2, :2] = 1.2 * torch.tensor([[c, -s_], [s_, c]])
    W[2, 2] = 0.5
    s = spectrum(W)
    assert not s["dominant"]["is_real"] and s["power"]["errors"] is None and not s["power"]["converged"]
    assert s["spectral_radius"] == pytest.approx(1.2)


def test_recurrent_blocks_per_gate_and_cells_without_one() -> None:
    torch.manual_seed(0)
    assert list(recurrent_blocks(RNNCell(3, 4))) == ["h"]
    assert list(recurrent_blocks(GRUCell(3, 4))) == ["r", "z", "n"]
    lstm = LSTMCell(3, 4)
    blocks = recurrent_blocks(lstm)
    assert list(blocks) == ["i", "f", "g", "o"] and all(b.shape == (4, 4) for b in blocks.values())
    torch.testing.assert_close(blocks["f"], lstm.weight_hh[4:8].double())
    assert len(recurrent_blocks(MUTCell(3, 4, arch=2))) == 3
    with pytest.raises(ValueError, match="no recurrent weight W_hh"):
        recurrent_blocks(MinGRUCell(3, 4))


def test_analyze_spectrum_command(tmp_path, capsys, tiny_text_file) -> None:
    out = tmp_path / "s.png"
    assert main(["analyze", "spectrum", "--cell", "gru", "--hidden", "16", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    numbers = json.loads(out.with_suffix(".json").read_text())
    assert list(numbers["blocks"]) == ["r", "z", "n"] and "spectral radius" in capsys.readouterr().out
    run = tmp_path / "lm"
    small = ["--hidden", "8", "--layers", "2", "--seq-len", "8", "--batch-size", "4", "--max-steps", "1"]
    assert (
        main(["train", "charlm", "--text", str(tiny_text_file), *small, "--no-progress", "--out", str(run)])
        == 0
    )
    assert main(["analyze", "spectrum", str(run), "--layer", "1", "--out", str(out)]) == 0
    assert "rnn.cells.1 (GRUCell)" in capsys.readouterr().out
    for argv, message in [
        ([str(run), "--layer", "2"], "out of range: the run has 2 recurrent cells"),
        (["--cell", "mingru"], "no recurrent weight W_hh"),
        ([str(run), "--cell", "gru"], "not both"),
        (["--cell", "gru", "--out", str(tmp_path / "x.jpg")], "ending in .png"),
    ]:
        assert main(["analyze", "spectrum", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x.jpg").exists()


# ---- gradients -----------------------------------------------------------------------------
def _fresh(cell: str, forget_bias: float | None = None, hidden: int = 32, layers: int = 1):
    from unrolled.tasks.base import RecurrentConfig

    torch.manual_seed(0)
    cfg = RecurrentConfig(cell=cell, hidden=hidden, layers=layers, forget_bias=forget_bias)
    return cfg.build_recurrent(hidden)


def test_at_init_the_elman_gradient_vanishes_and_the_lstm_keeps_it() -> None:
    x = torch.randn(4, 50, 32, generator=torch.Generator().manual_seed(1))
    rnn, gru, lstm = (
        gradient_flow(_fresh(c, fb), x)["layers"][0]
        for c, fb in (("rnn", None), ("gru", None), ("lstm", 1.0))
    )
    assert rnn["grad_decay"] < gru["grad_decay"] < lstm["grad_decay"]
    assert rnn["grad_decay"] < 0.7 and lstm["grad_decay"] > 0.75  # geometric fall vs a slow one
    assert rnn["grad_norm"][0] < 1e-6 * lstm["grad_norm"][0]  # 49 steps back
    assert rnn["jacobian_decay"] < lstm["jacobian_decay"]
    assert rnn["grad_norm"][-1] == pytest.approx(1.0)  # dL/dh_T = w, a unit vector


def test_jacobian_product_equals_autograd_through_the_unrolled_loop() -> None:
    layer = _fresh("lstm", hidden=5).double()
    cell = layer.cells[0]
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    r = gradient_flow(layer, x)["layers"][0]

    def final_from(t: int, b: int):
        def f(s):  # s_t of sample b (h and c) -> s_T
            state = (s[:5][None], s[5:][None])
            for k in range(t + 1, 6):
                _, state = cell(x[b : b + 1, k], type(cell.init_state(1))(*state))
            return torch.cat([state[0][0], state[1][0]])

        return f

    state = cell.init_state(2, dtype=torch.float64)
    states = []
    for k in range(6):
        _, state = cell(x[:, k], state)
        states.append(torch.cat([state[0], state[1]], 1).detach())
    for t in (0, 3, 5):
        norms = [
            torch.linalg.matrix_norm(
                torch.autograd.functional.jacobian(final_from(t, b), states[t][b]), ord=2
            )
            for b in range(2)
        ]
        assert r["jacobian_norm"][t] == pytest.approx(float(sum(norms) / 2), rel=1e-9)


def test_analyze_gradients_command(tmp_path, capsys, tiny_text_file) -> None:
    out = tmp_path / "g.png"
    argv = ["analyze", "gradients", "--compare", "rnn,lstm", "--forget-bias", "1", "--steps", "20"]
    assert main([*argv, "--hidden", "16", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    numbers = json.loads(out.with_suffix(".json").read_text())
    assert (
        list(numbers) == ["rnn", "lstm (forget bias 1)"]
        and len(numbers["rnn"]["layers"][0]["grad_norm"]) == 20
    )
    assert "per step" in capsys.readouterr().out
    run = tmp_path / "lm"
    small = ["--hidden", "8", "--layers", "2", "--seq-len", "8", "--batch-size", "4", "--max-steps", "1"]
    assert (
        main(["train", "charlm", "--text", str(tiny_text_file), *small, "--no-progress", "--out", str(run)])
        == 0
    )
    assert main(["analyze", "gradients", str(run), "--steps", "10", "--out", str(out)]) == 0
    assert "rnn, layer 1" in capsys.readouterr().out
    for args, message in [
        ([str(run), "--module", "1"], "out of range: the run's recurrent layers are 0: rnn"),
        (["--compare", "rnn,xyz"], "unknown cell 'xyz'"),
        (["--cell", "rnn", "--steps", "0"], "--steps must be positive"),
        ([str(run), "--cell", "gru"], "give one of"),
    ]:
        assert main(["analyze", "gradients", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


# ---- sequential Jacobian -------------------------------------------------------------------
def test_a_model_that_looks_one_step_back_has_a_zero_jacobian_beyond_it() -> None:
    import functools

    from unrolled import Recurrent
    from unrolled.analysis.jacobian import sequential_jacobian
    from unrolled.models import LanguageModel

    torch.manual_seed(0)
    rnn = Recurrent(functools.partial(RNNCell, hidden_size=3), 4, batch_first=True)
    model = LanguageModel(6, rnn, embedding_dim=4).double()
    with torch.no_grad():  # U = 1.5 e1 e2^T: U D U = 0 for every diagonal D, so h_T sees x_T and x_{T-1} only
        rnn.cells[0].weight_hh.zero_()
        rnn.cells[0].weight_hh[0, 1] = 1.5
    norms = sequential_jacobian(model, torch.tensor([1, 2, 3, 4, 5, 0, 1, 2]))
    assert all(v == 0 for v in norms[:-2]) and norms[-2] > 0 and norms[-1] > 0
    with torch.no_grad():
        rnn.cells[0].weight_hh.normal_()  # a full recurrence looks all the way back
    assert all(v > 0 for v in sequential_jacobian(model, torch.tensor([1, 2, 3, 4, 5, 0, 1, 2])))


def test_analyze_jacobian_command(tmp_path, capsys, tiny_text_file) -> None:
    run = tmp_path / "lm"
    small = ["--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "4", "--max-steps", "1"]
    assert (
        main(["train", "charlm", "--text", str(tiny_text_file), *small, "--no-progress", "--out", str(run)])
        == 0
    )
    out = tmp_path / "j.png"
    assert main(["analyze", "jacobian", str(run), "--text", "The river runs\nwhere", "--out", str(out)]) == 0
    assert (
        out.read_bytes()[:4] == b"\x89PNG"
        and len(json.loads(out.with_suffix(".json").read_text())["norms"]) == 20
    )
    assert "characters back" in capsys.readouterr().out
    tr = tmp_path / "tr"
    tiny = [
        "--train-numbers",
        "100",
        "--held-out",
        "5",
        "--hidden",
        "8",
        "--embedding-dim",
        "4",
        "--max-steps",
        "1",
    ]
    assert main(["train", "translate", *tiny, "--no-progress", "--out", str(tr)]) == 0
    capsys.readouterr()
    for argv, message in [
        ([str(run), "--text", "x" * 1001], "the limit is 1000"),
        ([str(run), "--text", "ZZZ~"], "not in the model's vocabulary"),
        ([str(tr), "--text", "one"], "reads a char-LM run"),
    ]:
        assert main(["analyze", "jacobian", *argv, "--out", str(tmp_path / "k.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "k.png").exists()


def test_a_run_without_a_recurrent_layer_is_refused(tmp_path, capsys) -> None:
    rows = "label,text\n" + "".join(
        f"{'pos' if i % 2 else 'neg'},the film was {'bright' if i % 2 else 'dull'} and long\n"
        for i in range(60)
    )
    (tmp_path / "moods.csv").write_text(rows, encoding="utf-8")
    run = tmp_path / "cnn"
    small = [
        "--channels",
        "4",
        "--embedding-dim",
        "8",
        "--batch-size",
        "8",
        "--max-steps",
        "1",
        "--no-progress",
    ]
    train = [
        "train",
        "classify",
        "--data",
        str(tmp_path / "moods.csv"),
        "--arch",
        "cnn",
        *small,
        "--out",
        str(run),
    ]
    assert main(train) == 0
    (tmp_path / "t.txt").write_text("the film", encoding="utf-8")
    capsys.readouterr()
    for argv, message in [
        (["spectrum", str(run)], "has no recurrent layer to analyse"),
        (["gradients", str(run)], "has no recurrent layer to analyse"),
        (["jacobian", str(run), "--text", "the film"], "reads a char-LM run; "),
        (["neurons", str(run), "--text", str(tmp_path / "t.txt")], "reads a char-LM run; "),
    ]:
        assert (
            main(["analyze", *argv, "--out", str(tmp_path / ("x.html" if argv[0] == "neurons" else "x.png"))])
            == 2
        )
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not list(tmp_path.glob("x.*"))
