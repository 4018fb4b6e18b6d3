"""The README's Python example runs exactly as written, and its commands are the real ones."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_python_example_runs(capsys) -> None:
    # the library's example (the other block, unrolled.load, needs trained runs: tests/test_api.py and
    # each task's tests run those verbs)
    (example,) = [b for b in _blocks("python") if "unrolled.LSTM(" in b]
    exec(compile(example, str(README), "exec"), {"__name__": "__readme__"})
    assert "torch.Size([7, 3, 32]) torch.Size([4, 3, 16])" in capsys.readouterr().out


def test_ci_runs_the_readme_test_command() -> None:
    test_command = _blocks("bash")[1].strip()
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "pytest" in test_command and test_command in ci
