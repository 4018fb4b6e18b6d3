"""Run directories: atomic writes, safetensors weights, and safe loading.

Every file is written to a temporary name in the same folder and renamed over the old one,
so a crash leaves either the previous good file or the new one, never half of one. Nothing is
ever loaded in a way that can execute code: weights are safetensors, metadata is JSON, and the
optimizer/RNG file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

CONFIG = "config.json"
VOCAB = "vocab.json"
WEIGHTS = "model.safetensors"
BEST = "best.safetensors"
RESUME = "resume.pt"
STATE = "trainer_state.json"
METRICS = "metrics.jsonl"
LABELS = "labels.json"  # classifiers: the class names, in output order
RESULTS = "results.json"  # classifiers: validation and test metrics of the best weights


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"weights file is missing: {str(path)!r}") from None
    try:
        tensors = st_load(data)
        # safetensors.load ignores metadata; read the header ourselves (8-byte length + JSON).
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + n]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError, OverflowError) as e:
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
    """``path`` as a Path if it holds a run's config.json and vocab.json, else ``ValueError``."""
    p = Path(path)
    if not p.is_dir():
        raise ValueError(f"not a run directory (no such directory): {str(p)!r}")
    if not (p / CONFIG).is_file() or not (p / VOCAB).is_file():
        raise ValueError(f"not a run directory (no config.json / vocab.json): {str(p)!r}")
    return p


def check_new_run_dir(path: Path) -> None:
    """``ValueError`` if ``path`` exists and is not an empty directory (a new run never overwrites)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(
            f"{str(path)!r} already exists and is not empty; "
            "use --resume to continue it or choose another --out"
        )


def load_run_weights(model: nn.Module, run_dir: Path, weights: str = BEST) -> None:
    """Load ``run_dir/weights`` into ``model`` (the latest weights if there are no best ones yet)."""
    file = Path(run_dir) / weights
    if weights == BEST and not file.exists():
        file = Path(run_dir) / WEIGHTS
    tensors, _ = load_weights(file)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        first = str(e).splitlines()[0:2]
        raise ValueError(f"weights in {str(file)!r} do not fit the run's config: {' '.join(first)}") from None
