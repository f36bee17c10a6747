"""An exclusive claim on an output (a predictions file, a run directory) for one process."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class OutputClaim:
    """An exclusive claim on an output (a file or a directory), held by one process until it
    is written.

    A lock file beside the output (``.<name>.lock``) is locked with ``flock``: the kernel
    releases it when the process ends, however it ends, so a killed process never blocks the
    next one, and two processes never write (or clean up) the same output.

    Args:
        path: the output.
        hint: what the losing process is told to do.
    """

    def __init__(self, path: Path, hint: str = "wait for it to finish"):
        self.path = path
        self.hint = hint
        self.lock_path = path.with_name(f".{path.name}.lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the claim, or fail in one line if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise FileExistsError(
                    f"'{self.path}' is being written by another process (it holds "
                    f"'{self.lock_path}'); {self.hint}"
                ) from None
            try:  # the previous holder may have removed the lock file before we locked it
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        self.lock_path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
