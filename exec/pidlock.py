"""The pid lock that keeps two executives from sharing one run directory.

An ``fcntl`` lock, not the file's existence, decides: a lock dies with its process, so a pid
file left behind by ``kill -9`` never blocks a restart.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os


class AlreadyRunningError(Exception):
    """Another live process holds the lock."""


class PidLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid; AlreadyRunningError if another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EACCES, errno.EAGAIN):
                raise AlreadyRunningError(self.path) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None
