"""Command-line flags made from the config dataclasses: one source for names, types, defaults, help.

A field ``hidden: int = 256  # units per layer`` becomes ``--hidden N   units per layer [256]``:
the flag is the field's name with dashes, the type its annotation (``int``, ``float``, ``str``,
``list[int]`` as ``3,4,5``; for ``X | None`` the word ``none`` gives None; any other type is an
error), the default the one of the task's config instance, and the help the field's comment (the
comment lines right above the field and the one at the end of it, in the class or the one it
inherits from). A ``bool`` field is a switch: ``--name`` sets it when it defaults to False; when
it defaults to True, ``--no-name`` clears it, or a flag named for what it does (``reset_after``:
``--reset-before``); a ``bool | None`` field that defaults to None (decided later, e.g. by
another setting) gets both ``--name`` and ``--no-name``.
:func:`flag` sets what a plain default cannot say: another flag name, the choices, a metavar,
``fixed=True`` (may not change on ``--resume``), ``hidden=True`` (no flag).

Flags default to "not given" (``argparse.SUPPRESS``), so the caller can tell what the user set.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

_META = "unrolled.flag"


def flag(
    default: Any = MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    name: str | None = None,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
    fixed: bool = False,
    hidden: bool = False,
) -> Any:
    """A dataclass field with command-line details; the help still comes from its comment."""
    meta = {_META: {"name": name, "choices": choices, "metavar": metavar, "fixed": fixed, "hidden": hidden}}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Flag:
    """One generated flag: ``--option`` sets ``config.<section>.<name>``."""

    option: str  # "--hidden"
    section: str  # "model"
    name: str  # "hidden"
    fixed: bool  # may not be given with --resume

    @property
    def dest(self) -> str:
        return f"{self.section}.{self.name}"


def comments(cls: type) -> dict[str, str]:
    """Field name -> its comment in the source of ``cls`` (and of the dataclasses it inherits from).

    The comment of a field is the run of comment lines right above it and the comment at the end
    of its last line. {} where the source cannot be read.
    """
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment wins over its base's
        try:
            source = textwrap.dedent(inspect.getsource(klass))
            body = ast.parse(source).body[0]
            tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        except (OSError, TypeError, SyntaxError, tokenize.TokenError, IndexError):
            continue
        if not isinstance(body, ast.ClassDef):
            continue
        notes = {t.start[0]: t.string[1:].strip() for t in tokens if t.type == tokenize.COMMENT}
        lines = source.splitlines()
        for node in body.body:  # the class body's own statements: not methods, not docstrings
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                above, row = [], node.lineno - 1  # rows are 1-based
                while row >= 1 and lines[row - 1].strip().startswith("#"):
                    above.insert(0, notes.get(row, ""))
                    row -= 1
                trailing = notes.get(node.end_lineno or node.lineno, "")
                found[node.target.id] = " ".join([*above, trailing]).strip()
    return found


def _int_list(text: str) -> list[int]:
    parts = text.split(",")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas, e.g. 3,4,5; got {text!r}"
        )
    return [int(p) for p in parts]


_TYPES: dict[Any, tuple[Callable[[str], Any], str]] = {  # type -> (parser, metavar)
    int: (int, "N"),
    float: (float, "X"),
    str: (str, "S"),
    list[int]: (_int_list, "N,N,..."),
}


def _or_none(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_none(text: str) -> Any:
        return None if text.lower() == "none" else parse(text)

    parse_or_none.__name__ = getattr(parse, "__name__", "value")  # argparse names it in errors
    return parse_or_none


def _base_type(hint: Any) -> Any:
    """``X | None`` -> X."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner
    return hint


def _show(value: Any) -> str:
    return (
        ",".join(map(str, value))
        if isinstance(value, list)
        else f"{value:g}"
        if isinstance(value, float)
        else str(value)
    )


def add_config_flags(
    parser: argparse.ArgumentParser, config: Any, titles: dict[str, str] | None = None
) -> list[Flag]:
    """Add a flag for every field of every section of ``config`` (one argument group per section)."""
    made = []
    for section in fields(config):
        obj = getattr(config, section.name)
        group = parser.add_argument_group((titles or {}).get(section.name, section.name))
        helps, hints = comments(type(obj)), typing.get_type_hints(type(obj))
        for f in fields(obj):
            meta = f.metadata.get(_META, {})
            if meta.get("hidden"):
                continue
            option = "--" + (meta.get("name") or f.name.replace("_", "-"))
            default, kind = getattr(obj, f.name), _base_type(hints[f.name])
            help_text = helps.get(f.name, "")
            kwargs: dict[str, Any] = {"dest": f"{section.name}.{f.name}", "default": argparse.SUPPRESS}
            if kind is bool and default is None:  # bool | None: --name and --no-name, None = not set
                off = f"--no-{f.name.replace('_', '-')}"
                group.add_argument(off, action="store_false", help=f"turn off: {help_text}", **kwargs)
                kwargs["action"] = "store_true"
            elif kind is bool:
                if default and not meta.get("name"):
                    option, help_text = f"--no-{f.name.replace('_', '-')}", f"turn off: {help_text}"
                kwargs["action"] = "store_false" if default else "store_true"
            else:
                if kind not in _TYPES:
                    raise TypeError(f"{type(obj).__name__}.{f.name}: no flag for the type {kind}; hide it")
                parse, metavar = _TYPES[kind]
                if kind is not hints[f.name]:  # X | None: "none" sets None
                    parse = _or_none(parse)
                kwargs.update(type=parse, metavar=meta.get("metavar") or metavar)
                if meta.get("choices"):
                    kwargs.update(choices=list(meta["choices"]), metavar=None)
                if default is not None:
                    help_text += f" [{_show(default)}]"
            group.add_argument(option, help=help_text.replace("%", "%%"), **kwargs)
            made.append(Flag(option, section.name, f.name, bool(meta.get("fixed"))))
    return made


def given_flags(args: argparse.Namespace, flags: list[Flag]) -> dict[Flag, Any]:
    """The flags the user gave, with their values."""
    return {fl: getattr(args, fl.dest) for fl in flags if hasattr(args, fl.dest)}


def apply_flags(config: Any, values: dict[Flag, Any]) -> None:
    """Set the config fields of the given flags."""
    for fl, value in values.items():
        setattr(getattr(config, fl.section), fl.name, value)
