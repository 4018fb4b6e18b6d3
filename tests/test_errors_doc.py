"""docs/errors.md and the source agree: the same raises with the same messages and exit codes, and
every test the table names exists (the table is written by tests/errortable.py)."""

from __future__ import annotations

import ast
from collections import Counter

from errortable import DOC, EXIT, NO_TEST, ROOT, Site, parse, scan, shown


def _rows() -> list:
    assert DOC.is_file(), f"{DOC} is missing: write it with tests/errortable.py"
    return parse(DOC.read_text(encoding="utf-8"))


def test_the_error_table_lists_every_raise_of_the_source_and_nothing_else() -> None:
    in_doc = Counter((r.module, r.function, r.message, r.exit) for r in _rows())
    in_code = Counter((s.module, s.function, shown(s), EXIT[s.kind]) for s in scan())
    missing, stale = sorted(in_code - in_doc), sorted(in_doc - in_code)
    assert not missing and not stale, (
        "docs/errors.md and the source disagree; record the suites and write it again "
        f"(tests/errortable.py). Not in the table: {missing[:5]}; not in the source: {stale[:5]}"
    )


def test_every_test_the_error_table_names_exists() -> None:
    defined: dict[str, set[str]] = {}
    named = {r.test for r in _rows() if r.test != NO_TEST}
    assert named, "the table names no test at all"
    for test in sorted(named):
        file, _, name = test.partition("::")
        if file not in defined:
            tree = ast.parse((ROOT / file).read_text(encoding="utf-8"))
            defined[file] = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in defined[file], f"docs/errors.md names {test}, which does not exist"


def test_the_scan_reads_messages_as_the_source_writes_them(tmp_path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text(
        "class A:\n"
        "    def f(self, x):\n"
        "        if x:\n"
        "            raise ValueError(\n"
        "                f'bad {x!r}: expected '\n"
        "                'one of {a, b}'\n"
        "            )\n"
        "        raise RuntimeError('not an error line')\n"
        "def g(step):\n"
        "    raise Diverged(step, f'the loss is {step:.3g}', None)\n"
        "raise OSError(28, 'full', 'x')\n",
        encoding="utf-8",
    )
    DIVERGED = "training diverged at step {step}: the loss is {step:.3g}; ..."
    assert scan(package) == [
        Site("pkg/mod.py", "A.f", "ValueError", "bad {x!r}: expected one of {a, b}", 4, 7),
        Site("pkg/mod.py", "g", "Diverged", DIVERGED, 10, 10),
        Site("pkg/mod.py", "", "OSError", "full", 11, 11),
    ]
