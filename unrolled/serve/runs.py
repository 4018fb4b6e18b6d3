"""The runs under a root folder as ``unrolled serve`` sees them: found, named, guarded, summarised,
and their models loaded on first use into a small LRU cache.

A run's *id* is its folder's path relative to the root, with ``/`` between parts
(``charlm-1`` or ``lm/charlm-1``). An id names a folder under the root or nothing: an absolute
path, a ``..`` or ``.`` part, a NUL, or a symbolic link that leads out of the root is
:class:`RunNotFound`, exactly like an id that names no run.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..training import Predictor
from ..training import checkpoint as ckpt

TRAINING, FINISHED, DIVERGED = "training", "finished", "diverged"


class RunNotFound(LookupError):
    """The id names no run under the root (or a place outside it)."""


class RunUnavailable(RuntimeError):
    """The run exists but its model cannot be loaded (a damaged or incomplete run directory)."""


def find_runs(root: Path) -> list[str]:
    """The ids of every run under ``root`` (a folder with a config.json), sorted; the folders of a
    run are not searched further, and symbolic links to folders are not followed."""
    ids = []
    for folder, dirs, files in os.walk(root):
        if ckpt.CONFIG in files:
            ids.append(Path(folder).relative_to(root).as_posix())
            dirs[:] = []
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(i for i in ids if i != ".")


def resolve(root: Path, run_id: str) -> Path:
    """The run folder that ``run_id`` names under ``root``; :class:`RunNotFound` otherwise."""
    parts = run_id.split("/")
    if (
        not run_id
        or "\x00" in run_id
        or "\\" in run_id
        or run_id.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise RunNotFound(f"no run {run_id!r}: a run id is a folder path under the root, like 'charlm-1'")
    base = root.resolve()
    path = (base / run_id).resolve()
    if not path.is_relative_to(base) or not (path / ckpt.CONFIG).is_file():
        raise RunNotFound(f"no run {run_id!r} under the root")
    return path


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def status(path: Path) -> str:
    """``training`` (the pid in the run's lock file is alive), else ``diverged`` (the last record of
    metrics.jsonl says so), else ``finished``."""
    try:
        pid = int((path / ".lock").read_text().strip() or "0")
    except (OSError, ValueError):
        pid = 0
    if pid and pid != os.getpid() and _pid_running(pid):
        cmdline = Path(f"/proc/{pid}/cmdline")
        if not cmdline.exists() or b"unrolled" in cmdline.read_bytes():
            return TRAINING
    last = _last_record(path / ckpt.METRICS)
    return DIVERGED if last is not None and last.get("kind") == "diverged" else FINISHED


def _last_record(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            lines = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a write in progress
        if isinstance(record, dict):
            return record
    return None


def metrics(path: Path) -> list[dict[str, Any]]:
    """The records of the run's metrics.jsonl (a line cut short by a write in progress is left out)."""
    try:
        text = (path / ckpt.METRICS).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def summary(root: Path, run_id: str) -> dict[str, Any]:
    """What the runs table shows of one run: task, config, step, best validation, status."""
    from ..api import task_of

    path = resolve(root, run_id)
    out: dict[str, Any] = {"id": run_id, "status": status(path)}
    try:
        config = ckpt.read_json(path / ckpt.CONFIG, "config.json")
        task = task_of(path)
        out |= {"task": task.name, "config": config, "verbs": list(verbs_of(task.Predictor, config))}
    except ValueError as e:
        return out | {"task": None, "error": " ".join(str(e).split())}
    try:
        state = ckpt.trainer_state(path)
    except ValueError:  # no checkpoint yet: a run that has just started
        return out | {"step": None, "best_step": None, "best_val": None, "metric": None}
    out |= {"step": state.get("step"), "best_step": state.get("best_step"), "best_val": state.get("best_val")}
    out["metric"] = _selected_metric(path, state)
    return out


SERVED = ("sample", "stream", "score", "neurons", "predict", "translate", "tag", "forecast")  # the endpoints


def verbs_of(predictor: type[Predictor], config: dict[str, Any]) -> tuple[str, ...]:
    """The verbs a run answers: its predictor's that have an endpoint, and ``neurons`` for a
    left-to-right char-LM."""
    verbs = tuple(v for v in predictor.verbs if v in SERVED)
    data, model = config.get("data", {}), config.get("model", {})
    if config.get("task") == "lm" and data.get("unit") == "char" and not model.get("bidirectional"):
        verbs += ("neurons",)
    return verbs


_metric_names: dict[tuple[Path, Any, Any], str | None] = {}  # (run, best step, best value) -> name


def _selected_metric(path: Path, state: dict[str, Any]) -> str | None:
    """The name of the validation figure that ``best_val`` is (the record of the best step has it;
    remembered, so that the runs list does not read every metrics.jsonl again)."""
    best, step = state.get("best_val"), state.get("best_step")
    key = (path, step, best)
    if key not in _metric_names:
        found = None
        for record in reversed(metrics(path)):
            if record.get("kind") == "val" and record.get("step") == step:
                found = next((k for k, v in record.items() if k.startswith("val_") and v == best), None)
                break
        _metric_names[key] = found
    return _metric_names[key]


class Models:
    """The predictors of the runs in use, at most ``size`` of them, the least recently used going
    first; a run whose checkpoint pointer has changed since it was loaded (a run still training)
    is loaded again."""

    def __init__(self, root: Path, size: int = 4, device: str = "cpu") -> None:
        if size < 1:
            raise ValueError(f"--cache must be >= 1, got {size}")
        self.root, self.size, self.device = root, size, device
        self._cache: OrderedDict[str, tuple[Any, Predictor]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_id: str) -> Predictor:
        from ..api import load

        path = resolve(self.root, run_id)
        with self._lock:
            version = _version(path)
            hit = self._cache.get(run_id)
            if hit is not None and hit[0] == version:
                self._cache.move_to_end(run_id)
                return hit[1]
            try:
                predictor = load(path, self.device)
            except ValueError as e:
                raise RunUnavailable(f"run {run_id!r} cannot be loaded: {' '.join(str(e).split())}") from None
            self._cache[run_id] = (version, predictor)
            self._cache.move_to_end(run_id)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
            return predictor

    def loaded(self) -> list[str]:
        """The ids in the cache, least recently used first."""
        with self._lock:
            return list(self._cache)


def _version(path: Path) -> tuple[int, int] | None:
    """What changes when a save commits: the pointer file's inode and time (an atomic rename)."""
    for name in (ckpt.POINTER, ckpt.STATE):
        try:
            st = (path / name).stat()
        except FileNotFoundError:
            continue
        return st.st_ino, st.st_mtime_ns
    return None
