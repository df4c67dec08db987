"""An exclusive lock on a file beside the database, across the processes of one machine.

The kernel releases an `flock` when its process ends, however it ends, so a crashed holder
never leaves the lock behind. Used for one purchase import at a time per SQLite file
(`services/history_import.py`) and for the leader among the bot's processes on SQLite
(`bot/leader.py`).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; False (at once) if someone does."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)  # closing releases the lock; the file stays (no unlink race)
