"""--device: where a command runs its model; run directories stay device-free."""

from __future__ import annotations

import pytest
import torch

from unrolled.cli import main
from unrolled.tasks import lm
from unrolled.training import checkpoint as ckpt
from unrolled.training.device import resolve_device, to_device

SMALL = ["--hidden", "16", "--batch-size", "4", "--seq-len", "16", "--no-progress", "--sample-length", "0"]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown --device 'tpu': expected auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(
            ValueError, match="--device cuda:1: this machine has no CUDA device.*--device cpu works"
        ):
            resolve_device("cuda:1")
    batch = ((torch.ones(2), torch.zeros(1)), torch.ones(3))
    assert to_device(batch, torch.device("cpu"))[0][1].device.type == "cpu"


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_every_command_takes_a_device(tiny_text_file, tmp_path, capsys, device) -> None:
    out = tmp_path / "run"
    assert main(["train", "charlm", "--text", str(tiny_text_file), "--out", str(out), "--max-steps", "2",
                 "--device", device, *SMALL]) == 0  # fmt: skip
    assert main(["sample", str(out), "--length", "10", "--seed", "1", "--device", device]) == 0
    assert main(["eval", str(out), "--text", str(tiny_text_file), "--device", device]) == 0
    assert main(["train", "charlm", "--resume", str(out), "--max-steps", "1", "--device", device,
                 "--no-progress", "--sample-length", "0"]) == 0  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
@pytest.mark.parametrize("command", ["train", "sample", "eval"])
def test_cuda_without_a_gpu_is_one_line(tiny_text_file, tmp_path, capsys, command) -> None:
    out = tmp_path / "run"
    if command != "train":
        assert main(["train", "charlm", "--text", str(tiny_text_file), "--out", str(out), "--max-steps", "1",
                     *SMALL]) == 0  # fmt: skip
        capsys.readouterr()
    argv = {
        "train": ["train", "charlm", "--text", str(tiny_text_file), "--out", str(out), *SMALL],
        "sample": ["sample", str(out)],
        "eval": ["eval", str(out), "--text", str(tiny_text_file)],
    }[command]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0] and "--device cpu works" in err[0], err
    if command == "train":
        assert not out.exists()


@CUDA
def test_a_run_trained_on_the_gpu_samples_and_resumes_on_the_cpu_and_back(tiny_text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "charlm", "--text", str(tiny_text_file), "--out", str(out), "--max-steps", "4",
                 "--device", "cuda", "--dropout", "0.2", *SMALL]) == 0  # fmt: skip
    weights = ckpt.load_weights(ckpt.weights_file(out, ckpt.LATEST))[0]
    assert all(w.device.type == "cpu" for w in weights.values())  # the run directory is device-free
    gpu = lm.open_run(out, device="cuda")
    cpu = lm.open_run(out, device="cpu")
    ids = gpu.vocab.encode("ALICE:").unsqueeze(0)
    torch.testing.assert_close(gpu.model(ids.cuda())[0].cpu(), cpu.model(ids)[0], atol=1e-4, rtol=1e-4)
    assert main(["train", "charlm", "--resume", str(out), "--max-steps", "2", "--device", "cpu",
                 "--no-progress", "--sample-length", "0"]) == 0  # fmt: skip
    assert main(["train", "charlm", "--resume", str(out), "--max-steps", "2", "--device", "cuda",
                 "--no-progress", "--sample-length", "0"]) == 0  # fmt: skip
    assert ckpt.trainer_state(out)["step"] == 8
    assert main(["sample", str(out), "--length", "20", "--device", "cuda", "--seed", "1"]) == 0


def test_bench_takes_a_device(tmp_path, capsys) -> None:
    if not torch.cuda.is_available():
        assert main(["bench", "conv", "--smoke", "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    assert (
        main(
            [
                "bench",
                "conv",
                "--smoke",
                "--repeats",
                "1",
                "--device",
                "cpu",
                "--json",
                str(tmp_path / "c.json"),
            ]
        )
        == 0
    )
    assert '"device": "cpu"' in (tmp_path / "c.json").read_text()


@CUDA
def test_bench_speed_on_cuda_times_auto_against_cudnn(tmp_path) -> None:
    import json

    out = tmp_path / "speed.json"
    assert main(["bench", "speed", "--smoke", "--repeats", "1", "--device", "cuda", "--json", str(out)]) == 0
    names = {r["name"] for r in json.loads(out.read_text())["results"]}
    assert {"gru/auto", "lstm/auto", "rnn/auto"} <= names
