"""Atomic writes and safe loading of run-directory files."""

from __future__ import annotations

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
