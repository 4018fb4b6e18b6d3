"""Run directories: atomic files, safetensors weights, and checkpoints that are one commit each.

A checkpoint is a folder ``checkpoints/step-NNNNNNNN/`` holding the three files that must agree
with each other (latest weights, resume data, trainer state). A save writes the folder complete
under a temporary name, renames it into place, and only then switches to it by rewriting the
pointer file ``checkpoint.json`` with one atomic rename. The previous latest checkpoint stays
until the next save (so that a copy taken during a save, ``cp -r`` or a backup, holds a whole
one: see :func:`committed`); other folders the pointer no longer names are deleted after the
switch. A ``kill -9`` at any moment, in the middle of a save included,
therefore leaves a run directory whose pointer names complete checkpoints: ``sample``/``eval``
open it and ``--resume`` continues from the last complete checkpoint. Leftovers of an interrupted
save (a temporary file or folder, an uncommitted step folder) are never read and are removed by
the next save.

::

    RUN/
      config.json, vocab.json, ...   written once, when the run starts (the task's files)
      checkpoint.json                the commit point: {"latest": "checkpoints/step-00000600",
                                       "best": "checkpoints/step-00000400", "step": 600, ...}
      checkpoints/step-00000600/     model.safetensors  resume.pt  trainer_state.json
      checkpoints/step-00000400/     the best validation's checkpoint, kept while it is the best
      checkpoints/step-00000500/     the previous latest, kept until the next save
      metrics.jsonl

Run directories of unrolled 0.1 (``model.safetensors``, ``best.safetensors``, ``resume.pt`` and
``trainer_state.json`` at the top) still open; the first save of a resumed one moves it to this
layout. Nothing is ever loaded in a way that can execute code: weights are safetensors,
metadata is JSON, and the optimizer/RNG file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import Tensor, nn

CONFIG = "config.json"
VOCAB = "vocab.json"
POINTER = "checkpoint.json"  # the commit point: names the latest and the best checkpoint
CHECKPOINTS = "checkpoints"  # one folder per committed step
WEIGHTS = "model.safetensors"  # inside a checkpoint folder (and at the top of a 0.1 run)
RESUME = "resume.pt"
STATE = "trainer_state.json"
METRICS = "metrics.jsonl"
LEGACY_BEST = "best.safetensors"  # 0.1 layout only
BEST, LATEST = "best", "latest"  # which weights to open

T = TypeVar("T")
log = logging.getLogger(__name__)
_warned: set[tuple[Path, Path]] = set()  # (run, folder) recoveries already reported


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_dir(parent: Path, prefix: str) -> Path:
    """A new hidden folder ``parent/.PREFIX.*.tmp`` with the usual permissions (mkdtemp makes 0700)."""
    path = Path(tempfile.mkdtemp(prefix=f".{prefix}.", suffix=".tmp", dir=parent))
    os.chmod(path, 0o777 & ~_umask())
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{what} is missing: {str(path)!r}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} is corrupted ({str(path)!r}: {e})") from None


def save_weights(path: Path, state_dict: dict[str, Tensor], metadata: dict[str, str]) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    atomic_write_bytes(path, st_save(tensors, metadata=metadata))


def load_weights(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file; ``ValueError`` if it is missing, truncated or corrupted."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file is missing: {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as f:  # one open: metadata and tensors of one file
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(
            f"weights file {str(path)!r} is truncated or corrupted ({e}); restore it or train again"
        ) from None
    return tensors, meta


def save_resume(path: Path, obj: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_resume(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"resume file is missing: {str(path)!r}") from None
    except Exception as e:  # a truncated zip or a file that is not one: say so in one line
        raise ValueError(f"resume file {str(path)!r} is truncated or corrupted ({e})") from None


def check_run_dir(path: str | Path) -> Path:
    """``path`` as a Path if it holds a run's config.json, else ``ValueError``."""
    p = Path(path)
    if not p.is_dir():
        raise ValueError(f"not a run directory (no such directory): {str(p)!r}")
    if not (p / CONFIG).is_file():
        raise ValueError(f"not a run directory (no config.json): {str(p)!r}")
    return p


