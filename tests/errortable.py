"""docs/errors.md, the table of every error line the command line prints, and what keeps it true.

Three parts:

- :func:`scan` reads the source of ``unrolled/`` and lists every ``raise`` of an error the CLI
  turns into one line (``ValueError``, ``TypeError``, ``OSError``: exit code 2; ``Diverged``,
  ``NonFiniteOutput``: exit code 3; ``argparse.ArgumentTypeError``: a usage error, exit code 2),
  with its message as written in the source (``{...}`` where a value is filled in).
- :class:`Recorder`, a pytest plugin (``python -m pytest --record-errors FILE``), notes for each
  test the ``raise`` statements whose errors reached the CLI's error boundary or ``pytest.raises``.
- ``python tests/errortable.py FILE...`` writes docs/errors.md from the scan and the records:
  one row per raise, with the first test that triggers it.

``tests/test_errors_doc.py`` checks, on every run of the suite, that the table and the source
agree (the same raises, messages and exit codes) and that every test it names exists.
"""

from __future__ import annotations

import ast
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "unrolled"
DOC = ROOT / "docs" / "errors.md"
EXIT = {
    "ValueError": 2,
    "TypeError": 2,
    "OSError": 2,
    "ArgumentTypeError": 2,
    "Diverged": 3,
    "NonFiniteOutput": 3,
}
NO_TEST = "none yet"
HEAD = """# Errors: every line the command line prints, and its exit code

Bad input never ends in a traceback: the command line prints one line on stderr,
`unrolled: error: MESSAGE`, and exits with code **2**; a run or a model that has diverged prints
`unrolled: error: training diverged at step N: ...` (or `the model's logits are not finite ...`)
and exits with code **3**. A usage error that argparse finds (an unknown flag, a missing value)
is `unrolled COMMAND: error: ... (see --help)`, code 2; Ctrl-C is `unrolled: interrupted`, code
130; a closed pipe (`unrolled sample RUN | head`) ends quietly with 0. `UNROLLED_DEBUG=1` shows
the traceback instead. Errors that the operating system raises while a file is read or written
(`[Errno 2] No such file or directory: 'x'`, a full disk) are printed the same way, code 2; a
full disk in the middle of a save names the checkpoint that is kept.

The tables below list every error the library raises that the command line prints as such a
line, module by module, as the source writes it (`{...}` is a value filled in, `!r` quoted),
the exit code, the function that raises it, and a test that triggers it. Some are reachable only
from Python (`unrolled.load(...)`, the layers and cells): the same message is then the
exception's text. "none yet" marks a raise that no test triggers.

This file is written by `python tests/errortable.py RECORDS...` from records of the test
suites (`python -m pytest --record-errors RECORDS`); `tests/test_errors_doc.py` checks that it
and the source agree.
"""


@dataclass(frozen=True)
class Site:
    """One ``raise`` statement: where, what, and its message as the source writes it."""

    module: str  # "unrolled/training/loop.py"
    function: str  # "Trainer._check_bound" ("" at module level)
    kind: str  # "ValueError"
    message: str
    first: int  # lines of the statement
    last: int

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.module, self.function, self.kind, self.message)


