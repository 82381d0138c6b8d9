"""The folder a storage stages files in, shared safely between archivers on one machine.

Every running archiver holds a shared flock on the folder's lock file. One that gets the
exclusive lock is alone, so whatever the folder holds was left by a killed run and is removed;
then it too keeps a shared lock. A folder in use by another archiver is never cleaned.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

TEMP_NAME = ".suno-archiver-tmp"  # starts with "." so no valid key can name it
LOCK_NAME = ".suno-archiver.lock"


class TempDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    def open(self) -> int:
        """Create the folder, take the lock, clean it if alone. Returns how many stale
        entries were removed; raises OSError when the folder cannot be used."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
            return 0
        removed = 0
        for entry in os.scandir(self.path):
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        return removed

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None
