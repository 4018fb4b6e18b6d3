"""The experiments: the a^n b^n protocol, resumable studies, and the LSTM ablation's statistics."""

from __future__ import annotations

import json

import pytest
import torch

from unrolled.cli import main
from unrolled.experiments import ablation, counting
from unrolled.experiments.counting import A, B, CountingConfig, generalises_to, labels, recognised


def test_labels_accept_exactly_the_prefixes_in_the_language() -> None:
    assert labels([A, A, B, B, B]) == [0, 0, 0, 1, 0]
    assert labels([A, B, A, B]) == [0, 1, 0, 0]  # an a after a b: never again
    assert labels([B, A, B]) == [0, 0, 0]
    assert labels([A] * 3) == [0, 0, 0]


def test_training_batch_is_labelled_and_masked() -> None:
    g = torch.Generator().manual_seed(0)
    x, y, mask = counting.training_batch(6, 16, g)
    assert x.shape[:2] == y.shape == mask.shape and x.size(2) == 2
    for i in range(16):
        n = int(mask[i].sum())
        s = x[i, :n].argmax(-1).tolist()
        assert y[i, :n].tolist() == labels(s) and not y[i, n:].any()
        assert s[0] == A or i % 4 == 3  # only the random strings may start with b
    assert y.sum() > 0  # the near misses and hits hold positives


class _Oracle(torch.nn.Module):
    """Decides membership exactly, up to n = ``limit`` (beyond it, it accepts nothing)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for row in x.argmax(-1).tolist():
            ok = labels(row)
            a = [row[: t + 1].count(A) for t in range(len(row))]
            out.append([10.0 if y and a[t] <= self.limit else -10.0 for t, y in enumerate(ok)])
        return torch.tensor(out)


def test_recognised_and_reach_on_a_model_that_counts_to_seven() -> None:
    passed = recognised(_Oracle(7), 12)
    assert passed == [True] * 7 + [False] * 5
    assert generalises_to(passed) == 7
    assert generalises_to([True, False, True]) == 1 and generalises_to([False]) == 0


def test_counting_study_resumes_and_refuses_other_settings(tmp_path, monkeypatch) -> None:
    config = CountingConfig(cells=["rnn", "lstm"], seeds=1, train_max=3, steps=20, hidden=4)
    study = counting.run_counting(config, tmp_path)
    assert sorted(study.runs) == ["lstm/seed0", "rnn/seed0"]
    saved = json.loads((tmp_path / "counting.json").read_text())
    assert set(saved["summary"]) == {"rnn", "lstm"} and len(saved["summary"]["rnn"]["share_by_n"]) == 15
    lstm = saved["runs"]["lstm/seed0"]
    assert lstm["trace"]["state"] == "c" and len(lstm["trace"]["values"]) == 2 * 15 + 1

    del saved["runs"]["lstm/seed0"]  # as if killed during the LSTM's run
    (tmp_path / "counting.json").write_text(json.dumps(saved))
    trained = []
    real = counting.train_one
    monkeypatch.setattr(
        counting, "train_one", lambda c, cell, seed: trained.append(cell) or real(c, cell, seed)
    )
    counting.run_counting(config, tmp_path)
    assert trained == ["lstm"]
    with pytest.raises(ValueError, match=r"holds a study with other settings \(steps differ\)"):
        counting.run_counting(CountingConfig(cells=["rnn", "lstm"], seeds=1, train_max=3, steps=21, hidden=4),
                              tmp_path)  # fmt: skip


def test_counting_command_writes_table_plot_and_results(tmp_path, capsys) -> None:
    out = tmp_path / "study"
    args = ["--cells", "gru", "--seeds", "1", "--train-max", "2", "--steps", "10", "--hidden", "3"]
    assert main(["experiment", "counting", *args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "gru seed 0: recognises every n up to" in text and "reach" in text
    assert (out / "counting.png").stat().st_size > 1000 and (out / "counting.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["experiment", "counting", "--cells", "lstm,abacus"], "unknown cell 'abacus'"),
        (["experiment", "counting", "--train-max", "0"], "--train-max must be positive"),
        (["experiment", "ablation", "--variants", "vanilla,NXG"], "unknown variant 'NXG': expected vanilla,"),
        (["experiment", "ablation", "--task", "translate"], "the ablation trains char-LMs"),
        (["experiment", "ablation", "--variants", "NP,NP"], "names a variant twice"),
        (["experiment", "ablation", "--max-minutes", "0"], "--max-minutes must be positive"),
    ],
)
def test_experiment_bad_input(args, message, tmp_path, capsys) -> None:
    assert main([*args, "--out", str(tmp_path / "s")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_welch_is_scipys_and_the_summary_is_right() -> None:
    from scipy import stats

    a, b = [1.50, 1.52, 1.49], [1.60, 1.58, 1.65]
    assert ablation.welch(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert ablation.welch(a, [1.0]) is None
    runs = {f"{v}/seed{s}": {"variant": v, "seed": s, "val_loss": x, "steps": 10}
            for v, xs in (("vanilla", a), ("NFG", b)) for s, x in enumerate(xs)}  # fmt: skip
    config = ablation.AblationConfig(variants=["vanilla", "NFG"], max_steps=10)
    summary = ablation.summarise(config, runs)
    assert summary["NFG"]["mean"] == pytest.approx(sum(b) / 3)
    assert summary["NFG"]["sd"] == pytest.approx(float(torch.tensor(b).std()))
    assert summary["NFG"]["vs_vanilla"] == pytest.approx(sum(b) / 3 - sum(a) / 3)
    assert summary["vanilla"]["p_welch"] is None and summary["NFG"]["p_welch"] < 0.05
    assert ablation.table(summary).splitlines()[1].startswith("vanilla")  # best first


def test_ablation_study_trains_each_variant_and_seed_and_resumes(tiny_text_file, tmp_path, capsys) -> None:
    out = tmp_path / "abl"
    args = ["experiment", "ablation", "--variants", "vanilla,CIFG", "--seeds", "2", "--max-steps", "3",
            "--hidden", "8", "--batch-size", "4", "--seq-len", "20", "--text", str(tiny_text_file),
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((out / "ablation.json").read_text())
    assert sorted(saved["runs"]) == ["CIFG/seed0", "CIFG/seed1", "vanilla/seed0", "vanilla/seed1"]
    assert all(r["steps"] == 3 for r in saved["runs"].values())
    config = json.loads((out / "runs" / "CIFG-seed1" / "config.json").read_text())
    assert config["model"]["variant"] == "CIFG" and config["loop"]["seed"] == 1
    assert saved["runs"]["CIFG/seed0"]["val_loss"] != saved["runs"]["CIFG/seed1"]["val_loss"]  # seeds differ
    assert (out / "ablation.png").stat().st_size > 1000
    capsys.readouterr()

    del saved["runs"]["vanilla/seed1"]  # killed during this run: its directory is there, unfinished
    (out / "ablation.json").write_text(json.dumps(saved))
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[2/4] vanilla seed 1 ..." in printed and printed.count(" ...") == 1
    assert "vanilla/seed1" in json.loads((out / "ablation.json").read_text())["runs"]
