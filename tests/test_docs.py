"""docs/: every constructor in the cell table runs and has the parameter count printed; the custom-cell
example runs as written and behaves as a variable-length layer."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import torch

import unrolled

DOC = Path(__file__).resolve().parent.parent / "docs" / "cells.md"


def test_cell_table_parameter_counts() -> None:
    rows = re.findall(
        r"^\| [^|]+ \| `([^`]+)` \| [^|]+ \| ([\d,]+) \|", DOC.read_text(encoding="utf-8"), flags=re.M
    )
    assert len(rows) >= 19
    for constructor, count in rows:
        cell = eval(constructor, {"unrolled": unrolled})  # only the documented constructors
        assert sum(p.numel() for p in cell.parameters()) == int(count.replace(",", "")), constructor


CUSTOM = DOC.parent / "custom_cells.md"


def test_custom_cell_example_is_a_bidirectional_variable_length_layer(capsys) -> None:
    (example,) = re.findall(r"```python\n(.*?)```", CUSTOM.read_text(encoding="utf-8"), flags=re.S)
    cell_lines = example.split("class MinimalGatedUnit")[1].split("\n\n\nlayer")[0].count("\n")
    assert cell_lines <= 20  # "about 15 lines"
    env: dict = {"__name__": "__docs__"}
    exec(compile(example, str(CUSTOM), "exec"), env)
    printed = capsys.readouterr().out
    assert "torch.Size([14, 32]) torch.Size([4, 3, 16])" in printed
    assert "torch.Size([7, 3, 32]) ['gate.bias_l0'" in printed
    layer, sentences, out, h_n = env["layer"], env["sentences"], env["out"], env["h_n"]
    for b, seq in enumerate(sentences):  # each sequence alone gives the same outputs and final state
        alone, h_alone = layer(seq)
        n = len(seq)
        torch.testing.assert_close(out[:n, b], alone, atol=1e-6, rtol=0)
        assert torch.equal(out[n:, b], torch.zeros(7 - n, 32))
        torch.testing.assert_close(h_n[:, b], h_alone, atol=1e-6, rtol=0)
    cell = env["MinimalGatedUnit"](3, 4).double()
    x, h = torch.randn(2, 3, dtype=torch.float64, requires_grad=True), torch.randn(2, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x, h: cell(x, h)[0], (x, h.requires_grad_()))


CONV = DOC.parent / "convolutions.md"


def test_convolutions_example_prints_what_its_comments_say(capsys) -> None:
    (example,) = re.findall(r"```python\n(.*?)```", CONV.read_text(encoding="utf-8"), flags=re.S)
    exec(compile(example, str(CONV), "exec"), {"__name__": "__docs__"})
    printed = capsys.readouterr().out.splitlines()
    expected = [line.split("# ")[-1].strip() for line in example.splitlines() if line.startswith("print(")]
    assert printed == expected
    assert printed[0] == "9,895,604,649,984"  # the lecture's count


NEW_TASK = DOC.parent / "new_task.md"


def test_new_task_example_is_a_whole_task(tmp_path, monkeypatch, capsys) -> None:
    """The page's module, saved as a package outside unrolled and listed in MODULES, trains,
    resumes and is evaluated from the command line."""
    import json

    import unrolled.tasks
    from unrolled.cli import main

    example, predictor = re.findall(r"```python\n(.*?)```", NEW_TASK.read_text(encoding="utf-8"), flags=re.S)
    assert example.count("\n") <= 110  # a whole task in about a hundred lines
    (tmp_path / "doctasks").mkdir()
    (tmp_path / "doctasks" / "__init__.py").write_text("")
    (tmp_path / "doctasks" / "majority.py").write_text(example)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(unrolled.tasks, "MODULES", (*unrolled.tasks.MODULES, "doctasks.majority"))
    out = tmp_path / "run"
    assert main(["train", "majority", "--out", str(out), "--max-steps", "200", "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_accuracy"] for r in records if r["kind"] == "val"][-1] > 0.95
    assert main(["train", "majority", "--resume", str(out), "--max-steps", "10", "--no-progress"]) == 0
    bits = tmp_path / "bits.txt"
    bits.write_text("1010101\n1111111\n0000000\n0001011\n")
    capsys.readouterr()
    assert main(["eval", str(out), "--bits", str(bits), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["strings"] == 4
    assert main(["eval", str(out), "--text", str(bits)]) == 2  # a majority run takes --bits
    assert "a majority run is evaluated on a file: give --bits FILE (not --text)" in capsys.readouterr().err
    # a task from outside the package opens too: the base predictor, without verbs of its own
    run = unrolled.load(out, which="latest")
    assert run.task == "majority" and run.step == 210 and run.config.model.hidden == 16
    bits = torch.tensor([[1, 1, 1, 0, 1, 0, 1], [0, 0, 1, 0, 0, 0, 1]])
    assert run.model(bits).argmax(1).tolist() == [1, 0]
    with pytest.raises(AttributeError, match=r"no .predict\(\): its task defines no verbs"):
        run.predict(bits)
    module = importlib.import_module("doctasks.majority")  # the page's predictor, added to the task
    exec(compile(predictor, str(NEW_TASK), "exec"), module.__dict__)
    assert unrolled.load(out).predict(["1101101", "0001000", "0111000"]) == [True, False, False]


TRANSLATION = DOC.parent / "translation.md"


def test_translation_worked_example_prints_what_the_doc_shows(capsys) -> None:
    text = TRANSLATION.read_text(encoding="utf-8")
    example = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "sentence_bleu" in b)
    shown = re.search(r"```python\n" + re.escape(example) + r"```\n\n```text\n(.*?)```", text, flags=re.S)
    assert shown is not None
    exec(compile(example, str(TRANSLATION), "exec"), {"__name__": "__docs__"})
    assert capsys.readouterr().out == shown.group(1)
