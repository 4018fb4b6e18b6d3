"""A study's folder: its settings and the results of each run done so far, in one JSON file.

A study is many independent runs (a cell and a seed, a variant and a seed). :class:`Study` keeps
their results in ``DIR/NAME.json``, rewritten atomically after each run, so that a study killed
part-way continues with the runs it lacks when started again with the same settings, and refuses
(one line) to mix runs of other settings into the same folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..training import checkpoint as ckpt


class Study:
    """The results file ``folder/name.json`` of a study with ``settings`` (JSON-able)."""

    def __init__(self, folder: str | Path, name: str, settings: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / f"{name}.json"
        self.settings = json.loads(json.dumps(settings))  # as it reads back from the file
        self.runs: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}  # as last saved
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"--out must be a folder; {str(self.folder)!r} is a file")
        if self.path.exists():
            saved = ckpt.read_json(self.path, "the study's results file")
            if saved.get("settings") != self.settings:
                changed = sorted(
                    k for k in {*self.settings, *saved.get("settings", {})}
                    if self.settings.get(k) != saved.get("settings", {}).get(k)
                )  # fmt: skip
                raise ValueError(
                    f"{str(self.folder)!r} holds a study with other settings ({', '.join(changed)} "
                    "differ): give another --out, or the same settings to continue it"
                )
            self.runs = saved.get("runs", {})

    def done(self, key: str) -> bool:
        return key in self.runs

    def add(self, key: str, result: Any, summary: dict[str, Any] | None = None) -> None:
        """Record one run's result (and the summary so far) at once, atomically."""
        self.runs[key] = result
        self.save(summary)

    def save(self, summary: dict[str, Any] | None = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        body = {"settings": self.settings, "runs": self.runs}
        if summary is not None:
            body["summary"] = self.summary = summary
        ckpt.atomic_write_json(self.path, body)
