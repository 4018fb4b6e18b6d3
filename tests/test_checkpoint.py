"""Atomic writes and safe loading of run-directory files."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from unrolled.training import checkpoint as ckpt


def test_weights_round_trip_with_metadata(tmp_path) -> None:
    sd = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    ckpt.save_weights(tmp_path / "w.safetensors", sd, {"step": "7"})
    got, meta = ckpt.load_weights(tmp_path / "w.safetensors")
    assert meta == {"step": "7"}
    assert torch.equal(got["a"], sd["a"]) and torch.equal(got["b"], sd["b"])
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp files left


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_weights_give_a_clear_error(tmp_path, damage) -> None:
    path = tmp_path / "w.safetensors"
    ckpt.save_weights(path, {"a": torch.randn(64, 64)}, {"step": "1"})
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00" * 100, "empty": b""}[damage])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        ckpt.load_weights(path)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "state.json"
    ckpt.atomic_write_json(path, {"step": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.os, "replace", boom)
    with pytest.raises(OSError):
        ckpt.atomic_write_json(path, {"step": 2})
    assert ckpt.read_json(path, "state") == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_resume_file_loads_only_data(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("executed!",))

    torch.save({"x": Evil()}, tmp_path / "resume.pt")
    with pytest.raises(ValueError, match="truncated or corrupted"):
        ckpt.load_resume(tmp_path / "resume.pt")


# ---- a checkpoint is one commit ---------------------------------------------------------------
class Crash(BaseException):
    """Stands for the process dying (kill -9, power cut): nothing after it runs."""


# Every call that changes the file system during a save: a crash is injected before each one.
_FS_CALLS = [(os, "replace"), (os, "rename"), (os, "fsync"), (os, "unlink"), (shutil, "rmtree")]


def _count_and_crash(monkeypatch, crash_at: int | None, calls: list[str]) -> None:
    """Wrap ``ckpt.commit`` so that, inside it, file-system call number ``crash_at`` raises Crash."""
    real_commit = ckpt.commit

    def commit(*args, **kwargs):
        originals = {(mod, name): getattr(mod, name) for mod, name in _FS_CALLS}

        def wrap(mod, name):
            def call(*a, **k):
                if crash_at is not None and len(calls) == crash_at:
                    raise Crash(f"before {name} #{crash_at}")
                calls.append(name)
                return originals[mod, name](*a, **k)

            return call

        for mod, name in _FS_CALLS:
            setattr(mod, name, wrap(mod, name))
        try:
            return real_commit(*args, **kwargs)
        finally:
            for (mod, name), fn in originals.items():
                setattr(mod, name, fn)

    monkeypatch.setattr(ckpt, "commit", commit)


ARGS = ["--hidden", "8", "--batch-size", "2", "--seq-len", "8", "--dropout", "0.2", "--lr-schedule",
        "constant", "--no-progress", "--sample-length", "0"]  # fmt: skip


def _new(text, out, steps):
    from unrolled.cli import main

    return main(["train", "charlm", "--text", str(text), "--out", str(out), "--max-steps", str(steps), *ARGS])


def _resume(out, steps):
    from unrolled.cli import main

    quiet = ["--no-progress", "--sample-length", "0", "--eval-every", "1000"]  # one save, at the end
    return main(["train", "charlm", "--resume", str(out), "--max-steps", str(steps), *quiet])


def test_a_crash_between_any_two_writes_of_a_save_leaves_a_run_that_opens_and_resumes(
    tiny_text_file, tmp_path, monkeypatch
) -> None:
    from unrolled.tasks import lm

    reference = {}
    for steps in (3, 5, 7):  # unbroken runs: the weights each step should have
        assert _new(tiny_text_file, tmp_path / f"ref{steps}", steps) == 0
        reference[steps] = ckpt.load_weights(ckpt.weights_file(tmp_path / f"ref{steps}", ckpt.LATEST))[0]
    base = tmp_path / "base"
    assert _new(tiny_text_file, base, 3) == 0  # committed at steps 0 and 3

    calls: list[str] = []
    with monkeypatch.context() as m:  # count the calls of one save (resume 2 steps: one save at step 5)
        probe = tmp_path / "probe"
        shutil.copytree(base, probe)
        _count_and_crash(m, None, calls)
        assert _resume(probe, 2) == 0
    n = len(calls)
    assert n >= 10, calls  # three files, a folder, the pointer, each with its fsync, and the clean-up

    for k in range(n):
        out = tmp_path / f"crash{k}"
        shutil.copytree(base, out)
        with monkeypatch.context() as m:
            _count_and_crash(m, k, [])
            with pytest.raises(Crash):
                _resume(out, 2)
        step = ckpt.trainer_state(out)["step"]
        assert step in (3, 5), (k, calls[k], step)
        weights, _, _ = ckpt.load_checkpoint(out)  # the three files agree
        for key, value in weights.items():
            assert torch.equal(value, reference[step][key]), (k, calls[k], key)
        lm.open_run(out)  # sample / eval open it, with the best weights ...
        lm.open_run(out, weights=ckpt.LATEST)  # ... and with the latest
        previous = ckpt.committed(out).latest.name
        assert _resume(out, 2) == 0  # and --resume continues from the last complete checkpoint
        assert ckpt.trainer_state(out)["step"] == step + 2
        final = ckpt.load_weights(ckpt.weights_file(out, ckpt.LATEST))[0]
        assert all(torch.equal(final[key], reference[step + 2][key]) for key in final), (k, calls[k])
        kept = {p.name for p in (out / ckpt.CHECKPOINTS).iterdir()}
        pointer = json.loads((out / ckpt.POINTER).read_text())
        named = {pointer["latest"].split("/")[1], pointer["best"].split("/")[1]}
        assert kept == named | {previous}, (k, kept)  # the previous latest stays until the next save
        assert not list(out.glob(".*.tmp")), k  # leftovers of the crash are gone


def test_the_previous_checkpoint_is_kept_until_the_next_save(tmp_path) -> None:
    sd = {"w": torch.ones(2)}
    ckpt.commit(tmp_path, 1, sd, {"x": 1}, {"step": 1, "best_step": 1}, best=True)
    ckpt.commit(tmp_path, 2, {"w": torch.full((2,), 2.0)}, {"x": 2}, {"step": 2, "best_step": 1}, best=False)
    assert sorted(p.name for p in (tmp_path / ckpt.CHECKPOINTS).iterdir()) == [
        "step-00000001",
        "step-00000002",
    ]
    assert ckpt.load_weights(ckpt.weights_file(tmp_path, ckpt.BEST))[0]["w"].tolist() == [1.0, 1.0]
    assert ckpt.load_weights(ckpt.weights_file(tmp_path, ckpt.LATEST))[0]["w"].tolist() == [2.0, 2.0]
    ckpt.commit(tmp_path, 3, {"w": torch.full((2,), 3.0)}, {"x": 3}, {"step": 3, "best_step": 3}, best=True)
    folders = sorted(p.name for p in (tmp_path / ckpt.CHECKPOINTS).iterdir())
    assert folders == ["step-00000002", "step-00000003"]  # the old best went, the previous latest stays
    ckpt.commit(tmp_path, 3, {"w": torch.full((2,), 3.0)}, {"x": 3}, {"step": 3, "best_step": 3}, best=True)
    folders = sorted(p.name for p in (tmp_path / ckpt.CHECKPOINTS).iterdir())
    assert folders == ["step-00000003", "step-00000003.1"]  # saved again


def test_a_run_without_a_checkpoint_says_so(tmp_path) -> None:
    with pytest.raises(ValueError, match="has no checkpoint yet"):
        ckpt.committed(tmp_path)


def test_a_reader_follows_a_save_that_deletes_the_checkpoint_it_was_about_to_open(tmp_path) -> None:
    """sample/eval take no lock: a commit may delete the folder between reading the pointer and the file."""

    def save(step: int) -> None:
        w = {"w": torch.full((2,), float(step))}
        ckpt.commit(tmp_path, step, w, {}, {"step": step, "best_step": step}, best=True)

    save(1)
    seen = []

    def read(c):
        seen.append(c.latest.name)
        if len(seen) == 1:  # the training process commits steps 2 and 3 right now, which deletes step 1
            save(2)
            save(3)
        return ckpt.load_weights(c.latest / ckpt.WEIGHTS)[0]["w"].tolist()

    assert ckpt.read_committed(tmp_path, read) == [3.0, 3.0]
    assert seen == ["step-00000001", "step-00000003"]
    with pytest.raises(ValueError, match="weights file is missing"):  # a file missing for good is an error
        ckpt.read_committed(tmp_path, lambda c: ckpt.load_weights(c.latest / "nope.safetensors"))


def test_a_new_run_cut_short_before_its_first_checkpoint_leaves_nothing_in_the_way(
    tiny_text_file, tmp_path, monkeypatch
) -> None:
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _count_and_crash(m, 3, [])  # die in the middle of the step-0 save
        with pytest.raises(Crash):
            _new(tiny_text_file, out, 2)
    assert not out.exists()  # the run was made in a hidden folder and never renamed into place
    assert _new(tiny_text_file, out, 2) == 0  # the same command simply works again
    assert ckpt.trainer_state(out)["step"] == 2
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~ckpt._umask())  # the usual permissions
