"""Every bad input gets one line on stderr, exit code 2, no traceback, nothing half-written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from unrolled.cli import main
from unrolled.training import checkpoint as ckpt

SMALL = ["--hidden", "8", "--batch-size", "2", "--seq-len", "8", "--no-progress", "--sample-length", "0"]


def _fails(capsys, argv, pattern):
    with pytest.raises(SystemExit) as e:  # argparse-level errors exit directly
        code = main(argv)
        raise SystemExit(code)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert pattern in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def run_dir(tiny_text_file, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "charlm", "--text", str(tiny_text_file), "--out", str(out), "--max-steps", "3", *SMALL]
    assert main(argv) == 0
    capsys.readouterr()  # the tests look only at what their own command prints
    return out


@pytest.mark.parametrize(
    "content, pattern",
    [
        (None, "text file not found"),
        ("DIR", "got a directory"),
        (b"", "text file is empty"),
        ("caf\xe9".encode("latin-1"), "is not UTF-8 text"),
        (b"too short", "text is too short for one batch"),
    ],
)
def test_bad_text_files(capsys, tmp_path, content, pattern) -> None:
    path = tmp_path / "in.txt"
    if content == "DIR":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    _fails(capsys, ["train", "charlm", "--text", str(path), "--out", str(out), *SMALL], pattern)
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize(
    "flags, pattern",
    [
        (["--seq-len", "0"], "--seq-len must be positive, got 0"),
        (["--batch-size", "-3"], "--batch-size must be positive, got -3"),
        (["--hidden", "0"], "--hidden must be positive, got 0"),
        (["--cell", "transformer"], "invalid choice: 'transformer'"),
        (["--val-frac", "1.5"], "--val-frac (1.5) must be in (0, 1)"),
        (["--lr", "-1"], "--lr must be positive"),
        (["--lr", "inf"], "--lr must be a finite number, got inf"),
        (["--max-epochs", "inf"], "--max-epochs must be a finite number, got inf"),
        (["--max-minutes", "nan"], "--max-minutes must be a finite number, got nan"),
        (["--min-lr-ratio", "2"], "--min-lr-ratio must be in [0, 1], got 2.0"),
        (["--cell", "gru", "--variant", "CIFG"], "--variant applies to --cell lstm only, got --cell gru"),
        (["--cell", "rnn", "--layer-norm"], "--layer-norm applies to --cell lstm or gru, got --cell rnn"),
        (["--cell", "mut1", "--zoneout", "0.1"], "--zoneout applies to --cell lstm or gru, got --cell mut1"),
        (["--recurrent-dropout", "1.2"], "--recurrent-dropout must be in [0, 1), got 1.2"),
        (["--cell", "lstm", "--reset-before"], "--reset-before applies to --cell gru only, got --cell lstm"),
        (["--cell", "lstm", "--variant", "CIFG", "--forget-bias", "1"], "forget_bias needs a forget gate"),
    ],
)
def test_bad_numbers_and_choices(capsys, tiny_text_file, tmp_path, flags, pattern) -> None:
    out = tmp_path / "out"
    _fails(
        capsys, ["train", "charlm", "--text", str(tiny_text_file), "--out", str(out), *SMALL, *flags], pattern
    )
    assert not out.exists()


def test_resume_of_a_directory_that_is_not_a_run(capsys, tmp_path) -> None:
    _fails(capsys, ["train", "charlm", "--resume", str(tmp_path)], "not a run directory")
    _fails(capsys, ["train", "charlm", "--resume", str(tmp_path / "nope")], "not a run directory")


def test_resume_refuses_to_change_the_model(capsys, run_dir) -> None:
    _fails(
        capsys,
        ["train", "charlm", "--resume", str(run_dir), "--hidden", "32"],
        "--hidden cannot be changed on --resume",
    )


def test_out_dir_that_holds_a_run_is_not_overwritten(capsys, run_dir, tiny_text_file) -> None:
    _fails(
        capsys,
        ["train", "charlm", "--text", str(tiny_text_file), "--out", str(run_dir), *SMALL],
        "already exists",
    )


@pytest.mark.parametrize("cmd", ["sample", "eval"])
@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_weights(capsys, run_dir, tiny_text_file, cmd, damage) -> None:
    for file in (run_dir / ckpt.CHECKPOINTS).glob(f"*/{ckpt.WEIGHTS}"):
        data = file.read_bytes()
        file.write_bytes(
            data[: len(data) // 3] if damage == "truncate" else data[:8] + b"{" * (len(data) - 8)
        )
    argv = [cmd, str(run_dir)] + (["--text", str(tiny_text_file)] if cmd == "eval" else [])
    _fails(capsys, argv, "truncated or corrupted")


@pytest.mark.parametrize(
    "flags, pattern",
    [
        (["--temperature", "-0.5"], "--temperature must be >= 0"),
        (["--top-k", "0"], "--top-k must be between 1 and the vocabulary size"),
        (["--top-k", "1000"], "--top-k must be between 1 and the vocabulary size"),
        (["--prime", "ALICE ẞ and Ω"], "characters not in the model's vocabulary: 'ẞ', 'Ω'"),
    ],
)
def test_bad_sampling_options(capsys, run_dir, flags, pattern) -> None:
    _fails(capsys, ["sample", str(run_dir), *flags], pattern)
    assert capsys.readouterr().out == ""  # nothing printed before the error


def test_eval_of_text_with_unknown_characters(capsys, run_dir, tmp_path) -> None:
    other = tmp_path / "other.txt"
    other.write_text("Zebra quartz!", encoding="utf-8")
    _fails(capsys, ["eval", str(run_dir), "--text", str(other)], "characters not in the model's vocabulary")


def test_console_script_exit_code_and_single_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "unrolled", "sample", "/no/such/run"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "unrolled: error: not a run directory (no such directory): '/no/such/run'"


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["train", "--help"],
        ["train", "charlm", "--help"],
        ["sample", "--help"],
        ["eval", "--help"],
    ],
)
def test_help_everywhere(capsys, argv) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage: unrolled" in capsys.readouterr().out
