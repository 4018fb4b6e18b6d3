"""Tasks: one module per application (data + model + loss + metrics + its own commands).

Each module defines ``TASK``, an instance of a :class:`unrolled.training.Task` subclass (or
``TASKS``, several: the language model is ``lm`` and, under its old name, ``charlm``). Adding
a task = its module + its name in ``MODULES`` (see docs/new_task.md). No task imports another.
"""

from __future__ import annotations

import importlib

from ..training import Task

MODULES = (
    "lm",
    "classify",
    "translate",
    "forecast",
    "tag",
)  # the registered tasks, in the order `unrolled train --help` lists them


def registry() -> dict[str, Task]:
    """Task name -> task, for every registered module."""
    modules = [importlib.import_module(m if "." in m else f"{__name__}.{m}") for m in MODULES]
    tasks = [t for m in modules for t in getattr(m, "TASKS", (m.TASK,))]
    return {t.name: t for t in tasks}
