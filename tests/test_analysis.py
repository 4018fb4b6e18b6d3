"""Analysis: the spectrum of W_hh per gate block and the lecture's power iteration, and its command."""

from __future__ import annotations

import json

import pytest
import torch

from unrolled import GRUCell, LSTMCell, MinGRUCell, MUTCell, RNNCell
from unrolled.analysis import power_iteration, recurrent_blocks, spectrum
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