def check_new_run_dir(path: Path) -> None:
    """``ValueError`` if ``path`` exists and is not an empty directory (a new run never overwrites)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(
            f"{str(path)!r} already exists and is not empty; "
            "use --resume to continue it or choose another --out"
        )


# ---- checkpoints ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """The committed checkpoint of a run directory: where its files are."""

    latest: Path  # folder with model.safetensors, resume.pt, trainer_state.json
    best: Path | None  # the best validation's weights file (None: no validation yet)
    legacy: bool = False  # an unrolled 0.1 run directory (files at the top)


def committed(run_dir: str | Path) -> Checkpoint:
    """The last committed checkpoint of ``run_dir``; ``ValueError`` if it has none.

    In a run directory that a save is writing, the pointer always names complete folders. A
    *copy* of one taken during a save (``cp -r``, rsync, a backup) may not: the copy can hold the
    pointer of after the save with the folders of before it, or the reverse, or a folder deleted
    halfway through being copied. Then the newest complete checkpoint folder of the copy is the
    committed one (and its own trainer state says which folder holds the best weights).
    """
    run_dir = Path(run_dir)
    if (run_dir / POINTER).exists():
        named = _named(run_dir)
        if named != (again := _named(run_dir)):  # a save switched checkpoints while we looked
            named = again
        if _complete(named.latest) and (named.best is None or named.best.is_file()):
            return named
        return _recovered(run_dir) or named  # nothing complete: the pointer's names, for its error
    if (run_dir / STATE).exists():
        best = run_dir / LEGACY_BEST
        return Checkpoint(run_dir, best if best.exists() else None, legacy=True)
    found = _recovered(run_dir)  # a copy taken during the first save: a folder but no pointer yet
    if found is not None:
        return found
    raise ValueError(
        f"run directory {str(run_dir)!r} has no checkpoint yet (was its first save interrupted?); "
        "start the run again"
    )


def _named(run_dir: Path) -> Checkpoint:
    """The checkpoint the pointer file names."""
    ptr = read_json(run_dir / POINTER, "checkpoint pointer")
    if not isinstance(ptr, dict) or not isinstance(ptr.get("latest"), str):
        raise ValueError(f"checkpoint pointer {str(run_dir / POINTER)!r} is not valid")
    best = ptr.get("best")
    return Checkpoint(run_dir / ptr["latest"], None if best is None else run_dir / best / WEIGHTS)


def _complete(folder: Path) -> bool:
    """All three files of a checkpoint folder are there (a copy may hold a folder cut short)."""
    try:
        return all((folder / name).stat().st_size > 0 for name in (WEIGHTS, RESUME, STATE))
    except OSError:  # missing (or being deleted by a save)
        return False


def _step_of(folder: Path) -> tuple[int, int]:
    """``step-00000600.2`` -> (600, 2): the order in which a run saved its folders."""
    step, _, again = folder.name.removeprefix("step-").partition(".")
    return int(step), int(again or 0)


def _recovered(run_dir: Path) -> Checkpoint | None:
    """The newest complete checkpoint folder (None if there is none), with the best it names."""
    root = run_dir / CHECKPOINTS
    folders = [
        f for f in (root.iterdir() if root.is_dir() else ()) if re.fullmatch(r"step-\d{8}(\.\d+)?", f.name)
    ]
    for latest in sorted(folders, key=_step_of, reverse=True):
        if not _complete(latest):
            continue
        try:
            best_step = json.loads((latest / STATE).read_text(encoding="utf-8")).get("best_step")
        except (OSError, ValueError, AttributeError):
            continue
        best = [f / WEIGHTS for f in folders if _step_of(f)[0] == best_step and (f / WEIGHTS).is_file()]
        if (run_dir, latest) not in _warned:
            _warned.add((run_dir, latest))
            log.warning(
                "%s: the checkpoint pointer names files that are not there (a copy taken during a save?); "
                "reading %s, the newest complete checkpoint",
                run_dir,
                latest.relative_to(run_dir).as_posix(),
            )
        return Checkpoint(latest, max(best, key=lambda w: _step_of(w.parent)) if best else None)
    return None


def weights_file(run_dir: str | Path, which: str = BEST) -> Path:
    """The weights file of the ``best`` validation (the latest while there is none) or the ``latest``."""
    if which not in (BEST, LATEST):
        raise ValueError(f"which weights: expected {BEST!r} or {LATEST!r}, got {which!r}")
    c = committed(run_dir)
    return c.best if which == BEST and c.best is not None else c.latest / WEIGHTS


def read_committed(run_dir: str | Path, read: Callable[[Checkpoint], T]) -> T:
    """``read(committed checkpoint)``, again if a save switched checkpoints meanwhile.

    A reader (``sample``, ``eval``) does not take the run's lock: while it reads, the training
    process may commit a new checkpoint and delete the folder the reader was about to open.
    That shows as a missing file, and the pointer has moved: then read the new checkpoint.
    """
    for attempt in range(5):
        c = committed(run_dir)
        try:
            return read(c)
        except ValueError:
            if attempt == 4 or committed(run_dir) == c:
                raise
    raise AssertionError("unreachable")


def trainer_state(run_dir: str | Path) -> dict[str, Any]:
    """The trainer state (step, epoch, best validation, ...) of the last committed checkpoint."""
    return read_committed(run_dir, lambda c: read_json(c.latest / STATE, "trainer state"))


def load_checkpoint(run_dir: str | Path) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, Any]]:
    """(latest weights, resume data, trainer state) of the last committed checkpoint, checked to agree."""

    def read(c: Checkpoint) -> tuple[Path, Any, dict[str, str], dict[str, Any], dict[str, Any]]:
        state = read_json(c.latest / STATE, "trainer state")
        weights, meta = load_weights(c.latest / WEIGHTS)
        return c.latest, state, meta, weights, load_resume(c.latest / RESUME)

    folder, state, meta, weights, extra = read_committed(run_dir, read)
    steps = {STATE: state.get("step"), WEIGHTS: int(meta.get("step", -1)), RESUME: extra.get("step", -1)}
    if len(set(steps.values())) != 1:
        raise ValueError(f"checkpoint files disagree on the step ({steps}): {str(folder)!r} is inconsistent")
    return weights, extra, state


def commit(
    run_dir: Path,
    step: int,
    weights: dict[str, Tensor],
    resume: dict[str, Any],
    state: dict[str, Any],
    *,
    best: bool,
) -> None:
    """Save a complete checkpoint of ``step`` and switch the run to it with one atomic rename.

    ``best``: this step's weights are the new best. Folders that the new pointer no longer
    names (a superseded best, leftovers of an interrupted save) go after the switch, never
    before; the previous latest stays until the next save.
    """
    run_dir = Path(run_dir)
    root = run_dir / CHECKPOINTS
    root.mkdir(exist_ok=True)
    old = committed(run_dir) if (run_dir / POINTER).exists() or (run_dir / STATE).exists() else None
    _remove_unreferenced(run_dir)
    tmp = temp_dir(root, f"step-{step:08d}")
    save_weights(tmp / WEIGHTS, weights, {"step": str(step)})
    save_resume(tmp / RESUME, {"step": step, **resume})
    atomic_write_json(tmp / STATE, state)
    fsync_dir(tmp)
    name = _free_name(root, step)
    os.rename(tmp, root / name)
    fsync_dir(root)
    latest = f"{CHECKPOINTS}/{name}"
    if best:
        best_ref: str | None = latest
    elif old is None or old.best is None:
        best_ref = None
    elif old.legacy:  # a 0.1 run's best weights move into a folder of their own
        best_ref = f"{CHECKPOINTS}/{_adopt_legacy_best(run_dir, old.best)}"
    else:
        best_ref = old.best.parent.relative_to(run_dir).as_posix()
    pointer = {
        "format": 2,
        "latest": latest,
        "best": best_ref,
        "step": step,
        "best_step": state.get("best_step"),
    }
    atomic_write_json(run_dir / POINTER, pointer)
    fsync_dir(run_dir)
    _remove_unreferenced(run_dir, keep_previous=None if old is None or old.legacy else old.latest)
    for legacy in (WEIGHTS, LEGACY_BEST, RESUME, STATE):  # superseded by the pointer
        (run_dir / legacy).unlink(missing_ok=True)


def _free_name(root: Path, step: int) -> str:
    name, k = f"step-{step:08d}", 1
    while (root / name).exists():  # the same step saved again (e.g. resumed and stopped at once)
        name, k = f"step-{step:08d}.{k}", k + 1
    return name


def _adopt_legacy_best(run_dir: Path, best: Path) -> str:
    _, meta = load_weights(best)
    tmp = temp_dir(run_dir / CHECKPOINTS, "best")
    atomic_write_bytes(tmp / WEIGHTS, best.read_bytes())
    fsync_dir(tmp)
    name = _free_name(run_dir / CHECKPOINTS, int(meta.get("step", 0)))
    os.rename(tmp, run_dir / CHECKPOINTS / name)
    fsync_dir(run_dir / CHECKPOINTS)
    return name


def _remove_unreferenced(run_dir: Path, keep_previous: Path | None = None) -> None:
    """Delete the checkpoint folders (and temporary leftovers) that the pointer does not name.

    ``keep_previous``: the latest checkpoint before the save that just switched, kept until the
    next save, so that a copy of the run taken while one save runs always holds a whole one.
    """
    root = run_dir / CHECKPOINTS
    keep = {keep_previous.name} if keep_previous is not None else set()
    if (run_dir / POINTER).exists():
        c = committed(run_dir)
        keep |= {c.latest.name} | ({c.best.parent.name} if c.best is not None else set())
    for entry in root.iterdir() if root.is_dir() else ():
        if entry.name not in keep:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for entry in run_dir.glob(".*.tmp"):  # an atomic write cut short
        entry.unlink(missing_ok=True)


def load_run_weights(model: nn.Module, run_dir: Path, which: str = BEST) -> int | None:
    """Load the run's ``best`` (or ``latest``) weights into ``model``; returns their step."""
    if which not in (BEST, LATEST):
        raise ValueError(f"which weights: expected {BEST!r} or {LATEST!r}, got {which!r}")

    def read(c: Checkpoint) -> tuple[Path, tuple[dict[str, Tensor], dict[str, str]]]:
        file = c.best if which == BEST and c.best is not None else c.latest / WEIGHTS
        return file, load_weights(file)

    file, (tensors, meta) = read_committed(run_dir, read)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        first = str(e).splitlines()[0:2]
        raise ValueError(f"weights in {str(file)!r} do not fit the run's config: {' '.join(first)}") from None
    return int(meta["step"]) if meta.get("step", "").isdigit() else None
