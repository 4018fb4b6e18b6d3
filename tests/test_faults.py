"""Faults outside the model: a disk that fills up in the middle of a save; run directories that the
commands which only read them (sample, eval, predict, ...) must leave exactly as they were, for every
task; and copies of a run taken while a save was switching its checkpoints."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
from conftest import task_data

import unrolled
from unrolled.cli import main
from unrolled.training import checkpoint as ckpt

SMALL = ["--hidden", "16", "--batch-size", "4", "--seq-len", "16", "--no-progress", "--sample-length", "0"]


def _snapshot(folder) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: (size, modification time in ns)."""
    return {
        os.path.relpath(os.path.join(d, f), folder): (st.st_size, st.st_mtime_ns)
        for d, _, files in os.walk(folder)
        for f in files
        if (st := os.stat(os.path.join(d, f)))
    }


@pytest.mark.parametrize("where", ["weights", "resume data", "pointer"])
def test_a_full_disk_during_a_save_is_one_line_and_the_last_commit_stays(
    tiny_text_file, tmp_path, capsys, monkeypatch, where
) -> None:
    out = tmp_path / "run"
    argv = ["train", "charlm", "--text", str(tiny_text_file), "--out", str(out), *SMALL, "--eval-every", "3"]
    assert main([*argv, "--max-steps", "3"]) == 0
    before = ckpt.trainer_state(out)
    real = ckpt.atomic_write_bytes
    target = {"weights": ckpt.WEIGHTS, "resume data": ckpt.RESUME, "pointer": ckpt.POINTER}[where]

    def full(path, data):
        if os.path.basename(path) == target:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    capsys.readouterr()
    assert main(["train", "charlm", "--resume", str(out), "--max-steps", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("unrolled: error: could not save the checkpoint of step 6")
    assert "(No space left on device); the checkpoint of step 3 is kept: make room" in err[0]
    monkeypatch.setattr(ckpt, "atomic_write_bytes", real)
    assert ckpt.trainer_state(out) == before  # the last commit, whole
    assert main(["sample", str(out), "--length", "20", "--seed", "1"]) == 0
    assert main(["train", "charlm", "--resume", str(out), "--max-steps", "3", "--no-progress"]) == 0
    assert ckpt.trainer_state(out)["step"] == 6


def test_commands_that_read_a_run_leave_it_as_it_was(tiny_text_file, tmp_path, capsys) -> None:
    """A run directory on a read-only medium works with every reader: none of them writes into it."""
    out = tmp_path / "run"
    argv = ["train", "charlm", "--text", str(tiny_text_file), "--out", str(out), *SMALL, "--max-steps", "4"]
    assert main(argv) == 0
    before = _snapshot(out)
    assert main(["sample", str(out), "--length", "20", "--seed", "1"]) == 0
    assert main(["sample", str(out), "--length", "20", "--latest"]) == 0
    assert main(["eval", str(out), "--text", str(tiny_text_file), "--json"]) == 0
    assert main(["analyze", "spectrum", str(out), "--out", str(tmp_path / "s.png")]) == 0
    unrolled.load(out).score("ALICE:\nThe river runs")
    assert _snapshot(out) == before


def _copy_mixed(a, b, dest, *, pointer_from, folders_from) -> None:
    """A copy of run ``a`` as ``cp -r`` could take it while a save turns it into ``b``: the files of
    one moment, the pointer of ``pointer_from`` and the checkpoint folders of ``folders_from``."""
    shutil.copytree(a, dest)
    shutil.rmtree(dest / ckpt.CHECKPOINTS)
    shutil.copytree(folders_from / ckpt.CHECKPOINTS, dest / ckpt.CHECKPOINTS)
    shutil.copy(pointer_from / ckpt.POINTER, dest / ckpt.POINTER)


COPIES = ["new pointer, old folders", "old pointer, new folders", "a folder cut short"]


@pytest.mark.parametrize("copy", COPIES)
def test_a_run_copied_while_a_save_is_in_progress_opens_and_resumes(
    tiny_text_file, tmp_path, capsys, caplog, copy
) -> None:
    a, b, dest = tmp_path / "before", tmp_path / "after", tmp_path / "copy"
    argv = ["train", "charlm", "--text", str(tiny_text_file), "--out", str(a), *SMALL, "--eval-every", "2"]
    assert main([*argv, "--max-steps", "2", "--lr-schedule", "constant"]) == 0
    shutil.copytree(a, b)
    for _ in range(2):  # two saves on: the checkpoints of `a` are all gone from `b`
        assert main(["train", "charlm", "--resume", str(b), "--max-steps", "2", "--no-progress"]) == 0
    assert not (set(os.listdir(a / ckpt.CHECKPOINTS)) & set(os.listdir(b / ckpt.CHECKPOINTS)))
    if copy == "new pointer, old folders":
        _copy_mixed(a, b, dest, pointer_from=b, folders_from=a)
        expected = 2
    else:
        _copy_mixed(a, b, dest, pointer_from=a, folders_from=b)
        expected = 6
        if copy == "a folder cut short":  # the pointer's folder, deleted by the save while being copied
            named = ckpt._named(a).latest.name
            (dest / ckpt.CHECKPOINTS / named).mkdir()
            shutil.copy(a / ckpt.CHECKPOINTS / named / ckpt.WEIGHTS, dest / ckpt.CHECKPOINTS / named)
    assert ckpt.trainer_state(dest)["step"] == expected
    weights, _, state = ckpt.load_checkpoint(dest)
    assert state["step"] == expected
    assert "a copy taken during a save?" in caplog.text
    predictor = unrolled.load(dest)
    assert predictor.step == state["best_step"] and len(predictor.sample("A", 10, seed=1)) == 10
    assert main(["sample", str(dest), "--length", "10", "--seed", "1"]) == 0
    assert main(["train", "charlm", "--resume", str(dest), "--max-steps", "2", "--no-progress"]) == 0
    assert ckpt._named(dest) == ckpt.committed(dest)  # the resumed save wrote a whole pointer again
    assert ckpt.trainer_state(dest)["step"] == expected + 2


SAMPLE = ["sample", "{run}", "--length", "5", "--seed", "1"]
READERS = {  # each task's commands that only read a run, and a verb of its predictor
    "word-lm": ([SAMPLE, ["eval", "{run}", "--text", "{folder}/text.txt"]], lambda p: p.score("the river")),
    "classify": (
        [["predict", "{run}", "--text", "old mill"], ["eval", "{run}", "--data", "{folder}/moods.csv"]],
        lambda p: p.predict(["the stone stormish"]),
    ),
    "translate": ([["translate", "{run}", "--text", "twenty one"]], lambda p: p.translate(["seven"])),
    "tag": (
        [["tag", "{run}", "--text", "the old mill"], ["eval", "{run}", "--data", "{folder}/tags.txt"]],
        lambda p: p.tag(["the river runs"]),
    ),
    "forecast": ([["forecast", "{run}", "--horizon", "1"], ["eval", "{run}"]], lambda p: p.forecast(1)),
}


@pytest.mark.parametrize("task", sorted(READERS))
def test_every_task_s_readers_leave_its_run_as_it_was(tmp_path, capsys, task) -> None:
    argv = task_data(tmp_path)[task]
    run = tmp_path / "run"
    assert main(["train", *argv, "--out", str(run), "--max-steps", "3", "--no-progress"]) == 0
    before = _snapshot(run)
    commands, verb = READERS[task]
    for command in commands:
        assert main([a.format(run=run, folder=tmp_path) for a in command]) == 0, command
    verb(unrolled.load(run))
    assert _snapshot(run) == before
