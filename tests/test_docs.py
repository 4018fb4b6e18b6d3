"""docs/cells.md: every constructor in the table runs and has the parameter count printed."""

from __future__ import annotations

import re
from pathlib import Path

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
