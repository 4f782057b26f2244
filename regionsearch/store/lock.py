"""The data dir's writer lock: one process at a time may write (``flock`` on ``.writer.lock``);
readers take no lock."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataDirBusyError

LOCK_NAME = ".writer.lock"


class WriterLock:
    """Held from :meth:`acquire` until :meth:`release` (or the process ends: the kernel drops flocks)."""

    def __init__(self, root: Path):
        self.root = root
        self._fd: int | None = None

    def acquire(self) -> "WriterLock":
        """Take the lock without waiting; :class:`DataDirBusyError` when another process holds it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirBusyError(f"another process is writing to the data dir {self.root}; wait for it to finish "
                                   "(search, info and doctor read it meanwhile)") from None
        self._fd = fd
        return self

    @staticmethod
    def held_by_other(root: Path) -> bool:
        """Whether a process is writing ``root`` now (its lock is held). Touches nothing: the lock
        file is opened read-only and never created; the probe's shared lock is dropped at once."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return False
        try:
            fd = os.open(root / LOCK_NAME, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
