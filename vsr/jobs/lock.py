"""One writer per output: an exclusive ``flock`` on a lock file beside the output (or the segment work
directory) for as long as a run writes it.

The kernel drops the lock when its process ends, however it ends, so a run killed with SIGKILL never
blocks the next one; the lock file it leaves is taken over. A holder removes the file on release;
whoever locks a file checks that it is still the one at the path (the previous holder may have
removed it in between) and starts over if not. Where the OS has no ``flock`` (Windows), outputs are
not locked.
"""

from __future__ import annotations

import os
from pathlib import Path

from vsr.errors import BusyError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_SUFFIX = ".vsr-lock"


def lock_path(target: Path) -> Path:
    """``.<name>.vsr-lock`` beside ``target``."""
    return target.parent / f".{target.name}{LOCK_SUFFIX}"


class OutputLock:
    """Held from ``acquire()`` to ``release()`` (or use it as a context manager)."""

    def __init__(self, target: Path, what: str = "output") -> None:
        self.target, self.what, self.path = target, what, lock_path(target)
        self.fd: int | None = None

    def acquire(self) -> OutputLock:
        """Take the lock, or BusyError when another run holds it."""
        if fcntl is None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise BusyError(f"{self.target}: another run is writing this {self.what} (lock {self.path}); "
                                "wait for it to finish") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return self
            os.close(fd)  # the holder before removed it as we opened it: lock the new one

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: nobody can take a file about to vanish
        finally:
            os.close(self.fd)  # releases the flock
            self.fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
