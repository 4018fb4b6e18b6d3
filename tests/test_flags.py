"""Flags made from the config dataclasses: names, types, defaults and help from one source."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

import pytest

from unrolled.cli import build_parser, main
from unrolled.tasks import registry
from unrolled.training.flags import add_config_flags, apply_flags, comments, flag, given_flags


@dataclass
class Section:
    """A section of a config, as the tasks write them."""

    size: int = 3  # how big
    # a comment above a field is help too,
    # over several lines
    rate: float = flag(0.5, name="learning-rate")
    name: str | None = flag(None, choices=("a", "b"))
    widths: list[int] = flag(factory=lambda: [3, 4])  # kernel widths
    on: bool = False  # switch it on
    keep: bool = flag(True, name="drop")  # a True default is cleared by its flag
    secret: int = flag(0, hidden=True)  # no flag


@dataclass
class Config:
    part: Section


@dataclass
class Tricky:
    """Docstring lines that look like fields:
    size: not a field's help
    """

    size: int | None = 1  # the real help
    shout: bool = True  # say it loudly
    long: list[int] = flag(
        factory=lambda: [1],
    )  # a field over several lines

    def validate(self) -> None:
        size: int = 0  # a local variable is not a field
        del size


@dataclass
class Child(Tricky):
    extra: float = 0.0  # a field of the subclass


def test_comment_parsing_ignores_docstrings_and_methods_and_follows_inheritance() -> None:
    assert comments(Child) == {
        "size": "the real help",
        "shout": "say it loudly",
        "long": "a field over several lines",
        "extra": "a field of the subclass",
    }
    parser = argparse.ArgumentParser()
    made = add_config_flags(parser, Config(Child()))  # type: ignore[arg-type]
    assert [f.option for f in made] == ["--size", "--no-shout", "--long", "--extra"]
    assert "turn off: say it loudly" in " ".join(parser.format_help().split())
    given = given_flags(parser.parse_args(["--size", "none", "--no-shout"]), made)
    assert {f.name: v for f, v in given.items()} == {"size": None, "shout": False}


def test_a_field_of_a_type_without_a_flag_is_an_error_at_once() -> None:
    @dataclass
    class Odd:
        names: list[str] = flag(factory=list)  # no parser for this

    with pytest.raises(TypeError, match="Odd.names: no flag for the type list\\[str\\]"):
        add_config_flags(argparse.ArgumentParser(), Config(Odd()))  # type: ignore[arg-type]


def test_a_flag_per_field_with_its_comment_type_and_default() -> None:
    assert comments(Section)["rate"] == "a comment above a field is help too, over several lines"
    parser = argparse.ArgumentParser()
    made = add_config_flags(parser, Config(Section(size=7)))
    assert [f.option for f in made] == ["--size", "--learning-rate", "--name", "--widths", "--on", "--drop"]
    help_text = " ".join(parser.format_help().split())
    assert "--size N how big [7]" in help_text  # the instance's default, not the class's
    assert "over several lines [0.5]" in help_text and "--secret" not in help_text
    args = parser.parse_args(["--widths", "5,6", "--on", "--drop", "--name", "b"])
    given = given_flags(args, made)
    assert {f.name: v for f, v in given.items()} == {"widths": [5, 6], "on": True, "keep": False, "name": "b"}
    config = Config(Section())
    apply_flags(config, given)
    assert (config.part.widths, config.part.on, config.part.keep, config.part.size) == (
        [5, 6],
        True,
        False,
        3,
    )


def test_every_config_field_of_every_task_is_a_documented_flag() -> None:
    for task in registry().values():
        parser = argparse.ArgumentParser()
        made = add_config_flags(parser, task.Config())
        config = task.Config()
        for section in fields(config):
            helps = comments(type(getattr(config, section.name)))
            for f in fields(getattr(config, section.name)):
                assert helps.get(f.name), (
                    f"{task.name}: {section.name}.{f.name} has no comment to be its help"
                )
        assert len({f.option for f in made}) == len(made)


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_shows_each_tasks_own_defaults(capsys) -> None:
    classify = _help(["train", "classify"], capsys)
    assert "--lr X peak learning rate" in classify and "[0.001]" in classify  # ClassifyConfig's, not 3e-3
    assert "--patience N stop after N validations without a better validation loss [5]" in classify
    assert "--widths W,W,... cnn: kernel widths (Kim 2014) [3,4,5]" in classify
    assert "as if given --max-minutes 10 and --max-epochs 10" in classify
    charlm = _help(["train", "charlm"], capsys)
    assert "[chars 3e-3 (Adam), words 20 (SGD)]" in charlm and "--reset-before" in charlm
    assert "--on-nonfinite {stop,skip}" in charlm
    assert "--tie-weights" in charlm and "--no-tie-weights" in charlm  # a bool | None setting: both


def test_bad_flag_values_are_one_line_errors(capsys, tmp_path) -> None:
    for argv, message in [
        (["train", "classify", "--widths", "3,x"], "expected positive integers separated by commas"),
        (["train", "charlm", "--on-nonfinite", "ignore"], "invalid choice: 'ignore'"),
        (["train", "charlm", "--hidden", "many"], "invalid int value: 'many'"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_resume_allows_loop_flags_but_not_the_seed(tiny_text_file, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    small = ["--hidden", "8", "--batch-size", "2", "--seq-len", "8", "--no-progress", "--sample-length", "0"]
    assert (
        main(
            ["train", "charlm", "--text", str(tiny_text_file), "--out", str(out), "--max-steps", "1", *small]
        )
        == 0
    )
    resume = ["train", "charlm", "--resume", str(out), "--no-progress", "--sample-length", "0"]
    assert main([*resume, "--seed", "2"]) == 2
    assert "--seed cannot be changed on --resume" in capsys.readouterr().err
    assert main([*resume, "--max-steps", "1", "--eval-every", "1", "--log-every", "1"]) == 0


def test_the_cli_is_small_and_no_task_imports_another() -> None:
    """The skeleton's promises: cli.py holds no task's code, and a task is one module of its own."""
    import ast
    from pathlib import Path

    import unrolled.tasks

    root = Path(unrolled.tasks.__file__).parent
    assert len((root.parent / "cli.py").read_text().splitlines()) < 250
    names = set(unrolled.tasks.MODULES)
    for module in names:
        tree = ast.parse((root / f"{module}.py").read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}
        imported |= {
            a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1 for a in n.names
        }
        assert not imported & (names - {module}), f"tasks/{module}.py imports another task"