def _text(node: ast.expr) -> str:
    """A message expression as it reads: an f-string's literal parts, ``{...}`` for the values."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            else:
                assert isinstance(v, ast.FormattedValue)
                conv = {-1: "", 115: "!s", 114: "!r", 97: "!a"}[v.conversion]
                spec = f":{_text(v.format_spec)}" if v.format_spec is not None else ""
                parts.append(f"{{{ast.unparse(v.value)}{conv}{spec}}}")
        return "".join(parts)
    return f"{{{ast.unparse(node)}}}"


def _message(kind: str, call: ast.Call) -> str:
    args = list(call.args) + [k.value for k in call.keywords if k.arg == "problem"]
    if kind == "Diverged":  # Diverged(step, problem, last_saved): the problem is the message's middle
        return f"training diverged at step {{{ast.unparse(args[0])}}}: {_text(args[1])}; ..."
    if kind == "NonFiniteOutput":
        return f"the model's {_text(args[0])} are not finite: ..."
    if kind == "OSError" and len(args) >= 2:  # OSError(errno, text, filename)
        return _text(args[1])
    return _text(args[0]) if args else kind


def scan(package: Path = PACKAGE) -> list[Site]:
    """Every raise of an error the CLI prints as one line, in source order."""
    sites: list[Site] = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        _visit(tree, (), path.relative_to(package.parent).as_posix(), sites)
    return sites


def _visit(node: ast.AST, scope: tuple[str, ...], module: str, sites: list[Site]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            _visit(child, (*scope, child.name), module, sites)
            continue
        if isinstance(child, ast.Raise) and isinstance(child.exc, ast.Call):
            func = child.exc.func
            kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if kind in EXIT:
                message = " ".join(_message(kind, child.exc).split())
                end = child.end_lineno or child.lineno
                sites.append(Site(module, ".".join(scope), kind, message, child.lineno, end))
        _visit(child, scope, module, sites)


# ---- recording which test triggers which raise ------------------------------------------------
class Recorder:
    """pytest plugin: for each test, the raise statements of :func:`scan` whose error it saw.

    Errors are caught where tests see them: the command line's error boundary
    (:func:`unrolled.cli.error_line`), the web app's (``unrolled.serve.app.error_detail``) and
    ``pytest.raises``; the raise is the deepest frame of
    the error's traceback that stands on a raise statement of the scan. (Commands run in a
    subprocess are not seen.)
    """

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.lines: dict[tuple[str, int], Site] = {}
        for site in scan():
            for line in range(site.first, site.last + 1):
                self.lines[(str(ROOT / site.module), line)] = site
        self.test = ""
        self.hits: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
        self._install()

    def _install(self) -> None:
        import _pytest.raises

        from unrolled import cli

        line, leave = cli.error_line, _pytest.raises.RaisesExc.__exit__

        def error_line(e: BaseException) -> int:
            self.saw(e)
            return line(e)

        def exit_(raises: Any, kind: Any, value: Any, tb: Any) -> Any:
            if value is not None:
                self.saw(value)
            return leave(raises, kind, value, tb)

        cli.error_line = error_line  # type: ignore[assignment]
        _pytest.raises.RaisesExc.__exit__ = exit_  # type: ignore[method-assign]
        try:
            from unrolled.serve import app
        except ImportError:  # no [serve] extra: its errors are not seen
            return
        detail = app.error_detail

        def error_detail(e: BaseException) -> str:
            self.saw(e)
            return detail(e)

        app.error_detail = error_detail  # type: ignore[assignment]

    def saw(self, error: BaseException) -> None:
        frames, tb = [], error.__traceback__
        while tb is not None:
            frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
            tb = tb.tb_next
        for where in reversed(frames):
            site = self.lines.get(where)
            if site is not None:
                if self.test:
                    self.hits[site.key].add(self.test)
                return

    def pytest_runtest_setup(self, item: Any) -> None:
        self.test = item.nodeid

    def pytest_runtest_teardown(self, item: Any) -> None:
        self.test = ""

    def pytest_sessionfinish(self, session: Any) -> None:
        with self.out.open("a", encoding="utf-8") as f:
            for key, tests in sorted(self.hits.items()):
                f.write(json.dumps({"site": list(key), "tests": sorted(tests)}) + "\n")


# ---- the table -------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _test_name(nodeid: str) -> str:
    """``tests/test_x.py::test_y[param]`` -> ``tests/test_x.py::test_y``."""
    return nodeid.split("[", 1)[0]


def render(sites: list[Site], hits: dict[tuple[str, str, str, str], set[str]]) -> str:
    by_module: dict[str, list[Site]] = defaultdict(list)
    for site in sites:
        by_module[site.module].append(site)
    out = [HEAD]
    tested = sum(1 for s in sites if hits.get(s.key))
    out.append(f"{len(sites)} raises in {len(by_module)} modules; {tested} triggered by a test.\n")
    for module, rows in by_module.items():
        out.append(f"\n## {module}\n\n| message | exit | raised in | test |\n|---|---|---|---|\n")
        for s in rows:
            tests = sorted({_test_name(t) for t in hits.get(s.key, ())}, key=lambda t: (len(t), t))
            test = f"`{tests[0]}`" if tests else NO_TEST
            where = f"`{s.function}`" if s.function else "(module)"
            out.append(f"| {_cell(s.message)} | {EXIT[s.kind]} | {where} | {test} |\n")
    return "".join(out)


@dataclass(frozen=True)
class Row:
    module: str
    message: str
    exit: int
    function: str
    test: str  # a node id without parameters, or NO_TEST


def parse(text: str) -> list[Row]:
    """The rows of docs/errors.md."""
    rows, module = [], ""
    for line in text.splitlines():
        if line.startswith("## "):
            module = line[3:].strip()
        elif line.startswith("| `"):
            cells = [c.strip() for c in _split(line.strip()[1:-1])]
            message, code, where, test = cells
            rows.append(
                Row(
                    module,
                    message[1:-1].replace("\\|", "|"),
                    int(code),
                    "" if where == "(module)" else where.strip("`"),
                    test.strip("`"),
                )
            )
    return rows


def _split(line: str) -> list[str]:
    """A table row's cells: split on ``|`` that is not escaped."""
    cells, cell, k = [], "", 0
    while k < len(line):
        if line[k] == "\\" and line[k + 1 : k + 2] == "|":
            cell, k = cell + "\\|", k + 2
            continue
        if line[k] == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += line[k]
        k += 1
    return [*cells, cell]


def shown(site: Site) -> str:
    """A message as the table shows it (backticks become quotes)."""
    return site.message.replace("`", "'")


def main(records: list[str]) -> int:
    hits: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    for record in records:
        for line in Path(record).read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            hits[tuple(r["site"])] |= set(r["tests"])  # type: ignore[index]
    sites = scan()
    DOC.write_text(render(sites, hits), encoding="utf-8")
    counts = Counter(bool(hits.get(s.key)) for s in sites)
    print(f"{DOC}: {len(sites)} raises, {counts[True]} triggered by a test, {counts[False]} none yet")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
