"""Tasks: one module per application (data + model + loss + metrics + its own commands).

Each module defines ``TASK``, an instance of a :class:`unrolled.training.Task` subclass. Adding
a task = its module + its name in ``MODULES`` (see docs/new_task.md). No task imports another.
"""

from __future__ import annotations

import importlib

from ..training import Task

MODULES = (
    "charlm",
    "classify",
    "translate",
    "forecast",
    "tag",
)  # the registered tasks, in the order `unrolled train --help` lists them


def registry() -> dict[str, Task]:
    """Task name -> task, for every registered module."""
    tasks = [importlib.import_module(m if "." in m else f"{__name__}.{m}").TASK for m in MODULES]
    return {t.name: t for t in tasks}
