"""One writer per run directory: an advisory lock on ``RUN/.lock``, held while training.

The lock is ``flock(2)`` on an open file, which the kernel drops when its process ends, however
it ends: a lock left by a killed process (``kill -9``, the OOM killer, a power cut) never blocks
the next ``--resume``. Readers (``sample``, ``eval``) do not take it: a checkpoint is switched
by one atomic rename, so they always see a complete one.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock (documented)
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"


class RunLock:
    """``with RunLock(run_dir):`` -- ``ValueError`` at once if another process holds it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise ValueError(
                    f"{str(self.path.parent)!r} is in use by another training process (pid {holder}); "
                    "wait for it to finish or stop it, then resume"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases the lock
            self.fd = None
